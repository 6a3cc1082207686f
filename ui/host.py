"""The contract a tab is written against — ours and third-party extensions' alike.

An extension's tab is `build_tab(host: Host) -> list[events]` (entry point group `nstdiff.tabs`): it builds its
widgets inside the open `gr.Blocks`, runs its jobs through `host.execute` or `host.live` (submit: the shared queue,
the history, cancel tokens, progress), offers `host.cancel` on a Cancel button, puts its job events in the device
queue with `**host.gpu_queue`, words results with `describe`, registers what History's "use these settings" fills
with `host.refills.add`, and returns the events whose end adds a result to the history. `ui/app.py` implements the
host and assembles the tabs; nothing imports it back. No torch here.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

import gradio as gr

from nstdiff.errors import Cancelled

if TYPE_CHECKING:
    from nstdiff.executor import Executor
    from nstdiff.schema import ProgressEvent, RunResult
    from nstdiff.settings import Settings
    from nstdiff.store import HistoryEntry, Store
    from ui.jobs import Jobs

GPU = {"concurrency_id": "gpu"}  # every heavy event shares it: jobs queue for the device instead of fighting over it


@dataclass
class Refill:
    """A tab that takes a past result's settings: its label, which methods' results it takes, the widgets it fills,
    and `fill(parameters, files)` → one value per widget (`files(path)`: the input file to show; `files` None: leave
    the tab's files as they are). `claims(parameters)`, when given, takes a result whatever its method (Text style
    claims the words that ran as a library painting's Gram or feed-forward job). `names`, when given, name the
    widgets as a settings PNG names its values (Image style's fields)."""

    label: str
    methods: Callable[[str], bool]
    widgets: list[gr.components.Component]
    fill: Callable[[dict[str, Any], Callable[[str | None], Any] | None], Any]
    claims: Callable[[dict[str, Any]], bool] | None = None
    names: list[str] | None = None


class Refills:
    """The tabs "use these settings" can fill, as the app's tabs register them while it is built."""

    def __init__(self) -> None:
        self.tabs: list[Refill] = []

    def add(self, label: str, methods: Callable[[str], bool], widgets: list, fill: Callable,
            claims: Callable[[dict[str, Any]], bool] | None = None, names: list[str] | None = None) -> None:
        self.tabs.append(Refill(label, methods, list(widgets), fill, claims, names))

    @property
    def widgets(self) -> list[gr.components.Component]:
        return [w for tab in self.tabs for w in tab.widgets]

    def outputs(self, method: str, parameters: dict[str, Any], files: Callable[[str | None], Any] | None
                ) -> list[Any]:
        """One value per widget of every registered tab (only the matching tab's change), then the tab's label."""
        claimed = [tab for tab in self.tabs if tab.claims and tab.claims(parameters)]
        for tab in claimed or [tab for tab in self.tabs if tab.methods(method)]:
            return self.flatten(tab, tab.fill(parameters, files))
        raise gr.Error(f"No tab takes the settings of a '{method}' result; they are in the Parameters box.")

    def flatten(self, chosen: Refill, values: list[Any]) -> list[Any]:
        """`values` in `chosen`'s widgets' places, "no change" for every other tab's, then `chosen`'s label."""
        out: list[Any] = []
        for tab in self.tabs:
            out += list(values) if tab is chosen else [gr.update()] * len(tab.widgets)
        return [*out, chosen.label]


class Host(Protocol):
    """What a tab may use of the app."""

    settings: "Settings"
    executor: "Executor"
    store: "Store"
    jobs: "Jobs"
    refills: Refills

    def execute(self, request: Any, caller: gr.Request, progress: gr.Progress,
                watch: Callable[["ProgressEvent"], None] | None = None) -> tuple["HistoryEntry", "RunResult"]:
        """Run a request for a caller in the shared queue, store its result; a failure as a `gr.Error`."""

    def attempt(self, request: Any, caller: gr.Request, progress: gr.Progress) -> "RunResult":
        """Run a request without storing it (a result shown before the full one)."""

    def live(self, request: Any, caller: gr.Request, progress: gr.Progress) -> Iterator[tuple[Any, str]]:
        """`execute` as (picture, text) outputs, live previews first for the app's own page."""

    def cancel(self, request: gr.Request) -> str:
        """Cancel the caller's running and waiting jobs; the sentence to show."""

    def history(self) -> list[tuple[str, str]]:
        """The history gallery's (picture, caption) items."""

    @property
    def gpu_queue(self) -> dict[str, Any]:
        """Event arguments that put a job in the one shared device queue."""


def describe(result: "RunResult | HistoryEntry") -> str:
    """A result in one Markdown line (method, encoder, seed, timings), its notes as a list below."""
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    notes = "".join(f"\n- {note}" for note in result.notes)
    return f"**{result.method}** · encoder **{result.encoder}** · seed **{result.seed}** · {timings}{notes}"


def cancelled(exc: Cancelled) -> gr.Error:
    when = f"at step {exc.step} of {exc.total}" if exc.step else "before it started"
    return gr.Error(f"Cancelled {when}; nothing was saved.", title="Cancelled")


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
