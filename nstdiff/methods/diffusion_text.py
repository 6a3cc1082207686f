"""Text style: restyle a photo from words (img2img, Meng et al. 2022 "SDEdit"), optionally holding its structure
with a ControlNet (Zhang et al. 2023); without a photo, txt2img.

img2img noises the photo's latent to the step `strength · T` and denoises it under the prompt, so `strength` trades
the photo's content (0) for the prompt's style (1). A preset supplies the prompt template, a negative prompt and a
suggested strength.
"""
from __future__ import annotations

from PIL import Image

from nstdiff.context import RunContext
from nstdiff.diffusion.pipelines import LoadedModel, set_ip_adapter
from nstdiff.methods.base import ImageJob
from nstdiff.methods.diffusion_base import DiffusionMethod
from nstdiff.methods.diffusion_options import MIN_STRENGTH, DiffusionOptions, Prompting, Schedule
from nstdiff.registry import Capabilities, register_method


@register_method
class DiffusionTextMethod(DiffusionMethod):
    name = "diffusion-text"
    title = "Text style (diffusion)"
    description = "Restyle a photo from a text prompt or preset (img2img, optional ControlNet); txt2img without one."
    options_model = DiffusionOptions
    capabilities = Capabilities(masks=True, color_controls=True, needs_gpu=True, style_images="unused",
                                prompt="required")

    def generate(self, model: LoadedModel, job: ImageJob, options: DiffusionOptions, prompting: Prompting,
                 schedule: Schedule, size: tuple[int, int], context: RunContext) -> Image.Image:
        set_ip_adapter(model, None)  # a text run must not see the last reference image's adapter
        if job.content is not None and prompting.strength < MIN_STRENGTH:  # not one step's worth of change
            context.notes.append(f"strength {prompting.strength:g} is below {MIN_STRENGTH}; the content is returned "
                                 "unchanged")
            return self.content_image(job, size)
        return self.run_pipeline(model, job, options, prompting, schedule, size, context)
