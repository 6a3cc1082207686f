"""Serving the app: FastAPI with `/healthz`, the Gradio app mounted at `/`, safe defaults.

Loopback by default; uploads capped; the queue refuses REST calls that bypass it (gradio_client still works); SSR,
monitoring and run history off; only the outputs folder is served besides Gradio's own upload cache.
"""
from __future__ import annotations

import gradio as gr
from fastapi import FastAPI

from nstdiff.executor import Executor
from nstdiff.settings import Settings, get_settings
from ui.app import App


def create_server(settings: Settings | None = None, executor: Executor | None = None,
                  auth: tuple[str, str] | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = App(executor, settings)
    demo = app.build().queue(max_size=settings.queue_max_size, api_open=False,
                             default_concurrency_limit=settings.gpu_slots)
    server = FastAPI(title="nstdiff")

    @server.get("/healthz")
    def healthz() -> dict[str, object]:
        return {"status": "ok", "models": {m.name: m.ready for m in app.executor.models()}}

    return gr.mount_gradio_app(
        server, demo, path="/", auth=auth, allowed_paths=[str(settings.outputs_dir)],
        max_file_size=f"{settings.max_upload_mb}mb", ssr_mode=False, enable_monitoring=False, run_history=False,
        footer_links=["api"], show_error=True,
    )


def serve(host: str | None = None, port: int | None = None, auth: tuple[str, str] | None = None) -> None:
    import uvicorn

    settings = get_settings()
    host, port = host or settings.server_host, port or settings.server_port
    server = create_server(settings, auth=auth)
    print(f"nstdiff app on http://{host}:{port}  (health: /healthz)", flush=True)
    uvicorn.run(server, host=host, port=port, log_level=settings.log_level.lower())
