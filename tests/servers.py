"""Starting the real app server on a free loopback port, for API and browser tests."""
from __future__ import annotations

import socket
import threading
import time

import uvicorn

from nstdiff.settings import Settings
from ui.server import SHUTDOWN_GRACE_S, create_server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningServer:
    def __init__(self, settings: Settings, auth: tuple[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        config = uvicorn.Config(create_server(settings, auth=auth), host="127.0.0.1", port=self.port,
                                log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            assert time.time() < deadline, "the app did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
