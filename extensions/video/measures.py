"""How steady a stylized clip is: the warping error of Lai et al. 2018 ("Learning Blind Video Temporal Consistency")
as Ruder et al. 2016 measure it. Torch-free."""
from __future__ import annotations

from itertools import pairwise

import numpy as np

from extensions.video.flow import FlowEstimator, Motion, warp


def clip_motions(frames: np.ndarray) -> list[Motion | None]:
    """The motion into each frame from the one before (None for the first)."""
    estimator = FlowEstimator()
    return [None, *(estimator.motion(a, b) for a, b in pairwise(frames))]


class WarpingError:
    """mean |s_t − warp(s_{t−1})| over the reliable pixels of every pair that is not a scene cut, on the 0…1 scale,
    summed pair by pair as a run goes (a clip's flows need not all be kept); motions are those of the content."""

    def __init__(self) -> None:
        self.errors, self.weights = 0.0, 0.0

    def add(self, previous: np.ndarray, current: np.ndarray, motion: Motion | None) -> None:
        """One pair of stylized frames (uint8 RGB) and the content's motion from the first to the second."""
        if motion is None or motion.cut:
            return
        before = previous.astype(np.float32) / 255
        difference = np.abs(current.astype(np.float32) / 255 - warp(before, motion.backward)).mean(-1)
        self.errors += float((difference * motion.reliable).sum())
        self.weights += float(motion.reliable.sum())

    @property
    def value(self) -> float:
        return self.errors / self.weights if self.weights else 0.0


def warping_error(stylized: np.ndarray, motions: list[Motion | None]) -> float:
    """`WarpingError` of a whole clip: `motions` from `clip_motions` of its content frames."""
    measure = WarpingError()
    for t in range(1, len(motions)):
        measure.add(stylized[t - 1], stylized[t], motions[t])
    return measure.value
