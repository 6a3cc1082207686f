"""The My styles tab: a training job in the background outlives a killed process and an app restart, and resumes."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from nstdiff.settings import Settings
from tests.conftest import gradient, stripes
from tests.servers import RunningServer
from tests.tiny_diffusion import build_tiny_sd


def wait_for(client: Client, name: str, done, timeout: float = 600) -> str:
    """The job's status line once `done` says so; `timeout` only tells a stuck job from a slow one (the resumed run
    took over 180 s on two cores shared with another pytest worker and a Ray cluster)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = client.predict(name, api_name="/lora_status")[0]
        if done(text):
            return text
        time.sleep(0.5)
    raise AssertionError(f"timed out; last status: {text}")


def test_training_survives_a_kill_and_a_restart_then_resumes(tmp_path):
    models = tmp_path / "models"
    build_tiny_sd(models / "diffusion" / "sd15")
    artwork = []
    for i in range(4):
        path = tmp_path / f"art{i}.png"
        (stripes(40, 40, period=4 + 2 * i) if i % 2 else gradient(40, 40, (200, 40 * i, 30))).save(path)
        artwork.append(handle_file(str(path)))
    settings = Settings(outputs_dir=tmp_path / "outputs", cache_dir=tmp_path / "cache", models_dir=models,
                        device="cpu", allow_downloads=False, threads=1)
    form = dict(name="my-ink", trigger="<ink>", base="sd15", steps=30, rank=4, resolution=32, captions="none")
    folder = models / "loras" / "my-ink"

    server = RunningServer(settings)
    try:
        client = Client(server.url, verbose=False)
        with pytest.raises(Exception, match="Upload a few images"):
            client.predict(files=None, **{**form, "name": "nothing"}, api_name="/lora_train")
        client.predict(files=artwork, **form, api_name="/lora_train")
        wait_for(client, "my-ink", lambda text: (folder / "checkpoints").is_dir()
                 and any((folder / "checkpoints").iterdir()) and "running" in text)
        os.kill(json.loads((folder / "state.json").read_text())["pid"], signal.SIGKILL)
    finally:
        server.stop()

    restarted = RunningServer(settings)  # the app comes back; the job's folder is all it knows
    try:
        client = Client(restarted.url, verbose=False)
        interrupted = wait_for(client, "my-ink", lambda text: "interrupted" in text, timeout=30)
        assert 0 < int(interrupted.split("step ")[1].split(" ")[0]) < 30
        # the newest checkpoint on disk (the kill may come between writing one and recording it in state.json)
        resumed_from = max(int(p.name.rsplit("-", 1)[1]) for p in (folder / "checkpoints").glob("step-*")
                           if not p.name.endswith(".partial"))  # a write the kill cut short is not a checkpoint
        client.predict(files=None, **form, api_name="/lora_train")  # same settings, kept images: resume
        finished = wait_for(client, "my-ink", lambda text: "finished" in text)
        assert "step 30 of 30" in finished
        log = (folder / "train.log").read_text()
        assert f"resumed from step {resumed_from}" in log  # the second process continued from the checkpoint
        _, loss_curve, sample, _ = client.predict("my-ink", api_name="/lora_status")
        assert Path(loss_curve).is_file() and Path(sample).is_file()
        library = client.predict(api_name="/lora_library")[0]
        assert [row[0] for row in library["data"]] == ["my-ink"]
    finally:
        restarted.stop()
