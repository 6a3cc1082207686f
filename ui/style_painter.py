"""The Image style tab's painter on the style images (semantic correspondence, Gatys et al. 2017): pick a style, paint
white where its style should come from. What is painted is kept per style in a `gr.State`, which is no `/stylize`
parameter: API callers send the masks as files (`style_masks`). No torch here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from nstdiff.errors import NstdiffError
from nstdiff.imageio import load_image
from ui.files import uploaded
from ui.forms import painted_mask

STYLE_PAINT = "style_paint"  # the form's name for the state (not an API parameter)
# the state: {style index (0-based): {"style": that style's file when painted, "layers": the editor's layers}}
Painted = dict[int, dict[str, Any]]


@dataclass
class StylePainter:
    picker: gr.Dropdown
    editor: gr.ImageEditor
    painted: gr.State


def build_style_painter() -> StylePainter:
    """The picker and the editor, inside the tab's Region mask accordion."""
    picker = gr.Dropdown([], value=None, label="Paint on style", elem_id="style-paint-pick",
                         info="Paint white where this style image's style should come from; a painted mask is "
                              "used in place of that style's uploaded one.")
    # no crop or resize and no other background: the mask stays the style image's size
    editor = gr.ImageEditor(label="…or paint on the style image (white = take the style from there)", type="numpy",
                            format="png", sources=(), transforms=(), elem_id="style-paint",
                            brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"))
    return StylePainter(picker, editor, gr.State({}))


def _files(styles: list | None) -> list[str]:
    return [uploaded(s) for s in styles or []]


def _fits(entry: dict[str, Any] | None, files: list[str], index: int) -> bool:
    """Whether a painted entry still belongs to the style at `index` (the style images change under it)."""
    return entry is not None and index < len(files) and entry["style"] == files[index]


def shown(files: list[str], index: int | None, painted: Painted) -> dict[str, Any] | None:
    """The editor's value for style `index`: the style image, with what was painted on it."""
    if index is None or not 0 <= index < len(files):
        return None
    entry = painted.get(index)
    return {"background": files[index], "layers": entry["layers"] if _fits(entry, files, index) else [],
            "composite": None}


def styles_changed(styles: list | None, painted: Painted | None) -> tuple[Any, Any, Painted]:
    """New style images: the picker lists them, style 1 shows, and the masks painted on images gone are dropped."""
    files = _files(styles)
    kept = {i: entry for i, entry in (painted or {}).items() if _fits(entry, files, i)}
    picker = gr.update(choices=[(f"Style {i}", i - 1) for i in range(1, len(files) + 1)],
                       value=0 if files else None)
    return picker, shown(files, 0, kept), kept


def pick(styles: list | None, index: int | None, painted: Painted | None) -> dict[str, Any] | None:
    return shown(_files(styles), index, painted or {})


def keep_painted(styles: list | None, index: int | None, editor: dict[str, Any] | None,
                 painted: Painted | None) -> Painted:
    """The editor's layers saved as the picked style's."""
    files, painted = _files(styles), dict(painted or {})
    if editor is not None and index is not None and 0 <= index < len(files):
        painted[index] = {"style": files[index], "layers": editor.get("layers") or []}
    return painted


def style_masks(painted: Painted | None, styles: list | None, uploads: list[str] | None, tmp: Path) -> list | None:
    """The run's `style_masks`: for each style, its painted mask (white / black, at that style image's size as the
    run loads it), else its uploaded mask, else None (all of it). `uploads` as they are when nothing is painted."""
    files = _files(styles)
    masks = {}
    for index, entry in (painted or {}).items():
        if _fits(entry, files, index):
            try:
                size = load_image(files[index], f"style image {index + 1}").size
            except NstdiffError as exc:
                raise gr.Error(str(exc), title="Check the inputs")
            mask = painted_mask(entry, tmp, f"style_mask_{index + 1}.png", unpainted=(0, 0, 0), size=size)
            if mask is not None:
                masks[index] = str(mask)
    if not masks:
        return uploads
    uploads = uploads or []
    return [masks.get(i, uploads[i] if i < len(uploads) else None) for i in range(max(len(files), len(uploads)))]


def wire_style_painter(painter: StylePainter, styles: gr.File) -> None:
    quiet = {"queue": False, "api_name": False, "show_progress": "hidden"}
    styles.change(styles_changed, [styles, painter.painted], [painter.picker, painter.editor, painter.painted],
                  **quiet)
    painter.picker.input(pick, [styles, painter.picker, painter.painted], painter.editor, **quiet)
    painter.editor.change(keep_painted, [styles, painter.picker, painter.editor, painter.painted], painter.painted,
                          trigger_mode="always_last", **quiet)
