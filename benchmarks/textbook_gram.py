"""The baseline of `gram_benchmark.py`: the PyTorch "Neural Transfer" tutorial's Gatys loop (Gatys et al. 2016),
written out on the same VGG16 weights: content MSE at relu4_2, Gram/(C·H·W) MSE at relu1_1 … relu5_1, weights 1 and
1e6, LBFGS with its defaults over the image, starting from the content, clamped to [0, 1]."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from measuring import Run, pair_name, peak_memory_mib, reset_peak_memory, seconds_per_iteration, sync
from nstdiff.imageio import load_image, resize_long_side
from nstdiff.methods.base import to_image, to_tensor
from nstdiff.models.vgg import VGGEncoder

# the textbook loop (PyTorch "Neural Transfer" tutorial)
CONTENT_LAYERS = ["relu4_2"]
STYLE_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
CONTENT_WEIGHT, STYLE_WEIGHT = 1.0, 1e6


class Normalization(nn.Module):
    def __init__(self, encoder: VGGEncoder):
        super().__init__()
        self.encoder_normalize = encoder.normalize  # a bound method: the encoder is not registered as a child

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder_normalize(image)


class ContentLoss(nn.Module):
    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.target = target.detach()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self.loss = nn.functional.mse_loss(features, self.target)
        return features


def textbook_gram(features: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = features.size()
    flat = features.view(batch * channels, height * width)
    return flat @ flat.t() / (batch * channels * height * width)


class StyleLoss(nn.Module):
    def __init__(self, target_features: torch.Tensor):
        super().__init__()
        self.target = textbook_gram(target_features).detach()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self.loss = nn.functional.mse_loss(textbook_gram(features), self.target)
        return features


def textbook_model(encoder: VGGEncoder, content: torch.Tensor, style: torch.Tensor):
    """nn.Sequential of the VGG stack with loss modules after the chosen layers, cut after the last of them."""
    model = nn.Sequential(Normalization(encoder))
    content_losses, style_losses = [], []
    last = max(encoder.names.index(name) for name in CONTENT_LAYERS + STYLE_LAYERS)
    for name in encoder.names[: last + 1]:
        model.add_module(name, encoder.layers[name])
        if name in CONTENT_LAYERS:
            loss = ContentLoss(model(content))
            model.add_module(f"content_loss_{name}", loss)
            content_losses.append(loss)
        if name in STYLE_LAYERS:
            loss = StyleLoss(model(style))
            model.add_module(f"style_loss_{name}", loss)
            style_losses.append(loss)
    return model, content_losses, style_losses


def run_textbook(content_path: Path, style_path: Path, args, encoder: VGGEncoder, device: torch.device) -> Run:
    content_image = resize_long_side(load_image(content_path, "content"), args.size)
    style_image = load_image(style_path, "style").resize(content_image.size, Image.Resampling.LANCZOS)
    content, style = to_tensor(content_image, device), to_tensor(style_image, device)
    reset_peak_memory(device)
    started = time.perf_counter()
    with torch.no_grad():
        model, content_losses, style_losses = textbook_model(encoder, content, style)
    image = content.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([image])
    stamps: list[float] = []

    def closure():
        with torch.no_grad():
            image.clamp_(0, 1)
        optimizer.zero_grad()
        model(image)
        style_score = STYLE_WEIGHT * sum(loss.loss for loss in style_losses)
        content_score = CONTENT_WEIGHT * sum(loss.loss for loss in content_losses)
        loss = style_score + content_score
        loss.backward()
        sync(device)
        stamps.append(time.perf_counter())
        return loss

    while len(stamps) < args.textbook_steps:
        optimizer.step(closure)  # LBFGS's default max_iter=20: up to 20 evaluations a call, as in the tutorial
    with torch.no_grad():
        image.clamp_(0, 1)
    sync(device)
    total_s = time.perf_counter() - started
    peak = peak_memory_mib(device)
    output = args.out / f"{content_path.stem}__{style_path.stem}__textbook.png"
    to_image(image).save(output)
    s_per_it = seconds_per_iteration(stamps)
    height, width = content.shape[-2:]
    return Run("textbook", pair_name(content_path, style_path), (width, height), len(stamps), s_per_it, s_per_it,
               total_s, peak, output)


# -- quality ------------------------------------------------------------------------------------------------------
