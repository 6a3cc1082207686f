"""What the diffusion methods share: prompt and preset resolution, the loaded pipeline and its add-ons, structure
guidance, progress and cancellation per denoising step, and the final image at the requested size.

A subclass says which pipeline call to make (`generate`); everything else, including the checks a person sees when
an input is wrong, lives here once. The checks that need only the request run up front (`check_request`, like
diffusers' `check_inputs`), before any model or image is loaded; their options are in `diffusion_options`.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from PIL import Image

from nstdiff.context import RunContext
from nstdiff.diffusion.blending import LatentBlend
from nstdiff.diffusion.pipelines import PIPELINES, LoadedModel, prepare, run_with_memory_retry
from nstdiff.diffusion.presets import get_preset
from nstdiff.diffusion.structure import load_controlnet, structure_image
from nstdiff.errors import InputError
from nstdiff.methods.base import ImageJob, ImageMethod, TransferOutput, to_image, to_tensor
from nstdiff.methods.diffusion_options import MIN_STRENGTH, DiffusionOptions, Prompting, Schedule
from nstdiff.models.diffusion_catalogue import Family, load_catalogue
from nstdiff.models.diffusion_hub import require, resolve_repo
from nstdiff.schema import ImageStyleRequest
from nstdiff.settings import Settings

LCM_ADAPTER = "lcm"
LCM_STEPS, LCM_GUIDANCE = 4, 1.0  # LCM-LoRA's own recommendation: 2–8 steps, guidance 1–2


class DiffusionMethod(ImageMethod):
    """Base of the diffusion methods: a subclass implements `generate` with the variant pipeline it needs."""

    options_model = DiffusionOptions
    default_prompt = "a picture"

    def generate(self, model: LoadedModel, job: ImageJob, options: Any, prompting: Prompting, schedule: Schedule,
                 size: tuple[int, int], context: RunContext) -> Image.Image:
        raise NotImplementedError

    # -- the shared run ------------------------------------------------------------------------------------------

    def execute(self, request: Any, context: RunContext, extra_loss: Any = None) -> Any:
        # options a catalogue family cannot honour, a missing model part or a misspelt or damaged LoRA are reported
        # now, not after minutes of loading the model and the images (or of a chain's classic stage)
        from nstdiff.loras import get_lora

        options = self.parse_options(request.options)
        family = load_catalogue().families.get(options.model or context.settings.diffusion_family)
        if family is not None:
            self.check_family(options, family)
        for use in options.loras:
            get_lora(use.name, context.settings)
        for ref in self.required_models(options, context.settings):
            require(ref, context.settings)
        return super().execute(request, context, extra_loss)

    def mask_regions(self, request: ImageStyleRequest) -> list[str]:
        """One prompt or reference restyles one area: a mask marks it in white (black: untouched)."""
        return ["the area to change"]

    def check_request(self, request: ImageStyleRequest) -> None:
        super().check_request(request)
        options = self.parse_options(request.options)
        if options.structure != "none" and request.content is None:
            raise InputError("structure guidance keeps the structure of a content image; add one or set structure "
                             "to none")

    def check_family(self, options: DiffusionOptions, family: Family) -> None:
        """Refuse options the model family cannot honour: before loading for a catalogue family, and once loaded for
        a folder or repo id (whose family its architecture decides)."""
        if options.structure != "none" and options.structure not in family.controlnet:
            raise InputError(f"{family.title} has no '{options.structure}' ControlNet in the catalogue; use "
                             f"{', '.join(family.controlnet) or 'structure none'}")
        if options.fast and not family.turbo and family.lcm_lora is None:
            raise InputError(f"fast mode needs an LCM-LoRA for {family.title}; use a Turbo family instead")

    def required_models(self, options: DiffusionOptions, settings: Settings) -> list[str]:
        """What a run with `options` loads: the base, and the catalogue add-ons its options ask for."""
        ref = options.model or settings.diffusion_family
        family = load_catalogue().families.get(ref)
        if family is None:
            return [ref]  # a repo id or folder: its add-ons are checked when they are loaded
        needed = [family.name]
        if options.structure != "none" and options.structure in family.controlnet:
            needed.append(f"{family.name}-controlnet-{options.structure}")
        if options.structure == "depth":
            needed.append("depth-estimator")
        if options.fast and not family.turbo and family.lcm_lora:
            needed.append(f"{family.name}-lcm-lora")
        return needed

    def transfer(self, job: ImageJob, options: DiffusionOptions, context: RunContext) -> TransferOutput:
        prompting = self.prompting(job, options, context)

        def load_and_generate():
            model = PIPELINES.get(options.model, context.device, context.settings, context.message)
            self.check_family(options, model.family)
            with model.lock:
                self.check_prompt_length(model, prompting)
                schedule = self.schedule(model, job, options, prompting.strength, context)
                self.set_adapters(model, options, context)
                size = self.working_size(model, job)
                image = self.generate(model, job, options, prompting, schedule, size, context)
            return model, schedule, image

        try:
            model, schedule, image = run_with_memory_retry(load_and_generate, self.name)
        finally:
            if not context.settings.keep_pipelines_warm:  # memory back to the other jobs as soon as this one ends
                PIPELINES.release()
        image = image.convert("RGB").resize((job.width, job.height), Image.Resampling.LANCZOS)
        resolved = options.model_copy(update={"guidance": schedule.guidance, "negative_prompt": prompting.negative})
        context.notes.append(f"{self.name}: {model.label}, {schedule.steps} steps, guidance {schedule.guidance:g}"
                             + (f", strength {prompting.strength:g}" if job.content is not None else "")
                             + (f", preset {prompting.preset.name}" if prompting.preset else "")
                             + (f", LoRAs {', '.join(f'{u.name}:{u.weight:g}' for u in options.loras)}"
                                if options.loras else ""))
        return TransferOutput(image=to_tensor(image, context.device), encoder=model.label, options=resolved)

    def prompting(self, job: ImageJob, options: DiffusionOptions, context: RunContext) -> Prompting:
        preset = get_preset(options.preset, context.settings) if options.preset else None
        subject = job.prompt
        prompt = preset.render(subject) if preset else (subject or self.default_prompt)
        negative = options.negative_prompt if options.negative_prompt is not None else (
            preset.negative if preset and preset.negative else None)
        strength = preset.strength if preset and job.strength_is_default else job.strength
        return Prompting(prompt, negative, strength, preset)

    @staticmethod
    def check_prompt_length(model: LoadedModel, prompting: Prompting) -> None:
        tokenizer = model.pipeline.tokenizer
        for role, text in (("prompt", prompting.prompt), ("negative prompt", prompting.negative)):
            if text:
                count = len(tokenizer(text).input_ids)
                if count > tokenizer.model_max_length:
                    raise InputError(f"the {role} is {count} tokens long; {model.label} reads at most "
                                     f"{tokenizer.model_max_length} (including start and end). Shorten it.")

    @staticmethod
    def schedule(model: LoadedModel, job: ImageJob, options: DiffusionOptions, strength: float,
                 context: RunContext) -> Schedule:
        """Steps and guidance: the person's, else the model's (or LCM's in fast mode). img2img denoises only
        strength × steps of them, so a short schedule (Turbo, LCM) is lengthened until that is at least one step."""
        family = model.family
        if options.fast and not family.turbo:
            steps, guidance = LCM_STEPS, LCM_GUIDANCE
        else:
            steps, guidance = family.steps, family.guidance
        steps = job.steps or steps
        limit = model.pipeline.scheduler.config.num_train_timesteps
        if steps > limit:
            raise InputError(f"{steps} denoising steps is more than {model.label}'s {limit} noise levels; use fewer")
        if job.content is not None and MIN_STRENGTH <= strength and strength * steps < 1:
            lengthened = math.ceil(1 / strength)
            context.notes.append(f"strength {strength:g} × {steps} steps is less than one denoising step; "
                                 f"{lengthened} steps used")
            steps = lengthened
        return Schedule(steps, options.guidance if options.guidance is not None else guidance)

    @staticmethod
    def set_adapters(model: LoadedModel, options: DiffusionOptions, context: RunContext) -> None:
        """The run's LoRAs (the person's, blended by weight, and LCM-LoRA in fast mode) active, every other loaded
        adapter off. Adapters stay loaded in the shared UNet, so switching between them never reloads the model."""
        pipe = model.pipeline
        wanted: list[tuple[str, float]] = []
        for use in options.loras:
            wanted.append((load_library_lora(model, use.name, context), use.weight))
        if options.fast and not model.family.turbo:  # (a family without LCM-LoRA: refused by `check_family`)
            if LCM_ADAPTER not in model.loras:
                folder = resolve_repo(f"{model.family.name}-lcm-lora", context.settings, context.message)
                pipe.load_lora_weights(folder, weight_name=model.family.lcm_lora.weight_name, adapter_name=LCM_ADAPTER)
                model.loras.add(LCM_ADAPTER)
            wanted.append((LCM_ADAPTER, 1.0))
        if wanted:
            pipe.enable_lora()
            pipe.set_adapters([name for name, _ in wanted], [weight for _, weight in wanted])
        elif model.loras:
            pipe.disable_lora()

    @staticmethod
    def scheduler_for(model: LoadedModel, options: DiffusionOptions):
        """The base's scheduler, or LCM's for fast mode on a non-Turbo model."""
        if options.fast and not model.family.turbo:
            from diffusers import LCMScheduler

            return LCMScheduler.from_config(model.pipeline.scheduler.config)
        return model.pipeline.scheduler

    @staticmethod
    def working_size(model: LoadedModel, job: ImageJob) -> tuple[int, int]:
        """(width, height) to generate at: the job's size, raised to the model's native resolution when smaller
        (SD 1.5 at 512 px, SDXL at 1024 px: far below it they make poor images; the result is resized to the job's
        size), in multiples of the latent factor."""
        pipe = model.pipeline
        factor = pipe.vae_scale_factor
        native = pipe.unet.config.sample_size * factor
        scale = max(1.0, native / max(job.width, job.height))
        width, height = round(job.width * scale), round(job.height * scale)
        return max(factor, width // factor * factor), max(factor, height // factor * factor)

    # -- helpers for subclasses ---------------------------------------------------------------------------------

    def run_pipeline(self, model: LoadedModel, job: ImageJob, options: DiffusionOptions, prompting: Prompting,
                     schedule: Schedule, size: tuple[int, int], context: RunContext, **arguments) -> Image.Image:
        """txt2img at `size` without a content image; img2img on it otherwise, held by the ControlNet of
        `options.structure` when one is asked for. `arguments` adds method-specific pipeline arguments."""
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

        controlnet = load_controlnet(model, options.structure, context)
        extra = {"controlnet": controlnet} if controlnet is not None else {}
        blend = None
        if job.content is not None and job.regions is not None and job.regions.keep.any():
            change = 1 - job.regions.keep
            if not change.any():
                context.notes.append("the mask marks nothing to change; the content is returned unchanged")
                return self.content_image(job, size)
            blend = LatentBlend(self.content_image(job, size), change, context.seed)
        arguments.update(prompt=prompting.prompt, negative_prompt=prompting.negative,
                         num_inference_steps=schedule.steps, guidance_scale=schedule.guidance,
                         generator=self.generator(context),
                         callback_on_step_end=self.step_callback(context, blend=blend))
        if job.content is None:  # (structure needs a content image: `check_request`; a mask: the base's)
            pipe = AutoPipelineForText2Image.from_pipe(model.pipeline, **extra)
            arguments.update(width=size[0], height=size[1])
        else:
            content = self.content_image(job, size)
            pipe = AutoPipelineForImage2Image.from_pipe(model.pipeline, **extra)
            arguments.update(image=content, strength=max(prompting.strength, MIN_STRENGTH))
            if controlnet is not None:
                arguments.update(control_image=structure_image(model, content, options.structure, context),
                                 controlnet_conditioning_scale=options.structure_scale)
        pipe.scheduler = self.scheduler_for(model, options)
        pipe.set_progress_bar_config(disable=True)
        context.notes.extend(prepare(pipe, model, context.settings, context.device))
        return pipe(**arguments).images[0]

    @staticmethod
    def content_image(job: ImageJob, size: tuple[int, int]) -> Image.Image:
        return to_image(job.content).resize(size, Image.Resampling.LANCZOS)

    @staticmethod
    def generator(context: RunContext) -> torch.Generator:
        # a CPU generator: the same seed gives the same noise on every device
        return torch.Generator("cpu").manual_seed(context.seed)

    @staticmethod
    def step_callback(context: RunContext, stage: str = "denoise", blend: LatentBlend | None = None):
        """Progress per denoising step, with a live preview from the latents when one is due (a linear map, no VAE
        pass; none for latents that are not Stable Diffusion's four channels); cancellation raises out of the pipeline
        between steps. With a region mask, `blend` first puts the photo back outside it (blended latent diffusion)."""
        from nstdiff.preview import latent_preview

        def on_step_end(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
            total = getattr(pipe, "_num_timesteps", None) or step + 1
            if blend is not None:
                callback_kwargs["latents"] = blend(pipe, step, callback_kwargs["latents"])
            latents = callback_kwargs.get("latents")
            preview = latent_preview(latents) if latents is not None and context.wants_preview() else None
            context.step(step + 1, total, stage=stage, preview=preview)
            return callback_kwargs

        return on_step_end


def load_library_lora(model: LoadedModel, name: str, context: RunContext) -> str:
    """A library LoRA in the model's UNet (loaded once per file version), after checking it was made for a UNet of
    this width; returns its adapter name."""
    from nstdiff.loras import get_lora

    info = get_lora(name, context.settings)
    adapter = f"user_{name}_{info.file.stat().st_mtime_ns % 10**9}"  # a retrained file is a new adapter
    if adapter in model.loras:
        return adapter
    stale = model.library_adapters.get(name)
    if stale is not None:  # the file changed since it was loaded: drop the old weights from the UNet
        model.pipeline.delete_adapters(stale)
        model.loras.discard(stale)
    width = model.pipeline.unet.config.cross_attention_dim
    if info.cross_attention_dim is not None and info.cross_attention_dim != width:
        raise InputError(f"LoRA '{name}' was made for {info.base or 'another model'} (cross-attention width "
                         f"{info.cross_attention_dim}); {model.label} has {width}. Use it with its own base model.")
    model.pipeline.load_lora_weights(str(info.folder), weight_name=info.file.name, adapter_name=adapter)
    model.loras.add(adapter)
    model.library_adapters[name] = adapter
    return adapter
