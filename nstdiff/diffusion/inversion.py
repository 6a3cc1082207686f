"""DDIM inversion (Song et al. 2021; Mokady et al. 2023 §3): run the deterministic DDIM update backwards, from an
image's latent x₀ up to the noise x_T that DDIM would denoise back into it.

The run is the pipeline's own txt2img call with `DDIMInverseScheduler` in place of its scheduler and the image's
latent as the starting `latents`, so every model family's conditioning (SDXL's added time ids) is handled by the
pipeline. At step i the UNet is called at timestep tᵢ on x_{tᵢ₋₁}: attention processors installed meanwhile record
their features under the same timesteps that DDIM's denoising visits (StyleID's cache), and the returned trajectory
gives a reference image's latent at each of them (StyleAligned's reference).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from nstdiff.diffusion.blending import encode_latents


def encode(pipe: Any, image: Image.Image) -> torch.Tensor:
    """The latent of an RGB image whose size is the run's, as img2img makes it (`blending.encode_latents`: the VAE's
    upcast and latent statistics respected), in the UNet's dtype."""
    return encode_latents(pipe, image).to(pipe.unet.dtype)


def invert(pipe: Any, latents: torch.Tensor, steps: int, prompt: str,
           on_step: Callable[[Any, int, Any, dict], dict] | None = None) -> list[torch.Tensor]:
    """[x₀, x_t₁, …, x_T]: `latents` DDIM-inverted over `steps` steps by `pipe` (a txt2img pipeline whose scheduler
    config is the model's), without classifier-free guidance (it makes inversion drift). `on_step` is called after
    each step like a pipeline's `callback_on_step_end` (progress, cancellation)."""
    from diffusers import DDIMInverseScheduler

    trajectory = [latents]

    def record(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
        trajectory.append(callback_kwargs["latents"].detach().clone())
        return on_step(pipeline, step, timestep, callback_kwargs) if on_step else callback_kwargs

    scheduler = pipe.scheduler
    accepted = inspect.signature(DDIMInverseScheduler.__init__).parameters  # (an SDXL config has Euler's keys too)
    pipe.scheduler = DDIMInverseScheduler.from_config({k: v for k, v in scheduler.config.items() if k in accepted})
    factor = pipe.vae_scale_factor
    try:
        pipe(prompt=prompt, latents=latents, num_inference_steps=steps, guidance_scale=1.0, output_type="latent",
             height=latents.shape[-2] * factor, width=latents.shape[-1] * factor, callback_on_step_end=record)
    finally:
        pipe.scheduler = scheduler
    return trajectory
