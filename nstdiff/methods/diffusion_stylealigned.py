"""StyleAligned (Hertz, Voynov, Fruchter & Cohen-Or, "Style Aligned Image Generation via Shared Attention", CVPR
2024): a new image, or a photo redrawn, in the style of a reference image through shared self-attention.

The reference is DDIM-inverted (its trajectory x_T … x₀ recorded); then it is denoised in one batch with the image
being made, its latent put back on its own trajectory after every step, while the chosen self-attention layers let
the image attend to the reference's keys and values too, after AdaIN of its queries and keys toward the reference's
(`nstdiff.diffusion.attention`). The image starts from seeded noise under the prompt, or, with a photo, from the
photo's own inverted noise (its layout). Classifier-free guidance as the model's.
"""
from __future__ import annotations

import torch
from PIL import Image
from pydantic import Field

from nstdiff.context import RunContext
from nstdiff.diffusion.attention import InjectionState, SharedAttentionProcessor, installed
from nstdiff.diffusion.pipelines import LoadedModel
from nstdiff.methods.base import ImageJob, to_image
from nstdiff.methods.diffusion_injection import AttentionInjectionMethod, InjectionOptions
from nstdiff.methods.diffusion_options import Prompting, Schedule
from nstdiff.registry import Capabilities, register_method


class StyleAlignedOptions(InjectionOptions):
    temperature: float = Field(1.0, ge=0.1, le=3, description="τ: scale of the reference's keys as the image sees "
                               "them (StyleAligned's keys_scale); above 1 follows the reference more.")
    injection_layers: int | None = Field(None, ge=1, le=128, description="How many of the UNet's last "
                                         "self-attention layers share attention with the reference; none = all "
                                         "(StyleAligned's default).")
    reference_prompt: str | None = Field(None, max_length=300, description="What the reference shows (e.g. 'a "
                                         "house by a lake'): conditions its inversion and its half of the batch.")


@register_method
class DiffusionStyleAlignedMethod(AttentionInjectionMethod):
    name = "diffusion-stylealigned"
    title = "Style reference (StyleAligned)"
    description = "A new image (from the prompt) or a redrawn photo in a reference's style, by shared attention."
    options_model = StyleAlignedOptions
    capabilities = Capabilities(color_controls=True, needs_gpu=True, prompt="optional")

    def generate(self, model: LoadedModel, job: ImageJob, options: StyleAlignedOptions, prompting: Prompting,
                 schedule: Schedule, size: tuple[int, int], context: RunContext) -> Image.Image:
        from diffusers.utils.torch_utils import randn_tensor

        self.note_strength(job, context)
        pipe = self.text_pipeline(model, context)
        state = InjectionState(injected=self.injected_timesteps(pipe, schedule.steps, options.injection_steps,
                                                                context.device))
        processors = {name: SharedAttentionProcessor(name, state, options.temperature)
                      for name in self.layers(model, options.injection_layers, context)}
        reference_prompt = options.reference_prompt or ""
        style = to_image(job.styles[0]).resize(size, Image.Resampling.LANCZOS)
        with installed(pipe.unet, processors, state):
            trajectory = self.inverted(pipe, style, schedule, reference_prompt, "invert style", context)
            noise = trajectory[-1]
            if job.content is not None:
                start = self.inverted(pipe, self.content_image(job, size), schedule, prompting.prompt,
                                      "invert photo", context)[-1]
            else:
                start = randn_tensor(noise.shape, generator=self.generator(context), device=noise.device,
                                     dtype=noise.dtype)
            report = self.step_callback(context)

            def follow_reference(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
                # after step i the batch is at the next timestep: the reference goes back onto its inversion there
                latents = callback_kwargs["latents"].clone()
                latents[0] = trajectory[-(step + 2)]
                return report(pipeline, step, timestep, {**callback_kwargs, "latents": latents})

            state.mode = "inject"
            negative = [prompting.negative] * 2 if prompting.negative else None
            images = pipe(prompt=[reference_prompt, prompting.prompt], negative_prompt=negative,
                          latents=torch.cat([noise, start]), num_inference_steps=schedule.steps,
                          guidance_scale=schedule.guidance, width=size[0], height=size[1],
                          generator=self.generator(context), callback_on_step_end=follow_reference).images
        return images[1]
