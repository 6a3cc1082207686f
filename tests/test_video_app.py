"""The app's Video tab through its real HTTP API (gradio_client): a clip in, the stylized clip back, in the history;
bad clips get their message. Gram with a random encoder: no weights."""
from __future__ import annotations

from types import SimpleNamespace

import av
import pytest
from gradio_client import handle_file

from extensions.video.tab import refill
from tests.conftest import no_progress, stripes
from tests.video_clips import scene, write_clip


@pytest.fixture(scope="module")
def client(offline_client):
    return offline_client


def form(clip, style, **values):
    return {**dict(clip=handle_file(str(clip)), style=handle_file(str(style)), image_method="gram",
                   prompt="", consistency=0.7, keyframe_every=0, size=48, fps=0, max_seconds=0, strength=None,
                   steps=2, seed=4, encoder="random"), **values}


def test_a_clip_comes_back_stylized_with_its_sound_and_joins_the_history(client, tmp_path):
    clip, style = tmp_path / "walk.mp4", tmp_path / "stripes.png"
    write_clip(clip, scene(12, 72, 48), 12, audio_seconds=1.0)
    stripes(32, 32).save(style)
    before = len(client.predict(api_name="/history"))
    first, video, info, download = client.predict(**form(clip, style), api_name="/video")
    path = video["video"] if isinstance(video, dict) else video
    with av.open(path) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert sum(1 for _ in container.decode(video=0)) == 12
    assert first.endswith(".png") and download.endswith("/walk-video-gram.mp4")
    assert "12 frames 48x32 at 12 fps, warping error" in info and "seed **4**" in info
    history = client.predict(api_name="/history")
    assert len(history) == before + 1 and "video · gram · seed 4" in history[0]["caption"]


def test_a_broken_clip_gets_its_message(client, tmp_path):
    broken, style = tmp_path / "broken.mp4", tmp_path / "stripes.png"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    stripes(32, 32).save(style)
    with pytest.raises(Exception, match="not a readable video"):
        client.predict(**form(broken, style), api_name="/video")


def test_history_refills_the_form():
    parameters = {"content": "a.mp4", "style": "s.png", "image_method": "gram", "prompt": None, "consistency": 0.5,
                  "keyframe_every": 4, "size": 128, "fps": None, "max_seconds": 3.0, "strength": None, "steps": 20,
                  "seed": 9, "encoder": "vgg16"}
    assert refill(parameters, lambda path: f"shown {path}") == [
        "shown a.mp4", "shown s.png", "gram", "", 0.5, 4, 128, 0, 3.0, None, 20, 9, "vgg16"]


PAGE = SimpleNamespace(session_hash="page", request=None, headers={"x-gradio-user": "app"})


def video_handler(app):
    demo = app.build()
    (fn,) = [f for f in demo.fns.values() if f.api_name == "video"]
    return fn.fn


def page_values(tmp_path, uploads) -> dict:
    clip, style = uploads / "walk.mp4", uploads / "stripes.png"
    write_clip(clip, scene(12, 72, 48), 12)
    stripes(32, 32).save(style)
    return {**form(clip, style), "clip": str(clip), "style": str(style)}


def test_the_page_sees_the_first_frame_from_the_one_run_that_makes_the_clip(hooked_app, monkeypatch, tmp_path,
                                                                              uploads):
    monkeypatch.setattr("nstdiff.context.PREVIEW_EVERY", 0.0)
    outputs = list(video_handler(hooked_app)(**page_values(tmp_path, uploads), request=PAGE, progress=no_progress))
    *previews, (first, video, info, download) = outputs
    assert hooked_app.calls == ["video"]  # the first frame is not made twice
    assert previews and previews[0][2].startswith("*Live preview*") and "frame 1/12" in previews[0][2]
    assert first.size == (48, 32) and video.endswith(".mp4") and "12 frames 48x32" in info


def test_cancel_in_the_page_keeps_nothing(hooked_app, tmp_path, uploads):
    app, run = hooked_app, hooked_app.executor.run

    def cancelled_at_frame_3(request, progress=None, cancel=None):
        def watch(event):
            progress(event)
            if event.stage == "frames" and event.step == 3:
                app.jobs.cancel("page")
        return run(request, progress=watch, cancel=cancel)

    app.executor.run = cancelled_at_frame_3
    outputs = list(video_handler(app)(**page_values(tmp_path, uploads), request=PAGE, progress=no_progress))
    assert outputs[-1][2].startswith("**Cancelled** at step 3 of 12; nothing was saved")
    assert app.store.list() == [] and list(app.store.results.iterdir()) == []
