"""The result of a video run, and how it is written (MP4 H.264 or WebM, the source's audio copied) and shown (its
first frame). Torch-free."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from pydantic import Field

from extensions.video.schema import OUTPUT_SUFFIXES
from extensions.video.videoio import write_video
from nstdiff.imageio import atomic_write, check_writable
from nstdiff.schema import RunResult


class VideoResult(RunResult):
    """The stylized frames, their rate, and the clip whose audio track goes with them."""

    suffix: ClassVar[str] = ".mp4"

    frames: np.ndarray = Field(description="(T, H, W, 3) uint8 RGB.")
    fps: Fraction
    source: Path = Field(description="The input clip: its audio is copied into the output.")
    audio_from: float = Field(0.0, description="The source's time of the first frame, where its sound starts.")
    audio_until: float | None = Field(None, description="Seconds of the source's audio kept when the clip was cut "
                                      "short; None: its whole track.")
    measures: dict[str, Any] = Field(default_factory=dict, description="Warping error, scene cuts, keyframes.")

    def save(self, path: str | Path) -> Path:
        """Write MP4 (H.264) or WebM (VP9) by the suffix, the source's audio track copied, atomically."""
        path = check_writable(path, OUTPUT_SUFFIXES)
        return atomic_write(path, lambda part: write_video(part, path.suffix.lower(), self.frames, self.fps,
                                                           self.source, self.audio_from, self.audio_until,
                                                           self.metadata_json()))

    @property
    def seconds(self) -> float:
        return len(self.frames) / float(self.fps)

    def preview(self) -> Image.Image:
        return Image.fromarray(self.frames[0], "RGB")

    def summary(self) -> str:
        """What was made: frames, size, rate, how steady, where the scene cuts were."""
        height, width = self.frames.shape[1:3]
        m = self.measures
        parts = [f"{len(self.frames)} frames {width}x{height} at {float(self.fps):.3g} fps"]
        if m.get("warping_error") is not None:
            parts.append(f"warping error {m['warping_error']:.4f}")
        if m.get("scene_cuts"):
            parts.append(f"scene cuts at {', '.join(map(str, m['scene_cuts']))}")
        return ", ".join(parts)

    def describe(self) -> str:
        return f"{self.summary()}, {super().describe()}"

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "fps": str(self.fps), "frames": len(self.frames), "measures": self.measures}
