"""Training your own fast style network: the style loss falls and the network moves toward the painting, a stopped
run resumes exactly, the `fast-style` method uses the result, and the CLI and the app drive it.

Everything runs the real code paths on tiny data: random Magenta weights saved where the converted model lives (the
predictor stood in for by a projection of the mean colour, see tests/test_feedforward.py), the `random` encoder, 32 px
crops."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nstdiff import Cancelled, ImageStyleRequest, InputError, stylize
from nstdiff.training.fast_style_data import FastStyleTraining
from tests.conftest import cancel_at, gradient, stripes



@pytest.fixture
def inputs(tmp_path, random_magenta) -> tuple[Path, Path]:
    """A red striped painting and a folder of four photos (the last, in name order, is the held-out sample)."""
    painting = tmp_path / "painting.png"
    stripes(64, 64, (230, 30, 20), (240, 200, 40), period=8).save(painting)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        gradient(48, 40, (30 * i, 80, 200 - 30 * i), (220, 200 - 40 * i, 60)).save(photos / f"p{i}.png")
    return painting, photos


def config(inputs, **kwargs) -> FastStyleTraining:
    return FastStyleTraining(**{"name": "stripes", "style": inputs[0], "images": inputs[1], "steps": 30,
                                "resolution": 32, "encoder": "random", "learning_rate": 1e-3,
                                "checkpoint_every": 10, **kwargs})


def train(inputs, progress=None, cancel=None, **kwargs):
    from nstdiff.training.fast_style import train_fast_style

    return train_fast_style(config(inputs, **kwargs), progress=progress, cancel=cancel)


def logged(folder: Path, column: str) -> list[float]:
    return [float(row[column]) for row in csv.DictReader(open(folder / "loss.csv"))]


def test_the_style_loss_falls_and_the_network_moves_toward_the_painting(inputs, isolated_settings):
    from nstdiff.imageio import load_image
    from nstdiff.losses import GramStyleLoss, gram_matrix
    from nstdiff.methods.base import to_tensor
    from nstdiff.models.magenta_nets import FastStyleNetwork
    from nstdiff.models.magenta_run import load_fast_style_network
    from nstdiff.models.encoders import load_encoder
    from nstdiff.models.magenta import load_magenta, style_vector

    report = train(inputs, steps=40)
    style = logged(report.folder, "style")
    assert len(style) == 40 and np.mean(style[-10:]) < 0.8 * np.mean(style[:10])
    assert report.meta["painting"] == "painting.png" and report.meta["sample"] == "p3.png"
    assert (report.folder / "loss.png").is_file() and (report.folder / "samples" / "step-00040.png").is_file()

    cpu = torch.device("cpu")
    encoder = load_encoder("random", cpu).module
    layers = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    painting = to_tensor(load_image(inputs[0]), cpu)
    target = encoder(painting, layers)
    distance = GramStyleLoss({layer: [gram_matrix(target[layer])] for layer in layers}, dict.fromkeys(layers, 1.0))
    predictor, transformer = load_magenta()
    start = FastStyleNetwork(transformer)
    start.embedding.data = style_vector(predictor, painting)
    trained = load_fast_style_network(report.network, cpu, torch.float32)
    held_out = to_tensor(load_image(inputs[1] / "p3.png"), cpu)  # never a training crop
    with torch.no_grad():
        before, after = (float(distance(encoder(net(held_out), layers))) for net in (start, trained))
    assert after < 0.8 * before


def test_a_stopped_run_resumes_from_its_last_checkpoint_exactly(inputs, isolated_settings):
    cancel, stop_at_13, _ = cancel_at(13, stage="train")
    with pytest.raises(Cancelled) as stopped:
        train(inputs, checkpoint_every=4, progress=stop_at_13, cancel=cancel)
    assert str(stopped.value) == ("cancelled at step 13/30; checkpoints/step-00012.safetensors is kept: run the same "
                                  "command again to resume from it")
    folder = isolated_settings.models_path / "fast-styles" / "stripes"
    assert json.loads((folder / "state.json").read_text())["status"] == "cancelled"
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["step-00008.safetensors",
                                                                          "step-00012.safetensors"]
    with pytest.raises(InputError, match=r"interrupted run with other settings: steps \(30 → 40\)"):
        train(inputs, checkpoint_every=4, steps=40)
    events = []
    resumed = train(inputs, checkpoint_every=4, progress=events.append)
    assert resumed.start_step == 12 and [e.step for e in events if e.stage == "train"][0] == 13
    assert any("resumed from step 12" in e.message for e in events)
    assert logged(resumed.folder, "step") == list(range(1, 31))  # step 13 ran again and is logged once
    assert json.loads((folder / "state.json").read_text())["status"] == "finished"

    whole = train(inputs, checkpoint_every=4, name="whole")  # the same run without a stop: the resumed one matches
    a, b = load_file(resumed.network), load_file(whole.network)
    assert all(torch.allclose(a[key], b[key], atol=1e-5) for key in a)
    with pytest.raises(InputError, match="already exists; pick another --name, pass --overwrite"):
        train(inputs, checkpoint_every=4)


def test_a_stop_before_the_first_checkpoint_says_so_and_the_next_run_starts_afresh(inputs):
    cancel, stop_at_3, _ = cancel_at(3, stage="train")
    with pytest.raises(Cancelled, match="no checkpoint was reached yet"):
        train(inputs, progress=stop_at_3, cancel=cancel)
    assert train(inputs).start_step == 0


def test_bad_inputs_are_refused_before_anything_runs(inputs, tmp_path):
    painting, photos = inputs
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    cases = [({"style": tmp_path / "missing.png"}, "painting image .* does not exist"),
             ({"style": tmp_path / "broken.jpg"}, "painting image .* is not a readable image"),
             ({"images": empty}, "photos folder 'empty' has 0 photos .* put at least 2 in it"),
             ({"images": tmp_path / "nowhere"}, "photos folder 'nowhere' does not exist")]
    for changes, message in cases:
        with pytest.raises(InputError, match=message):
            train(inputs, **changes)
    with pytest.raises(ValueError, match="is not a usable network name: use 1–64 lower-case letters"):
        config(inputs, name="../evil")
    assert not (tmp_path / "cache" / "models" / "fast-styles").exists()  # nothing was written


def test_the_method_renders_with_a_trained_network_and_names_the_ones_there_are(inputs):
    train(inputs, steps=10)
    photo = inputs[1] / "p3.png"

    def run(**kwargs):
        return stylize(ImageStyleRequest(**{"method": "fast-style", "content": photo, "size": 40, "seed": 0,
                                            "options": {"network": "stripes"}, **kwargs}))

    result = run()
    assert result.image.size == (40, 33) and result.encoder == "fast-style:stripes"
    assert "network 'stripes' (painting.png, 10 steps at 32 px), strength 1" in result.notes[-1]
    pixels = np.asarray(result.image, dtype=float)
    assert np.abs(pixels - np.asarray(run().image, dtype=float)).max() == 0  # one pass, the same every time
    photo_pixels = np.asarray(stylize(ImageStyleRequest(method="fast-style", content=photo, size=40, options={
        "network": "stripes"}, controls={"strength": 0.0})).image, dtype=float)
    assert np.abs(pixels - photo_pixels).mean() > 1  # strength moves toward the photo's own style
    with pytest.raises(InputError, match="no fast style network named 'stripe'; did you mean stripes"):
        run(options={"network": "stripe"})
    with pytest.raises(ValueError, match=r"or a trained network \(method fast-style\)"):
        run(options={"network": ""})
    with pytest.raises(InputError, match="use preserve_color luminance or original"):
        run(controls={"preserve_color": "histogram"})


def test_the_command_line_trains_lists_uses_and_deletes(inputs, tmp_path, capsys):
    from nstdiff.commands import main

    painting, photos = inputs
    train_args = ["fast", "train", "--name", "cli-net", "--style", str(painting), "--images", str(photos),
                  "--steps", "6", "--resolution", "32", "--encoder", "random", "--checkpoint-every", "3", "--quiet"]
    assert main(train_args) == 0
    assert "use it with --method fast-style --network cli-net" in capsys.readouterr().out
    assert main(train_args) == 2
    assert "a fast style network named 'cli-net' already exists" in capsys.readouterr().err
    assert main(["fast", "list"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("cli-net ")]
    assert row and "painting.png" in row[0] and " 6 " in row[0]
    out = tmp_path / "out.png"
    assert main(["stylize", str(photos / "p3.png"), "--method", "fast-style", "--network", "cli-net", "--size",
                 "40", "--quiet", "-o", str(out)]) == 0
    assert out.is_file()
    assert main(["fast", "delete", "cli-net"]) == 0 and main(["fast", "list"]) == 0
    assert "(empty: `nstdiff fast train" in capsys.readouterr().out
    assert main([*train_args[:3], "Bad Name", *train_args[4:]]) == 2
    assert "is not a usable network name" in capsys.readouterr().err


def test_the_app_trains_in_the_background_shows_the_job_and_uses_the_network(inputs, tmp_path):
    from gradio_client import Client, handle_file

    from nstdiff.settings import Settings
    from tests.servers import RunningServer

    painting, photos = inputs
    settings = Settings(outputs_dir=tmp_path / "outputs", cache_dir=tmp_path / "cache", device="cpu",
                        allow_downloads=False, default_encoder="random", threads=1)
    server = RunningServer(settings)
    try:
        client = Client(server.url, verbose=False)
        form = dict(name="app-net", steps=6, resolution=32)
        with pytest.raises(Exception, match="Upload the painting and a few photos") as refused:
            client.predict(painting=None, photos=None, **form, api_name="/fast_train")
        with pytest.raises(Exception, match="photos folder 'photos' has 1 photo") as refused:
            client.predict(painting=handle_file(str(painting)), photos=[handle_file(str(photos / "p0.png"))],
                           **form, api_name="/fast_train")
        assert str(tmp_path) not in str(refused.value)  # no server folder in a message
        client.predict(painting=handle_file(str(painting)),
                       photos=[handle_file(str(p)) for p in sorted(photos.iterdir())], **form, api_name="/fast_train")
        deadline, text = time.time() + 180, ""
        while "finished" not in text and "failed" not in text and time.time() < deadline:
            text, loss_curve, sample, log = client.predict("app-net", api_name="/fast_status")
            time.sleep(0.5)
        assert "finished, step 6 of 6" in text, log
        assert Path(loss_curve).is_file() and Path(sample).is_file()
        library = client.predict(api_name="/fast_library")[0]
        assert [row[0] for row in library["data"]] == ["app-net"]
        output, info = client.predict(photo=handle_file(str(photos / "p3.png")), network="app-net", strength=1.0,
                                      size=64, api_name="/fast_stylize")
        assert Path(output).is_file() and "fast-style" in info
    finally:
        server.stop()
