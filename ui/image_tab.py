"""The Image style tab: a photo, style images, a method and its options, speed / quality and a region mask; and its job.

With method auto, a quality above fast, a photo and the feed-forward network on disk, the job first shows the
feed-forward result (under a second on a CPU, not stored) and then replaces it with the refined one, which goes into
the history as every result does. No torch here.
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, get_args

import gradio as gr

from nstdiff.routing import CLASSIC_QUALITY
from nstdiff.schema import Controls, ImageStyleRequest, PreserveColor
from ui import habits, readiness
from ui.files import offer, uploaded
from ui.forms import ENCODERS, OptionField, bounds
from ui.host import named_handler
from ui.image_form import classic_methods, form_job, image_option_fields, option_widget, refill
from ui.library_gallery import image_library
from ui.mask_words import WORDS_DEFAULTS, WORDS_FORM, WordsWidgets, build_words, wire_words
from ui.progress import in_result_area
from ui.style_painter import STYLE_PAINT, StylePainter, build_style_painter, keep_painted, wire_style_painter

if TYPE_CHECKING:
    from ui.host import Host

log = logging.getLogger(__name__)
EXAMPLES = Path(__file__).resolve().parents[1] / "nstdiff" / "examples"
# The Image style form's inputs, in order: the names of the `/stylize` API's parameters (method options follow).
# quality came last, so callers that pass the older parameters by position still line up.
IMAGE_FORM = ("content", "styles", "weights", "method", "strength", "preserve_color", "style_scale", "size", "steps",
              "seed", "encoder", "mask_file", "mask_paint", "quality", *WORDS_FORM)
# What "Use these settings" refills, in order (painted masks are not kept; the mask files are); method options follow.
REUSED = tuple(name for name in IMAGE_FORM if name != "mask_paint")
PAINTED = ("mask_paint", STYLE_PAINT)
FEEDFORWARD_MODEL = "magenta-arbitrary"  # the instant result's network: without it on disk, no instant result
QUALITY_INFO = ("For method auto on a CPU (times at 256 px on a laptop): fast = the feed-forward network, under 1 s; "
                "balanced = its result refined by a short Gram optimisation, ≈ 10 s; best = a full one, ≈ 20–40 s. "
                "Above fast, the instant result shows first.")


@dataclass
class ImageTab:
    """The tab's widgets that events outside it use."""

    form: list[gr.components.Component]  # content … encoder, in IMAGE_FORM's order
    mask_file: gr.File
    mask_paint: gr.ImageEditor
    quality: gr.Radio
    words: WordsWidgets
    style_painter: StylePainter
    option_widgets: list[gr.components.Component]
    run: gr.Button
    stop: gr.Button
    example: gr.Button
    content: gr.File
    styles: gr.File
    size: gr.Slider
    steps: gr.Number
    output: gr.Image
    info: gr.Markdown
    status: gr.Markdown
    option_fields: list[OptionField]
    variations: Any = None  # the batch-of-seeds panel (`ui/habits.py`)
    seed: Any = None
    jobs: list = None  # the events whose end adds a result to the history

    @property
    def names(self) -> list[str]:
        """The `/stylize` handler's parameter names: IMAGE_FORM's, the method options' keys, then the style painter's
        state (Gradio leaves a state out of the API)."""
        return [*IMAGE_FORM, *(f.key for f in self.option_fields), STYLE_PAINT]

    @property
    def inputs(self) -> list[gr.components.Component]:
        """The `/stylize` inputs: IMAGE_FORM's widgets, the method options', then the style painter's state."""
        return [*self.form, self.mask_file, self.mask_paint, self.quality, *self.words.inputs, *self.option_widgets,
                self.style_painter.painted]

    @property
    def reused(self) -> list[gr.components.Component]:
        """The widgets "Use these settings" refills: REUSED's, then the method options'."""
        return [*self.form, self.mask_file, self.quality, *self.words.inputs, *self.option_widgets]


def build_image_tab(app: "Host") -> ImageTab:
    """The tab, its Stylize / Try it / Variations / Cancel events and its "use these settings" refill."""
    image_methods, settings = classic_methods(app.executor), app.settings
    fields = image_option_fields(app.executor)
    with gr.Tab("Image style", id="image"):
        # shown while chain (it needs diffusion) is chosen
        chain_banner = readiness.banner(app, "chain", "image", shown=False)
        with gr.Row():
            with gr.Column(scale=5):
                # gr.File, not gr.Image: our loader, not Gradio's, judges the upload and explains a bad one
                with gr.Row(equal_height=True):
                    content = gr.File(file_types=["image"], label="Content photo", elem_id="content", height=116)
                    styles = gr.File(file_count="multiple", file_types=["image"], label="Style image(s)",
                                     elem_id="styles", height=116)
                with gr.Row(equal_height=True):  # the inputs as pictures, the styles with their blend weights
                    preview = gr.Image(label="Content preview", interactive=False, height=150,
                                       elem_id="content-preview")
                    style_pictures = habits.style_gallery()
                weights = gr.Textbox(label="Blend weights", placeholder="e.g. 0.7, 0.3 (empty: equal)",
                                     elem_id="weights")
                image_library(app, styles)  # the style library's paintings: a click adds one to the styles
                method = gr.Dropdown([("Automatic (picks for the inputs)", "auto")]
                                     + [(m.title, m.name) for m in image_methods], label="Method", value="auto",
                                     elem_id="method")
                field = ImageStyleRequest.model_fields["quality"]
                quality = gr.Radio(list(get_args(field.annotation)), value=field.default, label="Speed / quality",
                                   info=QUALITY_INFO, visible=method.value == "auto", elem_id="quality")
                strength = gr.Slider(label="Strength", step=0.05, **bounds(Controls, "strength"), elem_id="strength")
                with gr.Row():
                    size = gr.Slider(label="Size (longest side, px; the photo's aspect ratio is kept)", step=16, **{
                        **bounds(ImageStyleRequest, "size"), "value": 512, "maximum": settings.max_output_side},
                        elem_id="size")
                    size_preset = habits.size_presets()
                with gr.Row():
                    steps = gr.Number(label="Steps (0 = method default)", value=0, precision=0, minimum=0,
                                      maximum=10_000, elem_id="steps")
                    seed, dice, recycle = habits.seed_controls()
                with gr.Accordion("Colour, stroke size, encoder", open=False):
                    preserve = gr.Radio([c.value for c in PreserveColor], value="none", label="Preserve colour",
                                        info=Controls.model_fields["preserve_color"].description)
                    style_scale = gr.Slider(label="Style scale", step=0.05, **bounds(Controls, "style_scale"))
                    encoder = gr.Dropdown(ENCODERS, value=settings.default_encoder, label="Encoder")
                option_groups, option_widgets = {}, []
                for m in image_methods:  # each method's own controls (AdaIN's alpha, Gram's weights, …)
                    with gr.Accordion(f"{m.title}: options", open=m.name == "adain",
                                      visible=m.name == method.value) as group:
                        option_widgets += [option_widget(f) for f in fields if f.method == m.name]
                    option_groups[m.name] = group
                with gr.Accordion("Region mask", open=False):
                    words = build_words()
                    style_painter = build_style_painter()
                    gr.Markdown("White = style 1, red = style 2, green = style 3 …, black = leave untouched.")
                    mask_file = gr.File(file_types=["image"], label="Upload a mask", elem_id="mask")
                    mask_paint = gr.ImageEditor(label="…or paint one over the photo", type="numpy",
                                                brush=gr.Brush(colors=["#ffffff", "#ff0000", "#00ff00", "#0000ff",
                                                                       "#000000"], color_mode="fixed"),
                                                elem_id="mask-paint")
            # the run buttons, progress and result stay in view together (sticky: `ui/look.py`); Ctrl+Enter runs
            with gr.Column(scale=4, elem_classes="result-column"):
                with gr.Row():
                    run = gr.Button("Stylize", variant="primary", elem_id="stylize", scale=2)
                    stop = gr.Button("Cancel", elem_id="cancel", scale=1)
                output = gr.Image(label="Result", format="png", type="filepath", interactive=False, elem_id="result",
                                  height="58vh")
                info = gr.Markdown(elem_id="result-info")
                status = gr.Markdown(elem_id="status")
                example = gr.Button("Try it: the bundled photo in the style of the bundled painting (256 px)",
                                    elem_id="example", size="sm")
                variations = habits.variations_panel()
        content.change(lambda f: (uploaded(f), uploaded(f)) if f else (None, None), content, [preview, mask_paint],
                       show_progress="hidden", queue=False, api_name=False)
        wire_words(app, words, content, styles, preview, mask_paint)
        wire_style_painter(style_painter, styles)
        habits.wire_inputs(app, content=content, styles=styles, weights=weights, style_pictures=style_pictures,
                           size=size, size_preset=size_preset, seed=seed, dice=dice, recycle=recycle, info=info)
    # the chosen method's options, and speed / quality for auto
    method.change(lambda name: [gr.update(visible=key == name) for key in option_groups]
                  + [gr.update(visible=name == "auto")], method, [*option_groups.values(), quality], queue=False,
                  api_name=False, show_progress="hidden")
    chain_banner.wire_to_method(app, method, "chain")
    tab = ImageTab(form=[content, styles, weights, method, strength, preserve, style_scale, size, steps, seed,
                         encoder], mask_file=mask_file, mask_paint=mask_paint, quality=quality, words=words,
                   style_painter=style_painter, option_widgets=option_widgets, run=run, stop=stop, example=example,
                   content=content, styles=styles, size=size, steps=steps, output=output, info=info, status=status,
                   option_fields=fields, variations=variations, seed=seed)
    tab.jobs = wire_jobs(app, tab)
    app.refills.add("Image style", {m.name for m in image_methods}.__contains__, tab.reused,
                    lambda p, kept: refill(fields, p, kept), names=[name for name in tab.names if name not in PAINTED])
    return tab


def wire_jobs(app: "Host", tab: ImageTab) -> list:
    """Stylize (API `/stylize`), the bundled example, variations and Cancel; the job events."""
    defaults = {"quality": tab.quality.value, **WORDS_DEFAULTS, STYLE_PAINT: None,
                **{f.key: f.form_value(f.default) for f in tab.option_fields}}

    def run(values, request, progress):
        yield from stylize_in_page(app, values, request, progress)

    stylize_handler = named_handler(run, tab.names, defaults)
    queue = {**app.gpu_queue, "show_progress_on": [tab.info]}  # one progress bar, under the live preview
    # the style painter's last strokes first: its own change event may reach the server after the click
    painter = tab.style_painter
    saved = tab.run.click(keep_painted, [tab.styles, painter.picker, painter.editor, painter.painted],
                          painter.painted, queue=False, api_name=False, show_progress="hidden")
    job = saved.then(stylize_handler, tab.inputs, [tab.output, tab.info], api_name="stylize", **queue)
    tab.run.click(lambda: "", None, tab.status, queue=False, api_name=False, show_progress="hidden")
    tab.stop.click(app.cancel, None, tab.status, api_name="cancel", queue=False)
    job.then(lambda: "", None, tab.status, queue=False, api_name=False, show_progress="hidden")  # no stale "Cancelling"
    example = tab.example.click(
        lambda: (offer(EXAMPLES / "photo.jpg"), [offer(EXAMPLES / "painting.jpg")], 256, 0), None,
        [tab.content, tab.styles, tab.size, tab.steps], queue=False, api_name=False,
    ).then(stylize_handler, tab.inputs, [tab.output, tab.info], api_name=False, **queue)
    variations = habits.wire_variations(app, tab.variations, tab.inputs, tab.names, defaults, tab.info, form_job)
    return [job, example, variations]


def stylize_in_page(app: "Host", values: dict[str, Any], request: Any, progress: Any):
    """`stylize`, its failures shown in the result area for the app's own page."""
    yield from in_result_area(lambda: stylize(app, values, request, progress), request)


def stylize(app: "Host", values: dict[str, Any], caller: gr.Request,
            progress: gr.Progress) -> Iterator[tuple[str, str]]:
    """The form (`IMAGE_FORM` plus the chosen method's options) as a job: (picture, description) once, or twice when an
    instant result shows first (see `instant_result`)."""
    with tempfile.TemporaryDirectory() as tmp:
        job = form_job(app, values, Path(tmp))
        if job.method == "chain":  # explain a missing diffusion model before the classic half runs
            model = job.options.get("model")
            readiness.require(app, "chain", model if model in app.executor.families() else None)
        shown = instant_result(app, job, caller, progress, Path(tmp))
        if shown is not None:
            yield shown
        try:
            yield from app.live(job, caller, progress)  # live previews, then the result
        except gr.Error as exc:
            if shown is not None:  # the instant result stays on screen: say it is not the refined one
                yield shown[0], f"Instant result only (not stored): the refined one did not come — {exc.message}"
            raise


def instant_result(app: "Host", job: ImageStyleRequest, caller: gr.Request, progress: gr.Progress,
                   tmp: Path) -> tuple[str, str] | None:
    """The request's feed-forward result (quality fast), shown but not stored, where it helps: method auto, a quality
    above fast, a photo and the network on disk. None otherwise, and when it fails (logged; the full run follows).
    Cancel stops it as any job (`App.attempt`)."""
    if job.method != "auto" or job.quality == "fast" or job.content is None:
        return None
    method, options, *_ = CLASSIC_QUALITY["fast"]  # the network itself, never a diffusion model a GPU would route to
    fast = job.model_copy(update={"method": method, "quality": "fast", "options": {**options, **job.options}})
    started = time.monotonic()
    try:
        if not any(m.name == FEEDFORWARD_MODEL and m.ready for m in app.executor.models()):
            return None
        result = app.attempt(fast, caller, progress)
        path = tmp / "instant.png"
        result.image.save(path, format="PNG")  # a plain copy: no metadata, as it is not a stored result
        shown = offer(path)
    except gr.Error:  # cancelled: the whole job stops, as it would in the full run
        raise
    except Exception as exc:  # noqa: BLE001 - the instant result is a bonus; the full run still comes
        log.warning("instant result failed, running the full request: %s: %s", type(exc).__name__, exc)
        return None
    seconds = result.timings.get("total", time.monotonic() - started)
    return shown, f"Instant result (feed-forward, {seconds:.1f} s) — refining (quality {job.quality})…"
