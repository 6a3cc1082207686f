"""The sizes a request's run will see and the memory it will need, estimated from the request alone (image headers,
the encoder's shape, the optimiser's state), so that the executor can refuse a job that cannot fit before it starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from PIL import Image

from nstdiff.models.encoders import ENCODERS
from nstdiff.models.vgg import BLOCKS, WIDTHS, layer_names
from nstdiff.pyramid import level_steps, pyramid_sizes
from nstdiff.schema import ImageStyleRequest
from nstdiff.settings import Settings


def style_side(request: ImageStyleRequest, settings: Settings) -> int:
    """The long side the style images are scaled to (`style_scale` sets the stroke size)."""
    return max(16, min(settings.max_output_side, round(request.size * request.controls.style_scale)))


# -- memory, estimated from the request alone (image headers, the encoder's shape, the optimiser's state) ----------
# Calibrated by the peak RSS growth of runs in fresh processes (the tables beside GramMethod and AdaINMethod): autograd
# keeps k × the encoder's activations from the input to its deepest layer used (k per method), an inference pass holds
# INFERENCE_FACTOR × its widest activation (AdaIN's decoder runs needed ≤ 2.97), optimisers keep image-sized vectors,
# and torch's first convolutions cost RUNTIME_BYTES. SAFETY_MARGIN is for other CPUs' kernels and allocators.
FLOAT_BYTES = 4
RUNTIME_BYTES = 250e6
INFERENCE_FACTOR = 3.5
LBFGS_HISTORY = 50
LBFGS_STEP_VECTORS = 3  # s and y of a step remembered, and the heap fragmenting around them (measured: 1.5 × 2)
OPTIMISER_VECTORS = {"lbfgs": 6, "adam": 4}  # the gradient and search directions (L-BFGS), the moments (Adam)
SAFETY_MARGIN = 1.2


@dataclass(frozen=True)
class EncoderProfile:
    """Per input pixel, in floats: every activation from the input to the deepest layer used (what autograd keeps
    for the backward pass) and the widest one; and the bytes of the weights."""

    kept: float
    widest: float
    weight_bytes: int


def encoder_profile(encoder: str, layers: Iterable[str]) -> EncoderProfile:
    """The profile of an encoder as `choose_encoder` names it, up to the deepest of `layers`."""
    arch = ENCODERS[encoder].arch
    widths = [width // (4 if encoder == "random" else 1) for width in WIDTHS]  # load_encoder's `random`: ¼ wide
    names = layer_names(arch)
    deepest = max((names.index(layer) for layer in layers if layer in names), default=len(names) - 1)
    kept = widest = 0.0
    for name in names[:deepest + 1]:  # conv{b}_{i}, relu{b}_{i}, pool{b}: a pool is a quarter of its block
        block = int(name[4])
        floats = widths[block - 1] / 4 ** (block if name.startswith("pool") else block - 1)
        kept, widest = kept + floats, max(widest, floats)
    convs = [width for width, count in zip(widths, BLOCKS[arch]) for _ in range(count)]  # the whole encoder loads
    weights = sum((9 * inputs + 1) * outputs for inputs, outputs in zip([3, *convs], convs))
    return EncoderProfile(kept, widest, weights * FLOAT_BYTES)


@dataclass(frozen=True)
class Footprint:
    """A request's sizes as its run will see them, read from image headers without decoding."""

    height: int
    width: int
    style_pixels: list[int]
    decoded_bytes: int  # the input images decoded at their own size, 8-bit RGB

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def fixed_bytes(self, profile: EncoderProfile) -> float:
        """What a run holds throughout: the runtime, the weights, the inputs (decoded, and as tensors)."""
        tensors = FLOAT_BYTES * 3 * (2 * self.pixels + sum(self.style_pixels))
        return RUNTIME_BYTES + profile.weight_bytes + self.decoded_bytes + tensors


def header_size(ref: Path | Image.Image) -> tuple[int, int] | None:
    """(width, height) from the image header alone; None when unreadable (the run then says why)."""
    if isinstance(ref, Image.Image):
        return ref.size
    try:
        if not Path(ref).is_file():
            return None
        with Image.open(ref) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def scaled_shape(size: tuple[int, int] | None, side: int) -> tuple[int, int]:
    """(height, width) once the long side is `side`; square, the largest it can be, when the size is unknown."""
    if size is None:
        return side, side
    scale = side / max(size)
    return max(1, round(size[1] * scale)), max(1, round(size[0] * scale))


def footprint(request: ImageStyleRequest, settings: Settings) -> Footprint:
    content = header_size(request.content) if request.content is not None else None
    styles = [header_size(style.image) for style in request.styles]
    style_pixels = [h * w for h, w in (scaled_shape(size, style_side(request, settings)) for size in styles)]
    decoded = sum(3 * w * h for w, h in filter(None, [content, *styles]))
    return Footprint(*scaled_shape(content, request.size), style_pixels, decoded)


def inference_bytes(pixels: int, profile: EncoderProfile) -> float:
    """A forward pass without autograd (style features, AdaIN's decoder) at `pixels`."""
    return pixels * FLOAT_BYTES * INFERENCE_FACTOR * profile.widest


def optimising_run_bytes(shape: Footprint, profile: EncoderProfile, pyramid_levels: int | None, steps: int,
                         optimizer: str, factor: float) -> float:
    """A coarse-to-fine optimisation (Gram, AdaIN's variant): what it holds throughout, plus the largest of the
    style images' features and one step at each level (`factor` × the activations, the optimiser's vectors)."""
    sizes = pyramid_sizes(shape.height, shape.width, pyramid_levels)
    peak = inference_bytes(max(shape.style_pixels, default=0), profile)
    for (height, width), count in zip(sizes, level_steps(steps, len(sizes))):
        vectors = OPTIMISER_VECTORS[optimizer] + (LBFGS_STEP_VECTORS * min(count - 1, LBFGS_HISTORY)
                                                  if optimizer == "lbfgs" else 0)
        peak = max(peak, height * width * FLOAT_BYTES * (factor * profile.kept + 3 * vectors))
    return shape.fixed_bytes(profile) + peak


def mrf_search_bytes(shape: Footprint, encoder: str, layers: Iterable[str], patches: int) -> float:
    """What the MRF patch loss (`losses_mrf`) adds to a Gram run at the finest level: each style's patch rows, raw and
    normalised (S × `patches` × 9C × 2), and its features; per evaluation, the matched patches and their weighted
    copy (2 × 9C per output position) and one chunk of the search's responses, for the widest layer; the folded
    targets autograd keeps until the backward pass, for every layer."""
    from nstdiff.losses_mrf import SEARCH_CHUNK

    divisor = 4 if encoder == "random" else 1  # load_encoder's `random`: ¼ wide
    known = layer_names(ENCODERS[encoder].arch)
    held = transient = 0.0
    for layer in filter(known.__contains__, layers):  # (the run names an unknown layer)
        block = int(layer[4])
        channels, scale = WIDTHS[block - 1] // divisor, 4 ** (block - 1)
        positions = shape.pixels / scale
        held += len(shape.style_pixels) * patches * 9 * channels * 2 + channels * sum(shape.style_pixels) / scale
        held += (channels + 1) * positions
        transient = max(transient, (2 * 9 * channels + SEARCH_CHUNK) * positions)
    return FLOAT_BYTES * (held + transient)
