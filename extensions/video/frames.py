"""Running an image method on one frame of a clip: through its public `execute` (every control and check of the
image path), or, for the optimising methods, through `transfer` with a start image and an extra loss term."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from extensions.video.schema import VideoStyleRequest
from nstdiff.errors import InputError
from nstdiff.context import RunContext
from nstdiff.imageio import load_image, resize_long_side
from nstdiff.methods.base import STYLE_CROP, ImageJob, ImageMethod, centre_square, style_side, to_tensor
from nstdiff.registry import get_method
from nstdiff.schema import ImageStyleRequest, ProgressEvent


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
        self._styles: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    def image_request(self, frame: np.ndarray, **options) -> ImageStyleRequest:
        r = self.request
        return ImageStyleRequest(
            method=self.method.name, content=Image.fromarray(frame, "RGB"), styles=[self.style] if self.style else [],
            prompt=r.prompt, size=max(frame.shape[:2]), steps=r.steps, seed=self.context.seed, encoder=r.encoder,
            controls={"strength": r.strength} if r.strength is not None else {}, options={**r.options, **options})

    def stylize(self, frame: np.ndarray) -> np.ndarray:
        """The method's result for `frame` (uint8 RGB), as float32 RGB in 0…1."""
        result = self.method.execute(self.image_request(frame), self.context)
        return np.asarray(result.image, np.float32) / 255

    def optimise(self, frame: np.ndarray, start: np.ndarray | None,
                 extra_loss: Callable[[torch.Tensor], torch.Tensor] | None) -> np.ndarray:
        """An optimising method's result for `frame`, starting from `start` (float RGB; None: the method's own
        start) with `extra_loss` added to its objective."""
        options = {} if start is None else {"init": "image", "init_image": picture(start), "pyramid_levels": 1}
        request = self.image_request(frame, **options)
        self.method.check_request(request)
        styles, crops = self._style_tensors(request)
        device = self.context.device
        job = ImageJob(
            content=to_tensor(Image.fromarray(frame, "RGB"), device), styles=styles, style_weights=[1.0],
            height=frame.shape[0], width=frame.shape[1], steps=request.steps, strength=request.controls.strength,
            encoder=request.encoder, seed=self.context.seed,
            strength_is_default="strength" not in request.controls.model_fields_set, style_crops=crops,
            extra_loss=extra_loss)
        output = self.method.transfer(job, self.method.parse_options(request.options), self.context)
        return output.image[0].detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy()

    def _style_tensors(self, request: ImageStyleRequest) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The style at the side the image path would scale it to, and its centre crop: made once a run."""
        if self._styles is None:
            side = style_side(request, self.context.settings)
            self._styles = ([to_tensor(resize_long_side(self.style, side), self.context.device)],
                            [to_tensor(centre_square(self.style, STYLE_CROP), self.context.device)])
        return self._styles

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
