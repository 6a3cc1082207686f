"""What every image method shares: loading and sizing the images, the colour and mask controls, the result (the
memory estimate from the request alone is in `footprint`).

A subclass implements only `transfer`, on tensors; the controls it declares in `capabilities` are applied here, once,
for every method (Gatys et al. 2017's colour and spatial controls are method-independent pre/post-processing, except
the guided Gram matrices, which the Gram method computes from `job.regions`).
"""
from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel

from nstdiff.context import RunContext
from nstdiff.controls import color
from nstdiff.controls.masks import RegionMasks
from nstdiff.controls.regions import load_style_masks, resolve_regions
from nstdiff.errors import InputError
from nstdiff.imageio import load_image, resize_long_side
from nstdiff.methods.footprint import SAFETY_MARGIN, Footprint, footprint, style_side
from nstdiff.registry import Method
from nstdiff.schema import ImageStyleRequest, PreserveColor, StyleResult
from nstdiff.settings import Settings

STYLE_CROP = 256  # the arbitrary-style predictor's training size (Ghiasi et al. 2017)


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
    # per style, (H, W) at its tensor's size: the part of the style image to take the style from (None: all of it)
    style_masks: list[torch.Tensor | None] = field(default_factory=list)
    prompt: str | None = None
    strength_is_default: bool = False  # the person did not set strength (a preset may suggest one)
    style_scale: float = 1.0  # stroke size: the style images are already scaled by it; a method may use it too
    # each style's centre square at STYLE_CROP² (Lanczos from the full image): what a style predictor was trained on
    style_crops: list[torch.Tensor] = field(default_factory=list)
    # a term the optimising methods add to their objective, f(image) → scalar (e.g. video's temporal loss)
    extra_loss: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass
class TransferOutput:
    image: torch.Tensor
    losses: dict[str, float] = field(default_factory=dict)
    encoder: str | None = None
    options: BaseModel | None = None  # resolved options, defaults filled in


class ImageMethod(Method):
    request_model = ImageStyleRequest
    style_masks = False  # whether `transfer` reads `job.style_masks` (masks on the style images)

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
        if controls.uses_regions and not caps.masks:
            raise InputError(f"method '{self.name}' does not support masks")
        if controls.style_masks is not None and not self.style_masks:
            raise InputError(f"method '{self.name}' does not use masks on the style images; use method gram")
        if controls.preserve_color is not PreserveColor.none:
            if not caps.color_controls:
                raise InputError(f"method '{self.name}' does not support preserve_color")
            if request.content is None:
                raise InputError("preserve_color needs a content image whose colours it can keep")
        if controls.uses_regions and request.content is None:
            raise InputError("a mask needs a content image (it marks regions of the content)")

    def mask_regions(self, request: ImageStyleRequest) -> list[str]:
        """What each colour of a region mask stands for, besides black (untouched): by default one region per style."""
        return [f"style {index + 1}" for index in range(len(request.styles))]

    @staticmethod
    def check_size(request: ImageStyleRequest, settings: Settings) -> None:
        if request.size > settings.max_output_side:
            raise InputError(
                f"size {request.size} is over the limit of {settings.max_output_side} px (NSTDIFF_MAX_OUTPUT_SIDE)"
            )

    def estimate_memory(self, request: ImageStyleRequest, settings: Settings) -> int | None:
        """Bytes a run of `request` needs at its peak, from the request alone (image headers, no model loaded); None
        where the method has none. A bad request gets its own message here rather than a memory one."""
        self.check_request(request)
        self.check_size(request, settings)
        peak = self.peak_bytes(request, self.parse_options(request.options), footprint(request, settings), settings)
        return None if peak is None else int(peak * SAFETY_MARGIN)

    def peak_bytes(self, request: ImageStyleRequest, options: BaseModel, shape: Footprint,
                   settings: Settings) -> float | None:
        """A method's own estimate for `estimate_memory`, before the margin."""
        return None

    def execute(self, request: ImageStyleRequest, context: RunContext,
                extra_loss: Callable[[torch.Tensor], torch.Tensor] | None = None) -> StyleResult:
        """Run `request`; `extra_loss` is a term an optimising method adds to its objective (`ImageJob.extra_loss`)."""
        started = time.perf_counter()
        self.check_request(request)
        options = self.parse_options(request.options)
        settings, device = context.settings, context.device
        self.check_size(request, settings)
        controls = request.controls
        content_image = load_image(request.content, "content", settings) if request.content is not None else None
        style_images = [load_image(s.image, f"style {i + 1}", settings) for i, s in enumerate(request.styles)]
        regions = None
        if content_image is not None:
            photo, content_image = content_image, resize_long_side(content_image, request.size)
            width, height = content_image.size
            regions, notes = resolve_regions(controls, photo, (width, height), self.mask_regions(request),
                                             request.style_weights, settings, device, context.message)
            context.notes.extend(notes)
        else:
            width = height = request.size
        styles = [to_tensor(resize_long_side(s, style_side(request, settings)), device) for s in style_images]
        style_masks = [None if mask is None else F.interpolate(mask[None, None], size=style.shape[-2:],
                                                               mode="area")[0, 0].to(device)
                       for mask, style in zip(load_style_masks(controls.style_masks, style_images, settings), styles)]
        crops = [to_tensor(centre_square(s, STYLE_CROP), device) for s in style_images]
        content = to_tensor(content_image, device) if content_image is not None else None
        original_content = content
        if content is not None:
            content, styles = color.prepare(controls.preserve_color, content, styles)
            crops = color.prepare(controls.preserve_color, original_content, crops)[1]
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
            regions=regions,
            style_masks=style_masks,
            prompt=request.prompt,
            strength_is_default="strength" not in controls.model_fields_set,
            style_scale=controls.style_scale,
            style_crops=crops,
            extra_loss=extra_loss,
        )
        loaded = time.perf_counter()
        output = self.transfer(job, options, context)
        transferred = time.perf_counter()
        image = output.image
        if original_content is not None:
            image = color.finish(controls.preserve_color, image, original_content)
            if job.regions is not None and job.regions.keep.any():
                image = keep_untouched(image, original_content, job.regions.keep.to(image))
        resolved = request.model_dump(mode="json", exclude={"options"})  # (options: their resolved model, below)
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


def autocast_dtype(precision: str, device: torch.device,
                   cuda_auto: torch.dtype = torch.float16) -> torch.dtype | None:
    """The autocast dtype for an encoder or decoder pass, or None for plain float32. auto: bf16 on CPUs with bf16
    kernels (AVX512-BF16/AMX: about twice as fast), `cuda_auto` on CUDA, float32 elsewhere."""
    if precision == "auto":
        if device.type == "cuda":
            return cuda_auto
        if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return torch.bfloat16
        return None
    if precision == "fp16" and device.type == "cpu":
        raise InputError("fp16 arithmetic needs a GPU; on the CPU use bf16 or fp32")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def centre_square(image: Image.Image, side: int) -> Image.Image:
    """The image's centred square, resized (Lanczos) to side²."""
    short = min(image.size)
    left, top = (image.width - short) // 2, (image.height - short) // 2
    return image.resize((side, side), Image.Resampling.LANCZOS, box=(left, top, left + short, top + short))
