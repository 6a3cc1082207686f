"""Habits people bring from other image tools, in the Image style tab: a dice and a recycle button by the seed, size
presets ("as the photo" too; the aspect ratio is always kept), the style images shown as pictures with their blend
weights, and a batch of variations (one per seed) in a gallery. No torch here.
"""
from __future__ import annotations

import re
import secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import gradio as gr
from PIL import Image

from nstdiff.errors import NstdiffError
from ui.files import uploaded
from ui.forms import parse_weights
from ui.host import describe, named_handler
from ui.progress import in_result_area

if TYPE_CHECKING:
    from nstdiff.schema import ImageStyleRequest
    from ui.host import Host

MakeJob = Callable[["Host", dict[str, Any], Path], "ImageStyleRequest"]  # the form's values as a request

SIZE_PRESETS = ["512", "768", "1024", "as the photo"]
SEED = re.compile(r"seed \*\*(\d+)\*\*")  # as `describe` writes it
MAX_VARIATIONS = 8


def size_presets() -> gr.Radio:
    return gr.Radio(SIZE_PRESETS, value=None, label="Size preset", elem_id="size-preset", scale=0, min_width=250)


def seed_controls() -> tuple[gr.Number, gr.Button, gr.Button]:
    seed = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, minimum=-1, elem_id="seed", scale=3)
    dice = gr.Button("⚄ random", elem_id="seed-random", scale=0, min_width=90, size="sm")
    recycle = gr.Button("♻ last seed", elem_id="seed-reuse", scale=0, min_width=90, size="sm")
    return seed, dice, recycle


def style_gallery() -> gr.Gallery:
    return gr.Gallery(label="Style images (blend weight)", height=150, columns=4, allow_preview=False,
                      interactive=False, elem_id="style-pictures", show_label=True)


def styles_shown(styles: list | None, weights: str | None) -> list[tuple[str, str]]:
    """Each style image with its name and its share of the blend (equal when the weights are empty or unreadable)."""
    paths = [uploaded(s) for s in styles or []]
    try:
        shares = parse_weights(weights, len(paths))
    except NstdiffError:  # a half-typed weight list: the run will explain it; show equal shares meanwhile
        shares = [1.0] * len(paths)
    total = sum(shares) or 1.0
    return [(path, f"{Path(path).stem} · {share / total:.0%}") for path, share in zip(paths, shares)]


def photo_size(content: Any, limit: int) -> int | None:
    """The photo's longest side, on the size slider's 16 px grid (never above the photo) and within the server's
    limit."""
    if not content:
        return None
    with Image.open(uploaded(content)) as image:
        side = max(image.size)
    return int(max(16, min(limit, side // 16 * 16)))


def preset_size(preset: str | None, content: Any, limit: int):
    if preset in (None, ""):
        return gr.update()
    if preset == "as the photo":
        side = photo_size(content, limit)
        if side is None:
            gr.Info("Add a photo first: the size follows it.")
            return gr.update()
        return side
    return min(int(preset), limit)


def last_seed(info: str | None):
    """The seed of the result on screen (from its description), for the recycle button."""
    found = SEED.search(info or "")
    if not found:
        gr.Info("No result with a seed yet: run once, then ♻ keeps its seed.")
        return gr.update()
    return int(found.group(1))


def wire_inputs(app: "Host", *, content, styles, weights, style_pictures: gr.Gallery, size, size_preset, seed, dice,
                recycle, info) -> None:
    quiet = {"queue": False, "api_name": False, "show_progress": "hidden"}
    for trigger in (styles.change, weights.change):
        trigger(styles_shown, [styles, weights], style_pictures, **quiet)
    limit = app.settings.max_output_side
    size_preset.change(lambda preset, photo: preset_size(preset, photo, limit), [size_preset, content], size, **quiet)
    content.change(lambda preset, photo: preset_size(preset, photo, limit) if preset == "as the photo"
                   else gr.update(), [size_preset, content], size, **quiet)
    dice.click(lambda: -1, None, seed, **quiet)
    recycle.click(last_seed, info, seed, **quiet)


def variations_panel() -> dict[str, Any]:
    with gr.Accordion("Variations: the same settings with other seeds", open=False):
        with gr.Row():
            count = gr.Slider(2, MAX_VARIATIONS, value=4, step=1, label="How many", elem_id="variations-count")
            run = gr.Button("Make variations", elem_id="variations-run")
        gallery = gr.Gallery(label="Variations (click one to see it large)", columns=4, height=260,
                             elem_id="variations", format="png")
    return {"count": count, "run": run, "gallery": gallery}


def variations(app: "Host", make_job: MakeJob, values: dict[str, Any], caller: gr.Request, progress: gr.Progress
               ) -> Iterator[tuple[list[tuple[str, str]], str]]:
    """The form's request (`make_job(app, values, tmp)`) once per seed (the form's seed, or a drawn one, then the next
    ones); each result is stored and joins the gallery as it comes."""
    count = max(1, min(MAX_VARIATIONS, int(values.pop("count", None) or 2)))
    first = values.get("seed")
    first = secrets.randbelow(2**32 - MAX_VARIATIONS) if first is None or first < 0 else int(first)
    shown: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        job = make_job(app, values, Path(tmp))
        for number in range(count):
            seed = (first + number) % 2**32
            entry, result = app.execute(job.model_copy(update={"seed": seed}), caller, progress)
            shown.append((str(entry.output), f"seed {seed}"))
            yield list(shown), f"{number + 1} of {count} variations · last: {describe(result)}"


def wire_variations(app: "Host", panel: dict[str, Any], inputs: list, names: list[str], defaults: dict[str, Any],
                    info: gr.Markdown, make_job: MakeJob):
    """The variations panel's event (API `/variations`: the form's parameters `names`, then `count`)."""
    def run(values, request, progress):
        yield from in_result_area(lambda: variations(app, make_job, values, request, progress), request)

    handler = named_handler(run, [*names, "count"], {**defaults, "count": 2})
    return panel["run"].click(handler, [*inputs, panel["count"]], [panel["gallery"], info], api_name="variations",
                              show_progress_on=[panel["gallery"]], **app.gpu_queue)
