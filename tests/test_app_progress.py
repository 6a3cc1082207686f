"""What a person sees while a job runs and when it ends (issue 15 §2): live previews, the time left at the current
level's pace, "Cancelled" and errors kept in the result area, Texture's Cancel, a closed page cancelling its job.
Handlers are driven without a server, as the app's page (`x-gradio-user: app`) and as an API caller."""
from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image

from tests.conftest import image_form, no_progress

PAGE = SimpleNamespace(session_hash="page", request=None, headers={"x-gradio-user": "app"})
API = SimpleNamespace(session_hash="api", request=None, headers={"x-gradio-user": "api"})


@pytest.fixture
def app(monkeypatch, hooked_app):
    """The app (`hooked_app`), making a preview every step: a short run shows several."""
    monkeypatch.setattr("nstdiff.context.PREVIEW_EVERY", 0.0)
    return hooked_app


@pytest.fixture
def form(images, uploads) -> dict:
    return image_form(images, uploads, method="gram", size=48, steps=12)


def outputs_of(app, values: dict, caller) -> tuple[list[tuple], Exception | None]:
    """The handler's outputs; a preview's file is read as it comes (the next one deletes it)."""
    seen = []
    try:
        for output in app.stylize(values, caller, no_progress):
            if isinstance(output[1], str) and output[1].startswith("*Live preview*"):
                output = (Image.open(output[0]), *output[1:])
                output[0].load()
            seen.append(output)
    except gr.Error as exc:
        return seen, exc
    return seen, None


def test_the_page_sees_live_previews_then_the_result_named_after_its_inputs(app, form):
    outputs, error = outputs_of(app, form, PAGE)
    assert error is None
    *previews, (final, info) = outputs
    assert len(previews) >= 2 and all(text.startswith("*Live preview*") and "step " in text for _, text in previews)
    assert all(max(picture.size) <= 256 for picture, _ in previews)
    assert len({picture.tobytes() for picture, _ in previews}) >= 2  # the picture moves as the optimisation runs
    assert not any(Path(picture.filename).exists() for picture, _ in previews)  # none left in Gradio's cache
    assert Path(final).name == "content-red-gram.png" and Image.open(final).size == (48, 40)
    assert "**gram**" in info
    assert app.store.list()[0].output.read_bytes() == Path(final).read_bytes()


def test_api_callers_get_one_result_as_before(app, form):
    outputs, error = outputs_of(app, form, API)
    assert error is None and len(outputs) == 1
    (entry,) = app.store.list()
    assert Path(outputs[0][0]) == entry.output


def test_time_left_follows_the_current_levels_pace():
    from nstdiff.schema import ProgressEvent
    from ui.progress import progress_reporter

    shown = []
    report = progress_reporter(lambda value, desc=None, unit=None: shown.append(desc))
    for step in range(1, 4):  # level 1: 0.1 s a step
        report(ProgressEvent(step=step, total=10, level=1, elapsed=0.1 * step))
    for step in range(4, 7):  # level 2 (four times the pixels): 2 s a step
        report(ProgressEvent(step=step, total=10, level=2, elapsed=0.3 + 2 * (step - 3)))
    assert "left" not in shown[0] and shown[2].endswith("≈ 1 s left")  # 7 steps at 0.1 s
    assert "left" not in shown[3]  # a new level: its first step also paid for its set-up, so it is not measured
    assert shown[5].endswith("≈ 8 s left")  # 4 steps at 2 s, not at the run's average
    report(ProgressEvent(step=2, total=12, stage="frames", elapsed=1.0))
    assert shown[-1].startswith("frame 2/12")  # a video counts frames


def test_cancel_reads_cancelled_in_the_result_area_and_the_api_still_gets_an_error(app, form):
    app.before_run = lambda request: app.jobs.cancel(PAGE.session_hash)  # Cancel pressed as the run starts
    outputs, error = outputs_of(app, form, PAGE)
    assert error is None  # no red "Error" on the page
    picture, text = outputs[-1]
    assert text.startswith("**Cancelled**") and "nothing was saved" in text and "Error" not in text
    assert app.store.list() == []
    app.before_run = lambda request: app.jobs.cancel(API.session_hash)
    _, error = outputs_of(app, form, API)
    assert isinstance(error, gr.Error) and error.message.startswith("Cancelled")


def test_an_error_stays_in_the_result_area(app, form):
    outputs, error = outputs_of(app, {**form, "weights": "0.5, 0.5"}, PAGE)
    assert error is None and outputs == [(None, outputs[0][1])]  # an earlier run's picture is cleared
    assert outputs[0][1].startswith("**Check the inputs:**") and "2 blend weights for 1 style images" in outputs[0][1]


def test_previews_are_small_pngs_from_pixels_and_from_latents():
    import torch

    from nstdiff.executor import RunContext
    from nstdiff.preview import latent_preview, preview_png
    from nstdiff.settings import Settings

    png = preview_png(torch.rand(1, 3, 600, 300))
    assert Image.open(io.BytesIO(png)).size == (128, 256)
    assert latent_preview(torch.randn(1, 4, 8, 8)).shape == (1, 3, 8, 8)
    assert latent_preview(torch.randn(1, 16, 8, 8)) is None  # not Stable Diffusion's latents: no wrong picture
    events = []
    context = RunContext(Settings(), torch.device("cpu"), 0, events.append, preview_every=3600)
    context.step(1, 2, preview=torch.rand(1, 3, 8, 8) if context.wants_preview() else None)
    assert events[0].preview is None  # not due yet: no picture made


def test_texture_has_a_cancel_button_and_closing_the_page_cancels_its_job(app):
    demo = app.build()
    widgets = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    (cancel,) = [f for f in demo.fns.values() if (widgets["texture-cancel"]._id, "click") in map(tuple, f.targets)]
    assert cancel.fn == app.cancel
    (closing,) = [f for f in demo.fns.values() if any(t[1] == "unload" for t in f.targets)]
    token = app.jobs.start("page", joined=None)
    closing.fn(SimpleNamespace(session_hash="page"))
    assert token.cancelled
    other = app.jobs.start("api", joined=None)  # another session (an API client) goes on
    closing.fn(SimpleNamespace(session_hash="page"))
    assert not other.cancelled
