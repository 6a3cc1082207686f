"""Which jobs a browser or API session has running or waiting, so that its Cancel reaches them (no Gradio, no torch)."""
from __future__ import annotations

import math
import threading
import time
from typing import Any

from nstdiff.executor import CancelToken


class Jobs:
    """The cancel tokens of each session's running jobs, and when the session last pressed Cancel: a job that joined
    the queue before that moment never starts, so Cancel also reaches jobs still waiting (from the browser or the
    API alike)."""

    FORGET_AFTER = 24 * 3600.0  # seconds a Cancel is remembered for jobs still waiting

    def __init__(self) -> None:
        self._running: dict[str, set[CancelToken]] = {}
        self._cancelled_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def start(self, session: str, joined: float | None) -> CancelToken:
        """A token for a job of `session` that joined the queue at `joined` (monotonic seconds; None: unknown)."""
        token = CancelToken()
        with self._lock:
            if joined is not None and joined <= self._cancelled_at.get(session, -math.inf):
                token.cancel()
            self._running.setdefault(session, set()).add(token)
        return token

    def finish(self, session: str, token: CancelToken) -> None:
        with self._lock:
            running = self._running.get(session, set())
            running.discard(token)
            if not running:
                self._running.pop(session, None)

    def cancel(self, session: str) -> int:
        """Cancel the session's running jobs and the ones waiting in the queue; returns how many were running."""
        now = time.monotonic()
        with self._lock:
            self._cancelled_at = {s: t for s, t in self._cancelled_at.items() if now - t < self.FORGET_AFTER}
            self._cancelled_at[session] = now
            tokens = list(self._running.get(session, ()))
        for token in tokens:
            token.cancel()
        return len(tokens)


def joined_at(caller: Any) -> float | None:
    """When the caller's job joined the queue: the server stamps every HTTP request (`ui/server.py`)."""
    http = getattr(caller, "request", None) if caller is not None else None
    return getattr(getattr(http, "state", None), "received", None)
