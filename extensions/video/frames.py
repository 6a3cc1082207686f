"""Running an image method on one frame of a clip, through its public `execute` (every control and check of the
image path), for the optimising methods with a start image and an extra loss term."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from extensions.video.schema import VideoStyleRequest
from nstdiff.context import RunContext
from nstdiff.errors import InputError
from nstdiff.imageio import load_image
from nstdiff.methods.base import ImageMethod
from nstdiff.registry import get_method
from nstdiff.schema import ImageStyleRequest, ProgressEvent

if TYPE_CHECKING:
    import torch


def image_method(name: str) -> ImageMethod:
    """The per-frame method, refused with a clear line when it is not one that restyles a picture."""
    method = get_method(name)
    if not isinstance(method, ImageMethod) or method.capabilities.modality != "image":
        raise InputError(f"method '{name}' does not stylize images, so it cannot stylize frames; use feedforward, "
                         "adain, gram, fast-style, diffusion-text or diffusion-reference")
    return method


class FrameRunner:
    """One image method, one style, one seed, for every frame of a run."""

    def __init__(self, request: VideoStyleRequest, context: RunContext):
        self.request, self.method = request, image_method(request.image_method)
        self.style = load_image(request.style, "style", context.settings) if request.style is not None else None
        # frames report only their status lines: the run's progress is counted in frames (`VideoStyleMethod`)
        self.context = RunContext(context.settings, context.device, context.seed, _messages_of(context),
                                  context.cancel, preview_every=float("inf"))

    def image_request(self, frame: np.ndarray, **options) -> ImageStyleRequest:
        r = self.request
        return ImageStyleRequest(
            method=self.method.name, content=Image.fromarray(frame, "RGB"), styles=[self.style] if self.style else [],
            prompt=r.prompt, size=max(frame.shape[:2]), steps=r.steps, seed=self.context.seed, encoder=r.encoder,
            controls={"strength": r.strength} if r.strength is not None else {}, options={**r.options, **options})

    def stylize(self, frame: np.ndarray, start: np.ndarray | None = None,
                extra_loss: Callable[[torch.Tensor], torch.Tensor] | None = None) -> np.ndarray:
        """The method's result for `frame` (uint8 RGB), as float32 RGB in 0…1; an optimising method starts from
        `start` (float RGB; None: its own start) with `extra_loss` added to its objective."""
        options = {} if start is None else {"init": "image", "init_image": picture(start), "pyramid_levels": 1}
        result = self.method.execute(self.image_request(frame, **options), self.context, extra_loss)
        return np.asarray(result.image, np.float32) / 255

    @property
    def notes(self) -> list[str]:
        return list(dict.fromkeys(self.context.notes))  # each frame says the same: once


def picture(image: np.ndarray) -> Image.Image:
    """Float RGB 0…1 as an 8-bit picture."""
    return Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), "RGB")


def _messages_of(context: RunContext) -> Callable[[ProgressEvent], None] | None:
    if context.progress is None:
        return None
    forward = context.progress
    return lambda event: forward(event) if event.stage == "message" else None
