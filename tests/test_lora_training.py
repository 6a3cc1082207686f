"""Training a style LoRA on a tiny SD-1.5-shaped pipeline laid out in the models folder like the real download: the
loss falls, the LoRA file loads into diffusers and changes its images, a killed run resumes, bad folders are explained.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from safetensors import safe_open

import nstdiff
from nstdiff import Cancelled, InputError, ModelNotFoundError
from nstdiff.loras import lora_folder, read_lora_metadata
from nstdiff.settings import Settings, reload_settings
from nstdiff.training import lora_data
from nstdiff.training.lora import train_lora
from nstdiff.training.lora_data import LORA_FORMAT, LoraTraining, inspect_dataset, read_state
from tests.conftest import cancel_at, stripes
from tests.tiny_diffusion import build_tiny_sd

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(resolution=32, batch=4, rank=4, learning_rate=1e-2, sample_steps=2)


def make_style_folder(folder: Path, count: int = 5) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        stripes(48, 40, (200, 40 * i, 30), (20, 20, 120 + 20 * i), period=4 + 2 * i).save(folder / f"s{i}.png")
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny UNet gains nothing from a second thread, and on a busy machine the threads wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_tiny_sd(root / "diffusion" / "sd15")
    return root


@pytest.fixture(scope="module")
def trained(models_dir, tmp_path_factory):
    """One 32-step run with sidecar captions on 5 images (plus a damaged and a too-small file)."""
    images = make_style_folder(tmp_path_factory.mktemp("style") / "images")
    (images / "s0.txt").write_text("red and blue diagonal stripes\n")
    (images / "s1.txt").write_text("zigzag poster in mystyle colours")
    (images / "broken.jpg").write_bytes(b"not an image at all")
    stripes(8, 8).save(images / "small.png")
    settings = Settings(models_dir=models_dir, device="cpu", allow_downloads=False,
                        cache_dir=tmp_path_factory.mktemp("cache"))
    config = LoraTraining(images=images, name="stripes", trigger="mystyle", captions="file", steps=32,
                          checkpoint_every=16, sample_every=16, **FAST)
    events = []
    report = train_lora(config, progress=events.append, settings=settings)
    return report, events, config, settings


def test_the_loss_falls_and_progress_is_reported(trained):
    report, events, config, _ = trained
    losses = np.array(report.losses)
    quarter = len(losses) // 4
    assert len(losses) == 32 and report.start_step == 0
    assert losses[-quarter:].mean() < 0.9 * losses[:quarter].mean()
    steps = [e for e in events if e.stage == "train"]
    assert [e.step for e in steps] == list(range(1, 33)) and steps[-1].total == 32
    assert steps[-1].losses["loss"] == pytest.approx(losses[-1])
    messages = [e.message for e in events if e.stage == "message"]
    assert any(m.startswith("skipped broken.jpg") for m in messages)
    assert any(m.startswith("skipped small.png: too small: 8x8") for m in messages)


def test_sidecar_captions_are_read_and_missing_ones_listed(trained):
    dataset = trained[0].dataset
    captions = {item.path.name: (item.caption, item.caption_source) for item in dataset.images}
    assert captions["s0.png"] == ("mystyle, red and blue diagonal stripes", "file")  # the trigger is prepended
    assert captions["s1.png"] == ("zigzag poster in mystyle colours", "file")  # it already has it
    assert captions["s2.png"] == ("a picture in the style of mystyle", "template")
    assert dataset.missing_captions == ["s2.png", "s3.png", "s4.png"]
    assert dataset.count == 5 and dataset.formats == {"PNG": 5}
    assert [s.name for s in dataset.skipped] == ["broken.jpg", "small.png"]


def test_the_folder_layout_and_metadata(trained):
    report, _, config, settings = trained
    folder = lora_folder("stripes", settings)
    assert report.folder == folder and report.weights == folder / "stripes.safetensors"
    metadata = read_lora_metadata(report.weights)
    assert metadata["format"] == LORA_FORMAT and metadata["base"] == "sd15" and metadata["trigger"] == "mystyle"
    assert (metadata["rank"], metadata["steps"], metadata["dataset_size"], metadata["resolution"]) == \
        ("4", "32", "5", "32")
    assert metadata["version"] == nstdiff.__version__
    datetime.strptime(metadata["created"], "%Y-%m-%dT%H:%M:%S%z")
    recorded = json.loads((folder / "lora.json").read_text())
    assert {k: recorded[k] for k in metadata} == metadata and recorded["training"]["captions"] == "file"
    with safe_open(str(report.weights), framework="pt") as handle:
        keys = list(handle.keys())
    assert keys and all(k.startswith("unet.") and (".lora_A." in k or ".lora_B." in k) for k in keys)
    rows = list(csv.DictReader(open(folder / "loss.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 33))
    assert Image.open(folder / "loss.png").size == (640, 320)
    assert sorted(p.name for p in (folder / "samples").iterdir()) == ["step-00016.png", "step-00032.png"]
    assert Image.open(folder / "samples" / "step-00032.png").size == (32, 32)
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["step-00016"]
    assert sorted(p.name for p in (folder / "checkpoints" / "step-00016").iterdir()) == \
        ["lora.safetensors", "optimizer.safetensors"]
    state = read_state(folder)
    assert (state.status, state.step, state.steps, state.last_checkpoint) == \
        ("finished", 32, 32, "checkpoints/step-00016")
    assert state.seconds_per_step > 0 and state.eta_seconds == 0


def test_the_lora_loads_into_diffusers_and_changes_the_image(trained, models_dir):
    from diffusers import StableDiffusionPipeline

    report = trained[0]
    pipe = StableDiffusionPipeline.from_pretrained(models_dir / "diffusion" / "sd15", use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)

    def generate():
        return np.asarray(pipe("a picture in the style of mystyle", num_inference_steps=3, height=32, width=32,
                               generator=torch.Generator().manual_seed(0)).images[0], dtype=np.float32)

    base = generate()
    pipe.load_lora_weights(report.folder, weight_name=report.weights.name, adapter_name="stripes")
    with_lora = generate()
    assert np.abs(with_lora - base).mean() > 1.0
    pipe.set_adapters(["stripes"], [0.0])
    assert np.abs(generate() - base).mean() < 0.5  # weight 0 is the base again: the change is the LoRA's


def test_a_finished_name_is_refused_without_overwrite(trained):
    _, _, config, settings = trained
    with pytest.raises(InputError, match="a LoRA named 'stripes' already exists.*--overwrite"):
        train_lora(config, settings=settings)


def _cli_env(models_dir: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSTDIFF_")}
    env.update(NSTDIFF_MODELS_DIR=str(models_dir), NSTDIFF_CACHE_DIR=str(tmp_path / "cache"), NSTDIFF_DEVICE="cpu",
               NSTDIFF_ALLOW_DOWNLOADS="0", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return env


def test_a_killed_run_resumes_from_its_last_checkpoint(models_dir, tmp_path, monkeypatch):
    images = make_style_folder(tmp_path / "images", count=4)
    arguments = dict(images=images, name="killed", steps=16, checkpoint_every=3, sample_every=0, **FAST)
    command = [sys.executable, "-m", "nstdiff", "lora", "train", "--quiet", "--images", str(images),
               "--name", "killed", "--steps", "16", "--checkpoint-every", "3", "--sample-every", "0",
               "--resolution", "32", "--batch", "4", "--rank", "4", "--lr", "0.01", "--sample-steps", "2"]
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(models_dir))
    settings = reload_settings()
    folder = lora_folder("killed", settings)
    process = subprocess.Popen(command, env=_cli_env(models_dir, tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            state = read_state(folder)
            if state and state.last_checkpoint:
                break
            time.sleep(0.02)
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    killed = read_state(folder)
    assert killed.status == "interrupted" and killed.step < 16  # "running" on disk, but its process is gone
    checkpoint_step = max(int(p.name.split("-")[1]) for p in (folder / "checkpoints").iterdir()
                          if not p.name.endswith(".partial"))
    assert checkpoint_step >= 3

    with pytest.raises(InputError, match=r"different settings: learning_rate \(0\.01 → 0\.02\)"):
        train_lora(LoraTraining(**{**arguments, "learning_rate": 0.02}))
    events = []
    report = train_lora(LoraTraining(**arguments), progress=events.append)
    assert report.start_step == checkpoint_step
    assert any(e.message == f"resuming from step {checkpoint_step} (checkpoints/step-{checkpoint_step:05d})"
               for e in events)
    assert [e.step for e in events if e.stage == "train"] == list(range(checkpoint_step + 1, 17))
    rows = list(csv.DictReader(open(folder / "loss.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 17))  # rows after the checkpoint were replaced
    assert read_state(folder).status == "finished" and read_lora_metadata(report.weights)["steps"] == "16"


def test_cancelling_keeps_the_checkpoints(models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(models_dir))
    settings = reload_settings()
    cancel, stop_at_3, _ = cancel_at(3, stage="train")
    config = LoraTraining(images=make_style_folder(tmp_path / "images", 2), name="cancelled", steps=4,
                          checkpoint_every=2, sample_every=0, **FAST)
    with pytest.raises(Cancelled, match="cancelled at step 3/4; checkpoints/step-00002 is kept"):
        train_lora(config, progress=stop_at_3, cancel=cancel)
    folder = lora_folder("cancelled", settings)
    assert read_state(folder).status == "cancelled" and (folder / "checkpoints" / "step-00002").is_dir()
    assert not (folder / "cancelled.safetensors").exists()


def test_dataset_problems_are_explained(tmp_path, monkeypatch):
    config = LoraTraining(images=tmp_path, name="x", resolution=32)
    with pytest.raises(InputError, match="'.*nope' does not exist"):
        inspect_dataset(tmp_path / "nope", config)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("no images here")
    with pytest.raises(InputError, match="has no images"):
        inspect_dataset(tmp_path / "empty", config)
    few = make_style_folder(tmp_path / "few", count=1)
    (few / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(InputError, match=r"has 1 usable image; at least 2 .* Skipped: damaged.png: .*not a readable"):
        inspect_dataset(few, config)
    many = make_style_folder(tmp_path / "many", count=4)
    monkeypatch.setattr(lora_data, "MAX_IMAGES", 3)
    with pytest.raises(InputError, match="has 4 images; at most 3"):
        inspect_dataset(many, config)
    monkeypatch.setattr(lora_data, "MAX_IMAGES", 2000)
    report = inspect_dataset(many, config.model_copy(update={"resolution": 64}))
    assert report.upscaled == ["s0.png", "s1.png", "s2.png", "s3.png"]  # 48x40 under 64: used, but listed


def test_bad_settings_are_refused_before_any_model_loads(tmp_path):
    with pytest.raises(ValidationError):
        LoraTraining(images=tmp_path, name="../escape")
    with pytest.raises(ValidationError):
        LoraTraining(images=tmp_path, name="x", resolution=36)  # not a multiple of 8
    images = make_style_folder(tmp_path / "images", 2)
    with pytest.raises(InputError, match="fp16 needs a CUDA GPU"):
        train_lora(LoraTraining(images=images, name="x", mixed_precision="fp16"))


def test_auto_captions_offline_name_the_missing_captioner(tmp_path):
    config = LoraTraining(images=make_style_folder(tmp_path / "images", 2), name="auto", captions="auto", **FAST)
    with pytest.raises(ModelNotFoundError, match="Salesforce/blip-image-captioning-base.*downloads are disabled"):
        train_lora(config)


def test_auto_captions_come_from_the_captioning_model(models_dir, tmp_path):
    from tests.tiny_diffusion import build_tiny_captioner

    captioner = build_tiny_captioner(tmp_path / "blip")
    settings = Settings(models_dir=models_dir, device="cpu", allow_downloads=False, cache_dir=tmp_path / "cache")
    config = LoraTraining(images=make_style_folder(tmp_path / "images", 2), name="auto-captions", captions="auto",
                          captioner=str(captioner), trigger="mystyle", steps=2, checkpoint_every=2, sample_every=0,
                          **FAST)
    messages = []
    train_lora(config, progress=lambda e: messages.append(e.message), settings=settings)
    captions = [m for m in messages if m.startswith("caption s")]
    assert len(captions) == 2 and all(": mystyle, " in m for m in captions)  # the model's words after the trigger


def test_defaults_follow_the_base_and_the_device(tmp_path, monkeypatch):
    from nstdiff.training.lora import autocast_precision

    images = make_style_folder(tmp_path / "images", 1)
    assert LoraTraining(images=images, name="a", base="sdxl").resolution == 1024  # SDXL trains at its own size
    assert LoraTraining(images=images, name="a", base="sd15").resolution == 512
    assert LoraTraining(images=images, name="a", base="sdxl-turbo").resolution == 512
    assert LoraTraining(images=images, name="a", base="sdxl", resolution=768).resolution == 768
    folder = build_tiny_sd(tmp_path / "tiny")  # a folder: its UNet's sample size × 8
    assert LoraTraining(images=images, name="a", base=str(folder)).resolution == 256
    assert autocast_precision("auto", torch.device("cpu")) == "no"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_precision("auto", torch.device("cuda")) == "fp16"
    with pytest.raises(InputError, match="fp16 needs a CUDA GPU"):
        autocast_precision("fp16", torch.device("cpu"))


def test_samples_decode_in_fp32_outside_autocast_and_turbo_samples_without_guidance(models_dir, tmp_path,
                                                                                     monkeypatch):
    from accelerate.state import AcceleratorState
    from diffusers import AutoencoderKL, StableDiffusionPipeline

    turbo_models = tmp_path / "models"
    (turbo_models / "diffusion").mkdir(parents=True)
    (turbo_models / "diffusion" / "sd-turbo").symlink_to(models_dir / "diffusion" / "sd15")
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(turbo_models))
    reload_settings()
    decodes, calls = [], []
    real_decode, real_call = AutoencoderKL.decode, StableDiffusionPipeline.__call__

    def decode(vae, latents, *args, **kwargs):
        decodes.append((torch.is_autocast_enabled("cpu"), latents.dtype))
        return real_decode(vae, latents, *args, **kwargs)

    def call(pipe, *args, **kwargs):
        calls.append((kwargs.get("guidance_scale"), kwargs.get("num_inference_steps")))
        return real_call(pipe, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKL, "decode", decode)
    monkeypatch.setattr(StableDiffusionPipeline, "__call__", call)
    AcceleratorState._reset_state(reset_partial_state=True)  # accelerate keeps one precision per process
    config = LoraTraining(images=make_style_folder(tmp_path / "images", 2), name="turbo", base="sd-turbo", steps=2,
                          checkpoint_every=2, sample_every=2, mixed_precision="bf16", **FAST)
    try:
        report = train_lora(config)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert decodes and all(not autocast and dtype == torch.float32 for autocast, dtype in decodes)
    assert calls == [(0.0, 2)]  # sd-turbo's own schedule: 2 steps, no classifier-free guidance
    sample = Image.open(next((report.folder / "samples").glob("*.png")))
    assert np.asarray(sample).std() > 0  # a picture, not a black square
