"""Structure guidance: the ControlNet that holds a photo's edges or depth, and the control image it reads."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from nstdiff.context import RunContext
from nstdiff.diffusion.pipelines import LoadedModel, offloads, pick_dtype
from nstdiff.models.diffusion_catalogue import Family
from nstdiff.models.diffusion_files import load_variant
from nstdiff.models.diffusion_hub import resolve_repo


def load_controlnet(model: LoadedModel, structure: str, context: RunContext):
    """The ControlNet for `structure` (loaded once per model), or None."""
    if structure == "none":
        return None
    family: Family = model.family  # it has a ControlNet for `structure`: the method's `check_family` saw to that
    cache = model.controlnets
    if structure not in cache:
        from diffusers import ControlNetModel

        folder = resolve_repo(f"{family.name}-controlnet-{structure}", context.settings, context.message)
        dtype = pick_dtype(context.settings.diffusion_dtype, context.device)
        variant = load_variant(folder, ("diffusion_pytorch_model.safetensors",),
                               "fp16" if dtype == torch.float16 else "fp32")
        controlnet = ControlNetModel.from_pretrained(folder, dtype=dtype, use_safetensors=True, variant=variant)
        # offloaded: it waits in CPU memory and `prepare`'s hooks bring it to the GPU while it runs
        cache[structure] = controlnet if offloads(context.settings, context.device) else controlnet.to(
            context.device)
    return cache[structure]


def structure_image(model: LoadedModel, content: Image.Image, structure: str, context: RunContext) -> Image.Image:
    """The control image of `structure` for the content: its canny edges or its depth map."""
    if structure == "canny":
        return canny_edges(content)
    if model.depth_estimator is None:
        from transformers import pipeline

        folder = resolve_repo("depth-estimator", context.settings, context.message)
        # offloaded: a small estimator runs on the CPU rather than hold GPU memory between jobs
        device = "cpu" if offloads(context.settings, context.device) else context.device
        model.depth_estimator = pipeline("depth-estimation", model=str(folder), device=device)
    return model.depth_estimator(content)["depth"].convert("RGB").resize(content.size)


def canny_edges(image: Image.Image) -> Image.Image:
    """Canny edges (white on black), as the canny ControlNets were trained on; sigma grows with the image."""
    from skimage.feature import canny

    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    edges = canny(grey, sigma=max(1.0, min(image.size) / 256))
    return Image.fromarray((edges * 255).astype(np.uint8)).convert("RGB")
