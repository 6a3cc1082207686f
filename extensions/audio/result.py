"""The result of an audio run, and how it is written (WAV or FLAC) and shown (a spectrogram). Torch-free."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from pydantic import Field

from extensions.audio.audioio import spectrogram_image
from extensions.audio.schema import OUTPUT_SUFFIXES
from nstdiff.imageio import atomic_write, check_writable
from nstdiff.schema import RunResult


class AudioResult(RunResult):
    """A mono clip, peak-normalised to −1 dBFS, with the run's parameters."""

    suffix: ClassVar[str] = ".wav"

    audio: np.ndarray = Field(description="Samples in [-1, 1], float32, mono.")
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate

    def save(self, path: str | Path) -> Path:
        """Write 16-bit WAV or FLAC (by the suffix), the parameters in the file's comment tag, atomically."""
        import soundfile

        path = check_writable(path, OUTPUT_SUFFIXES)  # a .mp3 is refused here, before anything is encoded
        kind = OUTPUT_SUFFIXES[path.suffix.lower()]

        def write(part: Path) -> None:
            with soundfile.SoundFile(part, "w", self.sample_rate, 1, "PCM_16", format=kind) as out:
                out.comment = self.metadata_json()
                out.software = "nstdiff"
                out.write(self.audio)

        return atomic_write(path, write)

    def preview(self) -> Image.Image:
        return spectrogram_image(self.audio, self.sample_rate)

    def describe(self) -> str:
        return f"{self.seconds:.2f} s at {self.sample_rate} Hz, {super().describe()}"

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "sample_rate": self.sample_rate, "seconds": round(self.seconds, 3)}
