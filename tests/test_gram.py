"""The Gram method through the public API, with the seeded random encoder at 32–64 px."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nstdiff import Cancelled, ImageStyleRequest, InputError, stylize
from nstdiff.losses import strength_weights
from nstdiff.pyramid import level_steps, pyramid_sizes
from tests.conftest import cancel_at, mean_rgb


def request(images, **kwargs) -> ImageStyleRequest:
    base = dict(content=images["content"], styles=[images["red"]], size=48, steps=12, seed=1, encoder="random")
    base.update(kwargs)
    return ImageStyleRequest(**base)


def test_output_keeps_aspect_and_reports_what_ran(images):
    result = stylize(request(images))
    assert result.image.size == (48, 40)
    assert (result.method, result.encoder, result.seed) == ("gram", "random", 1)
    assert result.parameters["options"]["content_layers"] == ["relu2_2", "relu3_1", "relu4_2"]  # defaults resolved into the result
    assert set(result.timings) == {"load", "transfer", "total"}


def test_style_loss_falls_and_colours_move_toward_the_style(images):
    events = []
    result = stylize(request(images, steps=30, controls={"strength": 0.9}), progress=events.append)
    steps = [e for e in events if e.stage == "optimise"]
    assert [e.step for e in steps] == list(range(1, 31))
    assert steps[-1].losses["style"] < 0.5 * steps[0].losses["style"]
    content = mean_rgb(Image.open(images["content"]))
    out = mean_rgb(result.image)
    assert out[0] - out[2] > content[0] - content[2] + 20  # redder than the blue-grey content


def test_same_seed_same_image_other_seed_other_image(images):
    options = {"init": "noise"}
    a = stylize(request(images, seed=7, options=options)).image
    b = stylize(request(images, seed=7, options=options)).image
    c = stylize(request(images, seed=8, options=options)).image
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_strength_zero_returns_the_content(images):
    result = stylize(request(images, controls={"strength": 0.0}, options={"tv_weight": 0.0}))
    content = np.asarray(Image.open(images["content"]), dtype=float)
    assert np.abs(np.asarray(result.image, dtype=float) - content).mean() < 2.0


def test_strength_maps_monotonically_onto_the_balance():
    ratios = [strength_weights(s)[1] / strength_weights(s)[0] for s in (0.1, 0.4, 0.7, 1.0)]
    assert ratios == sorted(ratios) and ratios[0] < ratios[-1] / 100


def test_blend_weights_move_the_output_between_styles(images):
    def redness(weights):
        styles = [{"image": images["red"], "weight": weights[0]}, {"image": images["blue"], "weight": weights[1]}]
        image = stylize(request(images, styles=styles, steps=40, controls={"strength": 0.9})).image
        r, _, b = mean_rgb(image)
        return r - b

    assert redness((0.9, 0.1)) > redness((0.5, 0.5)) > redness((0.1, 0.9))


def test_texture_synthesis_without_content(images):
    result = stylize(ImageStyleRequest(styles=[images["red"]], size=40, steps=15, seed=0, encoder="random"))
    assert result.image.size == (40, 40)
    assert mean_rgb(result.image)[0] > 100  # red texture, not mid-grey noise


def test_style_scale_changes_the_output(images):
    a = stylize(request(images, controls={"style_scale": 0.5})).image
    b = stylize(request(images, controls={"style_scale": 2.0})).image
    assert np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() > 1.0


def test_adam_and_init_image(images):
    result = stylize(request(images, options={"optimizer": "adam", "learning_rate": 0.05, "init": "image",
                                              "init_image": images["blue"]}))
    assert result.parameters["options"]["optimizer"] == "adam"
    assert result.image.size == (48, 40)


def test_cancel_stops_at_the_step_it_was_asked(images):
    token, on_progress, _ = cancel_at(3)
    with pytest.raises(Cancelled) as caught:
        stylize(request(images, steps=50), progress=on_progress, cancel=token)
    assert caught.value.step == 3


@pytest.mark.parametrize(
    "options, message",
    [
        ({"style_layers": ["relu9_9"]}, "unknown layer"),
        ({"style_layer_weights": [1.0]}, "one per layer"),
        ({"init": "image"}, "init_image"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"tv_weight": -1}, "tv_weight"),
    ],
)
def test_bad_options_say_what_is_wrong(images, options, message):
    with pytest.raises(InputError, match=message):
        stylize(request(images, options=options))


def test_pyramid_reaches_large_sizes_coarse_to_fine():
    sizes = pyramid_sizes(1536, 2048, None)
    assert sizes[-1] == (1536, 2048) and max(sizes[0]) <= 256
    assert all(b[0] > a[0] for a, b in zip(sizes, sizes[1:]))
    assert sum(level_steps(300, len(sizes))) == 300
    assert pyramid_sizes(40, 48, None) == [(40, 48)]


@pytest.mark.slow
def test_large_output_through_the_pyramid(images):
    result = stylize(request(images, size=1024, steps=4))
    assert result.image.size == (1024, 853)


def test_encoder_arithmetic_bf16_where_the_cpu_has_it_fp32_on_request(images):
    import torch

    bf16_kernels = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    auto = stylize(request(images, steps=6))
    full = stylize(request(images, steps=6, options={"precision": "fp32"}))
    assert f"gram: encoder in {'bfloat16' if bf16_kernels else 'float32'}" in auto.notes
    assert "gram: encoder in float32" in full.notes
    # losses stay float32: half-precision features reach about the same loss
    assert 0.5 < auto.losses["total"] / full.losses["total"] < 2
    with pytest.raises(InputError, match="fp16 arithmetic needs a GPU"):
        stylize(request(images, steps=2, options={"precision": "fp16"}))


def test_deep_style_layers_are_damped_by_default(images):
    """relu4_1 and relu5_1 weigh 0.1 and 0.01 (the grey relief of equal weights, losses.STYLE_LAYER_WEIGHTS)."""
    damped = stylize(request(images, steps=8))
    equal = stylize(request(images, steps=8, options={"style_layer_weights": [1, 1, 1, 1, 1]}))
    explicit = stylize(request(images, steps=8, options={"style_layer_weights": [1, 1, 1, 0.1, 0.01]}))
    assert damped.image.tobytes() == explicit.image.tobytes() != equal.image.tobytes()
