"""What the attention-injection methods (StyleID, StyleAligned) share: their common knobs, the checks they make up
front, a DDIM txt2img pipeline on the shared base, and their processors installed on the chosen self-attention layers
for one run (`nstdiff.diffusion.attention`), with DDIM inversion (`nstdiff.diffusion.inversion`) of the images.

Both methods run DDIM (inversion is DDIM's update backwards, so the schedules must match) over the whole schedule:
the photo's layout comes from its inverted latent, not from img2img's strength.
"""
from __future__ import annotations

from typing import Any

from PIL import Image
from pydantic import Field

from nstdiff.context import RunContext
from nstdiff.diffusion.attention import self_attention_layers
from nstdiff.diffusion.inversion import encode, invert
from nstdiff.diffusion.pipelines import LoadedModel, prepare, set_ip_adapter
from nstdiff.errors import InputError
from nstdiff.methods.base import ImageJob
from nstdiff.methods.diffusion_base import DiffusionMethod
from nstdiff.methods.diffusion_options import DiffusionOptions, Schedule
from nstdiff.schema import ImageStyleRequest

LATENT_MULTIPLE = 8  # Stable Diffusion pipelines take sizes in multiples of 8 px


class InjectionOptions(DiffusionOptions):
    injection_steps: float = Field(1.0, ge=0, le=1, description="Fraction of the denoising steps, from the noisiest, "
                                   "that get the style (0 = none: plain DDIM from the inverted latent).")


class AttentionInjectionMethod(DiffusionMethod):
    """Base of StyleID and StyleAligned: a subclass says which layers (`decoder_only`) and builds the processors."""

    options_model = InjectionOptions
    decoder_only = False

    def check_request(self, request: ImageStyleRequest) -> None:
        super().check_request(request)
        options = self.parse_options(request.options)
        if len(request.styles) != 1:
            raise InputError(f"{self.name} takes one style image; blend several with gram or adain")
        if options.structure != "none":
            raise InputError(f"{self.name} keeps the photo's layout through its inverted latent and runs no "
                             "ControlNet; set structure to none")
        if options.fast:
            raise InputError(f"{self.name} runs DDIM, whose inversion it needs; turn fast mode off")

    @staticmethod
    def schedule(model: LoadedModel, job: ImageJob, options: InjectionOptions, strength: float,
                 context: RunContext) -> Schedule:
        # the whole schedule runs (strength is not used), so a small strength never lengthens it
        return DiffusionMethod.schedule(model, job, options, 1.0, context)

    @staticmethod
    def working_size(model: LoadedModel, job: ImageJob) -> tuple[int, int]:
        width, height = DiffusionMethod.working_size(model, job)
        step = max(LATENT_MULTIPLE, model.pipeline.vae_scale_factor)
        return max(step, width // step * step), max(step, height // step * step)

    def layers(self, model: LoadedModel, count: int | None, context: RunContext) -> list[str]:
        """The last `count` self-attention layers in scope (all of them for None)."""
        names = self_attention_layers(model.pipeline.unet, self.decoder_only)
        if count is not None and count > len(names):
            context.notes.append(f"{model.label} has {len(names)} {'decoder ' if self.decoder_only else ''}"
                                 f"self-attention layers; the style goes into all of them")
        return names if count is None else names[-count:]

    @staticmethod
    def text_pipeline(model: LoadedModel, context: RunContext) -> Any:
        """A txt2img variant of the shared base with DDIM, its memory switches applied (before the processors go in:
        attention slicing replaces every processor)."""
        from diffusers import AutoPipelineForText2Image, DDIMScheduler

        set_ip_adapter(model, None)  # the reference's adapter would need its image in every call
        pipe = AutoPipelineForText2Image.from_pipe(model.pipeline)
        pipe.scheduler = DDIMScheduler.from_config(model.pipeline.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        context.notes.extend(prepare(pipe, model, context.settings, context.device))
        return pipe

    @staticmethod
    def injected_timesteps(pipe: Any, steps: int, fraction: float, device: Any) -> set[int]:
        """The first `fraction` of the DDIM timesteps of a `steps`-step schedule (the noisiest)."""
        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        scheduler.set_timesteps(steps, device=device)
        timesteps = [int(t) for t in scheduler.timesteps]
        return set(timesteps[:round(fraction * len(timesteps))])

    @staticmethod
    def note_strength(job: ImageJob, context: RunContext) -> None:
        if job.content is not None and not job.strength_is_default:
            context.notes.append("the photo's layout comes from its inverted latent: strength is not used")

    def inverted(self, pipe: Any, image: Image.Image, schedule: Schedule, prompt: str, stage: str,
                 context: RunContext) -> list:
        return invert(pipe, encode(pipe, image), schedule.steps, prompt, self.step_callback(context, stage))
