"""Audio style transfer: a clip rendered in the sound texture of another (Ulyanov & Lebedev 2016).

The loss is `extensions.audio.spectral.SpectralStyleLoss` over random 1-D convolution features of the log-magnitude
STFT. Two ways to minimise it:
- waveform (default): optimise the samples x themselves, L(log(1 + |STFT(x)|)), by Adam through `torch.stft`,
  starting from the content. The phase stays consistent, so no phase reconstruction is needed.
- spectrogram: optimise the log-magnitude S directly, starting from the content's, then invert |X| = exp(S) − 1 with
  Griffin-Lim (Griffin & Lim 1984; librosa's fast variant, Perraudin et al. 2013) — the paper's original recipe.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from extensions.audio.audioio import Clip, fit_length, read_clip
from extensions.audio.result import AudioResult
from extensions.audio.schema import METHOD_NAME, AudioStyleRequest
from extensions.audio.spectral import RandomFilterBank, SpectralStyleLoss, log_magnitude
from nstdiff.context import RunContext
from nstdiff.errors import InputError
from nstdiff.registry import Capabilities, Method, register_method

WAVEFORM_LEARNING_RATE = 0.03  # per-sample Adam step on a clip normalised to peak 0.9
SPECTROGRAM_LEARNING_RATE = 0.05  # Adam step on log(1 + |X|), whose values span about 0…6
GRIFFIN_LIM_ITERATIONS = 64
CONTENT_PEAK = 0.9
OUTPUT_PEAK = 10 ** (-1 / 20)  # −1 dBFS: headroom for inter-sample peaks after lossy re-encoding
CONTENT_WEIGHT_AT_HALF = 0.03  # β at strength 0.5: style loss left ≤ 10 %, chroma ≥ 0.9 on the benchmark's pairs


def content_weight(strength: float) -> float:
    """β = β½ · ((1 − s)/s)²: 0 at strength 1 (all texture), 81 β½ at 0.1 (the content nearly kept).

    Squared because the balance turns over within about two decades of β (measured: the style loss left goes from
    3 % to 82 % between β = 0.1 and 1), so a linear ratio would spend most of the slider on one end.
    β weighs the *target-normalised* losses of `SpectralStyleLoss`. In the unnormalised sums of Ulyanov & Lebedev,
    ‖G − T‖² grows with N² (N filters) and ‖φ − φ_c‖² with N, so a fixed knob needs a content weight proportional to
    N there; here the normalisation supplies that factor (`SpectralStyleLoss.raw_content_weight` = β · ‖T‖²/‖φ_c‖²
    ∝ N), and one strength gives the same balance at any filter count.
    """
    if strength >= 1:
        return 0.0
    return CONTENT_WEIGHT_AT_HALF * ((1 - strength) / max(strength, 1e-3)) ** 2


@register_method
class AudioStyleMethod(Method):
    name = METHOD_NAME
    title = "Audio texture (random spectrogram filters)"
    description = ("Renders a clip in the sound texture of another: Gram statistics of random 1-D convolutions "
                   "over the log spectrogram (Ulyanov & Lebedev 2016), optimising the waveform.")
    request_model = AudioStyleRequest
    options_model = AudioStyleRequest
    capabilities = Capabilities(modality="audio", needs_content=True)

    def execute(self, request: AudioStyleRequest, context: RunContext) -> AudioResult:
        started = time.perf_counter()
        content, style = self.load_clips(request, context)
        device = context.device
        torch.manual_seed(context.seed)
        n_fft = request.n_fft
        content_wave = torch.from_numpy(content.samples).to(device)
        style_wave = torch.from_numpy(style.samples).to(device)
        bank = RandomFilterBank(n_fft // 2 + 1, request.filters, request.kernel_width, context.seed).to(device)
        loss = SpectralStyleLoss(bank, log_magnitude(content_wave, n_fft), log_magnitude(style_wave, n_fft),
                                 content_weight(request.strength))
        with torch.no_grad():
            start_losses = loss(log_magnitude(content_wave, n_fft))
        loaded = time.perf_counter()
        if request.mode == "waveform":
            audio, final = self.optimise_waveform(content_wave, loss, request, context)
        else:
            audio, final = self.optimise_spectrogram(content_wave, loss, request, context)
        optimised = time.perf_counter()
        peak = float(np.abs(audio).max())
        if not np.isfinite(audio).all() or peak < 1e-6:
            raise InputError("the optimisation diverged (non-finite or silent output); try fewer steps or a "
                             "lower strength")
        audio = (audio * (OUTPUT_PEAK / peak)).astype(np.float32)
        return AudioResult(
            audio=audio, sample_rate=request.sample_rate, method=self.name, encoder=f"random-{request.filters}",
            seed=context.seed, parameters={**request.model_dump(mode="json"), "seed": context.seed},
            losses={"total": final["total"], "style": final["style"], "content": final["content"],
                    "style_of_content": float(start_losses["style"])},
            timings={"load": loaded - started, "optimise": optimised - loaded,
                     "total": time.perf_counter() - started},
            notes=[*content.notes, *style.notes, *context.notes],
        )

    @staticmethod
    def load_clips(request: AudioStyleRequest, context: RunContext) -> tuple[Clip, Clip]:
        """Content at its length (or `seconds`), style looped or cropped to it; both at the request's rate."""
        content = read_clip(request.content, "content", request.sample_rate, request.seconds, context.settings)
        if len(content.samples) < request.n_fft:
            raise InputError(f"content clip is shorter than one STFT frame ({request.n_fft} samples); use a longer "
                             "clip or a smaller n_fft")
        style = read_clip(request.style, "style", request.sample_rate, content.seconds, context.settings)
        style = fit_length(style, len(content.samples))
        # one loudness for both, so the texture's level relative to the melody is the style's shape, not its gain
        content.samples = content.samples * (CONTENT_PEAK / np.abs(content.samples).max())
        style.samples = style.samples * (_rms(content.samples) / _rms(style.samples))
        return content, style

    @staticmethod
    def optimise_waveform(content: torch.Tensor, loss: SpectralStyleLoss, request: AudioStyleRequest,
                          context: RunContext) -> tuple[np.ndarray, dict[str, float]]:
        waveform = content.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([waveform], lr=WAVEFORM_LEARNING_RATE)
        for step in range(1, request.steps + 1):
            optimiser.zero_grad(set_to_none=True)
            losses = loss(log_magnitude(waveform, request.n_fft))
            losses["total"].backward()
            optimiser.step()
            context.step(step, request.steps, losses={k: float(v.detach()) for k, v in losses.items()})
        with torch.no_grad():
            final = {k: float(v) for k, v in loss(log_magnitude(waveform, request.n_fft)).items()}
        return waveform.detach().cpu().numpy(), final

    @staticmethod
    def optimise_spectrogram(content: torch.Tensor, loss: SpectralStyleLoss, request: AudioStyleRequest,
                             context: RunContext) -> tuple[np.ndarray, dict[str, float]]:
        import librosa

        spectrogram = log_magnitude(content, request.n_fft).detach().clone().requires_grad_(True)
        optimiser = torch.optim.Adam([spectrogram], lr=SPECTROGRAM_LEARNING_RATE)
        for step in range(1, request.steps + 1):
            optimiser.zero_grad(set_to_none=True)
            losses = loss(spectrogram)
            losses["total"].backward()
            optimiser.step()
            with torch.no_grad():
                spectrogram.clamp_(min=0)  # log(1 + |X|) ≥ 0
            context.step(step, request.steps, losses={k: float(v.detach()) for k, v in losses.items()})
        context.message(f"Griffin-Lim phase reconstruction ({GRIFFIN_LIM_ITERATIONS} iterations)…")
        magnitude = torch.expm1(spectrogram.detach()).cpu().numpy()
        audio = librosa.griffinlim(magnitude, n_iter=GRIFFIN_LIM_ITERATIONS, hop_length=request.n_fft // 4,
                                   n_fft=request.n_fft, length=len(content), random_state=context.seed)
        with torch.no_grad():  # the loss of what is heard, not of the magnitude Griffin-Lim could not match
            heard = torch.from_numpy(audio.astype(np.float32)).to(content.device)
            final = {k: float(v) for k, v in loss(log_magnitude(heard, request.n_fft)).items()}
        return audio.astype(np.float32), final


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) + 1e-12
