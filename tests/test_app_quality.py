"""The Image style tab's speed / quality control: with method auto, the feed-forward network's instant result shows
first (not stored) and the refined one replaces it (stored). Driven without a server, then once over HTTP."""
from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from ui.image_form import image_option_fields
from tests.conftest import image_form, CALLER, no_progress
from tests.servers import RunningServer
from ui.image_tab import IMAGE_FORM, REUSED



@pytest.fixture
def app(hooked_app):
    return hooked_app


@pytest.fixture
def form(images, uploads) -> dict:
    return image_form(images, uploads)


def run_form(app, values: dict) -> tuple[list[tuple[str, str]], Exception | None]:
    """Every (picture, description) the handler yields, and the error it ended with."""
    outputs = []
    try:
        for output in app.stylize(values, CALLER, no_progress):
            outputs.append(output)
    except gr.Error as exc:
        return outputs, exc
    return outputs, None


def test_balanced_shows_the_instant_result_then_stores_only_the_refined_one(random_magenta, app, form, uploads):
    outputs, error = run_form(app, form)
    assert error is None and len(outputs) == 2
    (instant, note), (final, info) = outputs
    assert note.startswith("Instant result (feed-forward, ") and "refining (quality balanced)" in note
    assert Path(instant).resolve().is_relative_to(uploads.resolve())  # offered from Gradio's cache, not stored
    assert Image.open(instant).size == Image.open(final).size == (32, 27)
    assert app.calls == ["feedforward", "auto"]
    (entry,) = app.store.list()  # one history entry: the refined result
    assert Path(final) == entry.output and entry.method == "gram" and entry.parameters["options"]["init"] == \
        "feedforward"
    assert "**gram**" in info and "Instant" not in info
    assert Image.open(instant).tobytes() != Image.open(final).tobytes()  # refined: 3 Gram steps moved it


def test_fast_gives_the_feed_forward_result_once(random_magenta, app, form):
    outputs, error = run_form(app, {**form, "quality": "fast"})
    assert error is None and len(outputs) == 1 and "**feedforward**" in outputs[0][1]
    assert app.calls == ["auto"] and [e.method for e in app.store.list()] == ["feedforward"]


def test_other_methods_and_no_photo_get_no_instant_result(random_magenta, app, form):
    outputs, _ = run_form(app, {**form, "method": "gram"})
    assert len(outputs) == 1 and app.calls == ["gram"]
    app.calls.clear()
    outputs, _ = run_form(app, {**form, "content": None})  # a texture: the network restyles a photo
    assert len(outputs) == 1 and app.calls == ["auto"]


def test_without_the_feed_forward_weights_no_instant_result_is_tried(app, form):
    outputs, error = run_form(app, form)
    assert error is None and len(outputs) == 1 and app.calls == ["auto"]
    (entry,) = app.store.list()
    assert entry.method == "gram" and "feed-forward weights are not on disk" in " ".join(entry.notes)


def test_a_failed_instant_result_does_not_stop_the_refined_one(random_magenta, app, form, caplog):
    def fail(request):
        if request.method == "feedforward":
            raise RuntimeError("the network broke")

    app.before_run = fail
    with caplog.at_level(logging.WARNING, logger="ui.image_tab"):
        outputs, error = run_form(app, form)
    assert error is None and len(outputs) == 1 and "**gram**" in outputs[0][1]
    assert app.calls == ["feedforward", "auto"] and len(app.store.list()) == 1
    assert "instant result failed" in caplog.text and "the network broke" in caplog.text


@pytest.mark.parametrize("when", ["before_run", "after_run"])  # after: the one pass had no step to stop at
def test_cancel_during_the_instant_result_stops_the_job(random_magenta, app, form, when):
    setattr(app, when, lambda request: app.jobs.cancel(CALLER.session_hash))  # Cancel pressed while it runs
    outputs, error = run_form(app, form)
    assert outputs == [] and "Cancelled" in error.message and "nothing was saved" in error.message
    assert app.calls == ["feedforward"] and app.store.list() == []  # the refined run never started


def test_cancel_during_refining_keeps_nothing_and_says_so(random_magenta, app, form):
    app.before_run = lambda request: request.method == "auto" and app.jobs.cancel(CALLER.session_hash)
    outputs, error = run_form(app, form)
    assert error.message.startswith("Cancelled at step") and app.store.list() == []
    assert len(outputs) == 2 and outputs[0][0] == outputs[1][0]  # the instant result stays, said to be only that
    assert outputs[1][1].startswith("Instant result only (not stored)") and error.message in outputs[1][1]


def test_quality_is_stored_and_use_these_settings_refills_it(random_magenta, app, form):
    run_form(app, {**form, "quality": "best"})
    (entry,) = app.store.list()
    assert entry.parameters["quality"] == "best"
    use = next(fn for fn in app.build().fns.values() if fn.name == "use").fn  # History's "use these settings"
    *reused, label = use(entry.id)
    assert label == "Image style" and app.refills.tabs[0].label == label  # Image style's widgets come first
    assert reused[REUSED.index("quality")] == "best" and reused[REUSED.index("method")] == "gram"
    keys = [f.key for f in image_option_fields(app.executor)]  # the method options follow, still in their places
    assert reused[len(REUSED) + keys.index("gram_init")] == "feedforward"


def test_speed_quality_shows_for_auto_only_and_both_stylize_events_read_it(app):
    demo = app.build()
    widgets = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    quality, method = widgets["quality"], widgets["method"]
    assert quality.visible and quality.value == "balanced" and quality.choices == [(q, q) for q in
                                                                                   ("fast", "balanced", "best")]
    assert all(text in quality.info for text in ("under 1 s", "≈ 10 s", "≈ 20–40 s"))
    (toggle,) = [f for f in demo.fns.values() if (method._id, "change") in map(tuple, f.targets)
                 and quality in f.outputs]
    shown = {name: toggle.fn(name)[toggle.outputs.index(quality)]["visible"] for name in ("auto", "gram", "adain")}
    assert shown == {"auto": True, "gram": False, "adain": False}
    # the Stylize button, the example's run and Make variations
    readers = [f for f in demo.fns.values() if quality in f.inputs]
    assert len(readers) == 3 and all(f.inputs.index(quality) == IMAGE_FORM.index("quality") for f in readers)


def test_the_api_streams_both_results_and_names_quality(random_magenta, isolated_settings, images):
    server = RunningServer(isolated_settings)
    try:
        client = Client(server.url, verbose=False)
        api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        parameters = [p["parameter_name"] for p in api["/stylize"]["parameters"]]
        assert tuple(parameters[:len(IMAGE_FORM)]) == IMAGE_FORM  # quality last: older positional calls line up
        quality = api["/stylize"]["parameters"][IMAGE_FORM.index("quality")]
        assert quality["parameter_has_default"] and quality["parameter_default"] == "balanced"
        assert api["/reuse"]["returns"][REUSED.index("quality")]["label"] == "Speed / quality"
        args = dict(content=handle_file(str(images["content"])), styles=[handle_file(str(images["red"]))], weights="",
                    method="auto", strength=0.8, preserve_color="none", style_scale=1.0, size=32, steps=3, seed=3,
                    encoder="random", mask_file=None, mask_paint=None)  # quality left out: its default, balanced
        job = client.submit(**args, api_name="/stylize")
        final, info = job.result(timeout=120)
        outputs = job.outputs()
        assert len(outputs) == 2 and outputs[0][1].startswith("Instant result (feed-forward")
        assert "**gram**" in info and Image.open(final).size == (32, 27)
        with pytest.raises(Exception, match="(?i)choices"):
            client.predict(**args, quality="perfect", api_name="/stylize")
    finally:
        server.stop()
