"""Attention-injection methods against plain img2img: seconds per image of `diffusion-styleid` and
`diffusion-stylealigned` and of `diffusion-text` img2img at strength 1 with the same number of steps (all of them
denoised), through `stylize` on the tiny SD 1.5 stand-in, interleaved in one run; prints each one's ratio to img2img.

What the ratio should be on a real model: StyleID runs the UNet 3 × steps times at batch 1 (two inversions, then the
denoising, no guidance), StyleAligned 2 × steps at batch 1 plus steps at batch 4 (reference and image, under
classifier-free guidance), img2img steps at batch 2; so about 1.5× and 3× img2img's UNet work, plus the K/V cache.
The tiny pipeline's ratio is NOT a real model's: at 64 px its UNet is so small that per-call overheads (the
pipeline's set-up, the VAE, Python) weigh as much as the attention; measure on a GPU with `--device cuda` and a real
model (`--model`) for a number that means anything.

    python benchmarks/attention_benchmark.py [--steps 8] [--size 64] [--repeats 3] [--device cpu] [--model FOLDER]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tiny_diffusion builds the stand-in model

from benchmarks.diffusion_benchmark import once

METHODS = ("diffusion-text", "diffusion-styleid", "diffusion-stylealigned")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", help="a diffusers SD folder (default: the tiny stand-in)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = args.model
        if model is None:
            from tests.tiny_diffusion import build_tiny_sd

            build_tiny_sd(root / "models" / "diffusion" / "sd15")
            model = "sd15"
        os.environ.update(NSTDIFF_MODELS_DIR=str(root / "models"), NSTDIFF_DEVICE=args.device,
                          NSTDIFF_ALLOW_DOWNLOADS="0", NSTDIFF_OUTPUTS_DIR=str(root / "outputs"))
        from PIL import Image

        from nstdiff import ImageStyleRequest, stylize

        Image.linear_gradient("L").resize((args.size, args.size)).convert("RGB").save(root / "photo.png")
        Image.radial_gradient("L").resize((args.size, args.size)).convert("RGB").save(root / "style.png")

        def run(method: str):
            styles = [] if method == "diffusion-text" else [root / "style.png"]
            return lambda: stylize(ImageStyleRequest(
                method=method, content=root / "photo.png", styles=styles, size=args.size, steps=args.steps, seed=1,
                prompt="a painting", controls={"strength": 1.0}, options={"model": model}))

        runs = {method: run(method) for method in METHODS}
        for function in runs.values():
            function()  # warm-up: loading, first-call allocation
        times = {method: [] for method in METHODS}
        for _ in range(args.repeats):  # interleaved, so a noisy machine's drift hits all alike
            for method, function in runs.items():
                times[method].append(once(function))
        medians = {method: sorted(values)[len(values) // 2] for method, values in times.items()}
        print(f"{args.device}, {model}, {args.size} px, {args.steps} steps, median of {args.repeats}")
        for method in METHODS:
            print(f"  {method:24s} {medians[method]:7.3f} s/image  ratio {medians[method] / medians[METHODS[0]]:.2f}")


if __name__ == "__main__":
    main()
