"""Training a style LoRA for a diffusion base model (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language
Models"; applied to Stable Diffusion's attention as in Ryu 2022, cloneofsimo/lora).

Each UNet attention projection W ∈ {to_q, to_k, to_v, to_out.0} becomes W + (α/r)·B·A with A ∈ ℝ^{r×d_in},
B ∈ ℝ^{d_out×r}; only A and B are trained (α = r). The loss is the denoising objective of the base model (Ho et al.
2020, eq. 14): for a cached VAE latent z₀ of an image, its caption's text embedding c, t ~ U{0…T−1} and ε ~ N(0, I),
    z_t = √ᾱ_t·z₀ + √(1−ᾱ_t)·ε,   L = ‖ε_θ(z_t, t, c) − ε‖²   (or −v_t for v-prediction bases).
Latents (per image and horizontal flip) and text embeddings are computed once, so a step runs the UNet only.
Runs on one device as is, on several with `accelerate launch`; checkpoints (LoRA + AdamW state, safetensors only)
let an interrupted run resume exactly: every step's images, flips, timesteps and noise derive from (seed, step).
The files a job writes are described in `nstdiff.training.lora_data`.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageOps
from safetensors import safe_open

from nstdiff.context import CancelToken, ProgressCallback, RunContext, pick_device
from nstdiff.diffusion.pipelines import open_pipeline
from nstdiff.errors import Cancelled, InputError, ModelFileError
from nstdiff.imageio import atomic_write, load_image, save_png
from nstdiff.loras import lora_folder
from nstdiff.models.diffusion_catalogue import load_catalogue
from nstdiff.models.diffusion_hub import TRANSFORMERS_WEIGHTS, check_pipeline_folder, resolve_repo
from nstdiff.models.weights import save_tensors
from nstdiff.settings import Settings, get_settings
from nstdiff.training.lora_data import (LORA_FORMAT, RESUME_FIELDS, DatasetReport, LoraState, LoraTraining,
                                        inspect_dataset, read_state, with_trigger)
from nstdiff.version import __version__

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
MAX_GRAD_NORM = 1.0
KEEP_CHECKPOINTS = 2
LORA_FILE, OPTIMIZER_FILE = "lora.safetensors", "optimizer.safetensors"


@dataclass
class LoraReport:
    folder: Path
    weights: Path  # <folder>/<name>.safetensors
    start_step: int  # 0, or the checkpoint step this run resumed from
    steps: int
    losses: list[float]  # this run's steps
    dataset: DatasetReport
    metadata: dict[str, str] = field(default_factory=dict)


# ---- files ----

def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True)))


class StateFile:
    """`state.json`, rewritten atomically every step so another process can follow the job."""

    def __init__(self, path: Path, steps: int, enabled: bool):
        self.path, self.enabled = path, enabled
        self.state = LoraState(status="running", steps=steps, pid=os.getpid())

    def update(self, **values: Any) -> None:
        if not self.enabled:
            return
        self.state = self.state.model_copy(update={**values, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
        write_json(self.path, self.state.model_dump(mode="json"))

    @contextmanager
    def recording_the_end(self):
        """A run that raises leaves the job cancelled (its message naming the checkpoint to resume from) or failed."""
        try:
            yield
        except (Cancelled, KeyboardInterrupt) as exc:
            self.update(status="cancelled")
            if isinstance(exc, Cancelled):
                kept = self.state.last_checkpoint
                exc.args = (f"cancelled at step {exc.step}/{exc.total}; " + (
                    f"{kept} is kept: run the same command again to resume from it" if kept else
                    "no checkpoint was reached yet"),)
            raise
        except Exception as exc:
            self.update(status="failed", error=str(exc)[:2000])
            raise


def _pipeline_class(folder: Path):
    import diffusers

    return getattr(diffusers, check_pipeline_folder(folder))


def _write_lora(pipeline_class, unet, lora_config, path: Path, metadata: dict[str, str]) -> None:
    """The UNet's LoRA in diffusers' format (`unet.….lora_A.weight`, adapter config in the header), written by the
    pipeline's own `save_lora_weights`, then rewritten atomically with our `nstdiff.*` metadata added."""
    from peft.utils import get_peft_model_state_dict

    partial = path.with_name(path.name + ".dir")
    shutil.rmtree(partial, ignore_errors=True)
    pipeline_class.save_lora_weights(partial, unet_lora_layers=get_peft_model_state_dict(unet),
                                     weight_name=path.name, unet_lora_adapter_metadata=lora_config.to_dict())
    with safe_open(str(partial / path.name), framework="pt") as handle:
        header = dict(handle.metadata() or {})
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    header.update({f"nstdiff.{key}": value for key, value in metadata.items()})
    save_tensors(tensors, path, header)
    shutil.rmtree(partial, ignore_errors=True)


def _save_checkpoint(folder: Path, step: int, pipeline_class, unet, lora_config, optimizer,
                     metadata: dict[str, str]) -> Path:
    final = folder / "checkpoints" / f"step-{step:05d}"
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    _write_lora(pipeline_class, unet, lora_config, partial / LORA_FILE, {**metadata, "steps": str(step)})
    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"adamw.{index}.{key}"] = torch.as_tensor(value)
    save_tensors(tensors, partial / OPTIMIZER_FILE, {"step": str(step)})
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)  # a checkpoint folder without ".partial" is complete
    for old in _checkpoints(folder)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _checkpoints(folder: Path) -> list[Path]:
    found = [p for p in (folder / "checkpoints").glob("step-*") if p.is_dir() and not p.name.endswith(".partial")
             and (p / OPTIMIZER_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _load_checkpoint(checkpoint: Path, unet, optimizer) -> int:
    from peft.utils import set_peft_model_state_dict

    with safe_open(str(checkpoint / LORA_FILE), framework="pt") as handle:
        lora = {key.removeprefix("unet."): handle.get_tensor(key) for key in handle.keys()}
    result = set_peft_model_state_dict(unet, lora)
    if getattr(result, "unexpected_keys", None):
        raise ModelFileError(f"checkpoint '{checkpoint}' does not fit this model ({result.unexpected_keys[:2]}); "
                             "train it again with --overwrite")
    with safe_open(str(checkpoint / OPTIMIZER_FILE), framework="pt") as handle:
        step = int(handle.metadata()["step"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    state = optimizer.state_dict()
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(state)
    return step


def draw_loss_curve(losses: list[float], path: Path, size: tuple[int, int] = (640, 320)) -> Path:
    """The loss per step (grey) and its running mean over ~5 % of the steps (blue), drawn with PIL."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 60, width - 15, 15, height - 30
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    if losses:
        low, high = min(losses), max(losses)
        span = (high - low) or 1.0
        window = max(1, len(losses) // 20)
        smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
                  for i in range(len(losses))]

        def point(i: int, value: float) -> tuple[float, float]:
            x = left + (right - left) * (i / max(1, len(losses) - 1))
            return x, bottom - (bottom - top) * (value - low) / span

        for series, colour in ((losses, (190, 190, 190)), (smooth, (30, 90, 200))):
            points = [point(i, v) for i, v in enumerate(series)]
            draw.line(points if len(points) > 1 else points * 2, fill=colour, width=2)
        draw.text((4, top), f"{high:.3g}", fill="black")
        draw.text((4, bottom - 10), f"{low:.3g}", fill="black")
        draw.text((left, bottom + 8), "step 1", fill="black")
        draw.text((right - 70, bottom + 8), f"step {len(losses)}", fill="black")
    draw.text((width // 2 - 15, bottom + 8), "loss", fill="black")
    return save_png(image, path)


def read_losses(path: Path, up_to: int | None = None) -> list[tuple[int, float, float]]:
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                step = int(row["step"])
                rows.append((step, float(row["loss"]), float(row["seconds"])))
            except (KeyError, TypeError, ValueError):  # a line cut by a kill
                continue
    return [r for r in rows if up_to is None or r[0] <= up_to]


# ---- preparing a run ----

def _prepare_folder(config: LoraTraining, folder: Path, main: bool) -> Path | None:
    """Refuse a finished LoRA (unless overwrite), or find the checkpoint to resume; returns that checkpoint."""
    weights = folder / f"{config.name}.safetensors"
    state = read_state(folder)
    if state and state.status == "running" and state.pid != os.getpid():
        raise InputError(f"LoRA '{config.name}' is being trained right now by process {state.pid}; wait for it or "
                         "stop it first")
    if (weights.is_file() or (state and state.status == "finished")) and not config.overwrite:
        raise InputError(f"a LoRA named '{config.name}' already exists in '{folder}'; pick another --name or "
                         "pass --overwrite to replace it")
    if config.overwrite and main and folder.exists():
        shutil.rmtree(folder)
    checkpoints = _checkpoints(folder)
    if checkpoints:
        try:
            previous = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            previous = {}
        current = config.resume_key()
        differing = [name for name in RESUME_FIELDS if previous.get(name) != current.get(name)]
        if differing:
            details = ", ".join(f"{name} ({previous.get(name)!r} → {current.get(name)!r})" for name in differing)
            raise InputError(f"LoRA '{config.name}' has an interrupted run with different settings: {details}. "
                             "Use the same settings to resume it, or pass --overwrite to start again")
        return checkpoints[-1]
    if main and folder.exists():  # a run killed before its first checkpoint: start afresh
        for leftover in ("loss.csv", "loss.png", "samples", "checkpoints"):
            target = folder / leftover
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    return None


def caption_images(paths: list[Path], captioner: str, trigger: str, device: torch.device, settings: Settings,
                   message) -> list[str]:
    """Captions from a BLIP captioning model (Li et al. 2022), resolved like every other model (offline: a clear
    `ModelNotFoundError`); the trigger is prepended to each."""
    folder = resolve_repo(captioner, settings, message, weights=TRANSFORMERS_WEIGHTS)
    from transformers import BlipForConditionalGeneration, BlipProcessor

    try:
        processor = BlipProcessor.from_pretrained(folder)
        model = BlipForConditionalGeneration.from_pretrained(folder, use_safetensors=True).to(device).eval()
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"could not load the captioning model in '{folder}': {exc}") from None
    captions = []
    with torch.no_grad():
        for path in paths:
            inputs = processor(images=load_image(path, "training", settings), return_tensors="pt").to(device)
            text = processor.decode(model.generate(**inputs, max_new_tokens=30)[0], skip_special_tokens=True)
            captions.append(with_trigger(" ".join(text.split()) or "a picture", trigger))
            message(f"caption {path.name}: {captions[-1]}")
    return captions


def _square(image: Image.Image, side: int) -> Image.Image:
    """Resize the shorter side to `side` and cut the centre square."""
    return ImageOps.fit(image, (side, side), Image.Resampling.LANCZOS, centering=(0.5, 0.5))


class _Cache:
    """VAE latent distributions per image and flip, and text conditioning per caption, computed once."""

    def __init__(self, pipe, report: DatasetReport, captions: list[str], resolution: int, device,
                 settings: Settings):
        self.xl = hasattr(pipe, "text_encoder_2")
        means, stds = [], []
        vae = pipe.vae
        with torch.no_grad():
            for item in report.images:
                square = _square(load_image(item.path, "training", settings), resolution)
                pixels = torch.from_numpy(np.array(square)).permute(2, 0, 1).float() / 127.5 - 1
                pair = torch.stack([pixels, pixels.flip(-1)]).to(device, vae.dtype)
                dist = vae.encode(pair).latent_dist
                means.append(dist.mean.float())
                stds.append(dist.std.float())
            self.mean, self.std = torch.stack(means), torch.stack(stds)  # (images, 2 flips, C, h, w)
            unique = sorted(set(captions))
            encoded = {caption: self._encode(pipe, caption, device) for caption in unique}
        self.caption_index = torch.tensor([unique.index(c) for c in captions], device=device)
        self.embeds = torch.cat([encoded[c][0] for c in unique]).float()
        self.pooled = torch.cat([encoded[c][1] for c in unique]).float() if self.xl else None
        self.time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], dtype=torch.float32,
                                     device=device)
        scaling = vae.config.scaling_factor
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        self.scale = lambda latents: (latents - shift) * scaling

    @staticmethod
    def _encode(pipe, caption: str, device):
        if hasattr(pipe, "text_encoder_2"):
            embeds, _, pooled, _ = pipe.encode_prompt(caption, device=device, num_images_per_prompt=1,
                                                      do_classifier_free_guidance=False)
            return embeds, pooled
        embeds, _ = pipe.encode_prompt(caption, device, 1, False)
        return embeds, None

    def batch(self, images: torch.Tensor, flips: torch.Tensor, noise: torch.Tensor, device):
        """Latents sampled from each cached distribution with the given noise, plus the UNet's conditioning."""
        mean = self.mean[images, flips]
        latents = self.scale(mean + self.std[images, flips] * noise)
        captions = self.caption_index[images]
        extra = {}
        if self.xl:
            extra["added_cond_kwargs"] = {"text_embeds": self.pooled[captions],
                                          "time_ids": self.time_ids.repeat(len(images), 1)}
        return latents, self.embeds[captions], extra


def _load_pipeline(folder: Path, device: torch.device, weight_dtype: torch.dtype):
    pipe = open_pipeline(folder, torch.float32)
    if not hasattr(pipe, "unet") or not hasattr(pipe, "vae"):
        raise InputError(f"'{folder}' is a {type(pipe).__name__}; LoRA training needs a Stable Diffusion (UNet) "
                         "base such as sd15 or sdxl")
    for part in ("vae", "text_encoder", "text_encoder_2", "unet"):
        module = getattr(pipe, part, None)
        if module is not None:
            module.requires_grad_(False)
            # the VAE stays fp32: SDXL's VAE overflows in fp16 (its latents are computed once anyway)
            module.to(device, torch.float32 if part == "vae" else weight_dtype)
    return pipe


# ---- the run ----

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
    resume_from = _prepare_folder(config, folder, main) if main else None
    accelerator.wait_for_everyone()  # the main process has cleared or kept the folder; the others follow it
    if not main:
        resume_from = _prepare_folder(config, folder, main)
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
    pipeline_class = _pipeline_class(base)
    context.message(f"loading {config.base} …")
    pipe = _load_pipeline(base, device, weight_dtype)
    scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
    cache = _Cache(pipe, report, captions, config.resolution, device, settings)
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
    start = _load_checkpoint(resume_from, unet, optimizer) if resume_from else 0
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
                checkpoint = _save_checkpoint(folder, step, pipeline_class, accelerator.unwrap_model(training_unet),
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
        _write_lora(pipeline_class, accelerator.unwrap_model(training_unet), lora_config, weights, metadata)
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
