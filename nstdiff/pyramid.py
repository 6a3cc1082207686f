"""Coarse-to-fine optimisation shared by the optimising image methods (Gram, AdaIN's optimisation variant).

Each level doubles the size and starts from the level below, so large outputs converge in few expensive steps and
strokes come out at a scale the coarse levels set (Gatys et al. 2017, §6: coarse-to-fine for high resolutions).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PYRAMID_MIN_SIDE = 128


def pyramid_sizes(height: int, width: int, levels: int | None) -> list[tuple[int, int]]:
    """Level sizes from coarse to fine; the finest is (height, width)."""
    long_side = max(height, width)
    if levels is None:
        levels = 1 + max(0, int(math.log2(long_side / PYRAMID_MIN_SIDE)))
    sizes = []
    for level in reversed(range(levels)):
        factor = 2**level
        sizes.append((max(16, round(height / factor)), max(16, round(width / factor))))
    return sizes


def level_steps(total: int, levels: int) -> list[int]:
    """Split the step budget over the levels, coarse first: a coarse step costs ~¼ of the next level's."""
    if levels == 1:
        return [total]
    shares = [2.0 ** (levels - 1 - i) for i in range(levels)]  # 4, 2, 1: twice the steps at half the size
    scale = total / sum(shares)
    steps = [max(1, round(s * scale)) for s in shares]
    steps[-1] = max(1, total - sum(steps[:-1]))
    return steps


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if image.shape[-2:] == (height, width):
        return image
    return F.interpolate(image, size=(height, width), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def upsample_with_detail(image: torch.Tensor, content: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The coarser level's result at (height, width), plus the content detail that level could not hold.

    A Laplacian-pyramid step: the upsampled result lacks the content's fine edges; adding them back lets the finer
    level refine strokes instead of spending its (expensive) steps re-drawing edges.
    """
    coarse_size = tuple(image.shape[-2:])
    image = resize(image, height, width).detach()
    if coarse_size == (height, width):
        return image
    content_level = resize(content, height, width)
    return image + content_level - resize(resize(content_level, *coarse_size), height, width)
