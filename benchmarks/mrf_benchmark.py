"""Gram against the MRF patch loss (Li & Wand 2016) on two blended styles: seconds and how distinct the mix stays.

    python benchmarks/mrf_benchmark.py [--data DIR] [--size 256] [--steps N] [--mrf-layers relu3_1,relu4_1] [--out DIR]

Each case stylizes one photo with two paintings of equal weight through `nstdiff.stylize` (method gram, encoder
vgg16, seed 0, strength 0.7), once per style loss, in one process, and measures:
- seconds of the `stylize` call (the encoder is loaded once beforehand);
- palette distance: the mean RGB distance from each output pixel to the nearest of the two paintings' main colours
  (8 k-means colours each); a Gram blend averages the two paintings' statistics and drifts to colours in neither
  (muddy), a patch match copies one painting or the other. Also the share of pixels within 40 of such a colour;
- style_sim against each painting and content_ssim, from ../shared/tools/style_score.py when it runs (a mix that
  stays distinct keeps both paintings' style).
Outputs (the pictures, side by side per case) go to --out (default artifacts/mrf, ignored by git).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nstdiff import ImageStyleRequest, stylize
from nstdiff.models.encoders import load_encoder
from nstdiff.settings import reload_settings

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SCORE_SCRIPT = SHARED / "tools" / "style_score.py"
CASES = [
    ("astronaut.png", "starry_night.jpg", "the_scream.jpg"),
    ("chelsea.png", "shipwreck.jpg", "starry_night.jpg"),
]
NEAR = 40.0


def palette(paths: list[Path], colours: int = 8, rounds: int = 20) -> np.ndarray:
    """Each painting's main colours (k-means in RGB, Lloyd's rounds from a seeded start), together."""
    rng = np.random.default_rng(0)
    centres = []
    for path in paths:
        pixels = np.asarray(Image.open(path).convert("RGB").resize((128, 128)), np.float32).reshape(-1, 3)
        centre = pixels[rng.choice(len(pixels), colours, replace=False)]
        for _ in range(rounds):
            label = np.linalg.norm(pixels[:, None] - centre[None], axis=2).argmin(1)
            centre = np.stack([pixels[label == k].mean(0) if (label == k).any() else centre[k]
                               for k in range(colours)])
        centres.append(centre)
    return np.concatenate(centres)


def palette_distance(image: Image.Image, colours: np.ndarray) -> tuple[float, float]:
    pixels = np.asarray(image.convert("RGB"), np.float32).reshape(-1, 3)
    nearest = np.concatenate([np.linalg.norm(chunk[:, None] - colours[None], axis=2).min(1)
                              for chunk in np.array_split(pixels, max(1, len(pixels) // 2048))])
    return float(nearest.mean()), float((nearest < NEAR).mean())


def style_scores(out: Path, content: Path, style: Path) -> dict[str, float]:
    try:
        text = subprocess.run([sys.executable, str(SCORE_SCRIPT), str(out), str(content), str(style)],
                              capture_output=True, text=True, timeout=600, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return {}
    return {key: float(value) for key, value in re.findall(r"(style_sim|content_ssim)\W+(-?[\d.]+)", text)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--mrf-layers", default=None, help="comma-separated; default: the option's default")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "mrf")
    args = parser.parse_args()
    torch.set_num_threads(2)
    settings = reload_settings()
    load_encoder("vgg16", torch.device("cpu"), settings, print)  # fetched and converted once, outside the timings
    args.out.mkdir(parents=True, exist_ok=True)
    mrf = {"style_loss": "mrf"}
    if args.mrf_layers:
        mrf["mrf_layers"] = args.mrf_layers.split(",")
    print(f"{'case':34} {'loss':5} {'seconds':>8} {'pal.dist':>8} {'near':>6} {'sim A':>6} {'sim B':>6} {'ssim':>6}")
    for content, style_a, style_b in CASES:
        paths = [args.data / name for name in (content, style_a, style_b)]
        colours = palette(paths[1:])
        pictures = []
        for name, options in (("gram", {}), ("mrf", mrf)):
            started = time.perf_counter()
            result = stylize(ImageStyleRequest(method="gram", content=paths[0], styles=paths[1:], size=args.size,
                                               steps=args.steps, seed=0, encoder="vgg16", options=options))
            seconds = time.perf_counter() - started
            out = args.out / f"{Path(content).stem}-{Path(style_a).stem}-{Path(style_b).stem}-{name}.png"
            result.image.save(out)
            pictures.append(result.image)
            distance, near = palette_distance(result.image, colours)
            a, b = style_scores(out, paths[0], paths[1]), style_scores(out, paths[0], paths[2])
            print(f"{Path(content).stem + '+' + Path(style_a).stem + '+' + Path(style_b).stem:34} {name:5} "
                  f"{seconds:8.1f} {distance:8.1f} {near:6.3f} {a.get('style_sim', float('nan')):6.3f} "
                  f"{b.get('style_sim', float('nan')):6.3f} {a.get('content_ssim', float('nan')):6.3f}", flush=True)
        sheet = Image.new("RGB", (sum(p.width for p in pictures), pictures[0].height))
        for index, picture in enumerate(pictures):
            sheet.paste(picture, (index * pictures[0].width, 0))
        sheet.save(args.out / f"sheet-{Path(content).stem}.png")


if __name__ == "__main__":
    main()
