"""Seconds per LoRA training step: nstdiff's `train_lora` against a plain peft training loop on the same tiny
SD-1.5-shaped pipeline (same model, LoRA config, batch, resolution and optimiser), interleaved in one run so machine
noise hits both alike. Target: ratio ≤ 1.1 (what `train_lora` adds per step: state.json, loss.csv, progress).
With `--device cuda`: steps per second of a real-width tiny UNet with and without fp16 mixed precision.

    python benchmarks/lora_benchmark.py [--rounds 3] [--steps 30] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from nstdiff.settings import Settings  # noqa: E402
from nstdiff.training.lora import LORA_TARGETS, train_lora  # noqa: E402
from nstdiff.training.lora_data import LoraTraining  # noqa: E402
from tests.tiny_diffusion import build_tiny_sd, build_tiny_wide_unet_sd  # noqa: E402


def make_images(folder: Path, count: int = 6, side: int = 80) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        y, x = np.mgrid[0:side, 0:side]
        stripes = (((x + y) // (3 + i)) % 2)[..., None] * rng.integers(0, 255, 3) + rng.integers(0, 60, (side, side, 3))
        Image.fromarray(np.clip(stripes, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def ours(images: Path, models: Path, steps: int, resolution: int, batch: int, device: str, run: int,
         mixed_precision: str = "no") -> float:
    """Median seconds per step of `train_lora`, from its own progress events (loading excluded)."""
    settings = Settings(models_dir=models, device=device, allow_downloads=False, cache_dir=models / "cache")
    config = LoraTraining(images=images, name=f"bench{run}", steps=steps, resolution=resolution, batch=batch,
                          rank=8, learning_rate=1e-4, checkpoint_every=steps + 1, sample_every=0,
                          mixed_precision=mixed_precision, overwrite=True, gradient_checkpointing=False)
    stamps: list[float] = []
    train_lora(config, progress=lambda e: e.stage == "train" and stamps.append(time.perf_counter()),
               settings=settings)
    return statistics.median(np.diff(stamps[2:]))  # the first steps warm up


def plain(images: Path, pipeline_folder: Path, steps: int, resolution: int, batch: int, device: str) -> float:
    """A minimal peft LoRA loop (as diffusers' train_text_to_image_lora.py does it), latents cached like ours."""
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from peft import LoraConfig

    dev = torch.device(device)
    pipe = StableDiffusionPipeline.from_pretrained(pipeline_folder, use_safetensors=True).to(dev)
    for module in (pipe.vae, pipe.text_encoder, pipe.unet):
        module.requires_grad_(False)
    scheduler = DDPMScheduler.from_pretrained(pipeline_folder, subfolder="scheduler")
    files = sorted(images.glob("*.png"))
    with torch.no_grad():
        pixels = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB").resize((resolution,) * 2)))
                              .permute(2, 0, 1).float() / 127.5 - 1 for f in files]).to(dev)
        latents_all = pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor
        embeds, _ = pipe.encode_prompt("a picture in the style of bench", dev, 1, False)
    unet = pipe.unet
    unet.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian", target_modules=LORA_TARGETS))
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    unet.train()
    stamps = []
    for _ in range(steps):
        index = torch.randint(0, len(files), (batch,))
        latents = latents_all[index.to(dev)]
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), device=dev)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        prediction = unet(noisy, timesteps, embeds.repeat(batch, 1, 1)).sample
        loss = F.mse_loss(prediction.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
    return statistics.median(np.diff(stamps[2:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = make_images(root / "images")
        models = root / "models"
        pipeline = build_tiny_sd(models / "diffusion" / "sd15")
        ours_times, plain_times = [], []
        for run in range(args.rounds):  # interleaved, alternating which goes first
            order = [("ours", ours), ("plain", plain)] if run % 2 == 0 else [("plain", plain), ("ours", ours)]
            for label, _ in order:
                if label == "ours":
                    ours_times.append(ours(images, models, args.steps, args.resolution, args.batch, args.device, run))
                else:
                    plain_times.append(plain(images, pipeline, args.steps, args.resolution, args.batch, args.device))
            print(f"round {run + 1}: train_lora {ours_times[-1] * 1e3:.1f} ms/step, plain peft loop "
                  f"{plain_times[-1] * 1e3:.1f} ms/step")
        mine, base = statistics.median(ours_times), statistics.median(plain_times)
        print(f"tiny SD-1.5 UNet, {args.resolution} px, batch {args.batch}, {args.device}: train_lora "
              f"{mine * 1e3:.1f} ms/step, plain peft loop {base * 1e3:.1f} ms/step, ratio {mine / base:.3f} "
              f"(target ≤ 1.1)")
        if args.device.startswith("cuda") and torch.cuda.is_available():
            wide = build_tiny_wide_unet_sd(root / "wide" / "diffusion" / "sd15")
            wide_models = wide.parents[1]
            for precision in ("no", "fp16"):
                seconds = ours(images, wide_models, args.steps, 256, args.batch, args.device, 100,
                               mixed_precision=precision)
                print(f"wide tiny UNet (320/640 channels), 256 px, batch {args.batch}, mixed precision {precision}: "
                      f"{1 / seconds:.2f} steps/s")
        else:
            print("GPU: not measured (no CUDA device in this run); run with --device cuda on a GPU machine for the "
                  "wide-UNet steps/s with and without fp16")


if __name__ == "__main__":
    main()
