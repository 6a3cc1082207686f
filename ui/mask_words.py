"""The Image style tab's masks from words: where each style goes, in words (one line per style), only / except, the
mask previewed over the photo before anything runs (and, when asked, put into the mask painter to edit); GrabCut
from clicks on the photo when no segmentation model is on disk; masks on the style images (semantic correspondence). No torch here: the
core is reached through `app.executor.preview_mask`.
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np
from pydantic import ValidationError

from nstdiff.errors import InputError, NstdiffError, format_validation_error
from nstdiff.schema import Controls
from ui.files import offer, uploaded
from ui.forms import bounds

if TYPE_CHECKING:
    from ui.host import Host

# the `/stylize` parameters these widgets add, in order
WORDS_FORM = ("mask_where", "mask_only", "mask_except", "mask_threshold", "mask_feather", "style_masks")
WORDS_DEFAULTS = {"mask_where": "", "mask_only": "", "mask_except": "",
                  "mask_threshold": Controls.model_fields["mask_threshold"].default,
                  "mask_feather": Controls.model_fields["mask_feather"].default, "style_masks": None}
PAINTER_ALPHA = 160  # the mask shows over the photo in the painter, and still reads as painted (alpha > 127)
HELP = ("**In words** (a segmentation model, `nstdiff models fetch clipseg`): one line per style image, e.g. `sky` on "
        "line 1 and `person, dog` on line 2; what no line names stays untouched. Or *Only* / *Except*. **Preview** "
        "shows the mask the words make (the run uses the words, with their soft edges); *Edit in the painter* puts "
        "it into the painter below to correct it, and a painted mask is then used in place of the words. **Without "
        "the model**: click on the object in the content preview, then *Cut out* (into the painter).")


@dataclass
class WordsWidgets:
    where: gr.Textbox
    only: gr.Textbox
    except_: gr.Textbox
    threshold: gr.Slider
    feather: gr.Slider
    style_masks: gr.File
    preview: gr.Button
    edit: gr.Button
    previewed: gr.State  # the last preview as a painter value, until *Edit in the painter* puts it there
    points: gr.Textbox
    cut: gr.Button
    overlay: gr.Image
    note: gr.Markdown

    @property
    def inputs(self) -> list[gr.components.Component]:
        """In WORDS_FORM's order."""
        return [self.where, self.only, self.except_, self.threshold, self.feather, self.style_masks]


def build_words() -> WordsWidgets:
    """The widgets, inside the tab's Region mask accordion."""
    gr.Markdown(HELP)
    # an initial value makes the `/stylize` parameter optional for API clients (Gradio reads it as the default)
    where = gr.Textbox("", label="Where each style goes (one line per style image)", lines=2,
                       placeholder="sky\nperson, dog", elem_id="mask-where")
    with gr.Row():
        only = gr.Textbox("", label="Only", placeholder="the dog", elem_id="mask-only",
                          info=Controls.model_fields["only"].description)
        except_ = gr.Textbox("", label="Except", placeholder="faces", elem_id="mask-except",
                             info=Controls.model_fields["except_"].description)
    with gr.Row():
        threshold = gr.Slider(label="Match threshold", step=0.05, elem_id="mask-threshold", minimum=0.05,
                              maximum=0.95, value=WORDS_DEFAULTS["mask_threshold"],
                              info=Controls.model_fields["mask_threshold"].description)
        feather = gr.Slider(label="Feather (px)", step=1, elem_id="mask-feather", **bounds(Controls, "mask_feather"))
    with gr.Row():
        preview = gr.Button("Preview mask", elem_id="mask-preview", size="sm")
        edit = gr.Button("Edit in the painter", elem_id="mask-edit", size="sm")
        points = gr.Textbox(label="Clicks on the object (x, y; …)", elem_id="mask-points", scale=2)
        cut = gr.Button("Cut out (GrabCut, no model)", elem_id="mask-grabcut", size="sm")
    overlay = gr.Image(label="Mask over the photo", format="png", type="filepath", interactive=False, height=200,
                       elem_id="mask-overlay")
    note = gr.Markdown(elem_id="mask-note")
    style_masks = gr.File(file_count="multiple", file_types=["image"], elem_id="style-masks",
                          label="Masks on the style images, one per style in order (white = take the style from "
                          "there; Gram method)")
    return WordsWidgets(where, only, except_, threshold, feather, style_masks, preview, edit, gr.State(None), points,
                        cut, overlay, note)


def _phrases(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def words_controls(values: dict[str, Any]) -> dict[str, Any]:
    """The form's word-mask values as `Controls` fields (API callers that leave them out get WORDS_DEFAULTS)."""
    values = {**WORDS_DEFAULTS, **{k: v for k, v in values.items() if k in WORDS_DEFAULTS and v is not None}}
    lines = (values["mask_where"] or "").strip().splitlines()
    regions = [{"where": _phrases(line), "style": index} for index, line in enumerate(lines, start=1)
               if _phrases(line)]
    masks = [uploaded(f) for f in values["style_masks"] or []]
    return {"regions": regions, "only": _phrases(values["mask_only"]), "except": _phrases(values["mask_except"]),
            "mask_threshold": float(values["mask_threshold"]), "mask_feather": float(values["mask_feather"]),
            "style_masks": masks or None}


def refill_words(controls: dict[str, Any], kept) -> tuple:
    """The widgets' values (WORDS_FORM's order) from a result's controls; older results lack them."""
    by_style = {region["style"]: ", ".join(region["where"]) for region in controls.get("regions") or []}
    where = "\n".join(by_style.get(i, "") for i in range(1, max(by_style, default=0) + 1))
    masks = controls.get("style_masks")
    return (where, ", ".join(controls.get("only") or []), ", ".join(controls.get("except_") or []),
            controls.get("mask_threshold", WORDS_DEFAULTS["mask_threshold"]),
            controls.get("mask_feather", WORDS_DEFAULTS["mask_feather"]),
            [kept(m) for m in masks if m] if masks and kept else gr.update())


def parse_points(text: str | None) -> list[tuple[int, int]]:
    numbers = [int(float(n)) for n in re.findall(r"-?\d+(?:\.\d+)?", text or "")]
    if len(numbers) % 2:
        raise InputError(f"clicks '{text}' should be pairs of numbers: x, y; x, y")
    return list(zip(numbers[::2], numbers[1::2]))


def _shown(app: "Host", content: Any, styles: int, controls: Controls, **grabcut) -> tuple[str, dict, str]:
    """(overlay picture, painter value, note) for the mask the core makes."""
    try:
        made = app.executor.preview_mask(Path(uploaded(content)), styles, controls, **grabcut)
    except NstdiffError as exc:
        raise gr.Error(str(exc), title="Check the mask")
    with tempfile.TemporaryDirectory() as tmp:
        made.overlay.save(Path(tmp) / "overlay.png")
        shown = offer(Path(tmp) / "overlay.png")
    layer = np.dstack([np.asarray(made.mask), np.full(made.mask.size[::-1], PAINTER_ALPHA, np.uint8)])
    photo = np.asarray(made.overlay)
    painter = {"background": photo, "layers": [layer], "composite": photo}
    return shown, painter, "; ".join(made.notes)


def preview(app: "Host", content, styles, where, only, except_, threshold, feather) -> tuple[str, dict, str]:
    if not content:
        raise gr.Error("add a content photo first", title="Check the mask")
    values = {"mask_where": where, "mask_only": only, "mask_except": except_, "mask_threshold": threshold,
              "mask_feather": feather}
    fields = {k: v for k, v in words_controls(values).items() if k != "style_masks"}
    count = max(1, len(styles or []))
    if any(region["style"] > count for region in fields["regions"]):
        raise gr.Error(f"{len(fields['regions'])} lines of places for {count} style image(s): one line per style "
                       "image, so add the style images first", title="Check the mask")
    try:
        controls = Controls(**fields)
    except ValidationError as exc:
        raise gr.Error(format_validation_error(exc), title="Check the mask")
    return _shown(app, content, len(styles or []), controls)


def cut_out(app: "Host", content, points: str) -> tuple[str, dict, str]:
    if not content:
        raise gr.Error("add a content photo first", title="Check the mask")
    try:
        clicks = parse_points(points)
    except InputError as exc:
        raise gr.Error(str(exc), title="Check the mask")
    if not clicks:
        raise gr.Error("click on the object in the content preview first", title="Check the mask")
    return _shown(app, content, 1, Controls(), foreground=clicks)


def add_click(points: str, event: gr.SelectData) -> str:
    x, y = event.index
    return f"{points}; {x}, {y}" if (points or "").strip() else f"{x}, {y}"


def wire_words(app: "Host", widgets: WordsWidgets, content: gr.File, styles: gr.File, photo: gr.Image,
               painter: gr.ImageEditor) -> None:
    shown = [widgets.overlay, painter, widgets.note]
    # a preview only shows: a painted mask replaces the words (and their blend of styles, their soft edges)
    widgets.preview.click(lambda *a: preview(app, *a), [content, styles, widgets.where, widgets.only,
                                                        widgets.except_, widgets.threshold, widgets.feather],
                          [widgets.overlay, widgets.previewed, widgets.note], api_name="preview_mask",
                          **app.gpu_queue)
    widgets.edit.click(lambda value: value if value is not None else gr.update(), widgets.previewed, painter,
                       queue=False, api_name=False)
    photo.select(add_click, widgets.points, widgets.points, queue=False, api_name=False, show_progress="hidden")
    # in the shared queue: a cut takes seconds of CPU (and `grabcut_mask` bounds its size), so many at once wait
    widgets.cut.click(lambda c, p: cut_out(app, c, p), [content, widgets.points], shown, api_name="grabcut_mask",
                      **app.gpu_queue)
