"""Region masks: which style goes where, and what stays untouched (guided Gram matrices, Gatys et al. 2017 §4).

A mask is an image of the content's size painted in flat colours. By default style 1 is white, style 2 red, then
green, blue, yellow, magenta, cyan, orange; black always means "leave the content untouched". Other colours can be
named per style with `mask_colors`. Anti-aliased edges (blends of two known colours) are snapped to the nearest one;
a mask in which more than 1 % of the pixels are far from every known colour is refused: it was not meant as a mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nstdiff.errors import InputError
from nstdiff.schema import parse_hex

DEFAULT_COLORS = ("#ffffff", "#ff0000", "#00ff00", "#0000ff", "#ffff00", "#ff00ff", "#00ffff", "#ff8000")
KEEP_COLOR = "#000000"
SNAP_DISTANCE = 80.0  # RGB distance under which a pixel counts as a palette colour
MAX_UNKNOWN_FRACTION = 0.01
CHUNK = 1 << 20


@dataclass(frozen=True)
class RegionMasks:
    """Soft masks at the output size: one (H, W) per style, plus the untouched region."""

    styles: torch.Tensor  # (S, H, W), each pixel's weights sum to 1 - keep
    keep: torch.Tensor  # (H, W)

    def at(self, height: int, width: int) -> "RegionMasks":
        def resize(masks: torch.Tensor) -> torch.Tensor:
            return F.interpolate(masks[None], size=(height, width), mode="area")[0]

        return RegionMasks(resize(self.styles), resize(self.keep[None])[0])


def _label(pixels: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest palette index of each pixel, and whether it is far from every palette colour."""
    distances = np.linalg.norm(pixels[:, None, :] - palette[None], axis=2)
    order = distances.argsort(1)
    unknown = distances.min(1) > SNAP_DISTANCE
    if unknown.any():  # a blend of its two nearest colours is an anti-aliased edge, not an unknown colour
        a, b, p = palette[order[unknown, 0]], palette[order[unknown, 1]], pixels[unknown]
        t = np.clip(((p - a) * (b - a)).sum(1) / ((b - a) ** 2).sum(1), 0, 1)
        off_segment = np.linalg.norm(p - (a + t[:, None] * (b - a)), axis=1)
        unknown[unknown] = off_segment > SNAP_DISTANCE
    return order[:, 0], unknown


def load_region_masks(
    mask: Path | Image.Image, content_size: tuple[int, int], n_styles: int, colors: list[str] | None, settings=None,
    names: list[str] | None = None,
) -> RegionMasks:
    """Parse a painted mask into per-style regions; `content_size` is the content image's (width, height); `names`
    says what each region is, for the error a person sees (default: style 1, style 2 …)."""
    from nstdiff.imageio import load_image

    image = load_image(mask, "mask", settings)
    if image.size != content_size:
        raise InputError(
            f"mask is {image.width}x{image.height} but the content image is {content_size[0]}x{content_size[1]}; "
            "paint the mask on the content image or resize it to the same size"
        )
    colors = list(colors or DEFAULT_COLORS[:n_styles])
    if len(colors) != n_styles:
        raise InputError(f"mask_colors names {len(colors)} colours but there are {n_styles} styles; give one per style")
    palette_hex = colors + [KEEP_COLOR]
    if len(set(palette_hex)) != len(palette_hex):
        raise InputError(f"mask colours must differ from each other and from black (untouched): {palette_hex}")
    palette = np.array([parse_hex(c) for c in palette_hex], dtype=np.float32)
    pixels = np.asarray(image, dtype=np.uint8).reshape(-1, 3)
    nearest = np.empty(len(pixels), np.int64)
    unknown = np.empty(len(pixels), bool)
    for start in range(0, len(pixels), CHUNK):  # in chunks: pixels × palette distances of a 40 MP mask are GBs
        end = start + CHUNK
        nearest[start:end], unknown[start:end] = _label(pixels[start:end].astype(np.float32), palette)
    if unknown.mean() > MAX_UNKNOWN_FRACTION:
        odd = pixels[unknown][:100_000].astype(int)
        values, counts = np.unique(odd, axis=0, return_counts=True)
        top = ", ".join("#%02x%02x%02x" % tuple(values[i]) for i in np.argsort(-counts)[:3])
        legend = ", ".join(f"{name} = {c}" for name, c in zip(names or [f"style {i + 1}" for i in range(n_styles)],
                                                               colors))
        raise InputError(
            f"mask has colours that are not in its palette ({unknown.mean():.0%} of pixels, e.g. {top}); "
            f"paint with {legend}, and black for untouched"
        )
    onehot = np.eye(len(palette_hex), dtype=np.float32)[nearest].reshape(image.height, image.width, -1)
    masks = torch.from_numpy(onehot).permute(2, 0, 1).contiguous()
    return RegionMasks(styles=masks[:-1], keep=masks[-1])
