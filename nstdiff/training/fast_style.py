"""Training your own fast style network: Johnson, Alahi & Fei-Fei 2016 ("Perceptual Losses for Real-Time Style
Transfer and Super-Resolution"), started from Magenta's arbitrary-style network (Ghiasi et al. 2017).

Johnson et al. train one feed-forward transformer T per painting s on photos c against a fixed VGG φ:
    L(c) = λ_s Σ_l ‖G_l(T(c)) − G_l(s)‖²_F / ‖G_l(s)‖²_F + λ_c ‖φ_j(T(c)) − φ_j(c)‖² / ‖φ_j(c)‖² + λ_tv TV(T(c))
with G_l the Gram matrix of layer l (`nstdiff.losses`, each term normalised by its target's energy), style layers
relu1_2, relu2_2, relu3_3, relu4_3 weighted 1/4 each and content layer relu2_2 (their §3). Rather than a random T
trained for 40k steps on COCO, we start from Magenta's trained transformer T(c, S), whose conditional instance norms
read a style vector S: S becomes a learnt embedding initialised with the predictor's vector of the painting, so step
0 renders exactly as the arbitrary network does and training specialises T and S to this one painting (AdamW on
both). The painting's Grams are taken once, its long side at the crop resolution; the photos are random square crops
with flips (`CropSampler`), each step's drawn from (seed, step), so a resumed run repeats the same batches. One device
through accelerate: fp32 on the CPU, autocast mixed precision on CUDA (weights and losses in fp32). The files a job
writes are described in `nstdiff.training.fast_style_data`.
"""
from __future__ import annotations

import copy
import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from nstdiff.context import CancelToken, ProgressCallback, RunContext, pick_device
from nstdiff.imageio import load_image, resize_long_side, save_png
from nstdiff.losses import FeatureContentLoss, GramStyleLoss, gram_matrix, total_variation
from nstdiff.methods.base import to_image, to_tensor
from nstdiff.models.magenta_nets import FastStyleNetwork
from nstdiff.models.encoders import load_encoder
from nstdiff.models.magenta import load_magenta, style_vector
from nstdiff.models.weights import save_safetensors
from nstdiff.settings import Settings, get_settings
from nstdiff.training.adain_decoder import CropSampler
from nstdiff.training.checkpoints import KEEP_CHECKPOINTS, load_checkpoint, save_checkpoint
from nstdiff.training.fast_style_data import (META_FILE, NETWORK_FILE, FastStyleTraining, checkpoints,
                                              network_folder, resume_point, training_photos)
from nstdiff.training.lora import autocast_precision
from nstdiff.training.run_files import StateFile, draw_loss_curve, read_losses, start_loss_log
from nstdiff.version import __version__

STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONTENT_LAYERS = ("relu2_2",)
FINAL_MEAN_STEPS = 20  # the losses meta.json reports: their mean over the last steps (one crop is noisy)


@dataclass
class FastStyleReport:
    folder: Path
    network: Path  # <folder>/network.safetensors
    start_step: int  # 0, or the checkpoint step this run resumed from
    steps: int
    losses: list[float]  # this run's steps
    meta: dict


def _clear_for_a_fresh_start(config: FastStyleTraining, folder: Path) -> None:
    """--overwrite removes everything; otherwise what a run stopped before its first checkpoint left goes."""
    if config.overwrite:
        shutil.rmtree(folder, ignore_errors=True)
    for leftover in ("loss.csv", "loss.png", "samples", "checkpoints"):
        target = folder / leftover
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)


def train_fast_style(config: FastStyleTraining, progress: ProgressCallback | None = None,
                     cancel: CancelToken | None = None, settings: Settings | None = None) -> FastStyleReport:
    """Train (or resume) the network `config.name` into `<models_path>/fast-styles/<name>/` (module docstring)."""
    from accelerate import Accelerator

    settings = settings or get_settings()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    photos = training_photos(config, settings)  # before any model loads or any file is touched
    device = pick_device(settings.device)
    accelerator = Accelerator(cpu=device.type == "cpu",
                              mixed_precision=autocast_precision(config.mixed_precision, device))
    context = RunContext(settings, accelerator.device, config.seed, progress, cancel)
    folder = network_folder(config.name, settings)
    resume_from = resume_point(config, folder)
    if resume_from is None:
        _clear_for_a_fresh_start(config, folder)
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.resume_key(), indent=2))
    state = StateFile(folder / "state.json", config.steps, enabled=True)
    state.update(status="running", step=0, error=None)
    with state.recording_the_end():
        return _train(config, photos, folder, resume_from, accelerator, context, state, settings)


class _Losses:
    """The perceptual losses against one painting: Gram style on STYLE_LAYERS, features on CONTENT_LAYERS, TV."""

    def __init__(self, encoder, painting: torch.Tensor, config: FastStyleTraining):
        self.encoder, self.config = encoder, config
        with torch.no_grad():
            features = encoder(painting, STYLE_LAYERS)
        self.style = GramStyleLoss({layer: [gram_matrix(features[layer])] for layer in STYLE_LAYERS},
                                   {layer: 1 / len(STYLE_LAYERS) for layer in STYLE_LAYERS})

    def __call__(self, output: torch.Tensor, photos: torch.Tensor, autocast) -> dict[str, torch.Tensor]:
        with autocast():
            features = self.encoder(output, {*STYLE_LAYERS, *CONTENT_LAYERS})
            with torch.no_grad():
                targets = self.encoder(photos, CONTENT_LAYERS)
        # the Gram sums overflow fp16: losses in fp32
        features = {layer: value.float() for layer, value in features.items()}
        style = sum(self.style({layer: value[i:i + 1] for layer, value in features.items()})
                    for i in range(len(output))) / len(output)  # gram_matrix takes one image
        content = FeatureContentLoss({layer: targets[layer].float() for layer in CONTENT_LAYERS})(features)
        tv = total_variation(output.float())
        total = self.config.style_weight * style + self.config.content_weight * content + self.config.tv_weight * tv
        return {"loss": total, "content": content, "style": style}


def _sample(network: FastStyleNetwork, photo: torch.Tensor, path: Path, autocast) -> Path:
    with torch.no_grad(), autocast():
        image = network(photo).float()
    return save_png(to_image(image), path)


def _train(config: FastStyleTraining, photos: list[Path], folder: Path, resume_from: Path | None, accelerator,
           context: RunContext, state: StateFile, settings: Settings) -> FastStyleReport:
    device = accelerator.device
    predictor, pretrained = load_magenta(settings, device, torch.float32, context.message)
    encoder = load_encoder(config.encoder, device, settings, context.message).module
    painting = load_image(config.style, "painting", settings)
    held_out, training = photos[-1], photos[:-1]
    sampler = CropSampler(training, config.resolution, settings, random.Random(config.seed))
    for skipped in sampler.skipped:
        context.message(f"skipped {skipped}")
    sample_photo = to_tensor(resize_long_side(load_image(held_out, "sample", settings), config.resolution), device)
    losses = _Losses(encoder, to_tensor(resize_long_side(painting, config.resolution), device), config)
    network = FastStyleNetwork(copy.deepcopy(pretrained).requires_grad_(True)).to(device)
    with torch.no_grad():  # the predictor reads the painting's centre square at its training size
        network.embedding.copy_(style_vector(predictor, to_tensor(painting, device)))
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate)
    start = load_checkpoint(resume_from, network, optimizer) if resume_from else 0
    if start:
        context.message(f"resumed from step {start} ({resume_from.relative_to(folder)})")
    else:
        _sample(network, sample_photo, folder / "samples" / "step-00000.png", accelerator.autocast)
    network, optimizer = accelerator.prepare(network, optimizer)
    log_path = folder / "loss.csv"
    history = read_losses(log_path, up_to=start)
    start_loss_log(log_path, start)  # the steps past the checkpoint are run again: their rows go
    elapsed_before = history[-1][2] if history else 0.0
    last_checkpoint = str(resume_from.relative_to(folder)) if resume_from else None
    state.update(step=start, last_checkpoint=last_checkpoint)
    run_losses: list[dict[str, float]] = []
    started = time.perf_counter()
    with open(log_path, "a", newline="", buffering=1) as log:
        for step in range(start + 1, config.steps + 1):
            sampler.rng = random.Random(config.seed * 1_000_003 + step)
            photos_batch = sampler.batch(config.batch).to(device)
            with accelerator.autocast():
                output = network(photos_batch)
            parts = losses(output, photos_batch, accelerator.autocast)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(parts["loss"])
            optimizer.step()
            values = {key: float(value.detach()) for key, value in parts.items()}
            run_losses.append(values)
            seconds = elapsed_before + time.perf_counter() - started
            log.write(f"{step},{values['loss']:.6g},{values['content']:.6g},{values['style']:.6g},{seconds:.2f}\n")
            if step % config.checkpoint_every == 0 and step < config.steps:
                last_checkpoint = _checkpoint(folder, step, accelerator.unwrap_model(network), optimizer)
                _sample(network, sample_photo, folder / "samples" / f"step-{step:05d}.png", accelerator.autocast)
            per_step = (time.perf_counter() - started) / (step - start)
            state.update(step=step, loss=values["loss"], seconds_per_step=per_step,
                         eta_seconds=per_step * (config.steps - step), last_checkpoint=last_checkpoint)
            context.step(step, config.steps, values, stage="train")
    network = accelerator.unwrap_model(network)
    meta = _finish(config, folder, network, photos, run_losses)
    _sample(network, sample_photo, folder / "samples" / f"step-{config.steps:05d}.png", accelerator.autocast)
    state.update(status="finished", step=config.steps, eta_seconds=0.0)
    return FastStyleReport(folder, folder / NETWORK_FILE, start, config.steps, [v["loss"] for v in run_losses], meta)


def _checkpoint(folder: Path, step: int, network: FastStyleNetwork, optimizer) -> str:
    """Weights + AdamW state at `step` (written atomically); the oldest beyond KEEP_CHECKPOINTS go."""
    path = folder / "checkpoints" / f"step-{step:05d}.safetensors"
    path.parent.mkdir(exist_ok=True)
    save_checkpoint(path, network, optimizer, step)
    for old in checkpoints(folder)[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return str(path.relative_to(folder))


def _finish(config: FastStyleTraining, folder: Path, network: FastStyleNetwork, photos: list[Path],
            run_losses: list[dict[str, float]]) -> dict:
    """network.safetensors with its metadata, meta.json and the loss curve."""
    rows = read_losses(folder / "loss.csv")
    recent = run_losses[-FINAL_MEAN_STEPS:]
    final = {key: sum(v[key] for v in recent) / len(recent) for key in ("style", "content")} if recent else {}
    meta = {"name": config.name, "painting": config.style.name, "photos": len(photos) - 1, "sample": photos[-1].name,
            "steps": config.steps, "resolution": config.resolution, "encoder": config.encoder,
            "style_weight": config.style_weight, "content_weight": config.content_weight,
            "tv_weight": config.tv_weight, "learning_rate": config.learning_rate, "batch": config.batch,
            "style_loss": final.get("style"), "content_loss": final.get("content"),
            "seconds": rows[-1][2] if rows else None, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "version": __version__}
    save_safetensors(network, folder / NETWORK_FILE, {key: str(value) for key, value in meta.items()})
    (folder / META_FILE).write_text(json.dumps(meta, indent=2))
    draw_loss_curve([loss for _, loss, _ in rows], folder / "loss.png")
    return meta
