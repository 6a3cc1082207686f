"""The Style reference tab's technique choice: IP-Adapter, StyleID or StyleAligned, each with its own knobs (their
widgets and bounds read from the methods' options), reach the request the executor runs. Driven without a server,
on the tiny SD 1.5 stand-in."""
from __future__ import annotations

import shutil

import pytest
import torch

from tests.conftest import CALLER, no_progress
from tests.test_app_habits import handler, widget

torch.set_num_threads(1)  # two threads on a busy 2-core machine spin-wait


@pytest.fixture
def tab(isolated_settings, diffusion_models, uploads, images):
    """The reference handler, the technique radio's change handler, the demo, the requests run, the photo and the
    style, and the app."""
    from ui.app import App

    app = App(settings=isolated_settings.model_copy(update={"models_dir": diffusion_models}))
    demo = app.build()
    requests, run = [], app.executor.run

    def recorded(request, progress=None, cancel=None):
        requests.append(request)
        return run(request, progress=progress, cancel=cancel)

    app.executor.run = recorded
    photo = str(shutil.copy(images["content"], uploads / "beach.png"))
    style = str(shutil.copy(images["red"], uploads / "poster.png"))
    reference = handler(demo, widget(demo, "ref-run"), "click").fn
    technique = handler(demo, widget(demo, "ref-technique"), "change").fn
    return reference, technique, demo, requests, photo, style, app


def press(tab, technique: str, *knobs):
    """Restyle with the tab's common values, `technique` and the eight knob values (StyleID's five, StyleAligned's
    three); returns what the result's description says."""
    reference, _, _, requests, photo, style, _ = tab
    *_, (_picture, info) = reference(photo, style, "", "style", 1.0, 0.8, "none", "sd15", False, 64, 3, 6, technique,
                                     *knobs, request=CALLER, progress=no_progress)
    return requests[-1], info


def test_each_technique_sends_its_own_knobs(tab):
    request, info = press(tab, "diffusion-styleid", 0.5, 2.0, 2, 0.5, False, 1.0, None, 1.0)
    assert request.method == "diffusion-styleid" and "**diffusion-styleid**" in info
    assert {k: request.options[k] for k in ("gamma", "temperature", "injection_layers", "injection_steps",
                                            "initial_adain")} == {"gamma": 0.5, "temperature": 2.0,
                                                                  "injection_layers": 2, "injection_steps": 0.5,
                                                                  "initial_adain": False}
    assert "mode" not in request.options and "reference_scale" not in request.options

    request, info = press(tab, "diffusion-stylealigned", 0.75, 1.5, 5, 1.0, True, 1.8, 3, 0.75)
    assert request.method == "diffusion-stylealigned" and "**diffusion-stylealigned**" in info
    assert {k: request.options[k] for k in ("temperature", "injection_layers", "injection_steps")} == {
        "temperature": 1.8, "injection_layers": 3, "injection_steps": 0.75}
    assert "gamma" not in request.options

    request, _ = press(tab, "diffusion-reference", 0.5, 2.0, 2, 0.5, False, 1.8, 3, 0.75)
    assert request.method == "diffusion-reference"
    assert request.options["mode"] == "style" and "temperature" not in request.options


def test_the_knobs_show_with_their_technique_and_take_the_methods_bounds(tab):
    _, technique, demo, *_ = tab
    gamma = widget(demo, "diffusion_styleid_gamma")
    assert (gamma.value, gamma.minimum, gamma.maximum) == (0.75, 0, 1)
    assert widget(demo, "diffusion_styleid_temperature").value == 1.5
    assert widget(demo, "diffusion_stylealigned_temperature").value == 1.0
    # [IP-Adapter's group, StyleID's, StyleAligned's]
    assert [u["visible"] for u in technique("diffusion-styleid")] == [False, True, False]
    assert [u["visible"] for u in technique("diffusion-stylealigned")] == [False, False, True]
    assert [u["visible"] for u in technique("diffusion-reference")] == [True, False, False]



def test_use_these_settings_brings_back_the_technique_and_its_knobs(tab):
    import gradio as gr

    *_, demo, _, _, _, app = tab
    press(tab, "diffusion-styleid", 0.5, 2.0, 2, 0.5, False, 1.0, None, 1.0)
    (entry,) = app.store.list()
    tab_ = next(t for t in app.refills.tabs if t.label == "Style reference")
    start = sum(len(t.widgets) for t in app.refills.tabs[:app.refills.tabs.index(tab_)])
    shown = handler(demo, widget(demo, "reuse"), "click").fn(entry.id)[start:start + len(tab_.widgets)]
    assert shown[12:] == ["diffusion-styleid", 0.5, 2.0, 2, 0.5, False] + [gr.update()] * 3 + ["", ""]
