"""What every image method shares: loading and sizing the images, the colour and mask controls, the result.

A subclass implements only `transfer`, on tensors; the controls it declares in `capabilities` are applied here, once,
for every method (Gatys et al. 2017's colour and spatial controls are method-independent pre/post-processing, except
the guided Gram matrices, which the Gram method computes from `job.regions`).
"""
from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel

from nstdiff.controls import color
from nstdiff.controls.masks import RegionMasks, load_region_masks
from nstdiff.errors import InputError
from nstdiff.executor import RunContext
from nstdiff.imageio import load_image, resize_long_side
from nstdiff.registry import Method
from nstdiff.schema import ImageStyleRequest, PreserveColor, StyleResult


def to_tensor(image: Image.Image, device: torch.device) -> torch.Tensor:
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def to_image(tensor: torch.Tensor) -> Image.Image:
    array = tensor.detach()[0].clamp(0, 1).permute(1, 2, 0).mul(255).round().byte().cpu().numpy()
    return Image.fromarray(array, "RGB")


@dataclass
class ImageJob:
    """A request made concrete: tensors on the device, (N, 3, H, W) RGB in [0, 1]."""

    content: torch.Tensor | None
    styles: list[torch.Tensor]
    style_weights: list[float]
    height: int
    width: int
    steps: int | None
    strength: float
    encoder: str
    seed: int
    regions: RegionMasks | None = None
    prompt: str | None = None
    strength_is_default: bool = False  # the person did not set strength (a preset may suggest one)


@dataclass
class TransferOutput:
    image: torch.Tensor
    losses: dict[str, float] = field(default_factory=dict)
    encoder: str | None = None
    options: BaseModel | None = None  # resolved options, defaults filled in


class ImageMethod(Method):
    request_model = ImageStyleRequest

    @abstractmethod
    def transfer(self, job: ImageJob, options: BaseModel, context: RunContext) -> TransferOutput:
        """Produce the stylized (N, 3, H, W) image of `job`'s size."""

    @staticmethod
    def encoder(job: ImageJob, context: RunContext):
        """The job's encoder, loaded (or fetched) through the resolver; `auto`'s choice goes into the notes."""
        from nstdiff.models.encoders import load_encoder

        loaded = load_encoder(job.encoder, context.device, context.settings, context.message)
        if loaded.note:
            context.notes.append(loaded.note)
        return loaded

    def check_request(self, request: ImageStyleRequest) -> None:
        caps, controls = self.capabilities, request.controls
        if request.content is None and caps.needs_content:
            raise InputError(f"method '{self.name}' needs a content image")
        if not request.styles and caps.style_images == "required":
            raise InputError(f"method '{self.name}' needs a style image; for a text style use method diffusion-text "
                             "(or auto)")
        if request.styles and caps.style_images == "unused":
            raise InputError(f"method '{self.name}' takes no style image; use diffusion-reference or auto for one")
        if request.prompt is not None and caps.prompt == "unused":
            raise InputError(f"method '{self.name}' does not read a text prompt; use diffusion-text, chain or auto")
        if controls.mask is not None and not caps.masks:
            raise InputError(f"method '{self.name}' does not support masks")
        if controls.preserve_color is not PreserveColor.none:
            if not caps.color_controls:
                raise InputError(f"method '{self.name}' does not support preserve_color")
            if request.content is None:
                raise InputError("preserve_color needs a content image whose colours it can keep")
        if controls.mask is not None and request.content is None:
            raise InputError("a mask needs a content image (it marks regions of the content)")

    def execute(self, request: ImageStyleRequest, context: RunContext) -> StyleResult:
        started = time.perf_counter()
        self.check_request(request)
        options = self.parse_options(request.options)
        settings, device = context.settings, context.device
        if request.size > settings.max_output_side:
            raise InputError(
                f"size {request.size} is over the limit of {settings.max_output_side} px (NSTDIFF_MAX_OUTPUT_SIDE)"
            )
        controls = request.controls
        content_image = load_image(request.content, "content", settings) if request.content is not None else None
        style_images = [load_image(s.image, f"style {i + 1}", settings) for i, s in enumerate(request.styles)]
        regions = None
        if content_image is not None:
            if controls.mask is not None:
                regions = load_region_masks(controls.mask, content_image.size, len(style_images),
                                            controls.mask_colors, settings)
            content_image = resize_long_side(content_image, request.size)
            width, height = content_image.size
        else:
            width = height = request.size
        style_side = max(16, min(settings.max_output_side, round(request.size * controls.style_scale)))
        styles = [to_tensor(resize_long_side(s, style_side), device) for s in style_images]
        content = to_tensor(content_image, device) if content_image is not None else None
        original_content = content
        if content is not None:
            content, styles = color.prepare(controls.preserve_color, content, styles)
        job = ImageJob(
            content=content,
            styles=styles,
            style_weights=request.style_weights,
            height=height,
            width=width,
            steps=request.steps,
            strength=controls.strength,
            encoder=request.encoder,
            seed=context.seed,
            regions=regions.at(height, width) if regions is not None else None,
            prompt=request.prompt,
            strength_is_default="strength" not in controls.model_fields_set,
        )
        loaded = time.perf_counter()
        output = self.transfer(job, options, context)
        transferred = time.perf_counter()
        image = output.image
        if original_content is not None:
            image = color.finish(controls.preserve_color, image, original_content)
            if job.regions is not None and job.regions.keep.any():
                image = keep_untouched(image, original_content, job.regions.keep.to(image))
        resolved = request.model_dump(mode="json")
        resolved.update(seed=context.seed, encoder=output.encoder or request.encoder)
        resolved["options"] = (output.options or options).model_dump(mode="json")
        finished = time.perf_counter()
        return StyleResult(
            image=to_image(image),
            method=self.name,
            encoder=output.encoder,
            seed=context.seed,
            parameters=resolved,
            losses=output.losses,
            timings={
                "load": round(loaded - started, 4),
                "transfer": round(transferred - loaded, 4),
                "total": round(finished - started, 4),
            },
            notes=list(context.notes),
        )


def keep_untouched(image: torch.Tensor, content: torch.Tensor, keep: torch.Tensor, feather: int = 2) -> torch.Tensor:
    """Paste the content back where `keep` is 1, with a few pixels of feathering so the seam does not show."""
    soft = keep[None, None]
    if feather:
        kernel = 2 * feather + 1
        soft = F.avg_pool2d(soft, kernel, stride=1, padding=feather, count_include_pad=False)
        soft = torch.maximum(soft, keep[None, None])  # never let style bleed into the kept region
    return image * (1 - soft) + content * soft
