"""Spectrogram features and losses for audio style transfer (torch).

Features follow Ulyanov & Lebedev, "Audio texture synthesis and style transfer" (2016): the log-magnitude STFT
S = log(1 + |STFT(x)|) ∈ R^{F × T} is treated as a 1-D signal over time with its F frequency bins as channels, and
passed through one random-weight convolution φ(S) = ReLU(W * S), W ∈ R^{N × F × k} (N filters of width k). Random
filters need no trained weights (Ustyuzhaninov et al. 2016 showed random features suffice for textures).
"""
from __future__ import annotations

import math

import torch

from nstdiff.losses import FeatureContentLoss, GramStyleLoss, gram_matrix

FEATURE = "conv"  # the one feature layer's name in the loss dictionaries


def log_magnitude(waveform: torch.Tensor, n_fft: int) -> torch.Tensor:
    """S = log(1 + |STFT(x)|), (F, T) with F = n_fft/2 + 1 (Hann window, hop n_fft/4, centred frames).

    |·| is computed as sqrt(re² + im² + ε) so its gradient stays finite in silent bins.
    """
    window = torch.hann_window(n_fft, device=waveform.device)
    spectrum = torch.stft(waveform, n_fft, hop_length=n_fft // 4, window=window, center=True, return_complex=True)
    return torch.log1p(torch.sqrt(spectrum.real.square() + spectrum.imag.square() + 1e-12))


class RandomFilterBank(torch.nn.Module):
    """φ(S) = ReLU(W * S): one 1-D convolution over time, frequency bins as input channels, fixed random weights.

    W is drawn from N(0, σ²) with He-style σ = sqrt(2 / (F·k)) from a generator seeded by `seed`, so a seed gives the
    same filters on every machine and device (drawn on the CPU, then moved).
    """

    def __init__(self, bins: int, filters: int, kernel_width: int, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        weight = torch.randn(filters, bins, kernel_width, generator=generator) * math.sqrt(2.0 / (bins * kernel_width))
        self.register_buffer("weight", weight)
        self.padding = kernel_width // 2

    def forward(self, spectrogram: torch.Tensor) -> dict[str, torch.Tensor]:
        """(F, T) → {FEATURE: (1, N, 1, T)}, shaped like an image feature map so `nstdiff.losses` applies as is."""
        response = torch.nn.functional.conv1d(spectrogram[None], self.weight, padding=self.padding)
        return {FEATURE: torch.relu(response)[:, :, None, :]}


class SpectralStyleLoss:
    """L(S) = L_style(φ(S)) + β · L_content(φ(S)).

    L_style = ‖G(φ(S)) − G(φ(S_style))‖²_F / ‖G(φ(S_style))‖²_F with G = φφᵀ / T (Gatys et al. 2016, eqs. 3–5, as
    `nstdiff.losses.GramStyleLoss`): the Gram is averaged over time, so the style clip's length does not matter.
    L_content = ‖φ(S) − φ(S_content)‖² / ‖φ(S_content)‖² (eq. 1, as `FeatureContentLoss`).
    """

    def __init__(self, bank: RandomFilterBank, content: torch.Tensor, style: torch.Tensor, content_weight: float):
        with torch.no_grad():
            self.style = GramStyleLoss({FEATURE: [gram_matrix(bank(style)[FEATURE])]}, {FEATURE: 1.0})
            self.content = FeatureContentLoss(bank(content))
        self.bank = bank
        self.content_weight = content_weight

    @property
    def raw_content_weight(self) -> float:
        """β in the unnormalised sums ‖G − T‖² + β_raw ‖φ − φ_c‖² (Ulyanov & Lebedev's form): β · ‖T‖² / ‖φ_c‖².
        ‖T‖² has N² entries and ‖φ_c‖² N rows, so β_raw grows in proportion to the filter count N."""
        style_norm = self.style.norms[FEATURE][0]
        content_norm = self.content.norms[FEATURE]
        return float(self.content_weight * style_norm / content_norm)

    def __call__(self, spectrogram: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.bank(spectrogram)
        style = self.style(features)
        content = self.content(features)
        return {"total": style + self.content_weight * content, "style": style, "content": content}

