"""Style reference: restyle a photo like a reference image, with IP-Adapter (Ye et al. 2023) and InstantStyle's
block targeting (Wang et al. 2024).

IP-Adapter adds a cross-attention on the reference's CLIP image embedding to the UNet's attention blocks. InstantStyle
observes that style and layout live in different blocks: injecting the reference only into the style blocks (`style`)
takes its look without its objects; `layout` adds the layout block; `full` is plain IP-Adapter everywhere. With a
content photo it runs as img2img (optionally holding the photo's structure with a ControlNet), else as txt2img.

Content-leak subtraction (InstantStyle §3.2): the reference's objects leak into the result through its image
embedding e_img; describing them in words and subtracting their text embedding, e = e_img − λ·e_text, leaves more of
the style. It needs the image and text embeddings in one CLIP space, which holds for the SDXL family (its second
text encoder and its IP-Adapter's image encoder are both OpenCLIP ViT-bigG).
"""
from __future__ import annotations

from typing import Literal

from PIL import Image
from pydantic import Field

from nstdiff.context import RunContext
from nstdiff.diffusion.pipelines import LoadedModel, set_ip_adapter
from nstdiff.errors import InputError
from nstdiff.methods.base import ImageJob, to_image
from nstdiff.methods.diffusion_base import DiffusionMethod
from nstdiff.methods.diffusion_options import DiffusionOptions, Prompting, Schedule
from nstdiff.models.diffusion_catalogue import Family, load_catalogue
from nstdiff.models.diffusion_hub import resolve_repo
from nstdiff.registry import Capabilities, register_method
from nstdiff.schema import ImageStyleRequest
from nstdiff.settings import Settings


class ReferenceOptions(DiffusionOptions):
    mode: Literal["style", "layout", "full"] = Field(
        "style", description="style: the reference's look only (InstantStyle); layout: look and composition; "
                             "full: plain IP-Adapter on every block.")
    reference_scale: float = Field(1.0, ge=0, le=2, description="How strongly the reference is followed.")
    reference_content: str | None = Field(None, max_length=300, description="What the reference shows (e.g. 'a "
                                          "house by a lake'): subtracted so its objects do not leak (SDXL family).")
    content_subtraction: float = Field(0.5, ge=0, le=2, description="λ of the content-leak subtraction.")


def instantstyle_scale(model: LoadedModel, mode: str, scale: float) -> float | dict:
    """The per-block IP-Adapter scales for `mode`, from the catalogue's InstantStyle block maps."""
    if mode == "full":
        return scale
    blocks = model.family.instantstyle[mode]  # (a family without this map: refused by `check_family`)

    def scaled(value):  # a number (a whole block, or the mid block), a list (one per transformer) or a dict
        if isinstance(value, dict):
            return {key: scaled(inner) for key, inner in value.items()}
        return [v * scale for v in value] if isinstance(value, list) else value * scale

    return scaled(blocks)


@register_method
class DiffusionReferenceMethod(DiffusionMethod):
    name = "diffusion-reference"
    title = "Style reference (IP-Adapter)"
    description = "Restyle a photo like a reference image (IP-Adapter + InstantStyle); optional ControlNet."
    options_model = ReferenceOptions
    capabilities = Capabilities(masks=True, color_controls=True, needs_gpu=True, prompt="optional")
    default_prompt = "best quality, high quality"

    def check_request(self, request: ImageStyleRequest) -> None:
        super().check_request(request)
        if len(request.styles) != 1:
            raise InputError("diffusion-reference takes one style image; blend several with gram or adain")

    def check_family(self, options: ReferenceOptions, family: Family) -> None:
        super().check_family(options, family)
        if family.ip_adapter is None:
            raise InputError(f"{family.title} has no IP-Adapter in the catalogue; use the sd15 or sdxl family")
        if options.mode != "full" and options.mode not in family.instantstyle:
            raise InputError(f"{family.title} has no InstantStyle block map for '{options.mode}'; use mode full")
        if options.reference_content and family.architecture != "sdxl":
            raise InputError("content-leak subtraction (reference_content) needs an SDXL-family model, whose text and "
                             "image embeddings share one space; remove reference_content or use sdxl")

    def required_models(self, options: ReferenceOptions, settings: Settings) -> list[str]:
        needed = super().required_models(options, settings)
        family = load_catalogue().families.get(needed[0])
        return needed + [f"{family.name}-ip-adapter"] if family is not None and family.ip_adapter else needed

    def generate(self, model: LoadedModel, job: ImageJob, options: ReferenceOptions, prompting: Prompting,
                 schedule: Schedule, size: tuple[int, int], context: RunContext) -> Image.Image:
        self.load_ip_adapter(model, context)
        model.pipeline.set_ip_adapter_scale(instantstyle_scale(model, options.mode, options.reference_scale))
        reference = to_image(job.styles[0])
        if options.reference_content:
            embeds = self.subtracted_embeds(model, reference, options, schedule, context)
            return self.run_pipeline(model, job, options, prompting, schedule, size, context,
                                     ip_adapter_image_embeds=embeds)
        return self.run_pipeline(model, job, options, prompting, schedule, size, context, ip_adapter_image=reference)

    @staticmethod
    def subtracted_embeds(model: LoadedModel, reference: Image.Image, options: ReferenceOptions, schedule: Schedule,
                          context: RunContext) -> list:
        """[e_img − λ·e_text] in the layout diffusers takes as `ip_adapter_image_embeds` (zeros first under CFG)."""
        import torch

        pipe = model.pipeline  # an SDXL-family one: `check_family` refuses reference_content for the others
        with torch.no_grad():
            image_embeds, _ = pipe.encode_image(reference, context.device, 1)
            text_embeds = pipe.encode_prompt(options.reference_content, device=context.device,
                                             num_images_per_prompt=1, do_classifier_free_guidance=False)[2]
        if text_embeds.shape[-1] != image_embeds.shape[-1]:
            raise InputError(f"this model's text embedding ({text_embeds.shape[-1]}) and IP-Adapter image embedding "
                             f"({image_embeds.shape[-1]}) differ in size; content-leak subtraction cannot apply")
        embeds = (image_embeds - options.content_subtraction * text_embeds.to(image_embeds.dtype))[:, None]
        if schedule.guidance > 1:  # classifier-free guidance: the unconditional image embedding is zero
            embeds = torch.cat([torch.zeros_like(embeds), embeds])
        return [embeds]

    @staticmethod
    def load_ip_adapter(model: LoadedModel, context: RunContext) -> None:
        spec = model.family.ip_adapter  # (a family without one: refused by `check_family`)
        name = f"{model.family.name}-ip-adapter"
        if model.ip_adapter == name:
            return
        folder = resolve_repo(name, context.settings, context.message)
        if not (folder / spec.subfolder / spec.weight_name).is_file():
            raise InputError(f"'{folder}' has no {spec.subfolder}/{spec.weight_name}; fetch {name} again")
        set_ip_adapter(model, name, lambda pipeline: pipeline.load_ip_adapter(
            str(folder), subfolder=spec.subfolder, weight_name=spec.weight_name,
            image_encoder_folder=None if model.image_encoder is not None else spec.image_encoder))
