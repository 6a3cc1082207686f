"""Where each style goes, from a request's controls: the one place that turns a painted mask or regions named in words
into the `RegionMasks` every method consumes (guided Grams, AdaIN/feed-forward blends, diffusion inpainting areas),
and the style images' own masks (semantic correspondence, Gatys et al. 2017 §4: the content's sky takes the style's
sky).

Words: `regions` give each style the union of its phrases' masks; `only` gives every style (by its blend weight) what
its phrases name; `except` takes what its phrases name out of every style's region. What no style covers stays
untouched; where regions overlap, their styles share the pixel.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from nstdiff.controls.masks import RegionMasks, load_region_masks
from nstdiff.controls.words import words_mask
from nstdiff.errors import InputError
from nstdiff.imageio import load_image
from nstdiff.models.resolver import Message
from nstdiff.schema import Controls, ImageRef
from nstdiff.settings import Settings


def resolve_regions(controls: Controls, content: Image.Image, size: tuple[int, int], names: list[str],
                    style_weights: list[float], settings: Settings, device: torch.device,
                    message: Message | None = None) -> tuple[RegionMasks | None, list[str]]:
    """The regions at `size` = (width, height) of the output for `content` (the photo as given), one per style
    (a run without style images, e.g. a text prompt, counts as one style), and a note per mask from words giving its
    area; None when the whole photo is styled. `names`: what each colour of a painted mask stands for (the method's
    `mask_regions`)."""
    width, height = size
    if controls.mask is not None:
        painted = load_region_masks(controls.mask, content.size, len(names), controls.mask_colors, settings,
                                    names=names)
        return painted.at(height, width), []
    if not controls.uses_words:
        return None, []
    notes: list[str] = []

    def region(phrases: list[str]) -> torch.Tensor:
        found = words_mask(content, phrases, size, controls.mask_threshold, controls.mask_feather, settings, device,
                           message)
        notes.append(f"mask '{', '.join(phrases)}': {found.area:.1%} of the photo")
        return found.mask

    weights = style_weights or [1.0]
    if controls.regions:
        styles = torch.zeros(len(weights), height, width)
        for named in controls.regions:
            styles[named.style - 1] = torch.maximum(styles[named.style - 1], region(named.where))
    else:
        area = region(controls.only) if controls.only else torch.ones(height, width)
        styles = torch.stack([weight * area for weight in weights])
    if controls.except_:
        styles = styles * (1 - region(controls.except_))
    styles = styles / styles.sum(0).clamp_min(1.0)  # overlapping regions share their pixels
    return RegionMasks(styles=styles, keep=(1 - styles.sum(0)).clamp(0, 1)), notes


def load_style_masks(masks: list[ImageRef | None] | None, styles: list[Image.Image],
                     settings: Settings) -> list[torch.Tensor | None]:
    """Each style image's mask as (H, W) in [0, 1] at that image's size (its luminance: white = take the style from
    here); None where a style has none."""
    if masks is None:
        return [None] * len(styles)
    loaded: list[torch.Tensor | None] = []
    for index, (mask, style) in enumerate(zip(masks, styles), start=1):
        if mask is None:
            loaded.append(None)
            continue
        image = load_image(mask, f"style mask {index}", settings)
        if image.size != style.size:
            raise InputError(f"style mask {index} is {image.width}x{image.height} but style {index} is "
                             f"{style.width}x{style.height}; paint the mask on that style image")
        values = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255.0)
        if float(values.max()) < 0.5:
            raise InputError(f"style mask {index} is black everywhere; paint white where the style should come from")
        loaded.append(values)
    return loaded
