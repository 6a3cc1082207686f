"""Serving the app: FastAPI with `/healthz`, the Gradio app mounted at `/`, safe defaults.

Loopback by default; uploads capped; the queue refuses REST calls that bypass it (gradio_client still works); SSR,
monitoring and run history off. Served files: Gradio's upload cache and `outputs/results` (results and previews,
nothing else: the history database and kept inputs sit beside it). File inputs accept only uploads (`ui/files.py`).
Repeated failed logins from one address are refused for a while.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from logging.handlers import RotatingFileHandler
from pathlib import Path

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from nstdiff.executor import Executor
from nstdiff.settings import Settings, get_settings
from ui.app import App
from ui.look import CSS, HEAD


class LoginThrottle:
    """At most `failures` failed logins per client address within `window` seconds; past that, every login from
    that address (the right password too) is refused until the oldest failure leaves the window."""

    def __init__(self, failures: int, window: float):
        self.failures, self.window = failures, window
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._seen.pop(client, deque())
        while times and now - times[0] > self.window:
            times.popleft()
        if times:  # addresses with nothing recent are forgotten: the table stays small
            self._seen[client] = times
        return times

    def attempt(self, client: str) -> float:
        """Seconds `client` must wait (0: go ahead). A login that may go ahead counts as a failure at once, so that
        parallel guesses count too; `succeeded` takes it back."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(client, now)
            if len(times) >= self.failures:
                return self.window - (now - times[0])
            times.append(now)
            self._seen[client] = times
            return 0.0

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._seen.pop(client, None)


def create_server(settings: Settings | None = None, executor: Executor | None = None,
                  auth: tuple[str, str] | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = App(executor, settings)
    demo = app.build().queue(max_size=settings.queue_max_size, api_open=False,
                             default_concurrency_limit=settings.job_slots)
    server = FastAPI(title="nstdiff")
    throttle = LoginThrottle(settings.auth_max_failures, settings.auth_lockout_seconds)

    @server.middleware("http")
    async def stamp_and_throttle(request: Request, call_next):
        # when each request arrived: a job's queue-join time, so Cancel reaches jobs still waiting (ui/app.py Jobs)
        request.state.received = time.monotonic()
        login = auth is not None and request.method == "POST" and request.url.path.rstrip("/").endswith("/login")
        client = request.client.host if request.client else "?"
        if login and (wait := throttle.attempt(client)):
            return JSONResponse({"detail": f"Too many failed logins; try again in {wait:.0f} s."}, status_code=429,
                                headers={"Retry-After": str(max(1, round(wait)))})
        response = await call_next(request)
        if login and response.status_code < 400:
            throttle.succeeded(client)
        return response

    @server.get("/healthz")
    def healthz() -> dict[str, object]:
        # where jobs run: "local", or "ray" with the cluster's address and each deployment's replicas by state
        return {"status": "ok", **app.executor.health(), "models": {m.name: m.ready for m in app.executor.models()}}

    mounted = gr.mount_gradio_app(
        server, demo, path="/", auth=auth, allowed_paths=[str(app.store.results)],
        max_file_size=f"{settings.max_upload_mb}mb", ssr_mode=False, enable_monitoring=False, run_history=False,
        footer_links=["api"], show_error=False, css=CSS, head=HEAD,
    )
    # Gradio checks "this file was uploaded here" only for an app it launched itself; mounted, we say it was
    demo.has_launched = True
    return mounted


def log_to(settings: Settings) -> Path:
    """Log lines (one per job: id, method, seconds, outcome) to stderr and to `outputs/logs/nstdiff.log`, which is
    not served."""
    folder = settings.outputs_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "nstdiff.log"
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[logging.StreamHandler(),
                                  RotatingFileHandler(path, maxBytes=10 * 2**20, backupCount=3, encoding="utf-8")])
    return path


# on Ctrl-C or SIGTERM: a page's open event stream never ends by itself, so without a limit the server waits forever
SHUTDOWN_GRACE_S = 3


def serve(host: str | None = None, port: int | None = None, auth: tuple[str, str] | None = None) -> None:
    import uvicorn

    settings = get_settings()
    log_to(settings)
    host, port = host or settings.server_host, port or settings.server_port
    server = create_server(settings, auth=auth)
    print(f"nstdiff app on http://{host}:{port}  (health: /healthz)", flush=True)
    # the client address the login throttle keys on comes from X-Forwarded-For only behind a proxy you run
    uvicorn.run(server, host=host, port=port, log_level=settings.log_level.lower(),
                proxy_headers=settings.trust_proxy_headers, timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
