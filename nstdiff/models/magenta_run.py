"""Running Magenta's transformer networks (methods feedforward and fast-style): arithmetic, sizes, resampling, memory.

Kept apart from `nstdiff.models.magenta` (fetching and loading) so the methods share these without importing each
other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from nstdiff.errors import InputError
from nstdiff.models.magenta_nets import FastStyleNetwork
from nstdiff.models.weights import FrozenModules
from nstdiff.schema import Frozen

MIN_SIDE = 16  # the transformer downsamples by 4 and pads reflectively: smaller inputs have nothing to pad from


class NetworkOptions(Frozen):
    """Options of the methods that run Magenta's transformer (feedforward, fast-style)."""

    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="Arithmetic: auto = fp16 on CUDA, fp32 on the CPU (bf16 there is slower for these small "
                            "convolutions).")


def network_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision == "fp16" and device.type != "cuda":
        raise InputError("fp16 arithmetic needs a GPU; on the CPU use bf16 or fp32")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def resample(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic, antialiased when shrinking: bilinear blurs the strokes (and lowers the style score by 0.03)."""
    if image.shape[-2:] == (height, width):
        return image
    return F.interpolate(image, size=(height, width), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def render_peak_bytes(pixels: int) -> float:
    """Peak memory of one render: the widest activations are 32 channels at ¼ size and 8–16 at full size, a few
    copies alive (measured)."""
    return 250e6 + 400 * pixels


_LOADED = FrozenModules()  # a couple of MB each, but a library may hold many


def load_fast_style_network(path: Path, device: torch.device, dtype: torch.dtype) -> FastStyleNetwork:
    """A trained network from its safetensors file, frozen, cached (a retrained file is read again)."""
    key = (str(path), path.stat().st_mtime_ns, str(device), str(dtype))
    return _LOADED.load(key, FastStyleNetwork, path, "fast style network", device, dtype)
