"""The Image style tab's masks from words and GrabCut, driven without a server: the mask previewed over the photo
before anything runs and put into the painter, the words reaching the request, GrabCut from clicks."""
from __future__ import annotations

import shutil

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from tests.conftest import CALLER, image_form, no_progress
from tests.test_semantic_masks import scripted  # noqa: F401 - the scripted CLIPSeg fixture
from ui.mask_words import add_click, cut_out, preview, refill_words


def painted_colours(painter: dict) -> np.ndarray:
    layer = painter["layers"][0]
    assert (layer[..., 3] > 127).all()  # every pixel reads as painted
    return layer[..., :3]


def test_preview_shows_the_mask_and_puts_it_into_the_painter(scripted, hooked_app, images, uploads):  # noqa: F811
    form = image_form(images, uploads, styles=[str(shutil.copy(images[n], uploads / f"{n}.png"))
                                               for n in ("red", "blue")])
    overlay, painter, note = preview(hooked_app, form["content"], form["styles"], "sky\nground", "", "", 0.4, 0)
    assert Image.open(overlay).size == (48, 40) and overlay.startswith(str(uploads.resolve()))
    colours = painted_colours(painter)
    assert (colours[:14] == (255, 255, 255)).all() and (colours[18:] == (255, 0, 0)).all()  # style 1 sky, 2 ground
    assert note == "mask 'sky': 40.0% of the photo; mask 'ground': 60.0% of the photo"
    assert hooked_app.calls == []  # nothing ran
    # the (corrected) painter is what the run uses: the painted mask, in place of the words
    outputs = list(hooked_app.stylize({**form, "method": "gram", "mask_where": "sky\nground", "mask_paint": painter},
                                      CALLER, no_progress))
    (entry,) = hooked_app.store.list()
    assert outputs and entry.parameters["controls"]["mask"] and entry.parameters["controls"]["regions"] == []


def test_words_from_the_form_reach_the_request(scripted, hooked_app, images, uploads):  # noqa: F811
    form = image_form(images, uploads, method="gram", mask_only="the dog", mask_except="sky", mask_feather=2)
    list(hooked_app.stylize(form, CALLER, no_progress))
    (entry,) = hooked_app.store.list()
    controls = entry.parameters["controls"]
    assert controls["only"] == ["the dog"] and controls["except_"] == ["sky"] and controls["mask_feather"] == 2
    assert any(note.startswith("mask 'the dog': ") for note in entry.notes)
    assert refill_words(controls, None)[:3] == ("", "the dog", "sky")


def test_a_phrase_that_matches_nothing_is_explained_in_the_preview(scripted, hooked_app, images, uploads):  # noqa: F811
    form = image_form(images, uploads)
    with pytest.raises(gr.Error, match="the phrase 'unicorn' matched nothing in the photo"):
        preview(hooked_app, form["content"], form["styles"], "", "unicorn", "", 0.4, 4)


def test_more_places_than_style_images_and_bad_values_are_explained_in_the_preview(scripted, hooked_app, images,  # noqa: F811
                                                                                   uploads):
    form = image_form(images, uploads)  # one style image
    with pytest.raises(gr.Error, match=r"2 lines of places for 1 style image\(s\): one line per style image"):
        preview(hooked_app, form["content"], form["styles"], "sky\nground", "", "", 0.4, 0)
    with pytest.raises(gr.Error, match="mask_threshold") as refused:
        preview(hooked_app, form["content"], form["styles"], "", "sky", "", 1.5, 0)
    assert "pydantic.dev" not in str(refused.value)


def test_grabcut_from_clicks_on_the_photo_without_a_model(hooked_app, uploads):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 90, (120, 160, 3)).astype(np.uint8)
    square = np.zeros((120, 160), bool)
    square[40:90, 50:110] = True
    pixels[square] = rng.integers(170, 255, (square.sum(), 3)).astype(np.uint8)
    Image.fromarray(pixels).save(uploads / "photo.png")
    clicks = add_click(add_click("", gr.SelectData(None, {"index": [70, 60], "value": None})),
                       gr.SelectData(None, {"index": [95, 80], "value": None}))
    assert clicks == "70, 60; 95, 80"
    _, painter, note = cut_out(hooked_app, str(uploads / "photo.png"), clicks)
    found = (painted_colours(painter) == (255, 255, 255)).all(-1)  # the object is style 1, the rest black
    assert (found & square).sum() / (found | square).sum() > 0.9 and note.startswith("GrabCut: the object is ")
    with pytest.raises(gr.Error, match="click on the object in the content preview first"):
        cut_out(hooked_app, str(uploads / "photo.png"), "")
