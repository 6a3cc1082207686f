"""Reading user clips safely and drawing spectrograms. Torch-free (the app tab uses it).

Every way a clip can be unusable (missing, too big, undecodable, NaN, silent, too short or too long) ends in an
`InputError` that names the clip and says what to do. Decoding is soundfile's (WAV, FLAC, OGG and MP3 without
ffmpeg), never librosa's fallback to audioread, which can stall for a minute on a damaged file; resampling is
librosa's (soxr).
"""
from __future__ import annotations

import os
import sys
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from extensions.audio.schema import MAX_SECONDS
from nstdiff.errors import InputError
from nstdiff.settings import Settings, get_settings

MIN_SECONDS = 0.25
SILENCE_PEAK = 1e-4  # −80 dBFS: nothing audible to take a texture or a melody from
READABLE = "WAV, FLAC, OGG or MP3"
_STDERR_LOCK = threading.Lock()  # one decode at a time borrows fd 2, so each puts back what it found


@contextmanager
def _quiet_decoder():
    """mpg123 (inside libsndfile) prints its complaints about a damaged MP3 straight to file descriptor 2: the person
    should see only our one-line message, so it is muted here, with any warning."""
    with _STDERR_LOCK, warnings.catch_warnings(action="ignore"):
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


@dataclass
class Clip:
    samples: np.ndarray  # mono float32
    sample_rate: int
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def read_clip(path: str | Path, role: str, sample_rate: int, seconds: float | None = None,
              settings: Settings | None = None) -> Clip:
    """Decode `path` as mono float32 at `sample_rate`, keeping its first `seconds` (None: all, up to MAX_SECONDS).

    A clip longer than MAX_SECONDS is refused unless `seconds` says how much of it to take.
    """
    import librosa
    import soundfile

    settings = settings or get_settings()
    path = Path(path)
    what = f"{role} clip '{path.name}'"
    if not path.is_file():
        raise InputError(f"{what} does not exist or is not a file")
    size = path.stat().st_size
    if size > settings.max_input_bytes:
        raise InputError(f"{what} is {size / 2**20:.1f} MiB, over the limit of {settings.max_input_bytes / 2**20:.0f} "
                         "MiB; use a shorter or compressed clip or raise NSTDIFF_MAX_INPUT_BYTES")
    try:
        with _quiet_decoder():
            info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        raise InputError(f"{what} is not a readable audio file; use {READABLE}") from None
    if info.samplerate <= 0 or info.frames <= 0:
        raise InputError(f"{what} holds no audio samples")
    duration = info.frames / info.samplerate
    if seconds is None and duration > MAX_SECONDS:
        raise InputError(f"{what} is {duration:.1f} s long, over the limit of {MAX_SECONDS:g} s; pass seconds "
                         f"(--seconds N, at most {MAX_SECONDS:g}) to render its first N seconds, or trim it")
    frames = -1 if seconds is None else round(seconds * info.samplerate)
    try:
        with _quiet_decoder():
            channels, _ = soundfile.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 a damaged file fails mid-decode in many ways; one message says it
        raise InputError(f"{what} could not be decoded ({type(exc).__name__}); re-export it as {READABLE}") from None
    samples = channels.mean(axis=1, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise InputError(f"{what} contains NaN or infinite samples; re-export it from your audio editor")
    if info.samplerate != sample_rate:
        samples = librosa.resample(samples, orig_sr=info.samplerate, target_sr=sample_rate).astype(np.float32)
    if len(samples) < MIN_SECONDS * sample_rate:
        raise InputError(f"{what} is {len(samples) / sample_rate:.2f} s long; it needs at least {MIN_SECONDS:g} s")
    if np.abs(samples).max() < SILENCE_PEAK:
        raise InputError(f"{what} is silent (peak below −80 dBFS); upload a clip with sound in it")
    notes = []
    if info.samplerate != sample_rate:
        notes.append(f"{role} resampled {info.samplerate} Hz → {sample_rate} Hz")
    if info.channels > 1:
        notes.append(f"{role} mixed from {info.channels} channels to mono")
    if seconds is not None and duration > seconds + 1e-3:
        notes.append(f"{role} cropped to its first {seconds:g} s of {duration:.1f} s")
    return Clip(samples, sample_rate, notes)


def fit_length(clip: Clip, length: int, role: str = "style") -> Clip:
    """The clip looped (tiled) or cropped to exactly `length` samples, with a note saying which."""
    have = len(clip.samples)
    if abs(have - length) <= clip.sample_rate // 100:  # resampling rounding, not a different length
        samples = np.pad(clip.samples, (0, max(0, length - have)), mode="wrap")[:length]
        return Clip(samples, clip.sample_rate, clip.notes)
    if have > length:
        note = f"{role} cropped from {have / clip.sample_rate:.2f} s to {length / clip.sample_rate:.2f} s"
        return Clip(clip.samples[:length], clip.sample_rate, [*clip.notes, note])
    repeats = -(-length // have)
    note = f"{role} looped {length / have:.1f}× to fill {length / clip.sample_rate:.2f} s"
    return Clip(np.tile(clip.samples, repeats)[:length], clip.sample_rate, [*clip.notes, note])


# magma-like colour map anchors (dark violet → orange → pale yellow), for dB from −80 to 0
_COLORS = np.array([[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]],
                   dtype=np.float64)


def spectrogram_image(samples: np.ndarray, sample_rate: int, width: int = 480, height: int = 200) -> Image.Image:
    """A mel spectrogram (128 bands, dB relative to the clip's peak, −80…0 dB) as an RGB picture, low notes at the
    bottom."""
    import librosa

    mel = librosa.feature.melspectrogram(y=np.asarray(samples, dtype=np.float32), sr=sample_rate, n_fft=1024,
                                         hop_length=256, n_mels=128)
    level = (librosa.power_to_db(mel, ref=np.max, top_db=80.0) + 80.0) / 80.0  # 0 (−80 dB) … 1 (peak)
    position = np.clip(level, 0, 1)[::-1] * (len(_COLORS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_COLORS) - 2)
    fraction = (position - low)[..., None]
    rgb = _COLORS[low] * (1 - fraction) + _COLORS[low + 1] * fraction
    return Image.fromarray(rgb.astype(np.uint8), "RGB").resize((width, height), Image.Resampling.BILINEAR)
