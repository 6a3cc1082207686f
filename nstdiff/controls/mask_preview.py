"""A region mask shown before anything runs: from words (CLIPSeg) or from GrabCut clicks, as the painted-mask colours
(style 1 white, style 2 red …, black untouched) that the mask painter edits and `masks.load_region_masks` reads,
and as an overlay on the photo."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nstdiff.controls.grabcut import Point, grabcut_mask
from nstdiff.controls.masks import DEFAULT_COLORS, KEEP_COLOR
from nstdiff.controls.regions import resolve_regions
from nstdiff.imageio import load_image
from nstdiff.schema import Controls, parse_hex
from nstdiff.settings import Settings

OVERLAY_OPACITY = 0.55


@dataclass(frozen=True)
class MaskPreview:
    mask: Image.Image  # RGB in the painted-mask colours, the photo's size
    overlay: Image.Image  # the photo under the mask's colours
    notes: list[str] = field(default_factory=list)  # each region's area


def _painted(labels: np.ndarray, count: int) -> Image.Image:
    palette = np.array([parse_hex(c) for c in (*DEFAULT_COLORS[:count], KEEP_COLOR)], np.uint8)
    return Image.fromarray(palette[labels])


def mask_preview(content: Path | Image.Image, styles: int, controls: Controls, settings: Settings,
                 device: torch.device, box: tuple[int, int, int, int] | None = None,
                 foreground: list[Point] | None = None, background: list[Point] | None = None) -> MaskPreview:
    """The mask that `controls`' words (or, given a box or clicks, GrabCut's object as style 1) make on `content`
    for `styles` style images."""
    photo = load_image(content, "content", settings)
    if box is not None or foreground:
        found = grabcut_mask(photo, box, foreground, background)
        labels = np.where(found, 0, 1)
        notes = [f"GrabCut: the object is {found.mean():.1%} of the photo"]
        count = 1
    else:
        count = max(1, styles)
        names = [f"style {index + 1}" for index in range(count)]
        regions, notes = resolve_regions(controls, photo, photo.size, names, [1.0 / count] * count, settings, device)
        if regions is None:  # no words: the whole photo is style 1
            labels, notes = np.zeros((photo.height, photo.width), np.int64), ["no region named: all of it is styled"]
        else:  # each pixel's largest share: a style (0 … count-1) or untouched (count, black)
            labels = torch.cat([regions.styles, regions.keep[None]]).argmax(0).numpy()
    mask = _painted(labels, count)
    overlay = Image.blend(photo.convert("RGB"), mask, OVERLAY_OPACITY)
    return MaskPreview(mask, overlay, notes)
