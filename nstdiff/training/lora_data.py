"""What a LoRA training job is given and what it leaves on disk, without torch: the app's Train tab and the LoRA
library import this module to build configs, check a folder of images and follow a running job from another process.

What training leaves in a LoRA's folder (the library's `<models_path>/loras/<name>/`, see `nstdiff.loras`):
    <name>.safetensors       the final LoRA (diffusers format, `load_lora_weights(folder, weight_name=…)`), header
                             metadata `nstdiff.<key>` (see `METADATA_KEYS`)
    lora.json                the same metadata plus the training config
    config.json              the training config of the run in progress (compared on resume)
    state.json               status, step, loss, speed, eta, pid, last checkpoint; rewritten every step
    loss.csv, loss.png       every step's loss and its curve
    samples/step-XXXXX.png   an image made with the LoRA at that step (fixed seed, prompt from the trigger)
    checkpoints/step-XXXXX/  lora.safetensors + optimizer.safetensors (the last two are kept)
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import BaseModel, Field, field_validator, model_validator

from nstdiff.errors import InputError
from nstdiff.imageio import load_image
from nstdiff.loras import NAME_PATTERN
from nstdiff.models.diffusion_catalogue import load_catalogue
from nstdiff.schema import Frozen
from nstdiff.settings import Settings, get_settings

LORA_FORMAT = "nstdiff-lora-1"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
MAX_IMAGES = 2000
MIN_IMAGES = 2
MAX_CAPTION_CHARS = 1000
CAPTION_TEMPLATE = "a picture in the style of {trigger}"
CAPTIONER_REPO = "Salesforce/blip-image-captioning-base"
METADATA_KEYS = ("format", "name", "base", "architecture", "trigger", "rank", "steps", "dataset_size", "resolution",
                 "captions", "learning_rate", "created", "version")
# Fields that change what is learnt: a run resumes only when these match the interrupted one.
RESUME_FIELDS = ("images", "trigger", "captions", "captioner", "base", "rank", "steps", "learning_rate",
                 "resolution", "batch", "grad_accum", "mixed_precision", "seed")


def native_resolution(base: str) -> int:
    """The image side a base model was trained at: its UNet's sample size × 8 when its folder is at hand, else by
    family (SDXL 1024; SD 1.5, SD-Turbo and SDXL-Turbo 512)."""
    config = Path(base).expanduser() / "unet" / "config.json"
    if config.is_file():
        try:
            return int(json.loads(config.read_text())["sample_size"]) * 8
        except (ValueError, KeyError, TypeError):
            pass
    family = load_catalogue().families.get(base)
    return 1024 if family is not None and family.architecture == "sdxl" and not family.turbo else 512


class LoraTraining(Frozen):
    """One LoRA training job (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"): the UNet's
    attention projections W get a trainable update (α/r)·B·A of rank r, learnt with the denoising loss of the base."""

    images: Path = Field(description="Folder of training images (PNG, JPEG, WebP, BMP, TIFF); sidecar .txt captions.")
    name: str = Field(pattern=NAME_PATTERN, description="Name of the LoRA (lower-case letters, digits, - _); its folder name.")
    trigger: str | None = Field(None, min_length=1, max_length=100,
                                description="Word that calls up the style in prompts (default: the name).")
    captions: Literal["none", "file", "auto"] = Field(
        "none", description="none: a template with the trigger; file: image.txt next to each image; auto: a "
        "captioning model.")
    captioner: str = Field(CAPTIONER_REPO, description="Captioning model for --captions auto (repo id or folder).")
    base: str = Field("sd15", description="Base model: a family (sd15, sdxl, …), a repo id or a pipeline folder.")
    rank: int = Field(8, ge=1, le=256, description="LoRA rank r (alpha = r).")
    steps: int = Field(1000, ge=1, le=200_000, description="Optimiser steps.")
    learning_rate: float = Field(1e-4, gt=0, le=1.0, description="AdamW learning rate.")
    resolution: int | None = Field(None, ge=32, le=2048, multiple_of=8, description="Training image side in pixels "
                                   "(default: the base's native size: 1024 for SDXL, 512 for SD 1.5 and the Turbos).")
    batch: int = Field(1, ge=1, le=64, description="Images per step and device.")
    grad_accum: int = Field(1, ge=1, le=256, description="Batches accumulated per optimiser step.")
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field(
        "auto", description="Autocast precision, weights stay fp32 (auto: bf16 on GPUs that have it, else fp16; none "
        "on the CPU).")
    gradient_checkpointing: bool | None = Field(None, description="Recompute activations to save memory (default: "
                                                "on for CUDA).")
    checkpoint_every: int = Field(250, ge=1, le=200_000, description="Steps between resumable checkpoints.")
    sample_every: int = Field(250, ge=0, le=200_000, description="Steps between sample images (0: none).")
    sample_steps: int = Field(20, ge=1, le=200, description="Denoising steps of each sample image.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the batches, noise and sample images.")
    overwrite: bool = Field(False, description="Replace a finished LoRA of the same name.")

    @field_validator("trigger")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\n" in value):
            raise ValueError("the trigger is one line of text, e.g. 'mystyle'")
        return value.strip() if value else value

    @model_validator(mode="before")
    @classmethod
    def _native_resolution(cls, data):
        if isinstance(data, dict) and data.get("resolution") is None:
            data = {**data, "resolution": native_resolution(str(data.get("base") or "sd15"))}
        return data

    @property
    def trigger_word(self) -> str:
        return self.trigger or self.name

    @property
    def sample_prompt(self) -> str:
        return CAPTION_TEMPLATE.format(trigger=self.trigger_word)

    def resume_key(self) -> dict:
        data = self.model_dump(mode="json", include=set(RESUME_FIELDS))
        data["images"] = str(Path(self.images).expanduser().resolve())
        return data


class DatasetImage(BaseModel):
    path: Path
    width: int
    height: int
    format: str
    caption: str | None  # None until `auto` captions are made
    caption_source: Literal["template", "file", "auto"]


class SkippedFile(BaseModel):
    name: str
    reason: str


class DatasetReport(BaseModel):
    """What `inspect_dataset` found: the usable images and every file it left out, with the reason."""

    folder: Path
    images: list[DatasetImage]
    skipped: list[SkippedFile] = Field(default_factory=list)
    upscaled: list[str] = Field(default_factory=list)  # shorter side under the resolution: usable but blurry
    missing_captions: list[str] = Field(default_factory=list)  # --captions file without a sidecar: template used
    formats: dict[str, int] = Field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.images)

    def messages(self) -> list[str]:
        lines = [f"{self.count} training images ({', '.join(f'{n} {f}' for f, n in sorted(self.formats.items()))})"]
        lines += [f"skipped {s.name}: {s.reason}" for s in self.skipped]
        if self.upscaled:
            lines.append(f"{len(self.upscaled)} images are smaller than the training resolution and are upscaled: "
                         f"{', '.join(self.upscaled[:5])}{' …' if len(self.upscaled) > 5 else ''}")
        if self.missing_captions:
            lines.append(f"{len(self.missing_captions)} images have no caption file and use the template: "
                         f"{', '.join(self.missing_captions[:5])}{' …' if len(self.missing_captions) > 5 else ''}")
        return lines


def _caption_for(path: Path, config: LoraTraining) -> tuple[str | None, str]:
    """(caption, source) for one image; a sidecar caption gets the trigger prepended when it lacks it."""
    template = CAPTION_TEMPLATE.format(trigger=config.trigger_word)
    if config.captions == "auto":
        return None, "auto"
    if config.captions == "file":
        sidecar = path.with_suffix(".txt")
        try:
            text = " ".join(sidecar.read_text(encoding="utf-8").split())[:MAX_CAPTION_CHARS]
        except (OSError, UnicodeDecodeError):
            text = ""
        if text:
            return with_trigger(text, config.trigger_word), "file"
    return template, "template"


def with_trigger(caption: str, trigger: str) -> str:
    """The trigger word must be in every caption, or it never learns to call up the style."""
    return caption if trigger.lower() in caption.lower() else f"{trigger}, {caption}"


def inspect_dataset(folder: Path | str, config: LoraTraining, settings: Settings | None = None) -> DatasetReport:
    """Read every image in `folder` once (fully decoded, with the input limits) before any model is loaded.

    Unreadable, damaged and too small (shorter side under half the resolution) files are skipped and listed; fewer
    than two usable images, a missing or empty folder, or more than `MAX_IMAGES` images raise an `InputError`.
    """
    settings = settings or get_settings()
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"training image folder '{folder}' does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"training image folder '{folder}' has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                         "put 10–50 images of the style in it")
    if len(files) > MAX_IMAGES:
        raise InputError(f"training image folder '{folder}' has {len(files)} images; at most {MAX_IMAGES} are used "
                         "for a LoRA: pick the best ones into a new folder")
    report = DatasetReport(folder=folder, images=[])
    formats: Counter[str] = Counter()
    smallest = config.resolution // 2
    for path in files:
        try:
            with Image.open(path) as raw:
                kind = raw.format or path.suffix.lstrip(".").upper()
            image = load_image(path, "training", settings)
        except InputError as exc:
            report.skipped.append(SkippedFile(name=path.name, reason=str(exc)))
            continue
        except Exception as exc:  # Image.open's own errors on files load_image would also refuse
            report.skipped.append(SkippedFile(name=path.name, reason=f"not a readable image ({exc})"))
            continue
        width, height = image.size
        if min(width, height) < smallest:
            report.skipped.append(SkippedFile(name=path.name, reason=f"too small: {width}x{height}, the shorter "
                                              f"side must be at least {smallest} px for resolution "
                                              f"{config.resolution}"))
            continue
        if min(width, height) < config.resolution:
            report.upscaled.append(path.name)
        caption, source = _caption_for(path, config)
        if config.captions == "file" and source == "template":
            report.missing_captions.append(path.name)
        formats[kind] += 1
        report.images.append(DatasetImage(path=path, width=width, height=height, format=kind, caption=caption,
                                          caption_source=source))
    report.formats = dict(formats)
    if report.count < MIN_IMAGES:
        why = "; ".join(f"{s.name}: {s.reason}" for s in report.skipped[:3])
        raise InputError(f"training image folder '{folder}' has {report.count} usable image"
                         f"{'' if report.count == 1 else 's'}; at least {MIN_IMAGES} are needed (10–50 work best)"
                         + (f". Skipped: {why}" if why else ""))
    return report


# ---- the job's files, readable from any process ----

class LoraState(BaseModel):
    """`state.json`: where a training job is; `status` reads "interrupted" when a running job's process is gone."""

    status: Literal["running", "finished", "failed", "cancelled", "interrupted"]
    step: int = 0
    steps: int = 0
    loss: float | None = None
    seconds_per_step: float | None = None
    eta_seconds: float | None = None
    pid: int | None = None
    last_checkpoint: str | None = None  # "checkpoints/step-XXXXX", relative to the LoRA folder
    error: str | None = None
    updated: str | None = None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def read_state(folder: Path) -> LoraState | None:
    """The job's state, or None when it has none (never started, or not a LoRA folder)."""
    try:
        state = LoraState.model_validate_json((Path(folder) / "state.json").read_text())
    except (OSError, ValueError):
        return None
    if state.status == "running" and state.pid and not _process_alive(state.pid):
        state.status = "interrupted"
    return state
