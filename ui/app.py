"""The Gradio Blocks app: Image style, Text style, Style reference, Texture, the extensions' tabs (Audio, 3D),
History and Models, over one executor and one result store.

Every heavy event shares the concurrency id "gpu" with a limit of `settings.gpu_slots`, so jobs queue for the
device instead of fighting over it. Errors from the core reach the person as their message (`gr.Error`), never as a
stack trace, and the server keeps serving.
"""
from __future__ import annotations

import inspect
import logging
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr

from nstdiff.errors import Cancelled, NstdiffError
from nstdiff.executor import CancelToken, Executor, InProcessExecutor
from nstdiff.registry import TABS_GROUP, plugins
from nstdiff.schema import ImageStyleRequest, RunResult
from nstdiff.settings import Settings, get_settings
from nstdiff.store import HistoryEntry, Store, map_inputs
from ui.diffusion_tabs import OWN_TABS, build_reference_tab, build_text_tab
from ui.lora_tab import build_lora_tab
from ui.texture_tab import build_texture_tab
from ui import habits, history_tools, image_tab
from ui.history_tools import Refills
from ui.files import GuardedBlocks, offer, uploaded
from ui.image_tab import IMAGE_FORM, build_image_tab
from ui.jobs import Jobs, joined_at
from ui.progress import Watch, in_result_area, live_run, progress_reporter
from ui.forms import OptionField, image_request, option_fields

log = logging.getLogger(__name__)
EXAMPLES = Path(__file__).resolve().parents[1] / "nstdiff" / "examples"
GPU = {"concurrency_id": "gpu"}


def named_handler(fn: Callable[[dict[str, Any], gr.Request, gr.Progress], Any], names: list[str],
                  defaults: dict[str, Any] | None = None) -> Callable:
    """`fn(values, request, progress)` as a Gradio handler with one named parameter per input, so a form with a
    variable number of widgets (one per method option) still gets a named API (`client.predict(adain_alpha=…)`).
    A generator `fn` gives a generator handler, whose every yield Gradio streams to the outputs."""
    if inspect.isgeneratorfunction(fn):  # Gradio streams a handler's yields only if it is a generator function
        def handler(*args):
            *values, request, progress = args  # Gradio inserts these two at their places in the signature: the end
            yield from fn(dict(zip(names, values)), request, progress)
    else:
        def handler(*args):
            *values, request, progress = args
            return fn(dict(zip(names, values)), request, progress)

    P = inspect.Parameter
    handler.__signature__ = inspect.Signature(
        [P(name, P.POSITIONAL_OR_KEYWORD, **({"default": defaults[name]} if name in (defaults or {}) else {}))
         for name in names]
        + [P("request", P.POSITIONAL_OR_KEYWORD, default=None),
           P("progress", P.POSITIONAL_OR_KEYWORD, default=gr.Progress())])
    handler.__annotations__ = {"request": gr.Request}  # Gradio finds the request by this annotation
    return handler


def cancelled(exc: Cancelled) -> gr.Error:
    when = f"at step {exc.step} of {exc.total}" if exc.step else "before it started"
    return gr.Error(f"Cancelled {when}; nothing was saved.", title="Cancelled")


def describe(result: RunResult | HistoryEntry) -> str:
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    notes = "".join(f"\n- {note}" for note in result.notes)
    return f"**{result.method}** · encoder **{result.encoder}** · seed **{result.seed}** · {timings}{notes}"


class App:
    def __init__(self, executor: Executor | None = None, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.executor = executor or InProcessExecutor(self.settings)
        self.store = Store(self.settings.outputs_dir)
        self.server_lock = self.store.claim()
        if self.server_lock is not None:
            self.store.recover()  # a killed server may have left a half-stored result
        else:  # recovering now could delete the files of a result the other server is storing
            log.warning("another nstdiff server uses %s; run one per outputs folder", self.settings.outputs_dir)
        self.jobs = Jobs()
        # the Image style tab: methods that restyle with style images (gram, adain, feedforward, chain); the
        # diffusion methods have their own tabs
        self.image_methods = [m for m in self.executor.methods() if m.modality == "image"
                              and m.style_images == "required" and m.name not in OWN_TABS]
        self.option_fields: list[OptionField] = [f for m in self.image_methods for f in option_fields(m)]

    # -- handlers --------------------------------------------------------------------------------------------

    @contextmanager
    def job_token(self, caller: gr.Request, job_id: str) -> Iterator[CancelToken]:
        """The cancel token of one run for a caller; raises `Cancelled` at once if the caller's Cancel came after the
        job joined the queue."""
        session = caller.session_hash or job_id
        token = self.jobs.start(session, joined_at(caller))
        try:
            if token.cancelled:
                raise Cancelled(0, 0)
            yield token
        finally:
            self.jobs.finish(session, token)

    def execute(self, request: Any, caller: gr.Request, progress: gr.Progress,
                watch: Watch | None = None) -> tuple[HistoryEntry, RunResult]:
        """Run any method's request for a caller, store the result, log the job, turn a failure into a message;
        `watch` sees every progress event (live previews: `ui/progress.py`).

        Unexpected exceptions are logged and worded by `GuardedBlocks`, which every event passes through."""
        job_id, method, started = uuid.uuid4().hex[:12], getattr(request, "method", "?"), time.monotonic()
        outcome = "failed"
        try:
            with self.job_token(caller, job_id) as token:
                result = self.executor.run(request, progress=progress_reporter(progress, watch), cancel=token)
                entry = self.store.add(result, entry_id=job_id)  # inputs are kept only now, for a result that exists
            outcome = "ok"
        except Cancelled as exc:
            outcome = "cancelled"
            raise cancelled(exc)
        except NstdiffError as exc:
            outcome = f"refused ({type(exc).__name__})"
            raise gr.Error(str(exc), title="Cannot run this")
        finally:
            log.info("job %s method=%s seconds=%.1f outcome=%s", job_id, method, time.monotonic() - started, outcome)
        return entry, result

    def attempt(self, request: Any, caller: gr.Request, progress: gr.Progress) -> RunResult:
        """Run a request without storing it (an instant result shown before the full one). Cancel stops it as it
        stops `execute`, also during a run too short to check (a `gr.Error` then); other failures are raised as is."""
        try:
            with self.job_token(caller, uuid.uuid4().hex[:12]) as token:
                result = self.executor.run(request, progress=progress_reporter(progress), cancel=token)
                if token.cancelled:
                    raise Cancelled(0, 0)
        except Cancelled as exc:
            raise cancelled(exc)
        return result

    def run(self, request: ImageStyleRequest, caller: gr.Request, progress: gr.Progress) -> tuple[str, str]:
        entry, result = self.execute(request, caller, progress)
        return str(entry.output), describe(result)

    def live(self, request: Any, caller: gr.Request, progress: gr.Progress):
        """`run` for a handler that streams: live previews first when the caller is the app's page."""
        yield from live_run(self, request, caller, progress)

    def stylize(self, values: dict[str, Any], request: gr.Request, progress: gr.Progress):
        """The Image style form (`IMAGE_FORM` plus the chosen method's option widgets) as a job: its result, after an
        instant one for method auto where the feed-forward network can give it (`ui/image_tab.py`)."""
        yield from in_result_area(lambda: image_tab.stylize(self, values, request, progress), request)

    @staticmethod
    def form_request(*, content, styles, **values) -> ImageStyleRequest:
        """Uploaded files and form values as a request; a bad value reaches the person as a message."""
        try:
            return image_request(content=uploaded(content) if content else None,
                                 styles=[uploaded(s) for s in styles or []], **values)
        except NstdiffError as exc:
            raise gr.Error(str(exc), title="Check the inputs")

    def cancel(self, request: gr.Request) -> str:
        if self.jobs.cancel(request.session_hash):
            return "Cancelling: the running job stops at its next step; your waiting jobs will not start."
        return "Nothing was running; your waiting jobs, if any, will not start."

    def closed(self, request: gr.Request) -> None:
        """The page was closed or reloaded: its jobs stop (jobs sent through the API have sessions of their own)."""
        if request is not None and request.session_hash and self.jobs.cancel(request.session_hash):
            log.info("a page closed: its running job was cancelled")

    def history(self) -> list[tuple[str, str]]:
        return [(str(entry.picture), entry.label) for entry in self.store.list()]

    def select_history(self, event: gr.SelectData) -> tuple[str, dict[str, Any]]:
        # by the id in the caption, not the position: other sessions' results shift positions
        caption = (event.value or {}).get("caption") or ""
        entry = self.store.get(caption.rsplit("#", 1)[-1])
        if entry is None:
            raise gr.Error("That history entry no longer exists.")
        shown = map_inputs(entry.parameters, self.store.input_name)  # the names they came with, not server folders
        return entry.id, {"id": entry.id, **shown, "timings": entry.timings, "notes": entry.notes}

    def refill_image(self, p: dict[str, Any], kept: Callable[[str | None], Any] | None) -> tuple:
        """The Image style form's values from a result's parameters; `kept(path)`: the input file to show (None:
        leave the form's files as they are)."""
        controls, options = p["controls"], p.get("options") or {}
        option_values = [field.form_value(options[field.name]) if field.method == p["method"] and field.name in options
                         else gr.update() for field in self.option_fields]
        files = (lambda path: kept(path)) if kept else (lambda path: gr.update())
        quality = p.get("quality") or ImageStyleRequest.model_fields["quality"].default  # older entries lack it
        return (files(p["content"]), [kept(s["image"]) for s in p["styles"]] if kept else gr.update(),
                ", ".join(str(s["weight"]) for s in p["styles"]), p["method"], controls["strength"],
                controls["preserve_color"], controls["style_scale"], p["size"], p["steps"] or 0, p["seed"],
                p["encoder"], files(controls["mask"]), quality, *option_values)

    def models_table(self) -> list[list[str]]:
        loaded = self.executor.loaded_models()
        return [[m.name, "ready" if m.ready else "missing", loaded.get(m.name, ""), Path(m.path).name, m.description]
                for m in self.executor.models()]

    def fetch(self, name: str, progress=gr.Progress()):
        lines: list[str] = []

        def message(text: str) -> None:
            lines.append(text)
            progress(0, desc=text)

        try:
            self.executor.fetch_model(name, message=message)
        except NstdiffError as exc:
            raise gr.Error(str(exc), title=f"Could not fetch {name}")
        return self.models_table(), "\n".join(lines)

    @property
    def gpu_queue(self) -> dict[str, Any]:
        """Event arguments that put a job in the one shared device queue (extensions' tabs use them too)."""
        return {"concurrency_limit": self.settings.gpu_slots, **GPU}

    # -- layout ------------------------------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        self.refills = Refills()  # the tabs "use these settings" can fill (`ui/history_tools.py`), as built now
        # hourly, Gradio drops the files it served (uploads, previews, offered copies) that are a day old
        with GuardedBlocks(title="nstdiff", delete_cache=(3600, 86400)) as demo:
            gr.Markdown("# nstdiff\nRestyle a photo with a painting or with words, or grow a texture from one.")
            tab = build_image_tab(self)

            diffusion_jobs = build_text_tab(self) + build_reference_tab(self)
            build_lora_tab(self)

            texture_jobs = build_texture_tab(self)

            # extensions' tabs (audio, 3D, …): each returns the events whose end adds a result to the history
            extension_jobs = [job for build_tab in plugins(TABS_GROUP) for job in (build_tab(self) or [])]

            with gr.Tab("History", id="history") as history_tab:
                gallery = gr.Gallery(label="Past results", format="png", columns=4, allow_preview=True, height=420,
                                     elem_id="history")
                selected = gr.Textbox(visible=False)
                params = gr.JSON(label="Parameters")
                reuse = gr.Button("Use these settings (in the tab that made it)", elem_id="reuse")
                settings_png, png_said = history_tools.png_reader()

            with gr.Tab("Models", id="models") as models_tab:
                table = gr.Dataframe(headers=["name", "status", "in memory", "file", "description"], interactive=False)
                with gr.Row():
                    model_name = gr.Dropdown([m.name for m in self.executor.models() if m.fetchable],
                                             label="Model")
                    fetch = gr.Button("Fetch")
                fetch_log = gr.Textbox(label="Fetch log", lines=3)

            names = [*IMAGE_FORM, *(f.key for f in self.option_fields)]
            defaults = {"quality": tab.quality.value, **{f.key: f.form_value(f.default) for f in self.option_fields}}
            stylize = named_handler(self.stylize, names, defaults)
            limit = {**self.gpu_queue, "show_progress_on": [tab.info]}  # one progress bar, under the live preview
            job = tab.run.click(stylize, tab.inputs, [tab.output, tab.info], api_name="stylize", **limit)
            tab.run.click(lambda: "", None, tab.status, queue=False, api_name=False, show_progress="hidden")
            job.then(self.history, None, gallery, api_name=False)
            habits.wire_variations(self, tab, names, defaults, gallery)
            tab.stop.click(self.cancel, None, tab.status, api_name="cancel", queue=False)
            example_job = tab.example.click(
                lambda: (offer(EXAMPLES / "photo.jpg"), [offer(EXAMPLES / "painting.jpg")], 256, 0), None,
                [tab.content, tab.styles, tab.size, tab.steps], queue=False, api_name=False,
            ).then(stylize, tab.inputs, [tab.output, tab.info], api_name=False, **limit)
            example_job.then(self.history, None, gallery, api_name=False)
            for extension_job in diffusion_jobs + texture_jobs + extension_jobs:
                extension_job.then(self.history, None, gallery, api_name=False)
            history_tab.select(self.history, None, gallery, api_name="history")
            gallery.select(self.select_history, None, [selected, params], api_name=False)
            self.refills.tabs.insert(0, history_tools.Refill("Image style", {m.name for m in self.image_methods}
                                                             .__contains__, tab.reused, self.refill_image))
            history_tools.wire(self, tab, reuse, selected, settings_png, png_said)
            models_tab.select(self.models_table, None, table, api_name="models")
            fetch.click(self.fetch, model_name, [table, fetch_log], api_name="fetch_model", **self.gpu_queue)
            demo.load(self.history, None, gallery, api_name=False)
            demo.unload(self.closed)  # closing the page cancels its jobs
        return demo

