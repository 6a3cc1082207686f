"""Losses of neural style transfer. Each docstring gives the maths and the paper.

F_l ∈ R^{C_l × M_l} are the activations of layer l (C_l channels, M_l positions). Losses are normalised by the
target's own energy, so one set of weights works across layers, encoders (Caffe- or ImageNet-scaled) and sizes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Gatys et al. 2016's style layers, with the deep ones damped. With target-normalised losses, equal weights give
# relu4_1 and relu5_1 as much pull as relu1_1; their sparse Grams are the hardest to match and L-BFGS matches them by
# embossing ridges and highlights over the photo: the grey "crumpled foil" look, with the photo's palette left under
# it. Damping them by 10× per layer (measured on benchmarks/quality_benchmark.py's pairs, Gram alone, 100 steps) took
# the style score from 0.72 to 0.82 at the same SSIM (0.475), and from noise the painting's palette and flat strokes
# replace the relief.
STYLE_LAYER_WEIGHTS = {"relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 1.0, "relu4_1": 0.1, "relu5_1": 0.01}
STYLE_LAYERS = tuple(STYLE_LAYER_WEIGHTS)
# strength s ∈ [0, 1] → style/content weight ratio 10^(RATIO_AT_ZERO + RATIO_SPAN·s); s = 0 is the content itself.
# The default 0.7 gives ≈ 24: clearly painted yet recognisable (≈ 63 lost faces and objects at 256 px)
RATIO_AT_ZERO, RATIO_SPAN = -1.0, 3.4


def strength_weights(strength: float) -> tuple[float, float]:
    """(content_weight, style_weight) for a strength in [0, 1]."""
    if strength <= 0:
        return 1.0, 0.0
    return 1.0, 10 ** (RATIO_AT_ZERO + RATIO_SPAN * strength)


def gram_matrix(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """G = F Fᵀ / M (Gatys, Ecker & Bethge 2016, eq. 3, averaged over positions).

    With a mask m ∈ [0, 1]^M (guided Gram, Gatys et al. 2017 eq. 6): G = (F∘m)(F∘m)ᵀ / Σm.
    `features` is (1, C, H, W); `mask` is (H, W) or None.
    """
    _, channels, height, width = features.shape
    flat = features.reshape(channels, height * width)
    if mask is None:
        return flat @ flat.T / (height * width)
    weights = mask.reshape(1, height * width)
    weighted = flat * weights
    return weighted @ weighted.T / weights.sum().clamp_min(1e-8)


class GramStyleLoss:
    """L_style = Σ_l w_l ‖G_l(x) − T_l‖²_F / ‖T_l‖²_F (Gatys, Ecker & Bethge 2016, eqs. 4–5, target-normalised).

    Targets blend several styles: T_l = Σ_s a_s G_l(style_s), Σ a_s = 1. With region masks (Gatys et al. 2017, §4)
    each region r has its own target T_{l,r} (its style's Gram) and is compared with the guided Gram of x under the
    region's mask, weighted by the region's share of the image.
    """

    def __init__(self, targets: dict[str, list[torch.Tensor]], layer_weights: dict[str, float],
                 region_masks: torch.Tensor | None = None, style_blend: list[float] | None = None):
        # targets[layer][s]: Gram of style s at `layer`; region_masks: (S, H, W) or None (blend all styles everywhere)
        self.layer_weights = layer_weights
        self.region_masks = region_masks
        if region_masks is None:
            blend = style_blend or [1.0 / len(next(iter(targets.values())))] * len(next(iter(targets.values())))
            self.targets = {layer: [sum(a * g for a, g in zip(blend, grams))] for layer, grams in targets.items()}
            self.region_share = [1.0]
        else:
            self.targets = targets
            share = region_masks.flatten(1).mean(1)
            self.region_share = (share / share.sum().clamp_min(1e-8)).tolist()
        self.norms = {layer: [t.square().sum().clamp_min(1e-12) for t in ts] for layer, ts in self.targets.items()}

    def __call__(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        # a tensor even when every region is empty (an all-black mask: nothing to restyle), so callers can detach it
        total = next(iter(features.values())).new_zeros(())
        for layer, weight in self.layer_weights.items():
            feature = features[layer]
            for index, target in enumerate(self.targets[layer]):
                share = self.region_share[index]
                if share == 0:
                    continue
                mask = None
                if self.region_masks is not None:
                    mask = F.interpolate(self.region_masks[index][None, None], size=feature.shape[-2:], mode="area")[0, 0]
                gram = gram_matrix(feature, mask)
                total = total + weight * share * (gram - target).square().sum() / self.norms[layer][index]
        return total


class FeatureContentLoss:
    """L_content = mean_l ‖F_l(x) − F_l(c)‖² / ‖F_l(c)‖² (Gatys, Ecker & Bethge 2016, eq. 1, target-normalised)."""

    def __init__(self, targets: dict[str, torch.Tensor]):
        self.targets = targets
        self.norms = {layer: t.square().sum().clamp_min(1e-12) for layer, t in targets.items()}

    def __call__(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for layer, target in self.targets.items():
            total = total + (features[layer] - target).square().sum() / self.norms[layer]
        return total / len(self.targets)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """L_tv = mean |x_{i+1,j} − x_{i,j}|² + mean |x_{i,j+1} − x_{i,j}|² (Mahendran & Vedaldi 2015; Johnson et al. 2016)."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return dy.square().mean() + dx.square().mean()
