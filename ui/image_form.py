"""The Image style form: its values as a request, a past result's parameters as its values, and the widget of each
method option (bounds and help from the options model). No torch here.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from nstdiff.errors import NstdiffError
from nstdiff.schema import ImageStyleRequest
from ui.files import uploaded
from ui.forms import OptionField, image_request, method_options, option_fields, painted_mask
from ui.mask_words import refill_words, words_controls
from ui.style_painter import STYLE_PAINT, style_masks

if TYPE_CHECKING:
    from nstdiff.executor import Executor
    from nstdiff.registry import MethodInfo
    from ui.host import Host

# methods with a tab of their own, not in Image style
OWN_TABS = ("diffusion-text", "diffusion-reference", "diffusion-styleid", "diffusion-stylealigned")


def classic_methods(executor: "Executor") -> list["MethodInfo"]:
    """Image style's methods: those that restyle with style images (gram, adain, feedforward, chain, fast-style)."""
    return [m for m in executor.methods() if m.modality == "image" and m.style_images == "required"
            and m.name not in OWN_TABS]


def image_option_fields(executor: "Executor") -> list[OptionField]:
    return [f for m in classic_methods(executor) for f in option_fields(m)]


def form_job(app: "Host", values: dict[str, Any], tmp: Path) -> ImageStyleRequest:
    """The form's values as a request (painted masks are written into `tmp`: the content's stands in for the words,
    since Preview puts their mask into the painter to be corrected; a style image's for that style's upload)."""
    mask_file = values.get("mask_file")
    mask = uploaded(mask_file) if mask_file else painted_mask(values.get("mask_paint"), tmp)
    words = words_controls(values)
    if mask is not None and not mask_file:
        words.update(regions=[], only=[], **{"except": []})
    words["style_masks"] = style_masks(values.get(STYLE_PAINT), values.get("styles"), words["style_masks"], tmp)
    method = values["method"]
    return form_request(
        method=method, content=values.get("content"), styles=values.get("styles"), weights=values.get("weights"),
        size=values["size"], steps=values.get("steps"), seed=values.get("seed"), encoder=values["encoder"],
        strength=values["strength"], preserve_color=values["preserve_color"], style_scale=values["style_scale"],
        mask=mask, words=words, options=method_options(image_option_fields(app.executor), method, values),
        quality=values.get("quality"))


def refill(fields: list[OptionField], p: dict[str, Any], kept) -> tuple:
    """The form's values (`ImageTab.reused`) from a result's parameters; `kept(path)`: the input file to show (None:
    leave the form's files as they are)."""
    controls, options = p["controls"], p.get("options") or {}
    option_values = [field.form_value(options[field.name]) if field.method == p["method"] and field.name in options
                     else gr.update() for field in fields]
    files = kept or (lambda path: gr.update())
    quality = p.get("quality") or ImageStyleRequest.model_fields["quality"].default  # older entries lack it
    return (files(p["content"]), [kept(s["image"]) for s in p["styles"]] if kept else gr.update(),
            ", ".join(str(s["weight"]) for s in p["styles"]), p["method"], controls["strength"],
            controls["preserve_color"], controls["style_scale"], p["size"], p["steps"] or 0, p["seed"],
            p["encoder"], files(controls["mask"]), quality, *refill_words(controls, kept), *option_values)


def form_request(*, content, styles, **values) -> ImageStyleRequest:
    """Uploaded files and form values as a classic image request; a bad value reaches the person as a message."""
    try:
        return image_request(content=uploaded(content) if content else None,
                             styles=[uploaded(s) for s in styles or []], **values)
    except NstdiffError as exc:
        raise gr.Error(str(exc), title="Check the inputs")


def option_widget(field: OptionField) -> gr.components.Component:
    """The widget for one method option; its bounds and help come from the options model."""
    common = {"label": field.label, "info": field.description or None, "value": field.form_value(field.default),
              "elem_id": field.key}
    if field.kind == "choice":
        return gr.Dropdown(list(field.choices), **common)
    if field.kind == "boolean":
        return gr.Checkbox(**common)
    if field.kind == "list":
        return gr.Textbox(placeholder="comma-separated", **common)
    bounded = field.minimum is not None and field.maximum is not None and field.maximum - field.minimum <= 10
    if bounded and not field.nullable:
        return gr.Slider(minimum=field.minimum, maximum=field.maximum, step=0.01 if field.kind == "number" else 1,
                         **common)
    return gr.Number(minimum=field.minimum, maximum=field.maximum, precision=0 if field.kind == "integer" else None,
                     **common)
