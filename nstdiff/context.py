"""What a run carries besides its request: the device, progress reporting and cancellation.

Methods, training and routing need these; they live below the executor so that none of them imports it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from nstdiff.errors import Cancelled, InputError
from nstdiff.schema import ProgressEvent
from nstdiff.settings import Settings

if TYPE_CHECKING:  # torch is imported only when a job runs, so front ends can import this module cheaply
    import torch

ProgressCallback = Callable[[ProgressEvent], None]
PREVIEW_EVERY = 0.5  # seconds between live previews: cheap (a ≤ 256 px PNG), yet a picture that moves


class CancelToken:
    """Set from any thread (a signal handler, a UI button); the run stops at its next step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled (True) or `timeout` seconds pass (False): for a watcher that forwards a Cancel."""
        return self._event.wait(timeout)


def pick_device(setting: str) -> "torch.device":
    import torch

    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(setting)
    except RuntimeError:
        raise InputError(f"unknown device '{setting}'; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise InputError(f"device '{setting}' was asked for but no such CUDA GPU is visible; use NSTDIFF_DEVICE=cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"device '{setting}' was asked for but MPS is not available; use NSTDIFF_DEVICE=cpu")
    return device


@dataclass
class RunContext:
    """What a method gets besides its request: where to run, how to report, when to stop."""

    settings: Settings
    device: "torch.device"
    seed: int
    progress: ProgressCallback | None = None
    cancel: CancelToken | None = None
    started: float = field(default_factory=time.perf_counter)
    notes: list[str] = field(default_factory=list)
    level: int = 0  # the pass a step belongs to: `optimise_image` counts one per call (a pyramid level)
    preview_every: float | None = None  # seconds between live previews (the first comes after as long); None:
    # PREVIEW_EVERY
    _last_preview: float = field(default=0.0, init=False, repr=False)

    def message(self, text: str) -> None:
        """A status line for the user (e.g. 'fetching vgg16…'), sent as a progress event without a step."""
        if self.progress:
            self.progress(ProgressEvent(step=0, total=0, stage="message", message=text, elapsed=self.elapsed))

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def wants_preview(self) -> bool:
        """Whether a live preview is due: someone listens and `preview_every` seconds passed since the last one (or
        since the start). Ask before making the picture, so a step pays for one only when it is sent."""
        every = PREVIEW_EVERY if self.preview_every is None else self.preview_every
        return self.progress is not None and self.elapsed - self._last_preview >= every

    def step(self, step: int, total: int, losses: dict[str, float] | None = None, stage: str = "optimise",
             preview: Any = None) -> None:
        """Report a finished step, with `preview` (the image now: a tensor in [0, 1] or a PIL image) as a small PNG
        when given; raises `Cancelled` if cancellation was asked for (also from the callback)."""
        if self.progress:
            picture = None
            if preview is not None:
                from nstdiff.preview import preview_png

                picture, self._last_preview = preview_png(preview), self.elapsed
            self.progress(ProgressEvent(step=step, total=total, stage=stage, losses=losses or {}, elapsed=self.elapsed,
                                        level=self.level, preview=picture))
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled(step, total)
