"""The Gradio Blocks app: Image style, Text style, Style reference, My styles, Texture, the extensions' tabs (Audio,
3D), History and Models, over one executor and one result store. `App` is the host every tab is written against
(`ui/host.py`); it assembles the tabs, and no tab imports it.

Every heavy event shares the concurrency id "gpu" with a limit of `settings.job_slots` (`gpu_slots` locally), so
jobs queue for the device instead of fighting over it. Errors from the core reach the person as their message
(`gr.Error`), never as a stack trace, and the server keeps serving.
"""
from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from nstdiff.distributed import build_executor
from nstdiff.errors import Cancelled, NstdiffError
from nstdiff.executor import CancelToken, Executor
from nstdiff.registry import TABS_GROUP, plugins
from nstdiff.schema import RunResult
from nstdiff.settings import Settings, get_settings
from nstdiff.store import HistoryEntry, Store
from ui import history_tools, image_tab
from ui.diffusion_tabs import build_reference_tab, build_text_tab
from ui.files import GuardedBlocks
from ui.host import GPU, Refills, cancelled
from ui.jobs import Jobs, joined_at
from ui.lora_tab import build_lora_tab
from ui.progress import Watch, live_run, progress_reporter
from ui.texture_tab import build_texture_tab

log = logging.getLogger(__name__)


class App:
    def __init__(self, executor: Executor | None = None, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.executor = executor or build_executor(self.settings)  # local, or a Ray cluster (setting `backend`)
        self.store = Store(self.settings.outputs_dir)
        self.server_lock = self.store.claim()
        if self.server_lock is not None:
            self.store.recover()  # a killed server may have left a half-stored result
        else:  # recovering now could delete the files of a result the other server is storing
            log.warning("another nstdiff server uses %s; run one per outputs folder", self.settings.outputs_dir)
        self.jobs = Jobs()
        self.refills = Refills()  # what "use these settings" can fill: the tabs register themselves as built

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

    def live(self, request: Any, caller: gr.Request, progress: gr.Progress):
        """`run` for a handler that streams: live previews first when the caller is the app's page."""
        yield from live_run(self, request, caller, progress)

    def stylize(self, values: dict[str, Any], request: gr.Request, progress: gr.Progress):
        """The Image style form's job, as its Stylize button runs it (`ui/image_tab.py`)."""
        yield from image_tab.stylize_in_page(self, values, request, progress)

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
        return {"concurrency_limit": self.settings.job_slots, **GPU}

    # -- layout ------------------------------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        """The tabs, each built against the `ui/host.py` contract; History last, once every tab has said what "use
        these settings" fills; each job's end refreshes the history."""
        self.refills = Refills()
        # hourly, Gradio drops the files it served (uploads, previews, offered copies) that are a day old
        with GuardedBlocks(title="nstdiff", delete_cache=(3600, 86400)) as demo:
            gr.Markdown("# nstdiff\nRestyle a photo with a painting or with words, or grow a texture from one.")
            jobs = image_tab.build_image_tab(self).jobs
            jobs += build_text_tab(self) + build_reference_tab(self)
            build_lora_tab(self)
            jobs += build_texture_tab(self)
            # extensions' tabs (audio, 3D, …): each returns the events whose end adds a result to the history
            jobs += [job for build_tab in plugins(TABS_GROUP) for job in (build_tab(self) or [])]
            gallery = history_tools.build_history_tab(self)
            self.build_models_tab()
            for job in jobs:
                job.then(self.history, None, gallery, api_name=False)
            demo.load(self.history, None, gallery, api_name=False)
            demo.unload(self.closed)  # closing the page cancels its jobs
        return demo

    def build_models_tab(self) -> None:
        with gr.Tab("Models", id="models") as tab:
            table = gr.Dataframe(headers=["name", "status", "in memory", "file", "description"], interactive=False)
            with gr.Row():
                name = gr.Dropdown([m.name for m in self.executor.models() if m.fetchable], label="Model")
                fetch = gr.Button("Fetch")
            fetch_log = gr.Textbox(label="Fetch log", lines=3)
        tab.select(self.models_table, None, table, api_name="models")
        fetch.click(self.fetch, name, [table, fetch_log], api_name="fetch_model", **self.gpu_queue)
