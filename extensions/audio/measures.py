"""Measures of an audio style transfer's outcome, for tests and the benchmark (not used by the method itself)."""
from __future__ import annotations

import numpy as np


def chroma_similarity(output: np.ndarray, content: np.ndarray, sample_rate: int) -> float:
    """Pitch kept: the mean over frames of cos(c_t(output), c_t(content)), c_t the 12-bin chroma of frame t
    (librosa's STFT chroma, Ellis 2007). 1 = the same notes at the same times; unrelated clips score about 0.5–0.7."""
    import librosa

    a = librosa.feature.chroma_stft(y=np.asarray(output, np.float32), sr=sample_rate)
    b = librosa.feature.chroma_stft(y=np.asarray(content, np.float32), sr=sample_rate)
    frames = min(a.shape[1], b.shape[1])
    a, b = a[:, :frames], b[:, :frames]
    cosine = (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0) + 1e-9)
    return float(cosine.mean())


def mel_distance(output: np.ndarray, style: np.ndarray, sample_rate: int) -> float:
    """Timbre distance in dB: mean |m(output) − m(style)| over 64 mel bands, m = the clip's time-averaged mel power
    in dB relative to its own mean level (loudness removed, spectral shape kept)."""
    import librosa

    def profile(samples: np.ndarray) -> np.ndarray:
        mel = librosa.feature.melspectrogram(y=np.asarray(samples, np.float32), sr=sample_rate, n_mels=64)
        level = librosa.power_to_db(mel.mean(1) + 1e-10)
        return level - level.mean()

    return float(np.abs(profile(output) - profile(style)).mean())
