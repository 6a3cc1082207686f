"""Keeping a stylized clip steady from frame to frame: one way for each kind of image method.

All three carry the previous output forward along the optical flow (`flow.warp`), only where the flow is reliable,
and never across a scene cut (the caller passes no motion there). `consistency` c ∈ [0, 1] says how much is carried.
- optimising methods (Gram; Ruder, Dosovitskiy & Brox 2016, §3.2): the warped previous output is the start of the
  optimisation, and a temporal loss c·λ · (1/D) Σ m (x − ω)² holds x to it on the reliable pixels m.
- diffusion: one seed for every frame; between keyframes (the first, every N, each cut) img2img starts from the
  previous output warped onto the frame (blended in by c), so the noise is re-drawn around a picture that already
  agrees, and the result is blended as below; a keyframe is the frame's own result, unblended, so drift cannot
  build up (the price: the picture may change at a keyframe).
- feed-forward methods: each frame's own result, blended with the warped previous output, weight c·m.
"""
from __future__ import annotations

import numpy as np
import torch

from extensions.video.flow import Motion, warp
from extensions.video.frames import FrameRunner

# λ for the temporal loss at c = 1, against Gram's target-normalised style and content terms (≈ 1–10 at strength
# 0.7): a typical 0.05 step from ω then costs about as much as the style term
TEMPORAL_WEIGHT = 2000.0
OPTIMISING = ("gram",)
DIFFUSION = ("diffusion-text", "diffusion-reference")


def blend(styled: np.ndarray, previous: np.ndarray, motion: Motion, consistency: float) -> np.ndarray:
    """c·m·warp(previous) + (1 − c·m)·styled."""
    weight = consistency * motion.reliable[..., None]
    return weight * np.clip(warp(previous, motion.backward, cubic=True), 0, 1) + (1 - weight) * styled


class FrameStabilizer:
    """`render(index, frame, motion, previous)` → the stylized frame (float RGB 0…1); `motion` None: start afresh."""

    def __init__(self, runner: FrameRunner, consistency: float, keyframe_every: int = 0):
        self.runner, self.consistency, self.keyframe_every = runner, consistency, keyframe_every
        name = runner.method.name
        self.kind = "optimising" if name in OPTIMISING else "diffusion" if name in DIFFUSION else "feed-forward"
        self.keyframes: list[int] = []

    def render(self, index: int, frame: np.ndarray, motion: Motion | None, previous: np.ndarray | None) -> np.ndarray:
        carried = motion is not None and previous is not None and self.consistency > 0
        if self.kind == "optimising":
            return self._optimised(frame, motion, previous) if carried else self.runner.stylize(frame)
        if self.kind == "diffusion":  # every N frames from the last keyframe (a scene cut is one)
            keyframe = not carried or bool(self.keyframe_every and index - self.keyframes[-1] >= self.keyframe_every)
            if keyframe:  # the frame's own result, nothing of the last one in it: what stops drift
                self.keyframes.append(index)
                return self.runner.stylize(frame)
            styled = self.runner.stylize(self._diffusion_start(frame, motion, previous))
        else:
            styled = self.runner.stylize(frame)
        return blend(styled, previous, motion, self.consistency) if carried else styled

    def _optimised(self, frame: np.ndarray, motion: Motion, previous: np.ndarray) -> np.ndarray:
        warped = np.clip(warp(previous, motion.backward, cubic=True), 0, 1)
        reliable = motion.reliable[..., None]
        start = reliable * warped + (1 - reliable) * frame.astype(np.float32) / 255
        device = self.runner.context.device
        target = torch.from_numpy(np.ascontiguousarray(warped.transpose(2, 0, 1)))[None].to(device)
        mask = torch.from_numpy(motion.reliable)[None, None].to(device)
        weight = self.consistency * TEMPORAL_WEIGHT

        def temporal_loss(image: torch.Tensor) -> torch.Tensor:
            return weight * (mask * (image - target).square()).mean()

        return self.runner.stylize(frame, start, temporal_loss)

    def _diffusion_start(self, frame: np.ndarray, motion: Motion, previous: np.ndarray) -> np.ndarray:
        """The frame with the warped previous output laid over it where the flow holds (weight c), as uint8."""
        start = blend(frame.astype(np.float32) / 255, previous, motion, self.consistency)
        return np.round(start * 255).astype(np.uint8)
