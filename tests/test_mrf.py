"""The Gram method's MRF patch style loss (Li & Wand 2016): exact against the textbook patch formula, keeps two
blended styles distinct where Gram matrices mix them, honours region masks, validates its options and is counted in
the memory estimate.

The runs use the random encoder (no weights to fetch) at 48 px. Its deep layers carry little colour and relu3_1 is
12×12 there, so both losses are compared on the same shallow layers (relu1_1, relu2_1): only the loss differs.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nstdiff import ImageStyleRequest, stylize
from nstdiff.errors import InputError
from nstdiff.losses_mrf import MRFStyleLoss
from nstdiff.registry import get_method
from nstdiff.settings import reload_settings
from tests.conftest import gradient, stripes

SIZE = 48
LAYERS = ["relu1_1", "relu2_1"]
RED, BLUE = ((230, 30, 20), (120, 10, 10)), ((20, 40, 230), (10, 10, 110))


def near_palette(image, palette, distance: float = 60.0) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.float64).reshape(-1, 1, 3)
    return np.linalg.norm(pixels - np.asarray(palette, dtype=np.float64)[None], axis=2).min(1) < distance


def two_styles(**fields) -> ImageStyleRequest:
    content = gradient(SIZE, SIZE, (90, 90, 90), (170, 170, 170))
    red, blue = stripes(SIZE, SIZE, *RED), stripes(SIZE, SIZE, *BLUE, period=8)
    return ImageStyleRequest(method="gram", content=content, styles=[red, blue], size=SIZE, steps=40, seed=0,
                             encoder="random", controls={"strength": 1.0}, **fields)


def test_the_loss_equals_the_patch_formula_with_its_gradient():
    """Σ_i ‖Ψ_i(x) − Ψ_NN(i)‖² / Σ_i ‖Ψ_NN(i)‖², NN by normalised cross-correlation over both styles' patches."""
    generator = torch.Generator().manual_seed(0)
    first, second = torch.rand(1, 8, 12, 14, generator=generator), 2 * torch.rand(1, 8, 10, 10, generator=generator)
    x = torch.rand(1, 8, 9, 11, generator=generator, requires_grad=True)
    ours = MRFStyleLoss({"l": [first, second]}, {"l": 1.0}, style_blend=[0.5, 0.5])({"l": x})
    ours.backward()
    gradient_ours, x.grad = x.grad.clone(), None

    patches = torch.cat([F.unfold(first, 3)[0].T, F.unfold(second, 3)[0].T])
    outputs = F.unfold(x, 3)[0].T
    correlation = F.normalize(outputs, dim=1) @ F.normalize(patches, dim=1).T
    matched = patches[correlation.argmax(1)]
    textbook = (outputs - matched).square().sum() / matched.square().sum()
    textbook.backward()
    assert torch.allclose(ours, textbook, rtol=1e-5)
    assert torch.allclose(gradient_ours, x.grad, atol=1e-6)


def test_mrf_keeps_two_blended_styles_distinct_where_gram_mixes_them():
    gram = stylize(two_styles(options={"style_layers": LAYERS})).image
    mrf = stylize(two_styles(options={"style_loss": "mrf", "mrf_layers": LAYERS})).image
    in_a_style = {name: (near_palette(image, RED) | near_palette(image, BLUE)).mean()
                  for name, image in (("gram", gram), ("mrf", mrf))}
    assert in_a_style["mrf"] > 0.7
    assert in_a_style["mrf"] > in_a_style["gram"] + 0.2  # Gram's blended target paints purple between them


def test_mrf_matches_each_region_only_to_its_own_style(tmp_path):
    from PIL import Image

    mask = np.zeros((SIZE, SIZE, 3), np.uint8)
    mask[:, : SIZE // 2] = (255, 255, 255)  # style 1 (red) left
    mask[:, SIZE // 2:] = (255, 0, 0)  # style 2 (blue) right
    Image.fromarray(mask).save(tmp_path / "mask.png")
    request = two_styles(options={"style_loss": "mrf", "mrf_layers": LAYERS})
    image = stylize(request.model_copy(update={"controls": request.controls.model_copy(
        update={"mask": tmp_path / "mask.png"})})).image
    left, right = image.crop((0, 0, SIZE // 2 - 4, SIZE)), image.crop((SIZE // 2 + 4, 0, SIZE, SIZE))
    assert near_palette(left, RED).mean() > 0.7 and near_palette(left, BLUE).mean() < 0.1
    assert near_palette(right, BLUE).mean() > 0.7 and near_palette(right, RED).mean() < 0.1


@pytest.mark.parametrize("options, message", [
    ({"style_loss": "patches"}, "style_loss"),
    ({"style_loss": "mrf", "mrf_patches": 4}, "mrf_patches"),
    ({"style_loss": "mrf", "mrf_layers": ["relu9_1"]}, "relu9_1"),
])
def test_bad_mrf_options_are_refused_clearly(options, message):
    with pytest.raises(InputError, match=message):
        stylize(two_styles(options=options).model_copy(update={"steps": 1}))


def test_the_memory_estimate_counts_the_patch_search():
    def estimate(**options) -> int:
        request = two_styles(options=options).model_copy(update={"size": 512, "encoder": "vgg16"})
        return get_method("gram").estimate_memory(request, reload_settings())

    gram, mrf = estimate(), estimate(style_loss="mrf")
    assert mrf > gram
    assert estimate(style_loss="mrf", mrf_patches=4096) > mrf
