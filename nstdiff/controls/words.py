"""Masks from words: phrases such as "sky" or "the dog" → a soft mask of the photo, with CLIPSeg.

CLIPSeg scores each pixel's match with a phrase (a sigmoid of its logits, at 352² whatever the photo's shape); the
scores are resized to the photo, thresholded, and the edge feathered over `feather` pixels. Several
phrases make one region: the union of their masks. A phrase whose best score is under the threshold matched nothing:
that is an error that says so, rather than a run that styles nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nstdiff.errors import InputError
from nstdiff.models.resolver import Message
from nstdiff.models.segmentation import load_segmenter
from nstdiff.settings import Settings


@dataclass(frozen=True)
class WordsMask:
    mask: torch.Tensor  # (H, W) in [0, 1], feathered
    area: float  # fraction of the photo inside the thresholded mask, before feathering


def phrase_scores(image: Image.Image, phrases: list[str], size: tuple[int, int], settings: Settings,
                  device: torch.device, message: Message | None = None) -> torch.Tensor:
    """CLIPSeg's match of each phrase at each pixel, (P, H, W) in [0, 1] at `size` = (width, height)."""
    segmenter = load_segmenter(settings, device, message)
    limit = segmenter.model.config.text_config.max_position_embeddings  # 77 for CLIPSeg
    for phrase in phrases:
        tokens = len(segmenter.processor.tokenizer(phrase).input_ids)
        if tokens > limit:
            raise InputError(f"the phrase '{phrase[:40]}…' is {tokens} tokens long; the segmentation model reads at "
                             f"most {limit} (including start and end). Name the object in a few words.")
    inputs = segmenter.processor(text=phrases, images=[image.convert("RGB")] * len(phrases), padding=True,
                                 return_tensors="pt")
    with torch.no_grad():
        logits = segmenter.model(**inputs.to(device)).logits
    logits = logits.reshape(len(phrases), 1, *logits.shape[-2:]).float()
    scores = torch.sigmoid(F.interpolate(logits, size=(size[1], size[0]), mode="bilinear", align_corners=False))
    return scores[:, 0].cpu()


def feather(mask: torch.Tensor, pixels: float) -> torch.Tensor:
    """A hard (H, W) mask with its edge softened over `pixels` each side (a Gaussian of σ = `pixels`/2 cut at 2σ, so
    nothing changes further from the edge than that)."""
    radius = round(pixels)
    if radius <= 0:
        return mask.float()
    blurred = cv2.GaussianBlur(mask.float().numpy(), (2 * radius + 1, 2 * radius + 1), sigmaX=radius / 2,
                               borderType=cv2.BORDER_REPLICATE)
    blurred[blurred < 1e-6], blurred[blurred > 1 - 1e-6] = 0, 1  # rounding: what the blur did not reach is exact
    return torch.from_numpy(np.clip(blurred, 0, 1))


def words_mask(image: Image.Image, phrases: list[str], size: tuple[int, int], threshold: float, feather_px: float,
               settings: Settings, device: torch.device, message: Message | None = None) -> WordsMask:
    """The union of the phrases' masks at `size` = (width, height); an `InputError` for a phrase matching nothing."""
    scores = phrase_scores(image, phrases, size, settings, device, message)
    for phrase, score in zip(phrases, scores):
        best = float(score.max())
        if best < threshold:
            raise InputError(f"the phrase '{phrase}' matched nothing in the photo (max score {best:.2f}); try "
                             f"another word or lower the threshold (now {threshold:g})")
    hard = (scores >= threshold).any(0)
    return WordsMask(feather(hard, feather_px), float(hard.float().mean()))
