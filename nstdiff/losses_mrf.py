"""The MRF patch style loss (Li & Wand 2016, "Combining Markov Random Fields and Convolutional Neural Networks for
Image Synthesis", CVPR): a style option of the Gram method that keeps mixed styles distinct instead of muddy.

Notation as in `losses`: Φ_l(x) are the activations of layer l, Ψ_i(Φ) its i-th k×k patch (k = 3) as a vector.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Li & Wand match relu3_1 and relu4_1 (strokes, texture). Alone they left colour to chance: at 256 px (VGG16, two
# paintings, benchmarks/mrf_benchmark.py) the output's pixels lay 40 RGB from the paintings' main colours, Gram's 29;
# with relu2_1 added 35; with relu1_1 and relu2_1 27, and the second painting's style score rose from 0.05 to 0.35.
MRF_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
PATCH = 3
SEARCH_CHUNK = 256  # style patches per convolution in the nearest-neighbour search: bounds its response maps


def style_patches(features: torch.Tensor, limit: int) -> torch.Tensor:
    """The 3×3 patches of a style's features (1, C, H, W) as rows (N, 9C), on a grid whose stride keeps N ≤ `limit`
    (every patch when there are few enough): the patch count, and so the search's time and memory, stays bounded."""
    height, width = features.shape[-2] - PATCH + 1, features.shape[-1] - PATCH + 1
    stride = max(1, math.ceil(math.sqrt(height * width / limit)))
    return F.unfold(features, PATCH, stride=stride)[0].T.contiguous()


def positions(features: torch.Tensor) -> int:
    """How many 3×3 patches (stride 1) features (1, C, H, W) have."""
    return (features.shape[-2] - PATCH + 1) * (features.shape[-1] - PATCH + 1)


class MRFStyleLoss:
    """L_mrf = Σ_l w_l Σ_i m_i ‖Ψ_i(Φ_l(x)) − Ψ_NN(i)(Φ_l(s))‖² / Σ_i m_i ‖Ψ_NN(i)(Φ_l(s))‖²
    (Li & Wand 2016, eq. 2, target-normalised as the Gram loss is).

    Each 3×3 patch of the output's features is matched to its nearest style patch by normalised cross-correlation,
    NN(i) = argmax_j ⟨Ψ_i(x), Ψ_j(s)⟩ / (|Ψ_i(x)| |Ψ_j(s)|) (eq. 3): a convolution of Φ(x) with the normalised style
    patches; |Ψ_i(x)| does not change the argmax. The match is recomputed at every evaluation, without gradient.

    Several styles: the nearest patch among all styles' patches, its correlation scaled by the style's blend weight
    over the largest one (equal weights: Li & Wand's plain nearest neighbour). A patch copies one style or another,
    which keeps a mix of styles distinct where the blended Gram target averages them into one muddy texture. Region
    masks (S, H, W): the patches of region s are matched only to style s's patches, m_i is the region's mask at the
    patch centre (0 in the untouched area); without masks m_i = 1.

    Computed without unfolding Φ(x) (whose patch matrix is 9× the activations, with its gradient): with T_i the
    matched patch, Σ_i m_i ‖Ψ_i − T_i‖² = Σ_p c_p Φ_p² − 2 Σ_p Φ_p · fold(m T)_p + Σ_i m_i ‖T_i‖², where fold sums
    overlapping patches back onto positions p and c = fold(m) counts the (weighted) patches covering each one.
    """

    def __init__(self, targets: dict[str, list[torch.Tensor]], layer_weights: dict[str, float],
                 region_masks: torch.Tensor | None = None, style_blend: list[float] | None = None,
                 max_patches: int = 1024):
        # targets[layer][s]: the features (1, C, H, W) of style s at `layer`
        self.layer_weights = layer_weights
        self.region_masks = region_masks
        self.patches = {layer: [style_patches(f, max_patches) for f in features] for layer, features in targets.items()}
        self.normalised = {layer: [p / p.norm(dim=1, keepdim=True).clamp_min(1e-8) for p in patches]
                           for layer, patches in self.patches.items()}
        count = len(next(iter(targets.values())))
        blend = torch.tensor(style_blend or [1.0] * count)
        self.prior = (blend / blend.max()).tolist()

    def nearest(self, feature: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """For each output patch: the correlation (S, L) and index (S, L) of its nearest patch in each style."""
        scores, indices = [], []
        for kernels in self.normalised[layer]:
            best = torch.full((positions(feature),), -math.inf, device=feature.device)
            index = torch.zeros_like(best, dtype=torch.long)
            for start in range(0, len(kernels), SEARCH_CHUNK):
                chunk = kernels[start:start + SEARCH_CHUNK]
                response = F.conv2d(feature, chunk.view(len(chunk), feature.shape[1], PATCH, PATCH)).flatten(2)[0]
                value, where = response.max(0)
                better = value > best
                best, index = torch.where(better, value, best), torch.where(better, where + start, index)
            scores.append(best)
            indices.append(index)
        return torch.stack(scores), torch.stack(indices)

    def patch_weights(self, feature: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The region (S, L) each output patch belongs to (None without masks), and its weight m (L,)."""
        if self.region_masks is None:
            return None, feature.new_ones(positions(feature))
        at_layer = F.interpolate(self.region_masks[None], size=feature.shape[-2:], mode="area")[0]
        centres = at_layer[:, 1:-1, 1:-1].flatten(1)  # (S, L): each patch's region shares, at its centre
        return centres.argmax(0), centres.sum(0)

    def __call__(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        total = next(iter(features.values())).new_zeros(())
        for layer, weight in self.layer_weights.items():
            feature = features[layer]
            with torch.no_grad():
                detached = feature.detach()
                scores, indices = self.nearest(detached, layer)
                region, m = self.patch_weights(detached)
                if region is None:
                    prior = torch.tensor(self.prior, device=scores.device)[:, None]
                    region = (scores * prior).argmax(0)
                matched = torch.empty(len(region), self.patches[layer][0].shape[1], device=feature.device)
                for style, patches in enumerate(self.patches[layer]):
                    chosen = region == style
                    matched[chosen] = patches[indices[style, chosen]]
                size = feature.shape[-2:]
                targets = F.fold((matched * m[:, None]).T[None], size, PATCH)  # fold(m T): (1, C, H, W)
                coverage = F.fold(m.expand(PATCH * PATCH, -1)[None], size, PATCH)  # c: (1, 1, H, W)
                energy = (matched.square().sum(1) * m).sum()
            if energy <= 0:  # every patch in the untouched area: nothing to match
                continue
            loss = (coverage * feature.square()).sum() - 2 * (feature * targets).sum() + energy
            total = total + weight * loss.clamp_min(0) / energy
        return total
