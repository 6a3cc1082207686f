"""What a person sees while a job runs and when it ends: the progress bar with the time left, live previews in the
result, and "Cancelled" or the error kept in the result area (not a red "Error" badge). No torch here.

Browser sessions (Gradio's page marks its calls `x-gradio-user: app`) get the live previews and the worded ending.
API callers get what they always got: one result per run, and a failure as an error they can catch.
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterable, Iterator

import gradio as gr
from gradio import processing_utils

from nstdiff.schema import ProgressEvent
from ui.files import redact_paths, upload_folder
from ui.history_tools import download_name, offer_as
from ui.host import describe

if TYPE_CHECKING:
    from nstdiff.schema import RunResult
    from nstdiff.store import HistoryEntry
    from ui.host import Host

log = logging.getLogger(__name__)
Watch = Callable[[ProgressEvent], None]


def in_browser(caller: Any) -> bool:
    """Whether the call came from the app's own page (not gradio_client, not a test calling the handler)."""
    try:
        return caller.headers.get("x-gradio-user") == "app"
    except AttributeError:  # no request (a test, a direct call), or one without headers
        return False


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Pace:
    """Time left, from the measured seconds per step of the current level: a run's levels (pyramid sizes, stages)
    take very different times per step, so the run's overall step percentage would mislead."""

    def __init__(self) -> None:
        self._level: tuple | None = None
        self._first: tuple[int, float] = (0, 0.0)

    def left(self, event: ProgressEvent) -> float | None:
        """Seconds left at this level's pace, or None until two steps of the level were seen."""
        level = (event.stage, event.level, event.total)
        if level != self._level:  # the first step of a level also paid for setting it up: measure from there
            self._level, self._first = level, (event.step, event.elapsed)
            return None
        steps = event.step - self._first[0]
        if steps <= 0:
            return None
        return (event.elapsed - self._first[1]) / steps * max(0, event.total - event.step)


def describe_step(event: ProgressEvent, left: float | None) -> str:
    loss = event.losses.get("total")
    unit = "frame" if event.stage == "frames" else "step"  # a video counts its frames
    return (f"{unit} {event.step}/{event.total}" + (f" · loss {loss:.4g}" if loss is not None else "")
            + (f" · ≈ {duration(left)} left" if left is not None else ""))


def progress_reporter(progress: gr.Progress, watch: Watch | None = None) -> Watch:
    """Progress events to Gradio's progress bar (step, loss, time left); every event also goes to `watch`."""
    pace = Pace()

    def report(event: ProgressEvent) -> None:
        if watch is not None:
            watch(event)
        if event.stage == "message" or not event.total:
            progress(0, desc=event.message)
            return
        progress((event.step, event.total), desc=describe_step(event, pace.left(event)),
                 unit="frames" if event.stage == "frames" else "steps")

    return report


def live_run(app: "Host", request: Any, caller: gr.Request, progress: gr.Progress) -> Iterator[tuple[Any, str]]:
    """`app.execute` as (picture, text) outputs: for a browser, each live preview while it runs, then the result
    (named after the inputs) and its description."""
    entry, result, shown = yield from previews_while_running(app, request, caller, progress)
    if not in_browser(caller):  # an API caller gets the history's file, as it always did
        yield str(entry.output), describe(result)
        return
    # the page's download is named after the inputs (photo-starry_night-gram.png), not the history's id
    yield offer_as(entry.output, download_name(request, result.method, result.suffix)), describe(result)
    if shown is not None:
        forget(shown)


def previews_while_running(app: "Host", request: Any, caller: gr.Request, progress: gr.Progress
                           ) -> Generator[tuple[str, str], None, tuple["HistoryEntry", "RunResult", Path | None]]:
    """`app.execute`, yielding (preview file, text) for each live preview when the caller is a browser (the run goes
    on in a worker thread, so the handler can stream); returns the history entry, the result and the preview still
    on the page (the caller forgets it once the result has replaced it)."""
    if not in_browser(caller):
        return (*app.execute(request, caller, progress), None)
    events: queue.Queue[ProgressEvent | None] = queue.Queue()
    pace, outcome = Pace(), {}

    def watch(event: ProgressEvent) -> None:
        if event.stage != "message" and event.total:
            event = event.model_copy(update={"message": describe_step(event, pace.left(event))})
        if event.preview:
            events.put(event)

    def work() -> None:
        try:
            outcome["value"] = app.execute(request, caller, progress, watch=watch)
        except BaseException as exc:  # noqa: BLE001 - handed to the handler's thread, raised there
            outcome["error"] = exc
        finally:
            events.put(None)

    # the copied context carries Gradio's event id, so the progress bar still reaches this job's page
    worker = threading.Thread(target=contextvars.copy_context().run, args=(work,), daemon=True, name="nstdiff-job")
    worker.start()
    shown: Path | None = None  # the preview on the page
    try:
        for event in latest(events):
            newest = preview_file(event.preview)
            if shown not in (None, newest):  # the page moves on to the newest: the one before is not needed
                forget(shown)
            shown = newest
            yield str(shown), f"*Live preview* · {event.message}"
    finally:
        if worker.is_alive():  # the page went away mid-run (Gradio closed this handler): stop the job
            app.jobs.cancel(caller.session_hash)
        worker.join()
    if "error" in outcome:  # the last preview stays on the page under "Cancelled …" (Gradio's cache ages it out)
        raise outcome["error"]
    return (*outcome["value"], shown)


def preview_file(png: bytes) -> Path:
    """A live preview as a file in Gradio's cache, where the page fetches it."""
    return Path(processing_utils.save_bytes_to_cache(png, "preview.png", str(upload_folder())))


def forget(preview: Path) -> None:
    """Delete a preview the page no longer shows (a run makes two a second: they would pile up in the cache)."""
    preview.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the folder named after its hash: gone once empty
        preview.parent.rmdir()


def latest(events: "queue.Queue[ProgressEvent | None]") -> Iterator[ProgressEvent]:
    """The queue's events up to its `None`, skipping those a newer one already replaced (a slow page drops frames)."""
    while (event := events.get()) is not None:
        try:
            while True:
                newer = events.get_nowait()
                if newer is None:
                    yield event
                    return
                event = newer
        except queue.Empty:
            pass
        yield event


def failure_text(exc: gr.Error) -> str:
    message = redact_paths(exc.message)
    if exc.title == "Cancelled":
        return "**Cancelled**" + message.removeprefix("Cancelled")
    return f"**{exc.title or 'Error'}:** {message}"


def in_result_area(outputs: Callable[[], Iterable[tuple] | tuple], caller: Any, text_at: int = 1,
                   width: int = 2) -> Iterator[tuple]:
    """The handler's (picture, …) outputs, its text at `text_at`; for a browser, a failure ends them as that text,
    where it stays until the next run: "Cancelled …" for a cancel, the message for an error. The picture this run
    showed (an instant result, a live preview) stays; one from an earlier run is cleared."""
    shown, said = False, ""
    try:
        produced = outputs()
        for output in [produced] if isinstance(produced, tuple) else produced:
            shown, said, width = shown or output[0] is not None, str(output[text_at]), len(output)
            yield output
    except Exception as exc:
        if not in_browser(caller):
            raise
        if not isinstance(exc, gr.Error):  # as GuardedBlocks words it: the trace to the log, the kind to the person
            log.exception("event failed")
            exc = gr.Error(f"Internal error ({type(exc).__name__}); see the server log.")
        if exc.message in said:  # the handler said it already (e.g. "Instant result only … — Cancelled …")
            return
        ending: list[Any] = [gr.update() if shown else None, *[gr.update()] * (width - 1)]
        ending[text_at] = failure_text(exc)
        yield tuple(ending)


def in_results(fn: Callable, text_at: int = 1, width: int = 2) -> Callable:
    """`fn`, a Gradio handler with a `request: gr.Request` parameter and `width` outputs (a picture first, its text at
    `text_at`), as a generator handler whose failures a browser sees in the result area (`in_result_area`); same
    parameters, so the same API."""
    signature = inspect.signature(fn)
    names = list(signature.parameters)

    def handler(*args, **kwargs):
        bound = signature.bind_partial(*args, **kwargs).arguments
        yield from in_result_area(lambda: fn(*args, **kwargs), bound.get("request"), text_at, width)

    handler.__signature__ = signature
    handler.__annotations__ = {"request": gr.Request} if "request" in names else {}
    handler.__name__, handler.__doc__ = fn.__name__, fn.__doc__
    return handler
