"""Short synthetic clips for the video tests: a textured square gliding over a still background, with a tone."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def square_at(t: int, width: int, height: int, step: int = 2) -> tuple[int, int, int]:
    """Where `scene`'s square is in frame t: (top, left, side)."""
    side = max(8, min(width, height) // 3) // 2 * 2
    return (height - side) // 2, 4 + step * t, side


def scene(frames: int, width: int, height: int, seed: int = 0, step: int = 2) -> np.ndarray:
    """(T, H, W, 3) uint8: a smooth, lightly textured background and a noisy square moving `step` px a frame."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width] / max(width, height)
    tint = rng.uniform(0.2, 0.8, 3)
    background = 0.5 * tint + 0.3 * np.stack([xs, ys, 1 - xs], -1) + 0.05 * np.sin(20 * xs + 13 * ys)[..., None]
    side = square_at(0, width, height, step)[2]
    square = rng.uniform(0, 1, (side // 2, side // 2, 3)).repeat(2, 0).repeat(2, 1)  # 2-px cells: flow can follow
    clip = []
    for t in range(frames):
        picture = background.copy()
        top, left, _ = square_at(t, width, height, step)
        picture[top:top + side, left:left + side] = square[:, : max(0, min(side, width - left))]
        clip.append(np.round(np.clip(picture, 0, 1) * 255).astype(np.uint8))
    return np.stack(clip)


def true_motions(frames: int, width: int, height: int, step: int = 2) -> list:
    """`scene`'s motion as it was made, not as a flow estimator sees it: the square moves `step` px right a frame,
    the background stands still; the strip the square uncovers, and a pixel around its edges, are not reliable."""
    from extensions.video.flow import Motion

    motions = [None]
    for t in range(1, frames):
        top, left, side = square_at(t, width, height, step)
        backward = np.zeros((height, width, 2), np.float32)
        backward[top:top + side, left:left + side, 0] = -step  # frame_t(x) = frame_{t-1}(x - step)
        reliable = np.ones((height, width), np.float32)
        reliable[max(0, top - 1):top + side + 1, max(0, left - step - 1):left + side + 1] = 0
        reliable[top + 1:top + side - 1, left + 1:left + side - 1] = 1  # the square's inside moved with it
        motions.append(Motion(backward, reliable, 0.0, False))
    return motions


def write_clip(path: Path, frames: np.ndarray, fps: int | Fraction = 12, audio_seconds: float | None = None,
               codec: str = "libx264", options: dict[str, str] | None = None, times: list[float] | None = None) -> Path:
    """Encode `frames` (MP4/MOV/MKV by the suffix; `codec` mpeg4, libx264… with its `options`), with a 440 Hz AAC
    tone of `audio_seconds` from 0 s (None: none); `times`: each frame's time in seconds (default i/fps)."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps, options=options or {})
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        audio = None
        if audio_seconds:
            audio = out.add_stream("aac", rate=22050)
            audio.layout = "mono"
        tick = Fraction(1, 1) / Fraction(fps)
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = index if times is None else round(Fraction(times[index]).limit_denominator(10**6) / tick)
            frame.time_base = tick
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            t = np.arange(int(22050 * audio_seconds)) / 22050
            tone = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                              format="fltp", layout="mono")
            tone.sample_rate = 22050
            out.mux(audio.encode(tone))
            out.mux(audio.encode(None))
    return path
