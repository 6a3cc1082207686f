"""Audio style transfer: the default (waveform) mode beside spectrogram optimisation + Griffin-Lim, in one run.

    python benchmarks/audio_benchmark.py [--seconds 5] [--device cpu|cuda] [--threads 2] [--steps N] [--filters N]

Inputs are generated here (no files needed): two pairs, a melody of harmonic notes in the texture of rain (filtered
noise and clicks), and a chord progression in the texture of a drum loop. For each run it prints wall and CPU time,
the style loss left (output's / content's, under the run's own filters and under an independent filter bank drawn
with another seed), the chroma cosine to the content (pitch kept) and the mel-profile distance to the style in dB.
Targets: a 5 s clip at 22.05 kHz with the defaults in ≤ 30 s on 2 CPU cores, style loss left ≤ 10 %, chroma ≥ 0.9;
on a GPU (`--device cuda --seconds 30`) a 30 s clip in ≤ 5 s.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLE_RATE = 22050


def melody(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Harmonic notes (5 partials, 1/k amplitudes) with a plucked envelope and light vibrato: a C-major tune."""
    notes = [60, 64, 67, 72, 71, 67, 65, 62, 64, 60]
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros_like(t)
    length = seconds / len(notes)
    for index, note in enumerate(notes):
        frequency = 440.0 * 2 ** ((note - 69) / 12)
        on = (t >= index * length) & (t < (index + 1) * length)
        local = t[on] - index * length
        envelope = np.minimum(1.0, local / 0.01) * np.exp(-2.5 * local)
        phase = 2 * np.pi * frequency * local + 0.3 * np.sin(2 * np.pi * 5 * local)
        out[on] = envelope * sum(np.sin(k * phase) / k for k in range(1, 6))
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


def chords(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Sustained triads (C, Am, F, G), each a sum of sawtooth-like harmonic tones."""
    progression = [(60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62)]
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros_like(t)
    length = seconds / len(progression)
    for index, chord in enumerate(progression):
        on = (t >= index * length) & (t < (index + 1) * length)
        local = t[on] - index * length
        envelope = np.minimum(1.0, local / 0.05) * np.minimum(1.0, (length - local) / 0.05)
        for note in chord:
            frequency = 440.0 * 2 ** ((note - 69) / 12)
            out[on] += envelope * sum(np.sin(2 * np.pi * k * frequency * local) / k for k in range(1, 8))
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


def rain(seconds: float, rate: int = SAMPLE_RATE, seed: int = 1) -> np.ndarray:
    """Rain-like: band-passed noise bed plus random decaying clicks (drops)."""
    from scipy.signal import butter, lfilter

    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = 0.05 * rng.standard_normal(n)
    for position in rng.integers(0, n - 400, int(seconds * 60)):
        out[position:position + 400] += rng.uniform(0.2, 1.0) * rng.standard_normal(400) * np.exp(-np.arange(400) / 40)
    b, a = butter(2, [600 / (rate / 2), 7000 / (rate / 2)], "band")
    out = lfilter(b, a, out)
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


def drums(seconds: float, rate: int = SAMPLE_RATE, seed: int = 2) -> np.ndarray:
    """A 120 bpm loop: kicks (decaying 55 Hz sweeps) on beats, noise hi-hats on eighths."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = np.zeros(n)
    beat = int(0.5 * rate)
    kick_t = np.arange(int(0.25 * rate)) / rate
    kick = np.sin(2 * np.pi * (55 + 120 * np.exp(-kick_t * 30)) * kick_t) * np.exp(-kick_t * 12)
    hat = rng.standard_normal(int(0.05 * rate)) * np.exp(-np.arange(int(0.05 * rate)) / (0.008 * rate))
    hat = np.diff(hat, prepend=0.0)  # brighter
    for start in range(0, n, beat):
        out[start:start + len(kick)] += kick[: n - start]
    for start in range(0, n, beat // 2):
        out[start:start + len(hat)] += 0.3 * hat[: n - start]
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


def measure(result, content: np.ndarray, style: np.ndarray, request) -> dict[str, float]:
    import torch

    from extensions.audio.measures import chroma_similarity, mel_distance
    from extensions.audio.spectral import RandomFilterBank, SpectralStyleLoss, log_magnitude

    # an independent check: the same loss under filters the run never saw
    n_fft = request.n_fft
    bank = RandomFilterBank(n_fft // 2 + 1, request.filters, request.kernel_width, result.seed + 1)
    peak = np.abs(content).max()
    c = torch.from_numpy(content * (0.9 / peak))
    s = torch.from_numpy(style[: len(content)] * float(np.sqrt(np.mean(c.numpy() ** 2)) / np.sqrt(np.mean(style ** 2))))
    out = torch.from_numpy(result.audio * (0.9 / np.abs(result.audio).max()))
    loss = SpectralStyleLoss(bank, log_magnitude(c, n_fft), log_magnitude(s, n_fft), 0.0)
    with torch.no_grad():
        independent = float(loss(log_magnitude(out, n_fft))["style"] / loss(log_magnitude(c, n_fft))["style"])
    rate = result.sample_rate
    return {
        "style_left": result.losses["style"] / result.losses["style_of_content"],
        "style_left_independent": independent,
        "chroma": chroma_similarity(result.audio, content, rate),
        "mel_dB": mel_distance(result.audio, style, rate),
        "mel_dB_content": mel_distance(content, style, rate),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target is for 2 cores)")
    parser.add_argument("--steps", type=int, help="default: the request's default")
    parser.add_argument("--filters", type=int, help="default: the request's default")
    parser.add_argument("--pairs", default="melody-rain,chords-drums")
    parser.add_argument("--modes", default="waveform,spectrogram")
    args = parser.parse_args()
    os.environ["NSTDIFF_DEVICE"] = args.device
    os.environ["NSTDIFF_THREADS"] = str(args.threads)
    import soundfile

    import nstdiff
    from extensions.audio.schema import AudioStyleRequest
    from nstdiff.settings import reload_settings

    reload_settings()
    makers = {"melody": melody, "chords": chords, "rain": rain, "drums": drums}
    overrides = {k: v for k, v in {"steps": args.steps, "filters": args.filters}.items() if v is not None}
    print(f"audio benchmark: {args.seconds:g} s clips at {SAMPLE_RATE} Hz, device {args.device}, "
          f"{args.threads} threads, settings {overrides or 'default'}")
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs.split(","):
            content_name, style_name = pair.split("-")
            content, style = makers[content_name](args.seconds), makers[style_name](args.seconds)
            paths = {}
            for name, samples in ((content_name, content), (style_name, style)):
                paths[name] = Path(tmp) / f"{name}.wav"
                soundfile.write(paths[name], samples, SAMPLE_RATE, subtype="FLOAT")
            if args.device != "cpu":  # CUDA context and kernels start once per process, as in a running server
                nstdiff.stylize(AudioStyleRequest(content=paths[content_name], style=paths[style_name], steps=2))
            for mode in args.modes.split(","):
                request = AudioStyleRequest(content=paths[content_name], style=paths[style_name], mode=mode, seed=0,
                                            **overrides)
                wall, cpu = time.perf_counter(), time.process_time()
                result = nstdiff.stylize(request)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                m = measure(result, content, style, request)
                print(f"{pair:14} {mode:11} wall {wall:6.1f} s (optimise {result.timings['optimise']:5.1f} s, "
                      f"cpu {cpu:6.1f} s) | style left {m['style_left']:6.1%} (independent filters "
                      f"{m['style_left_independent']:6.1%}) | chroma {m['chroma']:.3f} | mel to style "
                      f"{m['mel_dB']:4.1f} dB (content {m['mel_dB_content']:4.1f} dB)", flush=True)


if __name__ == "__main__":
    main()
