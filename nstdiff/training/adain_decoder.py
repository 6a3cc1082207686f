"""Training an AdaIN decoder for any encoder (Huang & Belongie 2017, §6.2).

For content c and style s: t = AdaIN(f(c), f(s)) at relu4_1, g = decoder(t), and
    L = ‖f(g) − t‖² + λ Σ_l ‖μ(f_l(g)) − μ(f_l(s))‖² + ‖σ(f_l(g)) − σ(f_l(s))‖²   (l = relu1_1 … relu4_1).
Checkpoints (weights, Adam state and step, all safetensors: nothing is unpickled) let an interrupted run resume;
every step's losses go to a CSV next to the decoder, cut back to the checkpoint's step on resume. Runs on one
device as is, on several with `accelerate launch`.
"""
from __future__ import annotations

import csv
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field

from nstdiff.context import CancelToken, ProgressCallback, RunContext, pick_device
from nstdiff.errors import Cancelled, InputError
from nstdiff.imageio import load_image
from nstdiff.methods.adain import DECODER_LAYER, adain, mean_std
from nstdiff.methods.base import to_tensor
from nstdiff.models.decoders import CHECKPOINT_SUFFIX, AdaINDecoder, decoder_path
from nstdiff.models.encoders import load_encoder
from nstdiff.models.weights import save_safetensors
from nstdiff.schema import Frozen
from nstdiff.settings import Settings, get_settings
from nstdiff.training.checkpoints import load_checkpoint, save_checkpoint
from nstdiff.training.run_files import start_loss_log

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


class DecoderTraining(Frozen):
    content_dir: Path
    style_dir: Path
    encoder: str = Field("vgg16", description="The encoder the decoder is trained for.")
    steps: int = Field(10_000, ge=1, le=10_000_000)
    batch: int = Field(8, ge=1, le=256)
    size: int = Field(256, ge=16, le=1024, description="Training crop size in pixels.")
    learning_rate: float = Field(1e-4, gt=0, le=1.0)
    style_weight: float = Field(10.0, ge=0, le=1e6)
    checkpoint_every: int = Field(500, ge=1)
    seed: int = Field(0, ge=0)
    output: Path | None = Field(None, description="Default: the models folder, where the resolver finds it.")


@dataclass
class TrainingReport:
    path: Path
    start_step: int
    steps: int
    losses: list[float]


def image_files(folder: Path, role: str) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{role} folder '{folder}' does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{role} folder '{folder}' has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


class CropSampler:
    """Random square crops (short side resized to the crop size) with horizontal flips, as (N, 3, S, S) batches."""

    def __init__(self, files: list[Path], size: int, settings: Settings, rng: random.Random):
        self.images, self.skipped = [], []
        for path in files:
            try:
                image = load_image(path, "training", settings)
            except InputError as exc:
                self.skipped.append(f"{path.name}: {exc}")
                continue
            scale = size / min(image.size)
            self.images.append(to_tensor(image.resize((max(size, round(image.width * scale)),
                                                       max(size, round(image.height * scale)))), torch.device("cpu")))
        if not self.images:
            raise InputError(f"none of the {len(files)} training images could be read: {self.skipped[:3]}")
        self.size, self.rng = size, rng

    def batch(self, count: int) -> torch.Tensor:
        crops = []
        for _ in range(count):
            image = self.rng.choice(self.images)
            top = self.rng.randint(0, image.shape[-2] - self.size)
            left = self.rng.randint(0, image.shape[-1] - self.size)
            crop = image[..., top:top + self.size, left:left + self.size]
            crops.append(crop.flip(-1) if self.rng.random() < 0.5 else crop)
        return torch.cat(crops)


def train_decoder(config: DecoderTraining, progress: ProgressCallback | None = None,
                  cancel: CancelToken | None = None, settings: Settings | None = None) -> TrainingReport:
    from accelerate import Accelerator

    settings = settings or get_settings()
    accelerator = Accelerator(cpu=pick_device(settings.device).type == "cpu")
    context = RunContext(settings, accelerator.device, config.seed, progress, cancel)
    rng = random.Random(config.seed + accelerator.process_index)
    torch.manual_seed(config.seed)
    contents = CropSampler(image_files(config.content_dir, "content"), config.size, settings, rng)
    styles = CropSampler(image_files(config.style_dir, "style"), config.size, settings, rng)
    for skipped in contents.skipped + styles.skipped:
        context.message(f"skipped {skipped}")
    encoder = load_encoder(config.encoder, accelerator.device, settings, context.message)
    decoder = AdaINDecoder(encoder.module.width_divisor)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=config.learning_rate)
    output = config.output or decoder_path(encoder.name, settings)
    output.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = output.with_name(output.stem + CHECKPOINT_SUFFIX)
    log_path = output.with_name(output.stem + ".loss.csv")
    start = load_checkpoint(checkpoint, decoder, optimizer) if checkpoint.is_file() else 0
    if start:
        context.message(f"resuming from step {start} ({checkpoint.name})")
    decoder, optimizer = accelerator.prepare(decoder, optimizer)
    net, layers = encoder.module, sorted({*STYLE_LAYERS, DECODER_LAYER})
    losses: list[float] = []
    done = saved = start  # the last step trained, and the step of the checkpoint on disk
    if accelerator.is_main_process:
        start_loss_log(log_path, start)
    try:
        with open(log_path if accelerator.is_main_process else os.devnull, "a", newline="") as log_file:
            log = csv.writer(log_file)
            started = time.perf_counter()
            for step in range(start + 1, config.steps + 1):
                content = contents.batch(config.batch).to(accelerator.device)
                style = styles.batch(config.batch).to(accelerator.device)
                with torch.no_grad():
                    style_features = net(style, layers)
                    target = adain(net(content, [DECODER_LAYER])[DECODER_LAYER], style_features[DECODER_LAYER])
                generated = net(decoder(target), layers)  # no clamp: it would zero an untrained decoder's gradients
                content_loss = F.mse_loss(generated[DECODER_LAYER], target)
                style_loss = sum(F.mse_loss(a, b) for layer in STYLE_LAYERS
                                 for a, b in zip(mean_std(generated[layer]), mean_std(style_features[layer])))
                loss = content_loss + config.style_weight * style_loss
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                optimizer.step()
                losses.append(float(loss.detach()))
                parts = {"loss": losses[-1], "content": float(content_loss.detach()),
                         "style": float(style_loss.detach())}
                log.writerow([step, *(f"{value:.6g}" for value in parts.values()),
                              f"{time.perf_counter() - started:.2f}"])
                done = step
                if accelerator.is_main_process and (step % config.checkpoint_every == 0 or step == config.steps):
                    save_checkpoint(checkpoint, accelerator.unwrap_model(decoder), optimizer, step)
                    saved = step
                    log_file.flush()
                context.step(step, config.steps, parts, stage="train")
    except (Cancelled, KeyboardInterrupt):
        stopped = Cancelled(done, config.steps)
        stopped.args = (f"cancelled at step {done}/{config.steps}; " + (
            f"{checkpoint} (step {saved}) is kept: run the same command again to resume from it" if saved else
            "no checkpoint was reached yet: the next run starts afresh"),)
        raise stopped from None
    if accelerator.is_main_process:
        metadata = {"encoder": encoder.name, "steps": str(config.steps), "style_weight": str(config.style_weight),
                    "content_images": str(len(contents.images)), "style_images": str(len(styles.images)),
                    "size": str(config.size), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        save_safetensors(accelerator.unwrap_model(decoder), output, metadata)
    return TrainingReport(output, start, config.steps, losses)
