"""Diffusion overhead and precision benchmark.

1. Overhead (CPU or GPU): our `diffusion-text` method (request validation, routing, resolver, warm pipeline cache,
   progress callback, result) against a direct diffusers img2img call of the same tiny pipeline with the same
   arguments, in the same run; target ratio ≤ 1.05.
2. With `--device cuda`: seconds per denoising step of a tiny-but-wide UNet (SD-1.5-shaped blocks 320/640, 768-wide
   text encoder) in fp16 and fp32, as a stand-in for SD on the GPU.

    python benchmarks/diffusion_benchmark.py [--device cuda] [--steps 20] [--size 64] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tiny_diffusion builds the stand-in models


def once(function) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def timed(function, repeats: int) -> float:
    function()  # warm-up: loading, first-call allocation
    return statistics.median(once(function) for _ in range(repeats))


def interleaved(first, second, repeats: int) -> tuple[float, float]:
    """Medians of alternating runs, so a noisy machine's drift hits both sides alike."""
    first(), second()  # warm-up
    pairs = [(once(first), once(second)) for _ in range(repeats)]
    return statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs)


def overhead(device: str, steps: int, size: int, repeats: int, root: Path) -> None:
    from diffusers import AutoPipelineForImage2Image, DiffusionPipeline

    from nstdiff import ImageStyleRequest, stylize
    from nstdiff.settings import reload_settings
    from tests.tiny_diffusion import build_tiny_sd

    build_tiny_sd(root / "diffusion" / "sd15")
    os.environ.update(NSTDIFF_MODELS_DIR=str(root), NSTDIFF_DEVICE=device, NSTDIFF_ALLOW_DOWNLOADS="0",
                      NSTDIFF_OUTPUTS_DIR=str(root / "outputs"))
    reload_settings()
    gradient = np.linspace(0, 255, size, dtype=np.float32)
    photo = Image.fromarray(np.stack([np.tile(gradient, (size, 1))] * 3, -1).astype(np.uint8))
    photo_path = root / "photo.png"
    photo.save(photo_path)
    prompt, strength, guidance, seed = "ukiyo-e woodblock print", 0.75, 7.5, 0
    request = ImageStyleRequest(method="diffusion-text", content=photo_path, prompt=prompt, size=size, steps=steps,
                                seed=seed, controls={"strength": strength}, options={"guidance": guidance})

    dtype = torch.float16 if device == "cuda" else torch.float32
    base = DiffusionPipeline.from_pretrained(root / "diffusion" / "sd15", dtype=dtype, safety_checker=None,
                                             requires_safety_checker=False).to(device)
    direct_pipe = AutoPipelineForImage2Image.from_pipe(base)
    direct_pipe.set_progress_bar_config(disable=True)

    def direct():
        return direct_pipe(prompt=prompt, image=photo, strength=strength, num_inference_steps=steps,
                           guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(seed)).images[0]

    ours, theirs = interleaved(lambda: stylize(request), direct, repeats)
    print(f"overhead ({device}, tiny SD, {size} px, {steps} steps × strength {strength}): ours {ours:.3f} s, "
          f"direct diffusers {theirs:.3f} s, ratio {ours / theirs:.3f} (target ≤ 1.05)")


def precision(steps: int, root: Path) -> None:
    from diffusers import DiffusionPipeline

    from tests.tiny_diffusion import build_tiny_wide_unet_sd

    folder = build_tiny_wide_unet_sd(root / "wide")
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        pipe = DiffusionPipeline.from_pretrained(folder, dtype=dtype, safety_checker=None,
                                                 requires_safety_checker=False).to("cuda")
        pipe.set_progress_bar_config(disable=True)
        # 128 px with the tiny factor-2 VAE = a 64×64 latent, what SD's UNet sees at 512 px
        seconds = timed(lambda pipe=pipe: pipe("a lighthouse", height=128, width=128, num_inference_steps=steps,
                                               guidance_scale=7.5), 3)
        print(f"wide UNet {name}: {seconds / steps * 1000:.1f} ms per step ({steps} steps, 64×64 latent, CFG)")
        pipe = None  # free this precision's copy before loading the next
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        overhead(args.device, args.steps, args.size, args.repeats, Path(tmp))
        if args.device == "cuda":
            precision(args.steps, Path(tmp))
        else:
            print("fp16 vs fp32 per-step timing: needs --device cuda (not measured on this machine)")


if __name__ == "__main__":
    main()
