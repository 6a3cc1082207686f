"""Colour preservation and region masks (Gatys et al. 2017), through the API with the random encoder."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nstdiff import ImageStyleRequest, InputError, stylize
from nstdiff.controls.color import match_color_statistics, rgb_to_yiq
from nstdiff.methods.base import to_tensor
from tests.conftest import mean_rgb


def run(images, **kwargs):
    base = dict(content=images["content"], styles=[images["red"]], size=48, steps=15, seed=0, encoder="random",
                controls={"strength": 0.9})
    base.update(kwargs)
    return stylize(ImageStyleRequest(**base))


def chroma(image: Image.Image) -> np.ndarray:
    return rgb_to_yiq(to_tensor(image, torch.device("cpu")))[0, 1:].numpy()


@pytest.mark.parametrize("mode", ["luminance", "original"])
def test_colour_preserving_modes_keep_the_content_colours(images, mode):
    plain = run(images).image
    kept = run(images, controls={"strength": 0.9, "preserve_color": mode}).image
    content = Image.open(images["content"])
    error_kept = np.abs(chroma(kept) - chroma(content)).mean()
    error_plain = np.abs(chroma(plain) - chroma(content)).mean()
    assert error_kept < 0.02 < error_plain  # the red of the style is gone from the chroma


def test_histogram_mode_recolours_the_style_to_the_content():
    content = to_tensor(Image.new("RGB", (16, 16), (40, 80, 160)), torch.device("cpu"))
    content = content + 0.05 * torch.randn_like(content)
    generator = torch.Generator().manual_seed(0)
    style = (torch.tensor([0.8, 0.2, 0.1]).view(1, 3, 1, 1) + 0.1 * torch.rand(1, 3, 16, 16, generator=generator))
    matched = match_color_statistics(style, content)
    assert torch.allclose(matched.mean((2, 3)), content.mean((2, 3)), atol=0.02)
    covariance = lambda image: torch.cov(image.flatten(2)[0])  # noqa: E731
    assert torch.allclose(covariance(matched), covariance(content), atol=2e-4)


def test_histogram_mode_output_is_less_red(images):
    plain = mean_rgb(run(images, steps=30).image)
    matched = mean_rgb(run(images, steps=30, controls={"strength": 0.9, "preserve_color": "histogram"}).image)
    assert matched[0] - matched[2] < plain[0] - plain[2] - 20


def mask_file(tmp_path, left, right, size=(48, 40), edge=None):
    array = np.zeros((size[1], size[0], 3), np.uint8)
    array[:, : size[0] // 2] = left
    array[:, size[0] // 2 :] = right
    if edge is not None:
        array[:, size[0] // 2] = edge
    path = tmp_path / "mask.png"
    Image.fromarray(array).save(path)
    return path


def test_black_region_is_left_untouched(images, tmp_path):
    mask = mask_file(tmp_path, (0, 0, 0), (255, 255, 255))
    out = np.asarray(run(images, controls={"strength": 0.9, "mask": mask}).image, float)
    content = np.asarray(Image.open(images["content"]), float)
    assert np.abs(out[:, :20] - content[:, :20]).max() <= 1  # kept half (minus the feathered seam)
    assert np.abs(out[:, 28:] - content[:, 28:]).mean() > 10  # stylized half


def test_two_styles_go_to_their_regions(images, tmp_path):
    mask = mask_file(tmp_path, (255, 255, 255), (255, 0, 0), edge=(255, 128, 128))  # anti-aliased seam is fine
    styles = [images["red"], images["blue"]]
    out = np.asarray(run(images, styles=styles, steps=30, controls={"strength": 0.95, "mask": mask}).image, float)
    left, right = out[:, :20].reshape(-1, 3).mean(0), out[:, 28:].reshape(-1, 3).mean(0)
    assert left[0] - left[2] > right[0] - right[2] + 30  # red style on the left, blue on the right


def test_mask_of_the_wrong_size(images, tmp_path):
    mask = mask_file(tmp_path, (0, 0, 0), (255, 255, 255), size=(30, 30))
    with pytest.raises(InputError, match="mask is 30x30 but the content image is 48x40"):
        run(images, controls={"mask": mask})


def test_mask_with_unknown_colours(images, tmp_path):
    mask = mask_file(tmp_path, (0, 0, 0), (40, 200, 200))
    with pytest.raises(InputError, match=r"not in its palette .*#28c8c8.*style 1 = #ffffff"):
        run(images, controls={"mask": mask})


def test_custom_mask_colours(images, tmp_path):
    mask = mask_file(tmp_path, (0, 0, 0), (40, 200, 200))
    result = run(images, controls={"mask": mask, "mask_colors": ["#28c8c8"]})
    assert result.image.size == (48, 40)


def test_mask_or_colour_control_need_content(images, tmp_path):
    mask = mask_file(tmp_path, (0, 0, 0), (255, 255, 255))
    with pytest.raises(InputError, match="needs a content image"):
        run(images, content=None, controls={"preserve_color": "luminance"})
    with pytest.raises(InputError, match="mask needs a content image"):
        run(images, content=None, controls={"mask": mask})
