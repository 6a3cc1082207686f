"""Colour preservation (Gatys, Ecker, Bethge, Hertzmann & Shechtman 2017, "Controlling Perceptual Factors in Neural
Style Transfer", §5). All functions take and return (N, 3, H, W) RGB tensors in [0, 1].

- luminance: transfer on the luminance channel only. Style luminance is first matched to the content's mean and
  standard deviation, L_s' = σ_c/σ_s (L_s − μ_s) + μ_c; the output's luminance is recombined with the content's
  chroma (YIQ), so the content's colours are kept exactly.
- histogram: recolour each style image so its pixel mean and covariance equal the content's,
  x' = A (x − μ_s) + μ_c with A = Σ_c^½ Σ_s^−½, then transfer as usual.
- original: full colour transfer, then the output's luminance under the content's chroma.
"""
from __future__ import annotations

import torch

from nstdiff.schema import PreserveColor

_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _RGB_TO_YIQ.to(image), image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _YIQ_TO_RGB.to(image), image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luminance Y."""
    return rgb_to_yiq(image)[:, :1]


def gray3(y: torch.Tensor) -> torch.Tensor:
    return y.expand(-1, 3, -1, -1).clamp(0, 1)


def match_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    ys, yc = luminance(style), luminance(content)
    return (ys - ys.mean()) * (yc.std() / ys.std().clamp_min(1e-6)) + yc.mean()


def _sqrtm(matrix: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    values = values.clamp_min(1e-8)
    power = -0.5 if inverse else 0.5
    return vectors @ torch.diag(values**power) @ vectors.T


def match_color_statistics(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Recolour `source` so its RGB mean and covariance equal `target`'s (linear, per image)."""
    def stats(image):
        pixels = image.detach().flatten(2)[0].cpu().double()  # (3, HW); float64 eigh is CPU-only on some devices
        mean = pixels.mean(1, keepdim=True)
        centred = pixels - mean
        cov = centred @ centred.T / centred.shape[1] + 1e-5 * torch.eye(3, dtype=pixels.dtype)
        return pixels, mean, cov

    pixels, mean_s, cov_s = stats(source)
    _, mean_t, cov_t = stats(target)
    transform = _sqrtm(cov_t) @ _sqrtm(cov_s, inverse=True)
    out = transform @ (pixels - mean_s) + mean_t
    return out.view(source.shape[1:]).unsqueeze(0).to(source).clamp(0, 1)


def prepare(mode: PreserveColor, content: torch.Tensor, styles: list[torch.Tensor]):
    """Colour handling before the transfer: returns the (content, styles) the method should see."""
    if mode is PreserveColor.luminance:
        return gray3(luminance(content)), [gray3(match_luminance(s, content)) for s in styles]
    if mode is PreserveColor.histogram:
        return content, [match_color_statistics(s, content) for s in styles]
    return content, styles


def finish(mode: PreserveColor, output: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Colour handling after the transfer: output luminance under the content's chroma where the mode asks."""
    if mode in (PreserveColor.luminance, PreserveColor.original):
        yiq = rgb_to_yiq(content)
        yiq = torch.cat([luminance(output), yiq[:, 1:]], dim=1)
        return yiq_to_rgb(yiq).clamp(0, 1)
    return output
