"""What a fast-style training job is given and what it leaves on disk, without torch: the CLI's `fast list` and
`fast delete`, the app's My styles tab and the background job launcher import this module.

On-disk layout of one network, `<models_path>/fast-styles/<name>/`:
    network.safetensors     the trained transformer and its style vector (`transformer.*`, `embedding`); header
                            metadata as meta.json
    meta.json               painting, photos, steps, resolution, encoder, weights, final losses, seconds, created
    config.json             the training config of the run in progress (compared on resume)
    state.json              status, step, loss, speed, eta, pid, last checkpoint; rewritten every step
    loss.csv, loss.png      every step's losses and their curve
    samples/step-XXXXX.png  the held-out photo rendered at that step (step 0: the pretrained network it started from)
    checkpoints/step-XXXXX.safetensors   weights + AdamW state + step (the last two are kept)
"""
from __future__ import annotations

import difflib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from nstdiff.errors import InputError
from nstdiff.imageio import load_image
from nstdiff.loras import NAME_PATTERN
from nstdiff.schema import Frozen
from nstdiff.settings import Settings, get_settings
from nstdiff.training.background import command_line, job_files, job_states, launch
from nstdiff.training.lora_data import IMAGE_SUFFIXES, LoraState, read_state

FAST_STYLES_FOLDER = "fast-styles"
NETWORK_FILE, META_FILE = "network.safetensors", "meta.json"
MIN_PHOTOS = 2  # one is kept out of training for the sample
# Fields that change what is learnt: a run resumes only when these match the interrupted one.
RESUME_FIELDS = ("style", "images", "steps", "resolution", "batch", "learning_rate", "style_weight", "content_weight",
                 "tv_weight", "encoder", "mixed_precision", "seed")


def check_network_name(name: str) -> str:
    if not re.fullmatch(NAME_PATTERN, name or ""):  # fullmatch: `$` alone lets "name\n" through
        raise InputError(f"{name!r} is not a usable network name: use 1–64 lower-case letters, digits, '-' or '_', "
                         "starting with a letter or digit, e.g. starry-night")
    return name


class FastStyleTraining(Frozen):
    """One per-style network (Johnson, Alahi & Fei-Fei 2016), fine-tuned from Magenta's arbitrary-style transformer
    (Ghiasi et al. 2017) on photos with VGG Gram (style) and feature (content) losses; see
    `nstdiff.training.fast_style`. Weights measured in benchmarks/fast_style_benchmark.py."""

    name: str = Field(description="Name of the network (lower-case letters, digits, - _); its folder name.")
    style: Path = Field(description="The painting whose style the network learns.")
    images: Path = Field(description="Folder of training photos (at least 2; the last is kept aside for the sample).")
    steps: int = Field(1000, ge=1, le=200_000, description="Optimiser steps.")
    resolution: int = Field(256, ge=32, le=1024, multiple_of=4, description="Side of the square training crops, px.")
    batch: int = Field(1, ge=1, le=64, description="Crops per step.")
    # measured on starry_night (README): 1e-3 washes the colours out within 100 steps; style 30 beats 10 and 3
    learning_rate: float = Field(1e-4, gt=0, le=1.0, description="AdamW learning rate.")
    style_weight: float = Field(30.0, ge=0, le=1e6, description="Weight of the Gram style loss.")
    content_weight: float = Field(1.0, ge=0, le=1e6, description="Weight of the feature content loss.")
    tv_weight: float = Field(1.0, ge=0, le=1e6, description="Weight of the total-variation smoother.")
    encoder: str = Field("vgg16", description="The VGG the losses are measured on (vgg16, vgg19, random for tests).")
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field(
        "auto", description="Autocast precision, weights stay fp32 (auto: bf16 on GPUs that have it, else fp16; none "
        "on the CPU).")
    checkpoint_every: int = Field(100, ge=1, le=200_000, description="Steps between resumable checkpoints.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the crops.")
    overwrite: bool = Field(False, description="Replace a finished network of the same name.")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return check_network_name(name)

    def resume_key(self) -> dict:
        data = self.model_dump(mode="json", include=set(RESUME_FIELDS))
        data.update(style=str(self.style.expanduser().resolve()), images=str(self.images.expanduser().resolve()))
        return data


class FastStyleInfo(BaseModel):
    """A trained network in the library, from its meta.json."""

    name: str
    painting: str = ""
    steps: int = 0
    resolution: int = 0
    encoder: str = ""
    style_loss: float | None = None  # mean of the last steps
    content_loss: float | None = None
    created: str = ""
    folder: Path


def library_root(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).models_path / FAST_STYLES_FOLDER


def network_folder(name: str, settings: Settings | None = None) -> Path:
    return library_root(settings) / check_network_name(name)


def training_photos(config: FastStyleTraining, settings: Settings | None = None) -> list[Path]:
    """The photo files (sorted: the last is the held-out sample), after checking the painting and the folder; every
    problem is one line that says what to do, naming files by their name only."""
    load_image(config.style, "painting", settings)  # missing, unreadable, too large: its own message
    folder = config.images.expanduser()
    if not folder.is_dir():
        raise InputError(f"photos folder '{folder.name}' does not exist or is not a folder; give a folder of photos")
    photos = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(photos) < MIN_PHOTOS:
        raise InputError(f"photos folder '{folder.name}' has {len(photos)} photo{'' if len(photos) == 1 else 's'} "
                         f"({', '.join(sorted(IMAGE_SUFFIXES))}); put at least {MIN_PHOTOS} in it (a few dozen "
                         "varied photos work best; one is kept aside for the sample)")
    return photos


def checkpoints(folder: Path) -> list[Path]:
    """A run's complete checkpoints, oldest first (a write in progress is `….safetensors.partial`)."""
    return sorted((folder / "checkpoints").glob("step-*.safetensors"), key=lambda p: int(p.stem.split("-")[1]))


def resume_point(config: FastStyleTraining, folder: Path) -> Path | None:
    """The checkpoint a run of `config` resumes from, None for a fresh start. Refused: a job running in another
    process, a finished network (unless overwrite), an interrupted run with other settings."""
    state = read_state(folder)
    if state and state.status == "running" and state.pid != os.getpid():
        raise InputError(f"'{config.name}' is being trained right now (process {state.pid}); wait for it or stop it")
    if config.overwrite:
        return None
    if (folder / NETWORK_FILE).is_file():
        raise InputError(f"a fast style network named '{config.name}' already exists; pick another --name, pass "
                         f"--overwrite to train it again, or `nstdiff fast delete {config.name}`")
    found = checkpoints(folder)
    if not found:
        return None
    try:
        interrupted = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        interrupted = {}
    wanted = config.resume_key()
    changed = [f"{key} ({interrupted.get(key)!r} → {wanted[key]!r})" for key in RESUME_FIELDS
               if interrupted.get(key) != wanted[key]]
    if changed:
        raise InputError(f"'{config.name}' has an interrupted run with other settings: {', '.join(changed)}. Run it "
                         "with the same settings to resume, or pass --overwrite to start again")
    return found[-1]


def list_networks(settings: Settings | None = None) -> list[FastStyleInfo]:
    """Every finished network in the library, by name."""
    root = library_root(settings)
    infos = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            meta = json.loads((folder / META_FILE).read_text())
        except (OSError, ValueError):
            continue  # a run in progress or an interrupted one: no network yet
        if (folder / NETWORK_FILE).is_file():
            infos.append(FastStyleInfo.model_validate({**meta, "name": folder.name, "folder": folder}))
    return infos


def get_network(name: str, settings: Settings | None = None) -> FastStyleInfo:
    networks = {info.name: info for info in list_networks(settings)}
    if name not in networks:
        close = difflib.get_close_matches(name, networks, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else (
            f"available: {', '.join(networks)}" if networks else
            "none is trained yet: `nstdiff fast train --name NAME --style PAINTING --images PHOTOS`")
        raise InputError(f"no fast style network named {name!r}; {hint}")
    return networks[name]


def delete_network(name: str, settings: Settings | None = None) -> None:
    """Remove a network, or the leftovers of a run that never finished, with its samples and checkpoints."""
    folder = network_folder(name, settings)
    if not folder.is_dir():
        get_network(name, settings)  # raises with the names there are
    state = read_state(folder)
    if state is not None and state.status == "running":
        raise InputError(f"'{name}' is training right now (step {state.step} of {state.steps}); wait for it first")
    shutil.rmtree(folder)


# ---- background jobs (the app) ----

def start_training(config: FastStyleTraining, settings: Settings | None = None) -> LoraState:
    """Check the inputs, then train in a process of its own that outlives the app (`nstdiff fast train`)."""
    settings = settings or get_settings()
    folder = network_folder(config.name, settings)
    training_photos(config, settings)  # a bad painting or folder, a finished name: a message now, not a failed job
    resume_point(config, folder)
    return launch(folder, command_line(config, ("fast", "train")), config.steps, settings)


def training_states(settings: Settings | None = None) -> dict[str, LoraState]:
    return job_states(library_root(settings))


def training_files(name: str, settings: Settings | None = None) -> tuple[Path | None, Path | None, str]:
    return job_files(network_folder(name, settings))
