"""The `nstdiff` command as a user runs it: a subprocess, its exit code, its files and its messages."""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
from PIL import Image


def nstdiff(*args, timeout=300, **kwargs):
    return subprocess.run([sys.executable, "-m", "nstdiff", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy(), **kwargs)


def test_stylize_writes_a_png_with_its_parameters(images, tmp_path):
    out = tmp_path / "out.png"
    run = nstdiff("stylize", images["content"], "--style", images["red"], "--style", images["blue"],
                  "--style-weights", "0.7,0.3", "--size", 40, "--steps", 4, "--seed", 5, "--encoder", "random",
                  "--strength", 0.8, "--preserve-color", "histogram", "--tv-weight", 2, "--style-layers",
                  "relu1_1,relu2_1", "-o", out)
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stdout and "seed 5" in run.stdout
    image = Image.open(out)
    assert image.size == (40, 33)
    meta = json.loads(image.text["nstdiff"])
    assert meta["seed"] == 5 and meta["encoder"] == "random" and meta["method"] == "gram"
    params = meta["parameters"]
    assert [s["weight"] for s in params["styles"]] == [0.7, 0.3]
    assert params["options"]["style_layers"] == ["relu1_1", "relu2_1"] and params["options"]["tv_weight"] == 2
    assert params["controls"]["preserve_color"] == "histogram"


def test_texture_command(images, tmp_path):
    out = tmp_path / "texture.png"
    run = nstdiff("texture", "--style", images["red"], "--size", 32, "--steps", 3, "--encoder", "random", "-o", out)
    assert run.returncode == 0, run.stderr
    assert Image.open(out).size == (32, 32)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--strength", "1.5"], "controls.strength: Input should be less than or equal to 1"),
        (["--steps", "nan"], "invalid int value"),
        (["--style-weights", "0.5,0.5"], "--style-weights has 2 values for 1 styles"),
        (["--mask", "{mask}"], "mask is 10x10 but the content image is 48x40"),
        (["--encoder", "vgg99"], "unknown encoder 'vgg99'"),
    ],
)
def test_bad_input_exits_non_zero_with_a_message_and_writes_nothing(images, tmp_path, args, message):
    Image.new("RGB", (10, 10)).save(tmp_path / "mask.png")
    args = [a.format(mask=tmp_path / "mask.png") for a in args]
    out = tmp_path / "out.png"
    run = nstdiff("stylize", images["content"], "--style", images["red"], "--size", 32, "--steps", 2,
                  "--encoder", "random", *args, "-o", out)
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists()


def test_a_corrupt_image_and_an_unwritable_output(images, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    run = nstdiff("stylize", broken, "--style", images["red"], "--encoder", "random", "-o", tmp_path / "o.png")
    assert run.returncode == 2 and "content image" in run.stderr and "damaged or truncated" in run.stderr
    run = nstdiff("stylize", images["content"], "--style", images["red"], "-o", tmp_path / "no" / "o.png")
    assert run.returncode == 2 and "folder" in run.stderr and "does not exist" in run.stderr


def test_missing_model_exits_with_the_fix(images, tmp_path):
    run = nstdiff("stylize", images["content"], "--style", images["red"], "--encoder", "vgg16", "-o", tmp_path / "o.png")
    assert run.returncode == 1
    assert "model 'vgg16' is not available" in run.stderr and "nstdiff models fetch vgg16" in run.stderr


def test_models_list_and_methods():
    run = nstdiff("models", "list")
    assert run.returncode == 0 and "vgg16" in run.stdout and "vgg19" in run.stdout
    run = nstdiff("methods")
    assert run.returncode == 0 and "gram" in run.stdout


def test_ctrl_c_stops_cleanly_without_an_output(images, tmp_path):
    out = tmp_path / "out.png"
    process = subprocess.Popen(
        [sys.executable, "-m", "nstdiff", "stylize", str(images["content"]), "--style", str(images["red"]),
         "--size", "48", "--steps", "10000", "--encoder", "random", "-o", str(out)],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=os.environ.copy(),
    )
    seen = bytearray()
    started = threading.Event()

    def read():
        while chunk := process.stderr.read1(256):
            seen.extend(chunk)
            if b"step" in seen:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert started.wait(120), seen.decode(errors="replace")
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 130
    reader.join(5)
    assert b"cancelled at step" in seen and b"Traceback" not in seen
    assert not out.exists()


def test_outputs_other_than_new_or_regular_files_and_unknown_suffixes_are_refused_before_any_work(images, tmp_path):
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"keep me")
    (tmp_path / "link.png").symlink_to(precious)
    os.mkfifo(tmp_path / "pipe.png")
    cases = [(tmp_path / "link.png", "is a symbolic link"), (tmp_path / "pipe.png", "is a named pipe"),
             (tmp_path / "out.gif", r".png, .jpg, .jpeg, .webp")]
    for output, message in cases:
        # vgg16 is not installed here: a run that started would end in exit 1 'model not available', not this
        run = nstdiff("stylize", images["content"], "--style", images["red"], "--encoder", "vgg16", "-o", output)
        assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
    assert (tmp_path / "link.png").is_symlink() and precious.read_bytes() == b"keep me"
    assert (tmp_path / "pipe.png").is_fifo() and not (tmp_path / "out.gif").exists()


def test_a_jpeg_output_is_a_jpeg_and_a_damaged_exif_prints_nothing(images, tmp_path):
    content = tmp_path / "phone.jpg"  # a broken EXIF block: Pillow warns "Corrupt EXIF data" when it reads it
    Image.open(images["content"]).save(content, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03")
    out = tmp_path / "out.jpg"
    run = nstdiff("stylize", content, "--style", images["red"], "--size", 32, "--steps", 2, "--encoder", "random",
                  "--method", "gram", "--quiet", "--seed", 4, "-o", out)
    assert run.returncode == 0, run.stderr
    assert "Warning" not in run.stderr and "warn" not in run.stderr, run.stderr
    assert Image.open(out).format == "JPEG" and os.stat(out).st_mode & 0o077  # not 0600: others may read it


def test_help_does_not_import_torch():
    """`nstdiff --help` and the help of every command whose flags do not come from the methods' options (stylize,
    texture) or the decoder training config (adain train) start without torch or the other heavy libraries."""
    helps = [[], ["example"], ["serve"], ["adain"], ["lora"], ["lora", "train"], ["lora", "import"], ["fast"],
             ["fast", "train"], ["methods"], ["presets"], ["models"], ["models", "fetch"], ["library"],
             ["library", "add"], ["audio"], ["mesh"]]
    code = f"""
import contextlib, io, sys
from nstdiff.commands import main
for argv in {helps!r}:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
print(sorted(name for name in ("torch", "diffusers", "transformers", "trimesh", "librosa") if name in sys.modules))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=os.environ.copy())
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_the_console_script_is_the_command_python_m_runs():
    from nstdiff.commands import main

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["nstdiff"].partition(":")
    assert getattr(importlib.import_module(module), name) is main
    assert importlib.import_module("nstdiff.__main__").main is main
