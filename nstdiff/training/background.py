"""Training as a background job: a separate process (`nstdiff lora train`, `nstdiff fast train`) the app starts and
follows.

The job's truth is its folder: `state.json` (step, loss, time left, pid), `loss.png`, `samples/`. A page reload or an
app restart reads them again; a process that died is reported as interrupted, and starting the same job again
resumes it from its last checkpoint. The dataset is checked here, before the process starts, so a bad folder is a
message in the app, not a failed job.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from pydantic import BaseModel

from nstdiff.errors import InputError
from nstdiff.loras import LORAS_FOLDER, lora_folder, newest_sample
from nstdiff.settings import Settings, get_settings
from nstdiff.training.lora_data import LoraState, LoraTraining, inspect_dataset, read_state


_STARTING = threading.Lock()


def settings_environment(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings (`NSTDIFF_*` variables)."""
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[f"NSTDIFF_{name.upper()}"] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return env


def command_line(config: BaseModel, command: tuple[str, ...] = ("lora", "train")) -> list[str]:
    """`nstdiff lora train …` (or another training `command`) with every field of `config` as its flag."""
    args = [sys.executable, "-m", "nstdiff", *command, "--quiet"]
    for name, value in config.model_dump(mode="json").items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args.append(f"{flag}={value}")  # one token: a value starting with '-' is not read as a flag
    return args


def start_training(config: LoraTraining, settings: Settings | None = None) -> LoraState:
    """Check the dataset, then start training in its own process (which outlives the app); returns its first state.
    A job of that name that is still running is refused."""
    settings = settings or get_settings()
    inspect_dataset(config.images, config, settings)  # raises with the reason for an unusable folder
    return launch(lora_folder(config.name, settings), command_line(config), config.steps, settings)


def launch(folder: Path, args: list[str], steps: int, settings: Settings) -> LoraState:
    """Start the training command `args` in its own process, logging to `folder`/train.log; returns its first state.
    Refused while the job of that folder is still running."""
    with _STARTING:  # two quick clicks start one process
        current = read_state(folder)
        if current is not None and current.status == "running":
            raise InputError(f"'{folder.name}' is already training (step {current.step} of {current.steps})")
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "train.log", "ab") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                       env=settings_environment(settings), start_new_session=True)
        # reap it when it ends, so a dead job is not a zombie that still looks alive to `read_state`
        threading.Thread(target=process.wait, daemon=True, name=f"train-{folder.name}").start()
        state = LoraState(status="running", step=current.step if current else 0, steps=steps, pid=process.pid)
        (folder / "state.json").write_text(state.model_dump_json())  # "running" at once; the job then updates it
    return state


def training_states(settings: Settings | None = None) -> dict[str, LoraState]:
    """Every LoRA folder's job state, by name (finished LoRAs included)."""
    return job_states((settings or get_settings()).models_path / LORAS_FOLDER)


def job_states(root: Path) -> dict[str, LoraState]:
    """The job state of every folder under `root` that has one, by folder name."""
    states = {}
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        state = read_state(folder)
        if state is not None:
            states[folder.name] = state
    return states


def training_files(name: str, settings: Settings | None = None) -> tuple[Path | None, Path | None, str]:
    """(loss curve, newest sample image, last lines of the log) of a job, for the app."""
    return job_files(lora_folder(name, settings))


def job_files(folder: Path) -> tuple[Path | None, Path | None, str]:
    """(loss curve, newest sample image, last lines of the log) of the job in `folder`."""
    loss = folder / "loss.png"
    log = folder / "train.log"
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:]) if log.is_file() else ""
    return (loss if loss.is_file() else None), newest_sample(folder), tail
