"""Form values → typed requests, without a server: the checks a person meets first."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nstdiff import InputError
from nstdiff.schema import Controls
from ui.forms import bounds, image_request, painted_mask, parse_weights


def test_slider_bounds_come_from_the_request_model():
    assert bounds(Controls, "strength") == {"value": 0.7, "info": "0 keeps the content, 1 is all style.",
                                            "minimum": 0, "maximum": 1}


def test_weights_text():
    assert parse_weights("", 2) == [1.0, 1.0]
    assert parse_weights("0.7; 0.3", 2) == [0.7, 0.3]
    with pytest.raises(InputError, match="numbers separated by commas"):
        parse_weights("a lot", 1)


def test_painted_strokes_become_a_mask_and_unpainted_is_style_one(tmp_path):
    layer = np.zeros((10, 20, 4), np.uint8)
    layer[:, :5] = (0, 0, 0, 255)  # black: keep
    layer[:, 15:] = (255, 0, 0, 255)  # red: style 2
    path = painted_mask({"background": None, "layers": [layer], "composite": None}, tmp_path)
    mask = np.asarray(Image.open(path))
    assert tuple(mask[0, 0]) == (0, 0, 0) and tuple(mask[0, 10]) == (255, 255, 255) and tuple(mask[0, 19]) == (255, 0, 0)
    assert painted_mask({"layers": [np.zeros((10, 20, 4), np.uint8)]}, tmp_path) is None  # nothing painted


def test_request_from_form_values(images):
    request = image_request(method="gram", content=str(images["content"]), styles=[str(images["red"])], weights="",
                            size=64, steps=0, seed=-1, encoder="random", strength=0.5, preserve_color="luminance",
                            style_scale=1.0)
    assert request.steps is None and request.seed is None and request.controls.preserve_color.value == "luminance"
    with pytest.raises(InputError, match="add at least one style image"):
        image_request(method="gram", content=None, styles=[], weights="", size=64, steps=0, seed=0,
                      encoder="random", strength=0.5, preserve_color="none", style_scale=1.0)
    with pytest.raises(InputError, match="size: Input should be less than or equal to 4096"):
        image_request(method="gram", content=None, styles=["s.png"], weights="", size=9000, steps=0, seed=0,
                      encoder="random", strength=0.5, preserve_color="none", style_scale=1.0)


def test_speed_quality_from_the_form(images):
    form = dict(method="auto", content=str(images["content"]), styles=[str(images["red"])], weights="", size=64,
                steps=0, seed=-1, encoder="random", strength=0.5, preserve_color="none", style_scale=1.0)
    assert image_request(**form, quality="best").quality == "best"
    assert image_request(**form).quality == image_request(**form, quality=None).quality == "balanced"  # the default
    with pytest.raises(InputError, match="quality"):
        image_request(**form, quality="perfect")


def test_method_options_become_widgets_and_come_back_as_options():
    from nstdiff.registry import get_method
    from ui.forms import method_options, option_fields

    fields = {f.name: f for f in option_fields(get_method("adain").info())}
    assert "decoder" not in fields  # a file path is not a form field
    assert fields["alpha"].kind == "number" and fields["alpha"].nullable and fields["alpha"].maximum == 1
    assert fields["variant"].choices == ("auto", "decoder", "optimise")
    values = {"adain_alpha": None, "adain_layers": "relu1_1, relu3_1", "adain_variant": "optimise",
              "gram_tv_weight": 9.0}
    assert method_options(list(fields.values()), "adain", values) == {"layers": ["relu1_1", "relu3_1"],
                                                                     "variant": "optimise"}


def test_lora_choices_come_back_as_name_weight_text():
    from ui.forms import OptionField

    field = OptionField(method="chain", name="loras", kind="list", default=[])
    stored = [{"name": "ink", "weight": 0.8}, {"name": "neon", "weight": 0.5}]
    assert field.form_value(stored) == "ink:0.8, neon:0.5"
    assert field.parse(field.form_value(stored)) == ["ink:0.8", "neon:0.5"]
