"""One object's mask without a segmentation model: GrabCut (Rother, Kolmogorov & Blake 2004, OpenCV's `grabCut`) from
a box around the object and/or clicks on it (and, optionally, clicks on the background). No weights: colour models
of object and background refined by graph cuts, a few iterations.
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from nstdiff.errors import InputError

Point = tuple[int, int]
ITERATIONS = 5
WORK_SIDE = 1024  # GrabCut's graph cuts grow with the pixels: 1 MP takes seconds, 40 MP minutes and gigabytes


def _mark(mask: np.ndarray, points: list[Point], label: int, radius: int) -> None:
    for x, y in points:
        cv2.circle(mask, (int(x), int(y)), radius, int(label), thickness=-1)


def _check_points(points: list[Point], width: int, height: int, what: str) -> None:
    for x, y in points:
        if not (0 <= x < width and 0 <= y < height):
            raise InputError(f"a {what} click at ({x}, {y}) is outside the {width}x{height} photo; click on the photo")


def grabcut_mask(image: Image.Image, box: tuple[int, int, int, int] | None = None,
                 foreground: list[Point] | None = None, background: list[Point] | None = None,
                 iterations: int = ITERATIONS) -> np.ndarray:
    """The object as a (H, W) bool mask. `box` = (left, top, right, bottom) in pixels around it; `foreground` and
    `background` clicks are (x, y) points on the object and off it. Without a box, the clicks' surroundings are the
    probable object and the photo's border is background."""
    foreground, background = list(foreground or []), list(background or [])
    if box is None and not foreground:
        raise InputError("GrabCut needs a box around the object or at least one click on it")
    width, height = image.size
    _check_points(foreground, width, height, "foreground")
    _check_points(background, width, height, "background")
    scale = WORK_SIDE / max(width, height)
    if scale < 1:  # cut on a smaller copy, then the mask back at the photo's size
        small = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)

        def shrink(points: list[Point]) -> list[Point]:
            return [(min(small.width - 1, int(x * scale)), min(small.height - 1, int(y * scale))) for x, y in points]

        found = grabcut_mask(small, None if box is None else tuple(v * scale for v in box), shrink(foreground),
                             shrink(background), iterations)
        return np.asarray(Image.fromarray(found).resize((width, height), Image.Resampling.NEAREST))
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])  # OpenCV wants BGR
    radius = max(2, round(min(width, height) / 60))
    mask = np.full((height, width), cv2.GC_PR_BGD, np.uint8)
    if box is not None:
        left, top, right, bottom = (round(v) for v in box)
        left, top, right, bottom = max(0, left), max(0, top), min(width, right), min(height, bottom)
        if right - left < 2 or bottom - top < 2:
            raise InputError("the GrabCut box is empty or outside the photo; drag a box around the object")
        mask[:] = cv2.GC_BGD
        mask[top:bottom, left:right] = cv2.GC_PR_FGD
    else:  # clicks only: around them may be the object, the border is not
        xs, ys = [p[0] for p in foreground], [p[1] for p in foreground]
        margin = round(0.25 * max(width, height))
        mask[max(0, min(ys) - margin):max(ys) + margin + 1, max(0, min(xs) - margin):max(xs) + margin + 1] = \
            cv2.GC_PR_FGD
        border = max(1, round(min(width, height) / 50))
        mask[:border], mask[-border:], mask[:, :border], mask[:, -border:] = (cv2.GC_BGD,) * 4
    _mark(mask, foreground, cv2.GC_FGD, radius)
    _mark(mask, background, cv2.GC_BGD, radius)
    background_model, foreground_model = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(pixels, mask, None, background_model, foreground_model, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        raise InputError("GrabCut could not tell the object from the background; draw the box closer around it "
                         "or add clicks on the object and the background") from None
    found = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    if not found.any():
        raise InputError("GrabCut found no object; draw the box closer around it or click on the object")
    return found
