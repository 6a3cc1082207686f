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


def warping_error(stylized: np.ndarray, motions: list[Motion | None]) -> float:
    """mean |s_t − warp(s_{t−1})| over the reliable pixels of every pair that is not a scene cut, on the 0…1 scale;
    `motions` are those of the content frames (`clip_motions`)."""
    errors, weights = 0.0, 0.0
    for t, motion in enumerate(motions):
        if motion is None or motion.cut:
            continue
        previous = stylized[t - 1].astype(np.float32) / 255
        difference = np.abs(stylized[t].astype(np.float32) / 255 - warp(previous, motion.backward)).mean(-1)
        errors += float((difference * motion.reliable).sum())
        weights += float(motion.reliable.sum())
    return errors / weights if weights else 0.0
