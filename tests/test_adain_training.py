"""Training an AdaIN decoder: the loss falls, a stopped run resumes, the result is found and used by the method."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from nstdiff import Cancelled, ImageStyleRequest, InputError, stylize
from nstdiff.models.decoders import decoder_path
from nstdiff.training.adain_decoder import DecoderTraining, train_decoder
from tests.conftest import cancel_at, gradient, stripes


@pytest.fixture
def folders(tmp_path):
    content, style = tmp_path / "content", tmp_path / "style"
    content.mkdir()
    style.mkdir()
    for i in range(4):
        gradient(40, 36, (30 * i, 80, 200 - 30 * i), (220, 200 - 40 * i, 60)).save(content / f"c{i}.png")
        stripes(40, 40, (200, 40 * i, 30), (20, 20, 120 + 30 * i), period=4 + 2 * i).save(style / f"s{i}.png")
    (style / "broken.jpg").write_bytes(b"not an image")
    return content, style


def config(folders, **kwargs):
    return DecoderTraining(content_dir=folders[0], style_dir=folders[1], encoder="random", batch=2, size=32,
                           learning_rate=1e-3, **kwargs)


def test_loss_falls_and_the_method_uses_the_trained_decoder(folders, isolated_settings):
    events = []
    report = train_decoder(config(folders, steps=80, checkpoint_every=40), progress=events.append)
    assert report.path == decoder_path("random", isolated_settings)
    assert np.mean(report.losses[-10:]) < 0.6 * np.mean(report.losses[:10])
    assert any("skipped broken.jpg" in e.message for e in events)  # corrupt files are listed, not fatal
    rows = list(csv.DictReader(open(report.path.with_name("random.loss.csv"))))
    assert len(rows) == 80 and rows[-1]["step"] == "80"
    content = folders[0] / "c1.png"
    result = stylize(ImageStyleRequest(method="adain", content=content, styles=[folders[1] / "s2.png"], size=40,
                                       encoder="random"))
    assert result.parameters["options"]["variant"] == "decoder"


def test_a_stopped_run_resumes_from_its_last_checkpoint_and_logs_each_step_once(folders, isolated_settings):
    cancel, stop_at_13, _ = cancel_at(13, stage="train")

    with pytest.raises(Cancelled):
        train_decoder(config(folders, steps=30, checkpoint_every=5), progress=stop_at_13, cancel=cancel)
    events = []
    report = train_decoder(config(folders, steps=30, checkpoint_every=5), progress=events.append)
    assert report.start_step == 10  # the checkpoint before the interruption
    assert [e.step for e in events if e.stage == "train"][0] == 11
    assert any("resuming from step 10" in e.message for e in events)
    rows = list(csv.DictReader(open(report.path.with_name("random.loss.csv"))))
    assert [int(row["step"]) for row in rows] == list(range(1, 31))  # steps 11-13 were run again, logged once


def test_a_cancel_says_which_checkpoint_is_kept(folders, isolated_settings):
    checkpoint = decoder_path("random", isolated_settings).with_name("random.checkpoint.safetensors")
    for stop, kept in [(3, "no checkpoint was reached yet: the next run starts afresh"),
                       (7, f"{checkpoint} (step 5) is kept: run the same command again to resume from it")]:
        cancel, stop_there, _ = cancel_at(stop, stage="train")
        with pytest.raises(Cancelled) as stopped:
            train_decoder(config(folders, steps=30, checkpoint_every=5), progress=stop_there, cancel=cancel)
        assert str(stopped.value) == f"cancelled at step {stop}/30; {kept}"


def test_trained_decoders_are_listed_with_where_they_are(folders, isolated_settings, capsys):
    from nstdiff.commands import main
    from nstdiff.executor import InProcessExecutor

    def listed():
        return {m.name: m for m in InProcessExecutor(isolated_settings).models()}

    cancel, stop_at_5, _ = cancel_at(5, stage="train")
    with pytest.raises(Cancelled):
        train_decoder(config(folders, steps=6, checkpoint_every=5), progress=stop_at_5, cancel=cancel)
    stopped = listed()["adain-random"]
    assert not stopped.ready and stopped.path.name == "random.checkpoint.safetensors"
    assert "stopped at step 5" in stopped.description
    report = train_decoder(config(folders, steps=6, checkpoint_every=5))
    trained = listed()["adain-random"]
    assert trained.ready and trained.path == report.path and trained.kind == "decoder"
    assert "6 steps on 4 content and 4 style images" in trained.description
    assert main(["models", "list"]) == 0
    assert any(line.startswith("adain-random ") and str(report.path) in line
               for line in capsys.readouterr().out.splitlines())


def test_empty_or_missing_folders(folders, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="has no images"):
        train_decoder(DecoderTraining(content_dir=empty, style_dir=folders[1], encoder="random", steps=1))
    with pytest.raises(InputError, match="does not exist"):
        train_decoder(DecoderTraining(content_dir=tmp_path / "nope", style_dir=folders[1], encoder="random"))
