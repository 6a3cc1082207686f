"""Soak: 200 small jobs from 8 clients with random cancels, a kill -9 of the server half-way and a restart.

Loopback only, bounded (every wait has a timeout; the whole test stops itself well inside 10 minutes). Checks: no job
is lost (each ends in a result or an error), the history's rows and the result files match one to one, no file is
left behind by the killed job, and the server's memory after the run stays within 1.2x of its memory after warm-up.
"""
from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from tests.conftest import gradient, stripes
from tests.security.conftest import ServerProcess

pytestmark = pytest.mark.soak

CLIENTS, JOBS_EACH, KILL_AFTER, WARM_UP = 8, 25, 80, 24
DEADLINE = 9 * 60  # seconds for the whole test


class Soak:
    def __init__(self, server: ServerProcess, content: Path, style: Path):
        self.server, self.content, self.style = server, content, style
        self.outcomes: list[str] = []  # "result", "cancelled" or "error: ..." per job
        self.lock = threading.Lock()
        self.started = time.time()
        self.restarted = threading.Event()
        self.warm_rss: float | None = None

    def client(self) -> Client:
        while True:  # the server may be down for a moment around the kill
            try:
                return Client(self.server.url, verbose=False, download_files=False)
            except Exception:
                assert time.time() - self.started < DEADLINE, "the server never came back"
                time.sleep(0.5)

    def one_job(self, client: Client, rng: random.Random) -> str:
        job = client.submit(content=handle_file(str(self.content)), styles=[handle_file(str(self.style))],
                            weights="", method="gram", strength=0.8, preserve_color="none", style_scale=1.0,
                            size=32, steps=rng.choice([2, 3, 40]), seed=rng.randrange(1000), encoder="random",
                            mask_file=None, mask_paint=None, api_name="/stylize")
        if rng.random() < 0.15:  # a person changing their mind
            time.sleep(rng.uniform(0, 0.3))
            client.predict(api_name="/cancel")
        try:
            job.result(timeout=120)
            return "result"
        except Exception as exc:  # noqa: BLE001 - every failure is an outcome to count
            return "cancelled" if "Cancelled" in str(exc) else f"error: {type(exc).__name__}"

    def worker(self, seed: int) -> None:
        rng, client = random.Random(seed), self.client()
        for _ in range(JOBS_EACH):
            try:
                outcome = self.one_job(client, rng)
            except Exception as exc:  # noqa: BLE001 - the server went away under this client
                outcome = f"error: {type(exc).__name__}"
            if outcome.startswith("error"):
                client = self.client()
            with self.lock:
                self.outcomes.append(outcome)
                done = len(self.outcomes)
            if done == KILL_AFTER:
                self.server.kill()
                self.server.start()
                self.restarted.set()
            elif self.restarted.is_set() and done == KILL_AFTER + WARM_UP and self.warm_rss is None:
                self.warm_rss = self.server.rss_mb()


def errors_of(soak: Soak) -> list[str]:
    return [o for o in soak.outcomes if o.startswith("error")]


def stored_state(outputs: Path) -> tuple[set[str], set[str], list[Path]]:
    """The history's ids, the ids of the result files, and any file a write left half-done."""
    with sqlite3.connect(outputs / "history.sqlite") as db:
        rows = {row[0] for row in db.execute("SELECT id FROM results")}
    files = {f.name.split(".", 1)[0] for f in (outputs / "results").iterdir()}
    partial = [f for f in outputs.rglob("*") if f.name.endswith(".part") or f.name.startswith(".")]
    return rows, files, partial


def test_two_hundred_jobs_a_kill_and_a_restart_lose_nothing(tmp_path):
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    gradient(48, 40).save(content)
    stripes(48, 48).save(style)
    server = ServerProcess(tmp_path / "server", queue_max_size="256")
    soak = Soak(server, content, style)
    try:
        threads = [threading.Thread(target=soak.worker, args=(seed,), daemon=True) for seed in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(1.0, DEADLINE - (time.time() - soak.started)))
        assert not any(thread.is_alive() for thread in threads), "jobs still hanging at the deadline"
        assert len(soak.outcomes) == CLIENTS * JOBS_EACH  # every job ended, in a result or an error
        results = soak.outcomes.count("result")
        print(f"soak: {results} results, {soak.outcomes.count('cancelled')} cancelled, errors {errors_of(soak)}; "
              f"RSS {soak.warm_rss:.0f} MB after warm-up, {server.rss_mb():.0f} MB after the run; "
              f"{time.time() - soak.started:.0f} s")
        errors = errors_of(soak)
        assert results > 100 and soak.outcomes.count("cancelled") > 0
        assert len(errors) <= CLIENTS + 1, errors  # only jobs that were in flight or queued at the kill
        rows, files, partial = stored_state(server.outputs)
        assert rows == files and not partial
        # a stored result whose answer the kill cut off is the only row a client may not have seen
        assert results <= len(rows) <= results + 1
        assert soak.warm_rss is not None and server.rss_mb() <= 1.2 * soak.warm_rss
    finally:
        server.stop()
