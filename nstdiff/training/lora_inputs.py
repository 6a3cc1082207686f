"""A LoRA training run's inputs: captions (written or from BLIP), the base pipeline frozen on the device, and the VAE
latents and text conditioning of every image, computed once so that a step runs the UNet only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from nstdiff.diffusion.pipelines import open_pipeline
from nstdiff.errors import InputError, ModelFileError
from nstdiff.imageio import load_image
from nstdiff.models.diffusion_files import TRANSFORMERS_WEIGHTS
from nstdiff.models.diffusion_hub import resolve_repo
from nstdiff.settings import Settings
from nstdiff.training.lora_data import DatasetReport, with_trigger


def caption_images(paths: list[Path], captioner: str, trigger: str, device: torch.device, settings: Settings,
                   message) -> list[str]:
    """Captions from a BLIP captioning model (Li et al. 2022), resolved like every other model (offline: a clear
    `ModelNotFoundError`); the trigger is prepended to each."""
    folder = resolve_repo(captioner, settings, message, weights=TRANSFORMERS_WEIGHTS)
    from transformers import BlipForConditionalGeneration, BlipProcessor

    try:
        processor = BlipProcessor.from_pretrained(folder)
        model = BlipForConditionalGeneration.from_pretrained(folder, use_safetensors=True).to(device).eval()
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"could not load the captioning model in '{folder}': {exc}") from None
    captions = []
    with torch.no_grad():
        for path in paths:
            inputs = processor(images=load_image(path, "training", settings), return_tensors="pt").to(device)
            text = processor.decode(model.generate(**inputs, max_new_tokens=30)[0], skip_special_tokens=True)
            captions.append(with_trigger(" ".join(text.split()) or "a picture", trigger))
            message(f"caption {path.name}: {captions[-1]}")
    return captions


def _square(image: Image.Image, side: int) -> Image.Image:
    """Resize the shorter side to `side` and cut the centre square."""
    return ImageOps.fit(image, (side, side), Image.Resampling.LANCZOS, centering=(0.5, 0.5))


class TrainingCache:
    """VAE latent distributions per image and flip, and text conditioning per caption, computed once."""

    def __init__(self, pipe, report: DatasetReport, captions: list[str], resolution: int, device,
                 settings: Settings):
        self.xl = hasattr(pipe, "text_encoder_2")
        means, stds = [], []
        vae = pipe.vae
        with torch.no_grad():
            for item in report.images:
                square = _square(load_image(item.path, "training", settings), resolution)
                pixels = torch.from_numpy(np.array(square)).permute(2, 0, 1).float() / 127.5 - 1
                pair = torch.stack([pixels, pixels.flip(-1)]).to(device, vae.dtype)
                dist = vae.encode(pair).latent_dist
                means.append(dist.mean.float())
                stds.append(dist.std.float())
            self.mean, self.std = torch.stack(means), torch.stack(stds)  # (images, 2 flips, C, h, w)
            unique = sorted(set(captions))
            encoded = {caption: self._encode(pipe, caption, device) for caption in unique}
        self.caption_index = torch.tensor([unique.index(c) for c in captions], device=device)
        self.embeds = torch.cat([encoded[c][0] for c in unique]).float()
        self.pooled = torch.cat([encoded[c][1] for c in unique]).float() if self.xl else None
        self.time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], dtype=torch.float32,
                                     device=device)
        scaling = vae.config.scaling_factor
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        self.scale = lambda latents: (latents - shift) * scaling

    @staticmethod
    def _encode(pipe, caption: str, device):
        if hasattr(pipe, "text_encoder_2"):
            embeds, _, pooled, _ = pipe.encode_prompt(caption, device=device, num_images_per_prompt=1,
                                                      do_classifier_free_guidance=False)
            return embeds, pooled
        embeds, _ = pipe.encode_prompt(caption, device, 1, False)
        return embeds, None

    def batch(self, images: torch.Tensor, flips: torch.Tensor, noise: torch.Tensor, device):
        """Latents sampled from each cached distribution with the given noise, plus the UNet's conditioning."""
        mean = self.mean[images, flips]
        latents = self.scale(mean + self.std[images, flips] * noise)
        captions = self.caption_index[images]
        extra = {}
        if self.xl:
            extra["added_cond_kwargs"] = {"text_embeds": self.pooled[captions],
                                          "time_ids": self.time_ids.repeat(len(images), 1)}
        return latents, self.embeds[captions], extra


def load_training_pipeline(folder: Path, device: torch.device, weight_dtype: torch.dtype):
    pipe = open_pipeline(folder, torch.float32)
    if not hasattr(pipe, "unet") or not hasattr(pipe, "vae"):
        raise InputError(f"'{folder}' is a {type(pipe).__name__}; LoRA training needs a Stable Diffusion (UNet) "
                         "base such as sd15 or sdxl")
    for part in ("vae", "text_encoder", "text_encoder_2", "unet"):
        module = getattr(pipe, part, None)
        if module is not None:
            module.requires_grad_(False)
            # the VAE stays fp32: SDXL's VAE overflows in fp16 (its latents are computed once anyway)
            module.to(device, torch.float32 if part == "vae" else weight_dtype)
    return pipe
