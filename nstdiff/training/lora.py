"""Training a style LoRA for a diffusion base model (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language
Models"; applied to Stable Diffusion's attention as in Ryu 2022, cloneofsimo/lora).

Each UNet attention projection W ∈ {to_q, to_k, to_v, to_out.0} becomes W + (α/r)·B·A with A ∈ ℝ^{r×d_in},
B ∈ ℝ^{d_out×r}; only A and B are trained (α = r). The loss is the denoising objective of the base model (Ho et al.
2020, eq. 14): for a cached VAE latent z₀ of an image, its caption's text embedding c, t ~ U{0…T−1} and ε ~ N(0, I),
    z_t = √ᾱ_t·z₀ + √(1−ᾱ_t)·ε,   L = ‖ε_θ(z_t, t, c) − ε‖²   (or −v_t for v-prediction bases).
Latents (per image and horizontal flip) and text embeddings are computed once, so a step runs the UNet only.
Runs on one device as is, on several with `accelerate launch`; checkpoints (LoRA + AdamW state, safetensors only)
let an interrupted run resume exactly: every step's images, flips, timesteps and noise derive from (seed, step).
The files a job writes are described in `nstdiff.training.lora_data` (and written by `lora_files`), its inputs
prepared by `lora_inputs`; this module is the run and its step.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from nstdiff.context import CancelToken, ProgressCallback, RunContext, pick_device
from nstdiff.errors import InputError
from nstdiff.imageio import save_png
from nstdiff.loras import lora_folder
from nstdiff.models.diffusion_catalogue import load_catalogue
from nstdiff.models.diffusion_hub import resolve_repo
from nstdiff.settings import Settings, get_settings
from nstdiff.training.lora_data import LORA_FORMAT, DatasetReport, LoraTraining, inspect_dataset
from nstdiff.training.lora_files import (load_lora_checkpoint, pipeline_class_of, prepare_folder, save_lora_checkpoint,
                                         write_lora)
from nstdiff.training.lora_inputs import TrainingCache, caption_images, load_training_pipeline
from nstdiff.training.run_files import StateFile, draw_loss_curve, read_losses, write_json
from nstdiff.version import __version__

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
MAX_GRAD_NORM = 1.0


@dataclass
class LoraReport:
    folder: Path
    weights: Path  # <folder>/<name>.safetensors
    start_step: int  # 0, or the checkpoint step this run resumed from
    steps: int
    losses: list[float]  # this run's steps
    dataset: DatasetReport
    metadata: dict[str, str] = field(default_factory=dict)


def autocast_precision(setting: str, device: torch.device) -> str:
    """The autocast precision for `setting` on `device`: auto is bf16 on GPUs that have it, else fp16, and none on
    the CPU (bf16 there is slower than fp32)."""
    if setting == "auto":
        if device.type != "cuda":
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if setting == "fp16" and device.type != "cuda":
        raise InputError("--mixed-precision fp16 needs a CUDA GPU; use bf16 or no on this device")
    return setting


def train_lora(config: LoraTraining, progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
               settings: Settings | None = None) -> LoraReport:
    """Train (or resume) the LoRA `config.name` into `<models_path>/loras/<name>/`; see the module docstring."""
    from accelerate import Accelerator

    settings = settings or get_settings()
    device = pick_device(settings.device)
    precision = autocast_precision(config.mixed_precision, device)
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=precision,
                              gradient_accumulation_steps=config.grad_accum)
    device, main = accelerator.device, accelerator.is_main_process
    context = RunContext(settings, device, config.seed, progress, cancel)
    folder = lora_folder(config.name, settings)
    report = inspect_dataset(config.images, config, settings)  # before any model loads or any file is touched
    for line in report.messages():
        context.message(line)
    resume_from = prepare_folder(config, folder, main) if main else None
    accelerator.wait_for_everyone()  # the main process has cleared or kept the folder; the others follow it
    if not main:
        resume_from = prepare_folder(config, folder, main)
    if main:
        (folder / "samples").mkdir(parents=True, exist_ok=True)
        write_json(folder / "config.json", config.resume_key())
    accelerator.wait_for_everyone()
    state = StateFile(folder / "state.json", config.steps, main)
    state.update(status="running", step=0)
    with state.recording_the_end():
        return _train(config, report, folder, resume_from, accelerator, context, state, settings)


def _train(config: LoraTraining, report: DatasetReport, folder: Path, resume_from: Path | None, accelerator,
           context: RunContext, state: StateFile, settings: Settings) -> LoraReport:
    from diffusers import DDPMScheduler
    from peft import LoraConfig

    device, main = accelerator.device, accelerator.is_main_process
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[accelerator.mixed_precision]
    if config.captions == "auto":
        captions = caption_images([i.path for i in report.images], config.captioner, config.trigger_word, device,
                                  settings, context.message)
    else:
        captions = [i.caption or config.sample_prompt for i in report.images]
    base = resolve_repo(config.base, settings, context.message)
    pipeline_class = pipeline_class_of(base)
    context.message(f"loading {config.base} …")
    pipe = load_training_pipeline(base, device, weight_dtype)
    scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
    cache = TrainingCache(pipe, report, captions, config.resolution, device, settings)
    unet = pipe.unet
    lora_config = LoraConfig(r=config.rank, lora_alpha=config.rank, init_lora_weights="gaussian",
                             target_modules=LORA_TARGETS)
    unet.add_adapter(lora_config)
    trainable = [p for p in unet.parameters() if p.requires_grad]
    for parameter in trainable:  # fp32 master weights under mixed precision
        parameter.data = parameter.data.float()
    if config.gradient_checkpointing if config.gradient_checkpointing is not None else device.type == "cuda":
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate)
    start = load_lora_checkpoint(resume_from, unet, optimizer) if resume_from else 0
    if start:
        context.message(f"resuming from step {start} ({resume_from.relative_to(folder)})")
    training_unet, optimizer = accelerator.prepare(unet, optimizer)
    metadata = {"format": LORA_FORMAT, "name": config.name, "base": config.base,
                "architecture": "sdxl" if cache.xl else "sd", "trigger": config.trigger_word,
                "rank": str(config.rank), "steps": str(config.steps), "dataset_size": str(report.count),
                "resolution": str(config.resolution), "captions": config.captions,
                "learning_rate": str(config.learning_rate), "version": __version__}
    alphas = scheduler.alphas_cumprod.to(device)
    target_kind = scheduler.config.prediction_type
    sample_generator_seed = config.seed
    history = read_losses(folder / "loss.csv", up_to=start)
    if main:  # drop the rows written after the checkpoint a resumed run starts from
        with open(folder / "loss.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["step", "loss", "seconds"])
            writer.writerows([[s, f"{l:.6g}", f"{t:.3f}"] for s, l, t in history])
    losses: list[float] = []
    durations: list[float] = []
    last_checkpoint = str(resume_from.relative_to(folder)) if resume_from else None
    state.update(step=start, last_checkpoint=last_checkpoint)
    num_images = report.count
    elapsed_before = history[-1][2] if history else 0.0
    started = time.perf_counter()
    log = open(folder / "loss.csv", "a", newline="", buffering=1) if main else None
    try:
        writer = csv.writer(log) if log else None
        for step in range(start + 1, config.steps + 1):
            step_started = time.perf_counter()
            training_unet.train()
            step_loss = 0.0
            for micro in range(config.grad_accum):
                # every draw derives from (seed, process, step, micro), so a resumed run repeats the same batches
                generator = torch.Generator().manual_seed(
                    ((config.seed * 1_000_003 + accelerator.process_index) * 1_000_003 + step) * 257 + micro)
                images = torch.randint(0, num_images, (config.batch,), generator=generator)
                flips = torch.randint(0, 2, (config.batch,), generator=generator)
                shape = cache.mean.shape[2:]
                latent_noise = torch.randn((config.batch, *shape), generator=generator).to(device)
                noise = torch.randn((config.batch, *shape), generator=generator).to(device)
                timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (config.batch,),
                                          generator=generator).to(device)
                latents, embeds, extra = cache.batch(images.to(device), flips.to(device), latent_noise, device)
                a = alphas[timesteps].view(-1, 1, 1, 1)
                noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
                target = noise if target_kind == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * latents
                with accelerator.accumulate(training_unet):
                    with accelerator.autocast():
                        prediction = training_unet(noisy.to(weight_dtype), timesteps, embeds.to(weight_dtype),
                                                   **extra).sample
                    loss = F.mse_loss(prediction.float(), target.float())
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(trainable, MAX_GRAD_NORM)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                step_loss += float(loss.detach()) / config.grad_accum
            losses.append(step_loss)
            durations.append(time.perf_counter() - step_started)
            recent = durations[-20:]
            per_step = sum(recent) / len(recent)
            if writer:
                writer.writerow([step, f"{step_loss:.6g}", f"{elapsed_before + time.perf_counter() - started:.3f}"])
            if main and step % config.checkpoint_every == 0 and step < config.steps:
                checkpoint = save_lora_checkpoint(folder, step, pipeline_class, accelerator.unwrap_model(training_unet),
                                              lora_config, optimizer, metadata)
                last_checkpoint = str(checkpoint.relative_to(folder))
            if main and config.sample_every and (step % config.sample_every == 0 or step == config.steps):
                _sample(pipe, config, folder, step, sample_generator_seed, accelerator)
            state.update(step=step, loss=step_loss, seconds_per_step=per_step,
                         eta_seconds=per_step * (config.steps - step), last_checkpoint=last_checkpoint)
            context.step(step, config.steps, {"loss": step_loss}, stage="train")
    finally:
        if log:
            log.close()
    accelerator.wait_for_everyone()
    weights = folder / f"{config.name}.safetensors"
    if main:
        metadata["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_lora(pipeline_class, accelerator.unwrap_model(training_unet), lora_config, weights, metadata)
        write_json(folder / "lora.json", {**metadata, "training": config.model_dump(mode="json")})
        draw_loss_curve([loss for _, loss, _ in read_losses(folder / "loss.csv")], folder / "loss.png")
        state.update(status="finished", step=config.steps, eta_seconds=0.0)
    return LoraReport(folder, weights, start, config.steps, losses, report, metadata)


def _sample(pipe, config: LoraTraining, folder: Path, step: int, seed: int, accelerator) -> Path:
    """An image from the trigger's prompt with the LoRA as trained so far (same seed every time, so samples compare).

    The UNet denoises under autocast; the VAE decodes outside it, in fp32 (SDXL's VAE overflows to black in fp16).
    A Turbo base samples as it was distilled: its few steps, no classifier-free guidance."""
    family = load_catalogue().families.get(config.base)
    turbo = {"num_inference_steps": family.steps, "guidance_scale": 0.0} if family and family.turbo else {}
    pipe.unet.eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        with accelerator.autocast():
            latents = pipe(config.sample_prompt, **{"num_inference_steps": config.sample_steps, **turbo},
                           height=config.resolution, width=config.resolution, generator=generator,
                           output_type="latent").images
        vae = pipe.vae
        decoded = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
        image = pipe.image_processor.postprocess(decoded, output_type="pil")[0]
    pipe.unet.train()
    return save_png(image, folder / "samples" / f"step-{step:05d}.png", {"prompt": config.sample_prompt,
                                                                          "step": str(step)})
