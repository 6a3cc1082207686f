"""Running a job from the command line, through the executor: a progress bar on stderr, Ctrl-C to cancel, the result
saved. The extensions' commands run their requests with `run_request` too."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Iterator

from pydantic import BaseModel

from nstdiff.distributed import build_executor
from nstdiff.executor import CancelToken
from nstdiff.settings import reload_settings

if TYPE_CHECKING:
    from nstdiff.executor import ProgressCallback


def progress_printer(quiet: bool):
    """A tqdm bar fed by ProgressEvents; status messages are printed above it."""
    from tqdm import tqdm

    state: dict[str, Any] = {}

    def on_progress(event) -> None:
        if event.stage == "message":
            (state["bar"].write if "bar" in state else print)(event.message, file=sys.stderr)
            return
        if quiet:
            return
        bar = state.get("bar")
        if bar is None:
            unit = "frame" if event.stage == "frames" else "step"  # a video counts its frames
            bar = state["bar"] = tqdm(total=event.total, unit=unit, file=sys.stderr, dynamic_ncols=True)
        bar.update(event.step - bar.n)
        if event.losses:
            bar.set_postfix({k: f"{v:.3g}" for k, v in event.losses.items()}, refresh=False)

    def close() -> None:
        if "bar" in state:
            state.pop("bar").close()

    return on_progress, close


@contextmanager
def cancelled_by_ctrl_c(quiet: bool) -> Iterator[tuple[ProgressCallback, CancelToken]]:
    """A progress callback and a cancel token that Ctrl-C sets: the job stops after its current step."""
    cancel = CancelToken()

    def on_interrupt(signum, frame):
        cancel.cancel()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once

    previous = signal.signal(signal.SIGINT, on_interrupt)
    on_progress, close = progress_printer(quiet)
    try:
        yield on_progress, cancel
    finally:
        close()
        signal.signal(signal.SIGINT, previous)


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """--backend and --ray-address: where the command's jobs run (they override the settings)."""
    parser.add_argument("--backend", choices=["local", "ray"], help="where jobs run: in this process (local), or on "
                        "a Ray cluster's replicas (ray); default: the setting `backend`, local")
    parser.add_argument("--ray-address", metavar="HOST:PORT", help="the Ray cluster to join (with --backend ray; "
                        "default: the setting `ray_address`, else a Ray instance started on this machine)")


def apply_backend_flags(args: argparse.Namespace) -> None:
    """Make --backend/--ray-address the settings of this process (and of the app it serves)."""
    changed = False
    for flag, variable in (("backend", "NSTDIFF_BACKEND"), ("ray_address", "NSTDIFF_RAY_ADDRESS")):
        if getattr(args, flag, None):
            os.environ[variable] = getattr(args, flag)
            changed = True
    if changed:
        reload_settings()


def run_request(request: BaseModel, output: Path, quiet: bool, suffixes: Collection[str] | None = None) -> int:
    """Run any method's request with a progress bar and Ctrl-C cancellation, and save its result to `output`, whose
    suffix must be one of `suffixes` (default: the image formats)."""
    from nstdiff.imageio import IMAGE_FORMATS, check_writable

    check_writable(output, suffixes or IMAGE_FORMATS)  # fail before minutes of work, not after
    with cancelled_by_ctrl_c(quiet) as (on_progress, cancel):
        result = build_executor().run(request, progress=on_progress, cancel=cancel)
    written = result.save(output)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {written} ({result.describe()})")
    return 0


def train_until_ctrl_c(config: BaseModel, quiet: bool) -> Any:
    """Train `config` with a progress bar, in this process or as a Ray task (setting `backend`); Ctrl-C stops it after
    the current step, checkpoints kept."""
    with cancelled_by_ctrl_c(quiet) as (on_progress, cancel):
        return build_executor().train(config, progress=on_progress, cancel=cancel)
