"""The Image style tab's masks from words and GrabCut, driven without a server: the mask previewed over the photo
before anything runs and put into the painter, the words reaching the request, GrabCut from clicks; masks painted on
the style images."""
from __future__ import annotations

import shutil

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from tests.conftest import CALLER, image_form, no_progress
from tests.test_semantic_masks import scripted  # noqa: F401 - the scripted CLIPSeg fixture
from ui.image_form import image_option_fields
from ui.image_tab import IMAGE_FORM
from ui.mask_words import add_click, cut_out, preview, refill_words
from ui.style_painter import STYLE_PAINT, keep_painted, pick, styles_changed


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


def test_a_preview_only_shows_until_it_is_taken_into_the_painter(hooked_app):
    demo = hooked_app.build()
    widgets = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    (shows,) = [f for f in demo.fns.values() if f.api_name == "preview_mask"]
    (edit,) = [f for f in demo.fns.values() if (widgets["mask-edit"]._id, "click") in map(tuple, f.targets)]
    painter = widgets["mask-paint"]
    assert painter not in shows.outputs and edit.outputs == [painter]  # the words stay in charge until then
    assert [type(b).__name__ for b in edit.inputs] == ["State"] and edit.inputs[0] in shows.outputs


def test_stylize_saves_the_last_strokes_on_a_style_image_before_it_runs(hooked_app):
    demo = hooked_app.build()
    (stylize,) = [f for f in demo.fns.values() if f.api_name == "stylize"]
    (saved,) = [f for f in demo.fns.values() if f.fn is keep_painted and f is not stylize
                and any(t[1] == "click" for t in f.targets)]
    assert stylize.trigger_after == saved._id  # the editor's own change event may come after the click


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


def two_styles(images, uploads) -> list[str]:
    """Red stripes (48×48) and blue stripes at another size (40×30), as uploads."""
    Image.open(images["blue"]).resize((40, 30)).save(uploads / "blue.png")
    return [str(shutil.copy(images["red"], uploads / "red.png")), str(uploads / "blue.png")]


def paint_on(styles: list[str], index: int, painted: dict, box: tuple[slice, slice]) -> dict:
    """What the painter keeps when the person picks style `index` and paints `box` white on it."""
    editor = pick(styles, index, painted)
    height, width = np.asarray(Image.open(editor["background"])).shape[:2]
    layer = np.zeros((height, width, 4), np.uint8)
    layer[box] = (255, 255, 255, 255)
    return keep_painted(styles, index, {**editor, "layers": [layer]}, painted)


def stored_style_masks(app, form: dict) -> list:
    list(app.stylize({**form, "method": "gram"}, CALLER, no_progress))
    (entry,) = app.store.list()
    return [m and np.asarray(Image.open(m).convert("L")) for m in entry.parameters["controls"]["style_masks"]]


def test_a_mask_painted_on_style_two_reaches_the_request(hooked_app, images, uploads):
    styles = two_styles(images, uploads)
    picker, editor, painted = styles_changed(styles, {})
    assert picker["choices"] == [("Style 1", 0), ("Style 2", 1)] and editor["background"] == styles[0]
    painted = paint_on(styles, 1, painted, (slice(5, 15), slice(10, 30)))
    first, second = stored_style_masks(hooked_app, image_form(images, uploads, styles=styles, style_paint=painted))
    assert first is None and second.shape == (30, 40)  # style 2's size
    expected = np.zeros((30, 40), np.uint8)
    expected[5:15, 10:30] = 255
    assert (second == expected).all()  # painted: take the style from there; the rest: not


def test_the_painter_shows_the_picked_style_and_forgets_masks_on_replaced_images(hooked_app, images, uploads):
    styles = two_styles(images, uploads)
    painted = paint_on(styles, 1, {}, (slice(0, 10), slice(0, 10)))
    shown = pick(styles, 1, painted)
    assert shown["background"] == styles[1] and (shown["layers"][0][:10, :10, 3] == 255).all()
    assert pick(styles, 0, painted)["layers"] == []  # style 1: nothing painted on it
    _, editor, kept = styles_changed(styles[::-1], painted)  # style 2 is now another image: its mask goes
    assert kept == {} and editor["background"] == styles[1]
    assert styles_changed(styles, painted)[2] == painted  # the same images: the mask stays
    # the painter's state is no `/stylize` parameter: API callers' parameters stay as they were
    demo = hooked_app.build()
    parameters = [p["parameter_name"] for p in demo.get_api_info()["named_endpoints"]["/stylize"]["parameters"]]
    assert tuple(parameters[:len(IMAGE_FORM)]) == IMAGE_FORM and STYLE_PAINT not in parameters
    assert len(parameters) == len(IMAGE_FORM) + len(image_option_fields(hooked_app.executor))


def test_a_painted_mask_wins_over_the_upload_for_its_style(hooked_app, images, uploads):
    styles = two_styles(images, uploads)
    top, left = np.zeros((48, 48), np.uint8), np.zeros((30, 40), np.uint8)
    top[:24], left[:, :20] = 255, 255
    Image.fromarray(top).save(uploads / "mask_1.png")
    Image.fromarray(left).save(uploads / "mask_2.png")
    painted = paint_on(styles, 1, {}, (slice(20, 30), slice(0, 40)))  # the bottom third of style 2
    form = image_form(images, uploads, styles=styles, style_masks=[str(uploads / "mask_1.png"),
                                                                   str(uploads / "mask_2.png")], style_paint=painted)
    first, second = stored_style_masks(hooked_app, form)
    assert (first == top).all()  # style 1: its upload
    assert (second[20:] == 255).all() and (second[:20] == 0).all()  # style 2: the painted mask, not the upload


@pytest.mark.parametrize("api_name", ["text_style", "style_reference"])
def test_the_diffusion_tabs_change_only_the_part_named_in_words(hooked_app, images, uploads, api_name, monkeypatch):
    monkeypatch.setattr("ui.readiness.require", lambda *args: None)  # no diffusion model here: the request is the point
    demo = hooked_app.build()
    (handler,) = [f.fn for f in demo.fns.values() if f.api_name == api_name]
    content, style = (str(shutil.copy(images[n], uploads / f"{n}.png")) for n in ("content", "red"))
    seen = []

    def stop(request):
        seen.append(request)
        raise RuntimeError("seen")

    hooked_app.before_run = stop
    common = {"content": content, "strength": 0.6, "structure": "none", "family": "sd15", "fast": False,
              "size": 64, "steps": 2, "seed": 1, "only": "the dog, the cat", "except_": "faces"}
    tab = {"text_style": {"prompt": "ukiyo-e", "preset": "none", "negative": ""},
           "style_reference": {"style": style, "prompt": "", "mode": "style", "reference_scale": 1.0,
                               "technique": "diffusion-reference"}}[api_name]
    values = {**common, **tab}
    with pytest.raises(RuntimeError, match="seen"):
        list(handler(**values, request=CALLER, progress=no_progress))
    controls = seen[0].controls
    assert controls.only == ["the dog", "the cat"] and controls.except_ == ["faces"]
    with pytest.raises(gr.Error, match="Only / Except name parts of a photo"):
        list(handler(**{**values, "content": None}, request=CALLER, progress=no_progress))
