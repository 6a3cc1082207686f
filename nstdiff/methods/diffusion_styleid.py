"""StyleID (Chung, Hyun & Heo, "Style Injection in Diffusion: A Training-free Approach for Adapting Large-scale
Diffusion Models for Style Transfer", CVPR 2024): restyle a photo with a diffusion model's own attention, no training.

Both images are DDIM-inverted; on the way the decoder's chosen self-attention layers record the style's keys and
values and the photo's queries per timestep. The photo's inverted noise, AdaIN-ed toward the style's (its colours), is
then denoised with those layers attending to the style's keys and values from the photo's queries (query
preservation γ, temperature τ: `nstdiff.diffusion.attention`). Without text and without classifier-free guidance,
as in the paper; a prompt, if given, conditions all three passes.
"""
from __future__ import annotations

from PIL import Image
from pydantic import Field

from nstdiff.context import RunContext
from nstdiff.diffusion.attention import InjectionState, StyleIDProcessor, installed
from nstdiff.diffusion.pipelines import LoadedModel
from nstdiff.errors import InputError
from nstdiff.methods.adain import adain
from nstdiff.methods.base import ImageJob, to_image
from nstdiff.methods.diffusion_injection import AttentionInjectionMethod, InjectionOptions
from nstdiff.methods.diffusion_options import Prompting, Schedule
from nstdiff.registry import Capabilities, register_method
from nstdiff.schema import ImageStyleRequest


class StyleIDOptions(InjectionOptions):
    gamma: float = Field(0.75, ge=0, le=1, description="Query preservation γ: how much of the photo's own query is "
                         "kept, Q̃ = γ·Q_photo + (1 − γ)·Q_result; higher keeps more of the photo.")
    temperature: float = Field(1.5, ge=0.1, le=3, description="Attention temperature τ: above 1 sharpens the "
                               "attention to the style's keys (stronger style).")
    injection_layers: int = Field(6, ge=1, le=64, description="How many of the decoder's last self-attention layers "
                                  "take the style's keys and values (6 = the official code's output blocks 6–11 "
                                  "of SD 1.5).")
    initial_adain: bool = Field(True, description="Start from the photo's inverted noise AdaIN-ed toward the style's "
                                "(the style's colours).")


@register_method
class DiffusionStyleIDMethod(AttentionInjectionMethod):
    name = "diffusion-styleid"
    title = "Style reference (StyleID)"
    description = "Restyle a photo by injecting a style image's attention keys and values (StyleID, training-free)."
    options_model = StyleIDOptions
    capabilities = Capabilities(color_controls=True, needs_gpu=True, needs_content=True, prompt="optional")
    default_prompt = ""  # the paper's: no text
    decoder_only = True

    def check_request(self, request: ImageStyleRequest) -> None:
        if request.content is None:
            raise InputError("diffusion-styleid restyles a photo: add a content image (or use diffusion-stylealigned "
                             "to make a new image in the reference's style)")
        super().check_request(request)

    @staticmethod
    def schedule(model: LoadedModel, job: ImageJob, options: StyleIDOptions, strength: float,
                 context: RunContext) -> Schedule:
        steps = AttentionInjectionMethod.schedule(model, job, options, strength, context).steps
        return Schedule(steps, options.guidance if options.guidance is not None else 1.0)  # no guidance by default

    def generate(self, model: LoadedModel, job: ImageJob, options: StyleIDOptions, prompting: Prompting,
                 schedule: Schedule, size: tuple[int, int], context: RunContext) -> Image.Image:
        self.note_strength(job, context)
        pipe = self.text_pipeline(model, context)
        state = InjectionState(injected=self.injected_timesteps(pipe, schedule.steps, options.injection_steps,
                                                                context.device))
        processors = {name: StyleIDProcessor(name, state, options.gamma, options.temperature)
                      for name in self.layers(model, options.injection_layers, context)}
        style = to_image(job.styles[0]).resize(size, Image.Resampling.LANCZOS)
        with installed(pipe.unet, processors, state):
            state.mode = "record-style"
            style_noise = self.inverted(pipe, style, schedule, prompting.prompt, "invert style", context)[-1]
            state.mode = "record-content"
            content_noise = self.inverted(pipe, self.content_image(job, size), schedule, prompting.prompt,
                                          "invert photo", context)[-1]
            start = adain(content_noise, style_noise) if options.initial_adain else content_noise
            state.mode = "inject"
            return pipe(prompt=prompting.prompt, negative_prompt=prompting.negative, latents=start,
                        num_inference_steps=schedule.steps, guidance_scale=schedule.guidance, width=size[0],
                        height=size[1], generator=self.generator(context),
                        callback_on_step_end=self.step_callback(context)).images[0]
