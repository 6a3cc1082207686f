"""The attack suite's real targets: `nstdiff serve` in its own process, and the `nstdiff` command line.

The server runs with its own temp, Gradio-upload, outputs, cache and working folders, none inside another, so a
file that is reachable only because it happens to sit in a temp folder or the working directory shows up as a leak.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:  # everything in this folder is part of the attack suite
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.security)

NSTDIFF = str(Path(sys.executable).parent / "nstdiff")


def server_env(root: Path, **settings: str) -> dict[str, str]:
    """The environment of a server (or CLI run) whose every folder lives under `root`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NSTDIFF_", "GRADIO_"))}
    folders = {name: root / name for name in ("tmp", "uploads", "outputs", "cache", "cwd")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    env.update(TMPDIR=str(folders["tmp"]), GRADIO_TEMP_DIR=str(folders["uploads"]),
               NSTDIFF_OUTPUTS_DIR=str(folders["outputs"]), NSTDIFF_CACHE_DIR=str(folders["cache"]),
               NSTDIFF_DEVICE="cpu", NSTDIFF_ALLOW_DOWNLOADS="0", NSTDIFF_DEFAULT_ENCODER="random",
               GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    env.update({f"NSTDIFF_{k.upper()}": v for k, v in settings.items()})
    return env


class ServerProcess:
    """`nstdiff serve` on a free loopback port; `kill()` is kill -9, `start()` starts it again on the same port."""

    def __init__(self, root: Path, auth: str | None = None, **settings: str):
        self.root, self.auth, self.port = root, auth, free_port()
        self.env = server_env(root, **settings)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = root / "server.log"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        command = [NSTDIFF, "serve", "--port", str(self.port)] + (["--auth", self.auth] if self.auth else [])
        with self.log.open("a") as log:
            self.process = subprocess.Popen(command, env=self.env, cwd=self.root / "cwd", stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.process.poll() is None, f"the server exited: {self.log.read_text()[-2000:]}"
            try:
                if httpx.get(self.url + "healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("the server did not start in 120 s")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("app"))
    yield server
    server.stop()


def run_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real `nstdiff` command, as a person runs it."""
    return subprocess.run([NSTDIFF, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
