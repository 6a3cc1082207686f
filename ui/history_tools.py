"""History's "use these settings" for every tab, "read settings from a PNG", and files handed back under the names
people gave them. No torch here.

Each tab that can take a past result's settings registers a `Refill` (Image style, Text style, Style reference, the
extensions' Audio and 3D tabs); "use these settings" fills the tab the result came from and switches to it. A PNG
dropped on History gives its settings from our own metadata (the `nstdiff` text chunk) or from another tool's
`parameters` text (AUTOMATIC1111: steps, seed, size, denoising strength). A PNG's file paths are never opened: its
inputs must be uploaded again.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from nstdiff.store import map_inputs
from ui.files import offer, uploaded

if TYPE_CHECKING:
    from ui.host import Host

# clicks the tab whose label is given (Gradio switches tabs only from their own buttons or a gr.Tabs output)
SWITCH_TAB = """(label) => {
  if (!label) return;
  const tab = [...document.querySelectorAll('button[role="tab"]')].find((b) => b.textContent.trim() === label);
  if (tab) tab.click();
}"""
SAFE_NAME = re.compile(r"[^\w.+-]+")


def offer_as(path: str | Path, name: str) -> str:
    """`offer(path)`, the copy named `name` (its base name, made safe), for a download or a reloaded input."""
    name = SAFE_NAME.sub("_", Path(name).name).strip("._") or Path(path).name
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / name
        shutil.copyfile(path, copy)
        return offer(copy)


def download_name(request: Any, method: str, suffix: str) -> str:
    """A result's file name from its inputs' names and the method, e.g. photo-starry_night-gram.png."""
    inputs = [getattr(request, "content", None), *[s.image for s in getattr(request, "styles", None) or []]]
    stems = [Path(p).stem for p in inputs if isinstance(p, (str, Path))][:3]
    return "-".join([*stems, method]) + suffix


def png_reader() -> tuple[gr.File, gr.Markdown]:
    picture = gr.File(file_types=[".png"], label="Read settings from a PNG (ours, or AUTOMATIC1111's)",
                      elem_id="settings-png", height=90)
    said = gr.Markdown(elem_id="settings-png-info")
    return picture, said


A1111_FIELDS = {"steps": "steps", "seed": "seed", "denoising strength": "strength"}


def a1111_settings(text: str) -> tuple[dict[str, Any], list[str]]:
    """Image style values from AUTOMATIC1111's `parameters` text (prompt lines, then "Key: value, …"), and the names
    of its settings that have no place in Image style."""
    last = text.strip().splitlines()[-1] if text.strip() else ""
    pairs = dict((k.strip().lower(), v.strip()) for k, v in re.findall(r"\s*([\w ][\w ()/.-]*):\s*(\"[^\"]*\"|[^,]*)",
                                                                          last))
    values: dict[str, Any] = {}
    for key, field in A1111_FIELDS.items():
        if key in pairs:
            try:
                values[field] = float(pairs[key]) if field == "strength" else int(float(pairs[key]))
            except ValueError:
                pass
    if size := re.fullmatch(r"(\d+)\s*x\s*(\d+)", pairs.get("size", "")):
        values["size"] = max(int(size.group(1)), int(size.group(2)))
    unused = [k for k in pairs if k not in A1111_FIELDS and k != "size"]
    return values, unused


def png_settings(file: Any) -> tuple[str, dict[str, Any], str]:
    """(method, parameters, what was read) from a PNG's text chunks."""
    if not file:
        raise gr.Error("Drop a PNG made here or by AUTOMATIC1111.", title="Check the inputs")
    try:
        with Image.open(uploaded(file)) as picture:
            text = dict(getattr(picture, "text", {}) or picture.info)
    except OSError:
        raise gr.Error("That file is not a readable PNG.", title="Check the inputs") from None
    if "nstdiff" in text:
        try:
            metadata = json.loads(text["nstdiff"])
            return metadata["method"], metadata["parameters"], "Settings read from nstdiff's metadata"
        except (ValueError, KeyError, TypeError):
            raise gr.Error("This PNG's nstdiff metadata is damaged.", title="Check the inputs") from None
    if "parameters" in text:
        values, unused = a1111_settings(str(text["parameters"]))
        note = f"; not used here: {', '.join(unused)}" if unused else ""
        return "a1111", values, f"Read from AUTOMATIC1111's parameters: {', '.join(values) or 'nothing usable'}{note}"
    raise gr.Error("This PNG carries no settings (neither nstdiff's metadata nor AUTOMATIC1111's parameters).",
                   title="Check the inputs")


def build_history_tab(app: "Host") -> gr.Gallery:
    """The History tab (past results, their parameters, "use these settings", the PNG reader); its gallery, which
    each job's end refreshes. Built after every tab that registers a refill."""
    with gr.Tab("History", id="history") as tab:
        gallery = gr.Gallery(label="Past results", format="png", columns=4, allow_preview=True, height=420,
                             elem_id="history")
        selected = gr.Textbox(visible=False)
        params = gr.JSON(label="Parameters")
        reuse = gr.Button("Use these settings (in the tab that made it)", elem_id="reuse")
        png, said = png_reader()
        wire(app, reuse, selected, png, said)  # inside the tab: a widget between two tabs would split the tab bar

    def select(event: gr.SelectData):
        return select_history(app, event)

    tab.select(app.history, None, gallery, api_name="history")
    gallery.select(select, None, [selected, params], api_name=False)
    return gallery


def select_history(app: "Host", event: gr.SelectData) -> tuple[str, dict[str, Any]]:
    # by the id in the caption, not the position: other sessions' results shift positions
    caption = (event.value or {}).get("caption") or ""
    entry = app.store.get(caption.rsplit("#", 1)[-1])
    if entry is None:
        raise gr.Error("That history entry no longer exists.")
    shown = map_inputs(entry.parameters, app.store.input_name)  # the names they came with, not server folders
    return entry.id, {"id": entry.id, **shown, "timings": entry.timings, "notes": entry.notes}


def wire(app: "Host", reuse: gr.Button, selected: gr.Textbox, png: gr.File, said: gr.Markdown) -> None:
    """"Use these settings" and the PNG reader: both fill the right tab, then switch to it."""
    goto = gr.Textbox(visible=False, elem_id="goto-tab")
    outputs = [*app.refills.widgets, goto]

    def use(entry_id: str):
        entry = app.store.get(entry_id) if entry_id else None
        if entry is None:
            raise gr.Error("Pick a result in the gallery first.")
        files = (lambda path: offer_as(path, app.store.input_name(path)) if path and Path(path).is_file() else None)
        return app.refills.outputs(entry.method, entry.parameters, files)

    def read(file: Any):
        method, parameters, note = png_settings(file)
        if method == "a1111":  # only the fields that have a place in the tab whose fields are named: Image style
            image = next(tab for tab in app.refills.tabs if tab.names)
            return [*app.refills.flatten(image, [parameters.get(name, gr.update()) for name in image.names]), note]
        # a PNG names files on another machine (or this server's folders): never opened, upload them again
        return [*app.refills.outputs(method, parameters, None), note + " (upload the inputs again)"]

    reuse.click(use, selected, outputs, api_name="reuse").then(None, goto, None, js=SWITCH_TAB)
    png.upload(read, png, [*outputs, said], api_name="read_png").then(None, goto, None, js=SWITCH_TAB)

