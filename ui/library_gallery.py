"""The style library in the app: a gallery of its paintings in Image style (a click adds the painting to the style
images, offered as an upload) and in Text style (a click puts its artist and title in the words), a form to add
your own; the presets' thumbnails in Text style; and, after a text style matched to the library, buttons that run
again with the next-best paintings. No torch here.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr

from nstdiff.errors import NstdiffError
from nstdiff.library import Painting, add_painting, get_painting, list_paintings, thumbnail
from ui.files import offer, uploaded

if TYPE_CHECKING:
    from ui.host import Host

NEXT_BEST = 2  # buttons for the runners-up
RECENT = 50  # how far back in the history a shown result is looked for


def caption(painting: Painting) -> str:
    return f"{painting.title} — {painting.artist or 'unknown'}" + (f", {painting.year}" if painting.year else "")


def gallery_items(app: "Host") -> tuple[list[tuple[str, str]], list[str]]:
    """(thumbnail offered as a served copy, caption) per painting, and the paintings' ids in the same order."""
    paintings = list_paintings(app.settings)
    return [(offer(thumbnail(p, app.settings)), caption(p)) for p in paintings], [p.id for p in paintings]


def words_for(painting: Painting) -> str:
    """What a click in Text style puts in the words: enough for the matcher to find this painting, and a prompt a
    diffusion model understands."""
    return f"{painting.artist}, {painting.title}" if painting.artist else painting.title


def _chosen(app: "Host", ids: list[str], index: int) -> Painting:
    try:
        return get_painting(ids[index], app.settings)
    except (IndexError, TypeError, NstdiffError):
        raise gr.Error("That painting is no longer in the library; reload the page.", title="Style library")


def add_to_styles(app: "Host", current: list | None, ids: list[str], index: int) -> list[str]:
    """The style images with the clicked painting added, as a copy in the upload cache: to the form, and to
    `uploaded`, it is an upload like any other."""
    painting = _chosen(app, ids, index)
    return [*(uploaded(f) for f in current or []), offer(painting.path)]


def stored_entry(app: "Host", shown: str | Path):
    """The history entry whose result `shown` is: by its id, or (a copy named for download) by its bytes, among the
    latest results."""
    shown = Path(shown)
    entry = app.store.get(shown.stem)
    if entry is not None or not shown.is_file():
        return entry
    size, digest = shown.stat().st_size, None
    for candidate in app.store.list(limit=RECENT):
        if candidate.output.is_file() and candidate.output.stat().st_size == size:
            digest = digest or hashlib.sha256(shown.read_bytes()).hexdigest()
            if hashlib.sha256(candidate.output.read_bytes()).hexdigest() == digest:
                return candidate
    return None


def runners_up(app: "Host", result_path: str | None) -> list[dict]:
    """The next-best paintings recorded with the stored result at `result_path` (none for other results)."""
    entry = stored_entry(app, result_path) if result_path else None
    library = (entry.parameters.get("library") if entry is not None else None) or {}
    return library.get("alternatives", [])[:NEXT_BEST]


def _gallery(app: "Host", prefix: str, label: str):
    items, ids = gallery_items(app)
    gallery = gr.Gallery(items, label=label, columns=6, height=300, allow_preview=False, object_fit="cover",
                         elem_id=f"{prefix}-library")
    return gallery, gr.State(ids)


def image_library(app: "Host", styles: gr.File) -> None:
    """In the Image style form, under the style images: the library, a click adds the painting as a style image."""
    with gr.Accordion(f"Style library: {len(list_paintings(app.settings))} public-domain paintings and your own "
                      "(click one to use it as a style)", open=False):
        gallery, ids = _gallery(app, "image", "Click a painting to add it to the style images")
        with gr.Accordion("Add your own style image to the library", open=False):
            with gr.Row():
                upload = gr.File(file_types=["image"], label="Your style image", elem_id="library-upload")
                with gr.Column():
                    title = gr.Textbox(label="Title", elem_id="library-title")
                    artist = gr.Textbox(label="Artist", elem_id="library-artist")
                    tags = gr.Textbox(label="Words that describe it (comma-separated)",
                                      placeholder="ink, sepia, calm", elem_id="library-tags")
                    add = gr.Button("Add to the library", elem_id="library-add")
            added = gr.Markdown(elem_id="library-added")

    def pick(current, chosen_ids, event: gr.SelectData):
        return add_to_styles(app, current, chosen_ids, event.index)

    def add_own(file, name, by, words):
        if not file:
            raise gr.Error("Choose an image to add.", title="Style library")
        try:
            painting = add_painting(uploaded(file), name, by, words, settings=app.settings)
        except NstdiffError as exc:
            raise gr.Error(str(exc), title="Style library")
        items, new_ids = gallery_items(app)
        return gr.update(value=items), new_ids, f"Added **{painting.title}** (`{painting.id}`) to the library."

    gallery.select(pick, [styles, ids], styles, queue=False, api_name="library_pick", show_progress="hidden")
    add.click(add_own, [upload, title, artist, tags], [gallery, ids, added], api_name="library_add")


@dataclass
class TextLibrary:
    presets: gr.Gallery
    preset_names: gr.State


def text_library(app: "Host", prompt: gr.Textbox, preset: gr.Dropdown, presets: list) -> TextLibrary:
    """In the Text style form: the presets with thumbnails (a click picks the preset) and the paintings (a click puts
    the painting's artist and title in the words)."""
    with gr.Accordion(f"Presets ({len(presets)}) with thumbnails: each rendered once with the closest painting",
                      open=False):
        preset_gallery = gr.Gallery(label="Click a preset to pick it", columns=6, height=340, allow_preview=False,
                                    object_fit="cover", elem_id="preset-gallery")
        preset_names = gr.State([])
    with gr.Accordion("Style library: click a painting to put it in the words", open=False):
        gallery, ids = _gallery(app, "text", "Public-domain paintings and your own")

    def pick_painting(chosen_ids, event: gr.SelectData):
        return words_for(_chosen(app, chosen_ids, event.index))

    def pick_preset(names, event: gr.SelectData):
        if not names or event.index >= len(names):
            raise gr.Error("Open the presets again to reload them.", title="Presets")
        return names[event.index]

    gallery.select(pick_painting, ids, prompt, queue=False, api_name="library_words", show_progress="hidden")
    preset_gallery.select(pick_preset, preset_names, preset, queue=False, api_name=False, show_progress="hidden")
    return TextLibrary(preset_gallery, preset_names)


def preset_thumbnails(app: "Host", presets: list, progress=gr.Progress()) -> tuple[Any, list[str]]:
    """The presets' thumbnails (rendered on first use, cached after), for the preset gallery."""
    from nstdiff.library.previews import preset_previews

    previews = preset_previews(presets, app.settings, progress=lambda i, n, text: progress((i, n), desc=text))
    items = [(offer(p.picture), f"{p.title} · after {p.painting.title}") for p in previews]
    return gr.update(value=items), [p.preset for p in previews]


@dataclass
class NextBest:
    """Buttons under a text style's result that run it again with a runner-up painting of the library."""

    buttons: list[gr.Button]
    choices: list[gr.State]

    def wire(self, app: "Host", job: Any, output: gr.Image, handler: Callable, inputs: list, outputs: list) -> list:
        """After `job` (and after each re-run), show the runners-up of the result in `output`; a button re-runs
        `handler` with `inputs` and its painting (passed as the handler's next parameter). Returns the re-runs."""
        def show(path):
            others = runners_up(app, uploaded(path)) if path else []  # the result shown: a served copy
            buttons = [gr.update(visible=i < len(others), value=f"Try {others[i]['title']} ({others[i]['artist']})"
                                 if i < len(others) else "") for i in range(NEXT_BEST)]
            return *buttons, *[others[i]["id"] if i < len(others) else None for i in range(NEXT_BEST)]

        reruns = []
        job.then(show, output, [*self.buttons, *self.choices], api_name=False, show_progress="hidden")
        for button, choice in zip(self.buttons, self.choices):
            rerun = button.click(handler, [*inputs, choice], outputs, api_name=False, show_progress_on=[output],
                                 **app.gpu_queue)
            rerun.then(show, output, [*self.buttons, *self.choices], api_name=False, show_progress="hidden")
            reruns.append(rerun)
        return reruns


def next_best(prefix: str) -> NextBest:
    with gr.Row():
        buttons = [gr.Button(visible=False, size="sm", elem_id=f"{prefix}-next-{i}") for i in range(NEXT_BEST)]
    return NextBest(buttons, [gr.State(None) for _ in range(NEXT_BEST)])
