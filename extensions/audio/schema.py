"""The audio request: typed and bounded, shared by the CLI, the app tab and the Python API. Torch-free."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from nstdiff.schema import Frozen

METHOD_NAME = "audio"
MAX_SECONDS = 120.0  # longest clip rendered; the optimisation's memory and time grow linearly with length
OUTPUT_SUFFIXES = {".wav": "WAV", ".flac": "FLAC"}


class AudioStyleRequest(Frozen):
    """Render the `content` clip in the sound texture of the `style` clip."""

    method: str = Field(METHOD_NAME, description="The registered method name.")
    content: Path = Field(..., description="The clip to restyle (WAV, FLAC, OGG or MP3).")
    style: Path = Field(..., description="The clip whose texture is taken (looped or cropped to the content's length).")
    strength: float = Field(0.5, ge=0, le=1, description="0 keeps the content, 1 is all style texture.")
    mode: Literal["waveform", "spectrogram"] = Field(
        "waveform", description="waveform: optimise the samples through a differentiable STFT (keeps the phase); "
        "spectrogram: optimise the magnitude, then Griffin-Lim (the classic baseline).")
    steps: int = Field(200, ge=1, le=5000, description="Optimisation steps.")
    filters: int = Field(1024, ge=8, le=8192,
                         description="Random 1-D convolution filters (more: finer texture, slower).")
    kernel_width: int = Field(11, ge=1, le=63, description="Width of each filter, in STFT frames.")
    n_fft: int = Field(1024, ge=256, le=8192, description="STFT size in samples (a power of two); hop is n_fft/4.")
    sample_rate: int = Field(22050, ge=8000, le=48000,
                             description="Rate the clips are resampled to and the output has.")
    seconds: float | None = Field(None, gt=0, le=MAX_SECONDS,
                                  description=f"Render only the first N seconds of the content (max {MAX_SECONDS:g}).")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Seeds the random filters; None draws one.")

    @field_validator("n_fft")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"must be a power of two (256, 512, 1024, 2048, 4096 or 8192), not {value}")
        return value
