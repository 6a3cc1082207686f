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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr
from PIL import Image

from ui.files import offer, uploaded

if TYPE_CHECKING:
    from ui.app import App
    from ui.image_tab import ImageTab

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


@dataclass
class Refill:
    """A tab that takes a past result's settings: its label, which methods' results it takes, the widgets it fills,
    and `fill(parameters, files)` → one value per widget (`files(path)`: the input file to show; `files` None: leave
    the tab's files as they are). `claims(parameters)`, when given, takes a result whatever its method (Text style
    claims the words that ran as a library painting's Gram or feed-forward job)."""

    label: str
    methods: Callable[[str], bool]
    widgets: list[gr.components.Component]
    fill: Callable[[dict[str, Any], Callable[[str | None], Any] | None], Any]
    claims: Callable[[dict[str, Any]], bool] | None = None


class Refills:
    def __init__(self) -> None:
        self.tabs: list[Refill] = []

    def add(self, label: str, methods: Callable[[str], bool], widgets: list, fill: Callable,
            claims: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.tabs.append(Refill(label, methods, list(widgets), fill, claims))

    @property
    def widgets(self) -> list[gr.components.Component]:
        return [w for tab in self.tabs for w in tab.widgets]

    def outputs(self, method: str, parameters: dict[str, Any], files: Callable[[str | None], Any] | None
                ) -> list[Any]:
        """One value per widget of every registered tab (only the matching tab's change), then the tab's label."""
        claimed = [tab for tab in self.tabs if tab.claims and tab.claims(parameters)]
        for tab in claimed or [tab for tab in self.tabs if tab.methods(method)]:
            return self._flatten(tab, tab.fill(parameters, files))
        raise gr.Error(f"No tab takes the settings of a '{method}' result; they are in the Parameters box.")

    def _flatten(self, chosen: Refill, values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for tab in self.tabs:
            out += list(values) if tab is chosen else [gr.update()] * len(tab.widgets)
        return [*out, chosen.label]


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


def wire(app: "App", tab: "ImageTab", reuse: gr.Button, selected: gr.Textbox, png: gr.File, said: gr.Markdown
         ) -> None:
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
        if method == "a1111":
            image = app.refills.tabs[0]  # Image style: only the fields that have a place there
            values = [parameters.get(name, gr.update()) for name in image_refill_names(tab)]
            rest = [gr.update()] * (len(app.refills.widgets) - len(values))
            return [*values, *rest, image.label, note]
        # a PNG names files on another machine (or this server's folders): never opened, upload them again
        return [*app.refills.outputs(method, parameters, None), note + " (upload the inputs again)"]

    reuse.click(use, selected, outputs, api_name="reuse").then(None, goto, None, js=SWITCH_TAB)
    png.upload(read, png, [*outputs, said], api_name="read_png").then(None, goto, None, js=SWITCH_TAB)


def image_refill_names(tab: "ImageTab") -> list[str]:
    from ui.image_tab import REUSED

    return [*REUSED, *(f"option:{i}" for i in range(len(tab.option_widgets)))]
