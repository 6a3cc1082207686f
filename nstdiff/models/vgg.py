"""The VGG conv stack (Simonyan & Zisserman 2015) with named layers, returning the activations asked for.

Layer names follow the papers: `conv{block}_{i}`, `relu{block}_{i}`, `pool{block}`. Inputs are RGB in [0, 1]; the
encoder applies its own normalisation (`caffe`, `imagenet`, or `conv`: a 1×1 input convolution from the checkpoint).
Which weights each named encoder loads is `encoders`' business.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from nstdiff.errors import InputError
from nstdiff.models.weights import load_safetensors

BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)
CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67892)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def layer_names(arch: str) -> list[str]:
    """All layer names of a VGG conv stack, in order."""
    names = []
    for block, convs in enumerate(BLOCKS[arch], start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


class VGGEncoder(nn.Module):
    """A VGG conv stack that returns the activations of the requested layers, stopping at the deepest one."""

    def __init__(self, arch: str, normalization: str, width_divisor: int = 1, name: str | None = None,
                 padding: str = "zeros", ceil_mode: bool = False):
        super().__init__()
        self.arch, self.normalization, self.name = arch, normalization, name or arch
        self.width_divisor = width_divisor
        self.names = layer_names(arch)
        layers: dict[str, nn.Module] = {}
        if normalization == "conv":  # the checkpoint's own 1×1 convolution maps RGB in [0, 1] to its input space
            layers["input"] = nn.Conv2d(3, 3, 1)
            self.names.insert(0, "input")
        channels = 3
        for block, convs in enumerate(BLOCKS[arch], start=1):
            width = WIDTHS[block - 1] // width_divisor
            for i in range(1, convs + 1):
                layers[f"conv{block}_{i}"] = nn.Conv2d(channels, width, 3, padding=1, padding_mode=padding)
                layers[f"relu{block}_{i}"] = nn.ReLU(inplace=False)
                channels = width
            layers[f"pool{block}"] = nn.MaxPool2d(2, 2, ceil_mode=ceil_mode)
        self.layers = nn.ModuleDict(layers)
        if normalization == "caffe":
            self.register_buffer("shift", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1) / 255.0)
            self.register_buffer("scale", torch.full((1, 3, 1, 1), 255.0))
        elif normalization == "conv":
            self.register_buffer("shift", torch.zeros(1, 3, 1, 1))
            self.register_buffer("scale", torch.ones(1, 3, 1, 1))
        else:
            self.register_buffer("shift", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("scale", 1.0 / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def check_layers(self, layers: Iterable[str]) -> None:
        unknown = [name for name in layers if name not in self.layers]
        if unknown:
            raise InputError(
                f"unknown layer(s) {', '.join(unknown)} for encoder '{self.name}'; "
                f"layers are named like relu1_1 … relu5_{BLOCKS[self.arch][-1]} (conv*, relu*, pool*)"
            )

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        if self.normalization == "caffe":
            image = image.flip(1)  # RGB → BGR
        return (image - self.shift) * self.scale

    def forward(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        self.check_layers(wanted)
        out: dict[str, torch.Tensor] = {}
        x = self.normalize(image)
        for name in self.names:
            x = self.layers[name](x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out

    def load_safetensors(self, path: Path) -> None:
        """Load weights named `conv1_1.weight` …; wrong names or shapes raise `ModelFileError`."""
        load_safetensors(self.layers, path, f"{self.arch} encoder")
