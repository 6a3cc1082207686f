"""Video stylization: the clip's shape, rate and sound kept; steadier with consistency on; cuts reset; bad clips and
cancel refused cleanly. Synthetic clips (tests/video_clips.py), random networks: no weights, no network."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from extensions.video.measures import clip_motions, warping_error
from extensions.video.schema import VideoStyleRequest
from extensions.video.videoio import read_clip
from nstdiff.errors import Cancelled, InputError
from nstdiff.executor import CancelToken, stylize
from tests.conftest import cancel_at, stripes
from tests.video_clips import scene, true_motions, write_clip


@pytest.fixture
def fast_magenta(random_magenta, monkeypatch):
    """The random Magenta network, rendering at the frame's own size (its 384-px default is slow for 64-px tests)."""
    monkeypatch.setattr("nstdiff.methods.feedforward.RENDER_SIDE", 16)
    return random_magenta


@pytest.fixture
def style(tmp_path):
    path = tmp_path / "style.png"
    stripes(48, 48).save(path)
    return path


@pytest.fixture
def clip(tmp_path):
    """16 frames of 96x64 at 12 fps, with 16/12 s of AAC tone."""
    return write_clip(tmp_path / "clip.mp4", scene(16, 96, 64), 12, audio_seconds=16 / 12)


def run(clip, style, **fields):
    return stylize(VideoStyleRequest(content=clip, style=style, **{"size": 96, "seed": 1, **fields}))


def gram(**fields):
    return {"image_method": "gram", "encoder": "random", "steps": 12, **fields}


def streams(path):
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        packets = [bytes(p) for p in container.demux(audio) if p.size]
        container.seek(0)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        return video.average_rate, audio.codec_context.name, packets, frames


def test_the_output_keeps_frame_count_size_rate_and_the_audio_track(fast_magenta, clip, style, tmp_path):
    result = run(clip, style)
    assert result.frames.shape == (16, 64, 96, 3) and result.fps == 12
    written = result.save(tmp_path / "out.mp4")
    rate, codec, packets, frames = streams(written)
    _, source_codec, source_packets, _ = streams(clip)
    assert (rate, len(frames), frames[0].shape) == (12, 16, (64, 96, 3))
    assert codec == source_codec == "aac" and packets == source_packets  # copied, not re-encoded
    assert np.abs(frames[5].astype(int) - result.frames[5]).mean() < 6  # H.264 at crf 18: close to what was made
    webm = result.save(tmp_path / "out.webm")  # AAC does not go into WebM: re-encoded to Opus, same length
    with av.open(str(webm)) as container:
        assert [s.codec_context.name for s in container.streams] == ["vp9", "opus"]
        assert abs(container.duration / 1e6 - 16 / 12) < 0.15
        assert sum(1 for _ in container.decode(video=0)) == 16
    assert read_clip(webm, 96).frames.shape == (16, 64, 96, 3)  # and WebM reads back in


def test_consistency_at_least_halves_the_warping_error_of_per_frame_runs(fast_magenta, clip, style):
    per_frame, steady = run(clip, style, consistency=0), run(clip, style, consistency=0.7)
    motions = clip_motions(_content(clip))
    assert warping_error(steady.frames, motions) <= 0.5 * warping_error(per_frame.frames, motions)
    # measured along the motion the clip was made with, not the flow the blending itself followed
    made = true_motions(16, 96, 64)
    assert warping_error(steady.frames, made) <= 0.5 * warping_error(per_frame.frames, made)
    assert steady.measures["warping_error"] == pytest.approx(warping_error(steady.frames, motions), abs=1e-4)
    assert steady.measures["kind"] == "feed-forward"


def test_gram_with_the_warped_start_and_temporal_loss_flickers_far_less(clip, style):
    per_frame, steady = run(clip, style, **gram(consistency=0)), run(clip, style, **gram(consistency=0.7))
    motions = clip_motions(_content(clip))
    assert warping_error(steady.frames, motions) <= 0.5 * warping_error(per_frame.frames, motions)
    assert steady.measures["kind"] == "optimising"
    assert np.abs(steady.frames.astype(int) - _content(clip)).mean() > 5  # still stylized, not the photo kept


def test_a_scene_cut_starts_afresh(fast_magenta, tmp_path, style):
    frames = np.concatenate([scene(8, 96, 64, seed=0), scene(8, 96, 64, seed=7)[:, ::-1]])
    cut_clip = write_clip(tmp_path / "cut.mp4", frames, 12)
    steady, per_frame = run(cut_clip, style), run(cut_clip, style, consistency=0)
    assert steady.measures["scene_cuts"] == [8] and "scene cut at frame 8" in " ".join(steady.notes)
    assert np.array_equal(steady.frames[8], per_frame.frames[8])  # nothing of scene one dragged in
    assert not np.array_equal(steady.frames[9], per_frame.frames[9])  # and held steady again after it


def test_a_lower_frame_rate_keeps_the_duration_and_gif_and_mov_are_read(fast_magenta, clip, style, tmp_path):
    result = run(clip, style, fps=6)
    assert len(result.frames) == 8 and result.fps == 6 and result.seconds == pytest.approx(16 / 12)
    pictures = [Image.fromarray(f) for f in scene(6, 64, 48)]
    gif = tmp_path / "clip.gif"
    pictures[0].save(gif, save_all=True, append_images=pictures[1:], duration=100, loop=0)
    assert run(gif, style, size=64).frames.shape == (6, 48, 64, 3)
    mov = write_clip(tmp_path / "clip.mov", scene(6, 64, 48), 10, codec="mpeg4")
    assert run(mov, style, size=64).frames.shape == (6, 48, 64, 3)


def test_a_playlist_naming_other_server_files_is_not_read(tmp_path, style):
    """An HLS playlist uploaded as a clip would make FFmpeg decode a file it names, outside the uploads."""
    (tmp_path / "elsewhere").mkdir()
    secret = write_clip(tmp_path / "elsewhere" / "private.mp4", scene(4, 32, 32), 12)
    playlist = tmp_path / "uploads" / "clip.m3u8"
    playlist.parent.mkdir()
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n../elsewhere/{secret.name}\n#EXT-X-ENDLIST\n")
    with pytest.raises(InputError, match="not a readable video"):
        run(playlist, style)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8))), "not a readable video"),
    (lambda p: _audio_only(p), "holds only sound"),
    (lambda p: stripes(32, 32).save(p, format="PNG"), "is a still picture, not a clip"),
])
def test_unusable_clips_get_one_clear_line(tmp_path, style, make, message):
    path = tmp_path / "bad.mp4"
    make(path)
    with pytest.raises(InputError, match=message) as caught:
        run(path, style)
    assert "\n" not in str(caught.value)


def test_limits_from_the_settings(clip, style, monkeypatch):
    from nstdiff.settings import reload_settings

    monkeypatch.setenv("NSTDIFF_MAX_VIDEO_SECONDS", "1")
    reload_settings()
    with pytest.raises(InputError, match=r"1.3 s long, over the limit of 1 s; stylize its first N seconds"):
        run(clip, style)
    assert len(run(clip, style, max_seconds=0.5, **gram(steps=1)).frames) == 6  # cut to what the limit allows
    monkeypatch.setenv("NSTDIFF_MAX_VIDEO_FRAMES", "4")
    reload_settings()
    with pytest.raises(InputError, match="more than 4 frames"):
        run(clip, style, max_seconds=1)
    with pytest.raises(InputError, match="frames 5 is over the limit of 4"):
        run(clip, style, frames=5)
    with pytest.raises(InputError, match="over the video limit of 768 px"):
        run(clip, style, size=1000)
    with pytest.raises(InputError, match="does not stylize images"):
        run(clip, style, image_method="audio")


def test_cancel_stops_between_frames(clip, style):
    token, on_progress, events = cancel_at(3, "frames")
    with pytest.raises(Cancelled, match="cancelled at step 3/16"):
        stylize(VideoStyleRequest(content=clip, style=style, size=96, **gram()), on_progress, token)
    frames = [e for e in events if e.stage == "frames"]
    assert [e.step for e in frames] == [1, 2, 3] and {e.total for e in frames} == {16}  # progress in frames
    assert frames[0].preview.startswith(b"\x89PNG")  # the first stylized frame, shown at once


class CancelInsideAFrame(CancelToken):
    """Pressed once frame 1 is done, seen by the run only after a few of frame 2's optimisation steps asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked_after_press = 0

    def on_progress(self, event) -> None:
        if event.stage == "frames" and event.step == 1:
            self.cancel()

    @property
    def cancelled(self) -> bool:
        if not super().cancelled:
            return False
        self.asked_after_press += 1
        return self.asked_after_press > 3


def test_cancel_stops_inside_a_frame(clip, style):
    token = CancelInsideAFrame()
    with pytest.raises(Cancelled, match="cancelled at step 1/16"):  # frame 2 (step 1 done) never finished
        stylize(VideoStyleRequest(content=clip, style=style, size=96, **gram()), token.on_progress, token)
    assert token.asked_after_press == 4  # it stopped at the first check that saw the press, mid-optimisation


def test_frames_are_resampled_by_their_own_times(tmp_path):
    colours = np.arange(6, dtype=np.uint8)[:, None, None, None] * np.full((1, 16, 16, 3), 40, np.uint8)
    path = write_clip(tmp_path / "steps.mkv", colours, 12, codec="ffv1")
    shade = lambda clip: [int(round(f.mean() / 40)) for f in clip.frames]  # noqa: E731
    assert shade(read_clip(path, 16)) == [0, 1, 2, 3, 4, 5]
    assert shade(read_clip(path, 16, fps=24)) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]  # the last one kept too
    assert shade(read_clip(path, 16, fps=6)) == [0, 2, 4]
    # frames at 1.0, 1.2, 1.6 and 2.0 s: a stream that starts late, at a varying rate
    late = write_clip(tmp_path / "late.mkv", colours[:4], 25, codec="ffv1", times=[1.0, 1.2, 1.6, 2.0])
    clip = read_clip(late, 16, fps=5)
    assert clip.start == pytest.approx(1.0) and shade(clip) == [0, 1, 1, 2, 2, 3]


def test_the_sound_starts_with_the_first_picture(fast_magenta, style, tmp_path):
    frames = scene(12, 48, 32)
    late = write_clip(tmp_path / "late.mkv", frames, 12, audio_seconds=3.0, codec="ffv1",
                      times=[1 + i / 12 for i in range(12)])  # pictures from 1 s to 2 s, sound from 0 s to 3 s
    result = stylize(VideoStyleRequest(content=late, style=style, size=48, seed=1))
    with av.open(str(result.save(tmp_path / "out.mp4"))) as container:
        audio = container.streams.audio[0]
        first = next(container.demux(audio))
        packets = [p for p in container.demux(audio) if p.size]
    seconds = (packets[-1].pts + packets[-1].duration) * audio.time_base
    assert abs(first.pts * audio.time_base) < 0.05 and seconds == pytest.approx(2.0, abs=0.1)


def test_a_failed_encode_leaves_no_partial_file(fast_magenta, clip, style, tmp_path, monkeypatch):
    result = run(clip, style, frames=2)

    def broken(part, *args):
        part.write_bytes(b"half a video")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("extensions.video.result.write_video", broken)
    with pytest.raises(InputError, match="No space left"):
        result.save(tmp_path / "out.mp4")
    assert [p.name for p in tmp_path.iterdir() if "out" in p.name] == []  # nor its .part


def test_the_cli_writes_the_clip_and_refuses_a_gif_output_up_front(clip, style, tmp_path, capsys):
    from nstdiff.commands import main

    out = tmp_path / "out.mp4"
    assert main(["video", str(clip), "--style", str(style), "-o", str(out), "--method", "gram", "--encoder", "random",
                 "--steps", "2", "--size", "48", "--consistency", "0.5", "--quiet"]) == 0
    assert out.is_file() and "16 frames 48x32 at 12 fps" in capsys.readouterr().out
    assert main(["video", str(clip), "--style", str(style), "-o", str(tmp_path / "out.gif"), "--quiet"]) == 2
    assert "written as .mp4, .webm" in capsys.readouterr().err


def _content(path):
    return read_clip(path, 96).frames


def _audio_only(path):
    with av.open(str(path), "w") as out:
        audio = out.add_stream("aac", rate=22050)
        audio.layout = "mono"
        tone = av.AudioFrame.from_ndarray(np.zeros((1, 22050), np.float32), format="fltp", layout="mono")
        tone.sample_rate = 22050
        out.mux(audio.encode(tone))
        out.mux(audio.encode(None))


@pytest.mark.slow  # builds the tiny diffusion models (once a session)
def test_diffusion_keeps_one_seed_steadies_frames_and_restarts_at_keyframes(models, clip, tmp_path):
    fields = dict(image_method="diffusion-text", prompt="ukiyo-e woodblock print", size=64, steps=2, strength=0.8,
                  frames=6)
    steady = run(clip, None, **fields)
    per_frame = run(clip, None, consistency=0, **fields)
    assert steady.frames.shape == (6, 42, 64, 3) and steady.measures["keyframes"] == [0]
    assert np.array_equal(steady.frames[0], per_frame.frames[0])
    motions = clip_motions(read_clip(clip, 64, max_frames=6).frames)
    assert warping_error(steady.frames, motions) <= 0.5 * warping_error(per_frame.frames, motions)
    keyed = run(clip, None, keyframe_every=3, **fields)
    assert keyed.measures["keyframes"] == [0, 3]
    for keyframe in (0, 3):  # the frame's own result, with the run's one seed: nothing of the frame before in it
        assert np.array_equal(keyed.frames[keyframe], per_frame.frames[keyframe])
    assert np.array_equal(keyed.frames[:3], steady.frames[:3]) and not np.array_equal(keyed.frames[4], steady.frames[4])


def test_keyframes_count_from_the_last_scene_cut():
    from types import SimpleNamespace

    from extensions.video.flow import Motion
    from extensions.video.temporal import FrameStabilizer

    runner = SimpleNamespace(method=SimpleNamespace(name="diffusion-text"),
                             stylize=lambda frame: frame.astype(np.float32) / 255)
    stabilizer = FrameStabilizer(runner, consistency=0.5, keyframe_every=3)
    still = Motion(np.zeros((8, 8, 2), np.float32), np.ones((8, 8), np.float32), 0.0, False)
    previous, frame = None, np.zeros((8, 8, 3), np.uint8)
    for index in range(10):
        motion = None if index in (0, 4) else still  # frame 4: a scene cut (nothing carried)
        previous = stabilizer.render(index, frame, motion, previous)
    assert stabilizer.keyframes == [0, 3, 4, 7]


def test_a_video_job_killed_mid_clip_leaves_the_earlier_result_and_nothing_else(clip, style, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    earlier = out_dir / "walk.mp4"
    earlier.write_bytes(b"an earlier result")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSTDIFF_")}
    env.update(NSTDIFF_CACHE_DIR=str(tmp_path / "cache"), NSTDIFF_DEVICE="cpu", NSTDIFF_ALLOW_DOWNLOADS="0",
               OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1]))
    command = [sys.executable, "-m", "nstdiff", "video", str(clip), "--style", str(style), "-o", str(earlier),
               "--method", "gram", "--encoder", "random", "--steps", "60", "--size", "64"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = bytearray()
    reader = threading.Thread(target=lambda: [seen.extend(byte) for byte in iter(lambda: process.stderr.read(1), b"")],
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None and not re.search(rb"\b([2-9]|1[0-5])/16", seen):
            time.sleep(0.05)
        assert process.poll() is None, seen.decode(errors="replace")[-2000:]  # killed mid-clip, not after it
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert earlier.read_bytes() == b"an earlier result" and [p.name for p in out_dir.iterdir()] == ["walk.mp4"]
