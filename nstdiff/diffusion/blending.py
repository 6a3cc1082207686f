"""Blended latent diffusion (Avrahami, Fried & Lischinski 2023, "Blended Latent Diffusion"): under img2img, only a
masked area of the photo changes.

After every denoising step i the latents outside the mask are replaced by the photo's own latents z₀ noised to the
level of the next step: z ← m·z + (1 − m)·q(z₀, t_{i+1}), with one fixed noise drawn from the run's seed; after the
last step they are z₀ itself. This is what diffusers' `StableDiffusionInpaintPipeline` does with an ordinary
(4-channel) UNet (its `init_latents_proper`), done here from `callback_on_step_end` so that every img2img variant
(ControlNet, IP-Adapter, LoRAs, LCM) gets it. The UNet sees the untouched surroundings at every step and paints the
masked area to fit them. The latent-size mask m is the pixel mask averaged down, grown by one latent cell and
feathered by one more, so the whole area to change is generated and its seam fades into the photo; the pixels outside
are pasted back exactly afterwards (`methods.base.keep_untouched`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image


def latent_mask(change: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, 1, h, w) mask at the latent `size` (h, w) from a pixel mask (H, W) in [0, 1], 1 = change: averaged down,
    dilated by one cell (a cell touching the area is generated whole) and feathered by a 3×3 mean."""
    mask = F.interpolate(change[None, None].float(), size=size, mode="area")
    mask = F.max_pool2d(mask, 3, stride=1, padding=1)
    return F.avg_pool2d(mask, 3, stride=1, padding=1, count_include_pad=False)


class LatentBlend:
    """The per-step blend for one run: `content` is the pipeline's input image, `change` the pixel mask (H, W) of
    the area that may change (any size: it is resized to the latents'), `seed` the run's."""

    def __init__(self, content: Image.Image, change: torch.Tensor, seed: int):
        self.content, self.change, self.seed = content, change, seed
        self.mask: torch.Tensor | None = None
        self.clean: torch.Tensor | None = None  # z₀: the content's latents
        self.noise: torch.Tensor | None = None

    def __call__(self, pipe, step: int, latents: torch.Tensor) -> torch.Tensor:
        if self.clean is None:  # at the first step: the VAE, device and latent size are the run's
            self.clean = encode_latents(pipe, self.content).to(latents)
            self.noise = torch.randn(latents.shape, generator=torch.Generator("cpu").manual_seed(self.seed)).to(latents)
            self.mask = latent_mask(self.change, tuple(latents.shape[-2:])).to(latents)
        timesteps = pipe.scheduler.timesteps[-pipe.num_timesteps:]  # img2img runs the schedule's last ones
        target = self.clean
        if step + 1 < len(timesteps):
            target = pipe.scheduler.add_noise(self.clean, self.noise, timesteps[step + 1:step + 2])
        return self.mask * latents + (1 - self.mask) * target


def encode_latents(pipe, image: Image.Image) -> torch.Tensor:
    """The image's latents as the img2img pipelines make them (the VAE's mean rather than a sample: no noise of its
    own), in float32 for a float16 VAE that needs it (SDXL's) and with the VAE's latent statistics where it has them."""
    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(image).to(pipe._execution_device)
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    dtype = vae.dtype
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        with torch.no_grad():
            latents = vae.encode(pixels.to(vae.dtype)).latent_dist.mode()
    finally:
        if upcast:
            vae.to(dtype=dtype)
    config = vae.config
    if getattr(config, "latents_mean", None) is not None and getattr(config, "latents_std", None) is not None:
        mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1).to(latents)
        std = torch.tensor(config.latents_std).view(1, -1, 1, 1).to(latents)
        return (latents - mean) * config.scaling_factor / std
    return latents * config.scaling_factor
