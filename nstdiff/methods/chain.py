"""Chain: a classic result refined by diffusion, as one request.

The classic method (AdaIN or Gram) puts the style image's colours and strokes on the photo; a low-strength img2img
pass (SDEdit, Meng et al. 2022) then cleans its artefacts and adds painterly detail while keeping that result's layout
and colours.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import Field, model_validator

from nstdiff.context import RunContext
from nstdiff.methods.base import ImageJob, ImageMethod, TransferOutput, keep_untouched
from nstdiff.methods.diffusion_options import DiffusionOptions
from nstdiff.methods.diffusion_text import DiffusionTextMethod
from nstdiff.methods.footprint import Footprint
from nstdiff.registry import Capabilities, get_method, register_method
from nstdiff.schema import ImageStyleRequest
from nstdiff.settings import Settings


class ChainOptions(DiffusionOptions):
    first: Literal["adain", "gram"] = Field("adain", description="The classic method that runs first.")
    refine_strength: float = Field(0.3, ge=0.05, le=0.6, description="img2img strength of the diffusion refinement.")
    first_options: dict[str, Any] = Field(default_factory=dict, description="The first method's own options "
                                          "(AdaIN's alpha, Gram's weights …); on the command line, its own flags.")

    @model_validator(mode="before")
    @classmethod
    def _first_methods_flags(cls, data: Any) -> Any:
        """Options that are not the chain's own (`--alpha 0.8`) belong to the first method."""
        if not isinstance(data, dict):
            return data
        own = {k: v for k, v in data.items() if k in cls.model_fields}
        extra = {k: v for k, v in data.items() if k not in cls.model_fields}
        return {**own, "first_options": {**own.get("first_options", {}), **extra}} if extra else data

    @model_validator(mode="after")
    def _check_first_options(self) -> "ChainOptions":
        get_method(self.first).parse_options(self.first_options)  # a bad one is refused before any work
        return self


@register_method
class ChainMethod(DiffusionTextMethod):
    name = "chain"
    title = "Classic + diffusion refinement"
    description = "AdaIN or Gram with the style image, then a low-strength diffusion pass over its result."
    options_model = ChainOptions
    capabilities = Capabilities(needs_content=True, masks=True, color_controls=True, needs_gpu=True,
                                uses_encoder=True, prompt="optional")
    default_prompt = "a painting, masterpiece, fine brush strokes"

    def mask_regions(self, request: ImageStyleRequest) -> list[str]:
        """A region per style, as the classic stage paints them; the refinement restyles all of them together."""
        return ImageMethod.mask_regions(self, request)

    def peak_bytes(self, request: ImageStyleRequest, options: ChainOptions, shape: Footprint,
                   settings: Settings) -> float:
        """The classic first stage's; the diffusion pass runs on the GPU after it, its memory not estimated."""
        first = get_method(options.first)
        return first.peak_bytes(request, first.parse_options(options.first_options), shape, settings)

    def transfer(self, job: ImageJob, options: ChainOptions, context: RunContext) -> TransferOutput:
        first = get_method(options.first)
        classic = first.transfer(job, first.parse_options(options.first_options), context)
        context.notes.append(f"chain: {options.first} ({classic.encoder}) first, then a diffusion refinement")
        painted = classic.image.clamp(0, 1).detach()
        if job.regions is not None and job.regions.keep.any():  # the refinement starts from, and keeps, the photo there
            painted = keep_untouched(painted, job.content, job.regions.keep.to(painted))
        # the refinement uses the diffusion model's own schedule, not the classic method's step count
        refine = replace(job, content=painted, strength=options.refine_strength,
                         strength_is_default=False, steps=None)
        refined = super().transfer(refine, options, context)
        refined.losses = classic.losses
        return refined
