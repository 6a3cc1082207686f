"""Habits people bring from other tools (issue 15 §3): seed dice / recycle, size presets, style pictures with their
weights, variations, settings read from a PNG (ours and AUTOMATIC1111's), "use these settings" for every tab, inputs
reloaded under their own names, readable spectrograms. Handlers are driven without a server."""
from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from tests.conftest import CALLER, no_progress
from ui.image_tab import REUSED

A1111 = ("a castle on a hill, oil painting\nNegative prompt: blurry\nSteps: 28, Sampler: DPM++ 2M Karras, "
         "CFG scale: 7, Seed: 1234567, Size: 512x768, Model hash: abc123, Denoising strength: 0.45")


@pytest.fixture
def app(isolated_settings, uploads):
    from ui.app import App

    return App(settings=isolated_settings)


@pytest.fixture
def form(images, uploads) -> dict:
    content = shutil.copy(images["content"], uploads / "holiday photo.png")
    style = shutil.copy(images["red"], uploads / "starry night.png")
    return dict(content=str(content), styles=[str(style)], weights="", method="gram", strength=0.8,
                preserve_color="none", style_scale=1.0, size=32, steps=2, seed=3, encoder="random", mask_file=None,
                mask_paint=None, quality="balanced")


def widget(demo, elem_id: str):
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def handler(demo, component, event: str):
    (fn,) = [f for f in demo.fns.values() if (component._id, event) in map(tuple, f.targets) and f.fn is not None]
    return fn


def test_a1111_parameters_give_steps_seed_size_and_strength():
    from ui.history_tools import a1111_settings

    values, unused = a1111_settings(A1111)
    assert values == {"steps": 28, "seed": 1234567, "strength": 0.45, "size": 768}  # size: the longest side
    assert {"sampler", "cfg scale", "model hash"} <= set(unused)


def test_a_png_restores_its_settings_in_the_right_tab_and_never_opens_its_paths(app, form, uploads, tmp_path):
    from ui.history_tools import png_settings

    demo = app.build()
    for _ in app.stylize({**form, "size": 40, "steps": 3, "seed": 11}, CALLER, no_progress):
        pass
    (entry,) = app.store.list()
    dropped = str(shutil.copy(entry.output, uploads / "dropped.png"))
    read = handler(demo, widget(demo, "settings-png"), "upload")
    values = read.fn(dropped)
    image_values, label, note = values[:len(REUSED)], values[-2], values[-1]
    assert label == "Image style" and "nstdiff" in note and "upload the inputs again" in note
    by_name = dict(zip(REUSED, image_values))
    assert (by_name["method"], by_name["size"], by_name["steps"], by_name["seed"]) == ("gram", 40, 3, 11)
    assert by_name["content"] == gr.update() and by_name["styles"] == gr.update()  # a PNG's paths are not opened
    other = Image.new("RGB", (8, 8))
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)
    other.save(uploads / "a1111.png", pnginfo=info)
    by_name = dict(zip(REUSED, read.fn(str(uploads / "a1111.png"))))
    assert (by_name["size"], by_name["steps"], by_name["seed"], by_name["strength"]) == (768, 28, 1234567, 0.45)
    assert by_name["method"] == gr.update()
    Image.new("RGB", (8, 8)).save(uploads / "plain.png")
    with pytest.raises(gr.Error, match="carries no settings"):
        png_settings(str(uploads / "plain.png"))


def test_use_these_settings_keeps_input_names_and_switches_to_the_tab_that_made_it(app, form):
    demo = app.build()
    for _ in app.stylize(form, CALLER, no_progress):
        pass
    (entry,) = app.store.list()
    use = handler(demo, widget(demo, "reuse"), "click")
    values = use.fn(entry.id)
    assert values[-1] == "Image style"
    assert Path(values[0]).name == "holiday_photo.png" and Path(values[1][0]).name == "starry_night.png"
    labels = [tab.label for tab in app.refills.tabs]
    assert labels[0] == "Image style"
    # one tab bar holds every tab (a widget built between two tabs would start a second bar, below the first)
    tabs = [b for b in demo.blocks.values() if isinstance(b, gr.Tab) and b.id in
            {"image", "text", "reference", "loras", "texture", "history", "models"}]
    assert len(tabs) == 7 and len({id(tab.parent) for tab in tabs}) == 1
    for label, method in (("Audio", "audio"), ("3D", "mesh")):
        if label not in labels:  # that extension is not installed here
            continue
        tab = next(t for t in app.refills.tabs if t.label == label)
        assert tab.methods(method)


def test_use_these_settings_fills_text_style_and_style_reference(isolated_settings, diffusion_models, uploads,
                                                                 images):
    from ui.app import App

    app = App(settings=isolated_settings.model_copy(update={"models_dir": diffusion_models}))
    demo = app.build()
    photo = str(shutil.copy(images["content"], uploads / "beach.png"))
    style = str(shutil.copy(images["red"], uploads / "poster.png"))
    text = handler(demo, widget(demo, "text-run"), "click").fn
    list(text(photo, "ukiyo-e woodblock", "none", "people", 0.6, "none", "sd15", False, 64, 3, 5,
              request=CALLER, progress=no_progress))
    reference = handler(demo, widget(demo, "ref-run"), "click").fn
    list(reference(photo, style, "a harbour", "full", 0.7, 0.9, "none", "sd15", False, 64, 3, 6, request=CALLER,
                   progress=no_progress))
    use = handler(demo, widget(demo, "reuse"), "click").fn
    by_method = {entry.method: entry for entry in app.store.list()}

    def refilled(method: str, label: str) -> list:
        values = use(by_method[method].id)
        tab = next(t for t in app.refills.tabs if t.label == label)
        start = sum(len(t.widgets) for t in app.refills.tabs[:app.refills.tabs.index(tab)])
        assert values[-1] == label
        assert all(v == gr.update() for i, v in enumerate(values[:-1]) if not start <= i < start + len(tab.widgets))
        return values[start:start + len(tab.widgets)]

    shown = refilled("diffusion-text", "Text style")
    assert Path(shown[0]).name == "beach.png"
    assert shown[1:11] == ["ukiyo-e woodblock", "none", "people", 0.6, "none", "sd15", False, 64, 3, 5]
    assert shown[-2:] == ["", ""]
    shown = refilled("diffusion-reference", "Style reference")
    assert [Path(shown[0]).name, Path(shown[1]).name] == ["beach.png", "poster.png"]
    assert shown[2:13] == ["a harbour", "full", 0.7, 0.9, "none", "sd15", False, 64, 3, 6, "diffusion-reference"]
    assert all(v == gr.update() for v in shown[13:-2])  # the attention techniques' knobs are left as they are
    assert shown[-2:] == ["", ""]  # Only / Except: nothing named


def test_seed_dice_recycle_size_presets_and_style_pictures(app, form, uploads):
    from ui.habits import last_seed, photo_size, preset_size, styles_shown

    assert last_seed("**gram** · encoder **random** · seed **4242** · total 1.0 s") == 4242
    Image.new("RGB", (300, 200)).save(uploads / "wide.png")
    assert photo_size(str(uploads / "wide.png"), 2048) == 288  # the photo's side on the 16 px grid, not above it
    assert preset_size("as the photo", str(uploads / "wide.png"), 2048) == 288
    assert preset_size("1024", None, 768) == 768  # never above the server's limit
    shown = styles_shown([form["styles"][0], form["content"]], "3, 1")
    assert [caption for _, caption in shown] == ["starry night · 75%", "holiday photo · 25%"]
    demo = app.build()
    dice = handler(demo, widget(demo, "seed-random"), "click")
    assert dice.fn() == -1


def test_variations_make_one_stored_result_per_seed(app, form):
    from ui.habits import variations
    from ui.image_form import form_job

    outputs = list(variations(app, form_job, {**form, "count": 3, "seed": 7, "gram_init": "noise"}, CALLER,
                              no_progress))
    gallery, text = outputs[-1]
    assert [caption for _, caption in gallery] == ["seed 7", "seed 8", "seed 9"] and text.startswith("3 of 3")
    assert sorted(e.seed for e in app.store.list()) == [7, 8, 9]
    assert len({Path(path).read_bytes() for path, _ in gallery}) == 3  # other seeds, other pictures


def test_spectrograms_have_time_and_frequency_axes():
    pytest.importorskip("librosa")
    from extensions.audio.picture import labelled_spectrogram, time_ticks

    rate = 16000
    t = np.arange(rate * 2) / rate
    picture = labelled_spectrogram(np.sin(2 * np.pi * 440 * t).astype(np.float32), rate, "Content")
    assert picture.size == (760, 300)
    pixels = np.asarray(picture.convert("L"))
    assert (pixels[40:260, :50] < 100).any()  # frequency labels in the left margin
    assert (pixels[270:, 60:] < 100).any()  # time labels below
    assert time_ticks(2.0) == [0.0, 0.5, 1.0, 1.5, 2.0]
