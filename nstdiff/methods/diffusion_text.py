"""Text style: restyle a photo from words (img2img, Meng et al. 2022 "SDEdit"), optionally holding its structure
with a ControlNet (Zhang et al. 2023); without a photo, txt2img.

img2img noises the photo's latent to the step `strength · T` and denoises it under the prompt, so `strength` trades
the photo's content (0) for the prompt's style (1). A preset supplies the prompt template, a negative prompt and a
suggested strength.
"""
from __future__ import annotations

from PIL import Image

from nstdiff.diffusion.method import MIN_STRENGTH, DiffusionMethod, DiffusionOptions, Prompting, Schedule
from nstdiff.diffusion.pipelines import LoadedModel
from nstdiff.executor import RunContext
from nstdiff.methods.base import ImageJob
from nstdiff.registry import Capabilities, register_method


@register_method
class DiffusionTextMethod(DiffusionMethod):
    name = "diffusion-text"
    title = "Text style (diffusion)"
    description = "Restyle a photo from a text prompt or preset (img2img, optional ControlNet); txt2img without one."
    options_model = DiffusionOptions
    capabilities = Capabilities(color_controls=True, needs_gpu=True, style_images="unused", prompt="required")

    def generate(self, model: LoadedModel, job: ImageJob, options: DiffusionOptions, prompting: Prompting,
                 schedule: Schedule, size: tuple[int, int], context: RunContext) -> Image.Image:
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

        if model.ip_adapter is not None:  # a text run must not see the last reference image's adapter
            model.pipeline.unload_ip_adapter()
            model.ip_adapter = None
        controlnet = self.controlnet(model, options, context)
        extra = {"controlnet": controlnet} if controlnet is not None else {}
        width, height = size
        arguments = dict(prompt=prompting.prompt, negative_prompt=prompting.negative,
                         num_inference_steps=schedule.steps, guidance_scale=schedule.guidance,
                         generator=self.generator(context), callback_on_step_end=self.step_callback(context))
        if job.content is None:
            pipe = AutoPipelineForText2Image.from_pipe(model.pipeline, **extra)
            arguments.update(width=width, height=height)  # (structure needs content: checked before loading)
        else:
            content = self.content_image(job, size)
            if prompting.strength < MIN_STRENGTH:  # not one denoising step's worth of change: the photo itself
                context.notes.append(f"strength {prompting.strength:g} is below {MIN_STRENGTH}; the content is "
                                     "returned unchanged")
                return content
            pipe = AutoPipelineForImage2Image.from_pipe(model.pipeline, **extra)
            arguments.update(image=content, strength=prompting.strength)
            if controlnet is not None:
                arguments.update(control_image=self.structure_image(model, content, options, context),
                                 controlnet_conditioning_scale=options.structure_scale)
        pipe.scheduler = self.scheduler_for(model, options)
        pipe.set_progress_bar_config(disable=True)
        return pipe(**arguments).images[0]
