"""AdaIN: the operation, both variants, decoders and their files (random encoder and decoder, tiny sizes)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nstdiff import ImageStyleRequest, InputError, ModelFileError, ModelNotFoundError, stylize
from nstdiff.methods.adain import adain, adain_target, mean_std
from nstdiff.models.decoders import AdaINDecoder, decoder_path
from nstdiff.models.weights import save_safetensors
from tests.conftest import mean_rgb


def request(images, **kwargs):
    base = dict(method="adain", content=images["content"], styles=[images["red"]], size=48, steps=20, seed=0,
                encoder="random", controls={"strength": 1.0})
    base.update(kwargs)
    return ImageStyleRequest(**base)


def test_adain_moves_channel_statistics_onto_the_style():
    generator = torch.Generator().manual_seed(0)
    content = torch.randn(1, 8, 6, 5, generator=generator)
    style = 3 + 2 * torch.randn(1, 8, 7, 7, generator=generator)
    out_mean, out_std = mean_std(adain(content, style))
    style_mean, style_std = mean_std(style)
    assert torch.allclose(out_mean, style_mean, atol=1e-5) and torch.allclose(out_std, style_std, atol=1e-4)
    assert torch.equal(adain_target(content, [style], [1.0], 0.0, None), content)  # α = 0: the content itself


def save_decoder(settings, encoder="random", width_divisor=4, path=None):
    torch.manual_seed(0)
    path = path or decoder_path(encoder, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(AdaINDecoder(width_divisor), path, {"encoder": encoder})
    return path


def test_the_method_is_called_fast_only_with_a_trained_decoder():
    from nstdiff.methods.adain import AdaINMethod

    assert "fast" not in AdaINMethod.description.lower()
    assert "one pass with a trained decoder (when one is on disk), else a short optimisation" in AdaINMethod.description


def test_optimisation_variant_runs_without_a_decoder_and_lowers_its_loss(images):
    events = []
    result = stylize(request(images), progress=events.append)
    assert result.parameters["options"]["variant"] == "optimise"
    assert any("adain variant: optimise" in note for note in result.notes)
    losses = [e.losses["total"] for e in events if e.stage == "optimise"]
    assert losses[-1] < 0.5 * losses[0]
    content = mean_rgb(Image.open(images["content"]))
    out = mean_rgb(result.image)
    assert out[0] - out[2] > content[0] - content[2] + 20  # toward the red style


def test_interpolation_weights_move_the_output_monotonically(images):
    def redness(w):
        styles = [{"image": images["red"], "weight": w}, {"image": images["blue"], "weight": 1 - w}]
        r, _, b = mean_rgb(stylize(request(images, styles=styles, steps=30)).image)
        return r - b

    assert redness(0.9) > redness(0.5) > redness(0.1)


def test_decoder_variant_is_chosen_when_a_decoder_exists(images, isolated_settings):
    save_decoder(isolated_settings)
    events = []
    result = stylize(request(images, size=40), progress=events.append)
    assert result.parameters["options"]["variant"] == "decoder"
    assert result.image.size == (40, 33)  # odd sizes are restored after the encoder's pooling
    assert any("adain variant: decoder (random.safetensors, " in n for n in result.notes)
    assert [e.step for e in events if e.stage == "optimise"] == [1]  # one forward pass


def test_missing_decoder_says_how_to_train_one(images):
    with pytest.raises(ModelNotFoundError, match="nstdiff adain train .* --encoder random"):
        stylize(request(images, options={"variant": "decoder"}))


@pytest.mark.parametrize("problem", ["shapes", "pickle", "encoder"])
def test_bad_decoder_files_are_refused(images, isolated_settings, tmp_path, problem):
    path = tmp_path / "decoder.safetensors"
    if problem == "shapes":
        save_decoder(isolated_settings, width_divisor=2, path=path)
        message = "has shape"
    elif problem == "pickle":
        import pickle

        path.write_bytes(pickle.dumps({"net.1.weight": [1, 2]}))
        message = "not a readable safetensors file"
    else:
        save_decoder(isolated_settings, encoder="vgg16", path=path)
        message = "decoder for encoder 'vgg16', not 'random'"
    with pytest.raises(ModelFileError, match=message):
        stylize(request(images, options={"decoder": str(path)}))


def test_alpha_zero_returns_the_decoders_reconstruction_of_the_content(images, isolated_settings):
    from nstdiff.methods.base import to_tensor
    from nstdiff.models.encoders import load_encoder

    save_decoder(isolated_settings)
    outputs = [stylize(request(images, styles=[images[s]], options={"alpha": 0.0})).image for s in ("red", "blue")]
    assert outputs[0].tobytes() == outputs[1].tobytes()  # the style no longer matters
    encoder = load_encoder("random", torch.device("cpu")).module
    decoder = AdaINDecoder(4)
    from nstdiff.models.weights import load_safetensors

    load_safetensors(decoder, decoder_path("random", isolated_settings), "decoder")
    with torch.no_grad():
        content = to_tensor(Image.open(images["content"]).convert("RGB"), torch.device("cpu"))
        reconstruction = decoder(encoder(content, ["relu4_1"])["relu4_1"]).clamp(0, 1)
    expected = (reconstruction[0].permute(1, 2, 0) * 255).round().byte().numpy()
    assert abs(expected.astype(int) - np.asarray(outputs[0], dtype=int)).max() <= 1


# -- the paper's public weights (normalised VGG19 + decoder), through the real fetch path on local copies ----------

def papers_vgg() -> torch.nn.Sequential:
    """The layout of `vgg_normalised.pth` in the paper's PyTorch port: a 1×1 input conv, reflection padding, ceil-mode
    pooling, VGG19 up to relu5_4."""
    layers, channels = [torch.nn.Conv2d(3, 3, 1)], 3
    for block, convs in enumerate((2, 2, 4, 4, 4)):
        width = (64, 128, 256, 512, 512)[block]
        for _ in range(convs):
            layers += [torch.nn.ReflectionPad2d(1), torch.nn.Conv2d(channels, width, 3), torch.nn.ReLU()]
            channels = width
        if block < 4:
            layers.append(torch.nn.MaxPool2d(2, 2, ceil_mode=True))
    return torch.nn.Sequential(*layers)


def papers_decoder() -> torch.nn.Sequential:
    plan = [(512, 256), "up", (256, 256), (256, 256), (256, 256), (256, 128), "up", (128, 128), (128, 64), "up",
            (64, 64), (64, 3)]
    layers = []
    for item in plan:
        if item == "up":
            layers.append(torch.nn.Upsample(scale_factor=2, mode="nearest"))
        else:
            layers += [torch.nn.ReflectionPad2d(1), torch.nn.Conv2d(*item, 3), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])  # no ReLU after the last convolution


def varied(net: torch.nn.Sequential, seed: int) -> torch.nn.Sequential:
    generator = torch.Generator().manual_seed(seed)
    for layer in net:
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
            torch.nn.init.uniform_(layer.bias, -0.1, 0.1, generator=generator)
    return net.eval()


@pytest.fixture
def papers_weights(tmp_path, monkeypatch):
    from nstdiff.models import decoders, encoders
    from nstdiff.models.resolver import sha256_file

    vgg, decoder = varied(papers_vgg(), 1), varied(papers_decoder(), 2)
    decoder[-1].weight.data *= 0.05  # keep the random output inside [0, 1] so the comparison means something
    decoder[-1].bias.data.fill_(0.5)
    vgg_file, decoder_file = tmp_path / "vgg_normalised.pth", tmp_path / "decoder.pth"
    torch.save(vgg.state_dict(), vgg_file)
    torch.save(decoder.state_dict(), decoder_file)
    monkeypatch.setattr(encoders, "VGG19_NORMALISED_SHA256", sha256_file(vgg_file))
    monkeypatch.setattr(decoders, "PUBLIC_DECODER_SHA256", sha256_file(decoder_file))
    monkeypatch.setattr(decoders, "PUBLIC_DECODER_URL", decoder_file.as_uri())
    return vgg, decoder, vgg_file


def test_public_decoder_is_fetched_converted_and_matches_the_papers_network(images, papers_weights, monkeypatch):
    from nstdiff.methods.base import to_tensor
    from nstdiff.models import fetch_model
    from nstdiff.settings import reload_settings

    vgg, decoder, vgg_file = papers_weights
    fetch_model("vgg19-normalised", source=vgg_file)
    monkeypatch.setenv("NSTDIFF_ALLOW_DOWNLOADS", "1")
    reload_settings()
    messages = []
    result = stylize(request(images, encoder="vgg19-normalised", size=48),
                     progress=lambda e: messages.append(e.message))
    assert result.parameters["options"]["variant"] == "decoder"
    assert any("downloading file://" in m for m in messages)  # resolved through the download path
    with torch.no_grad():
        encode = vgg[:31]  # up to relu4_1
        content = to_tensor(Image.open(images["content"]).convert("RGB"), torch.device("cpu"))
        style = to_tensor(Image.open(images["red"]).convert("RGB"), torch.device("cpu"))
        expected = decoder(adain(encode(content), encode(style))).clamp(0, 1)
    expected = (expected[0].permute(1, 2, 0) * 255).round().byte().numpy().astype(int)
    assert expected.std() > 5  # a real picture, not a flat one
    assert abs(expected - np.asarray(result.image, dtype=int)).max() <= 1


def test_auto_prefers_the_papers_pair_once_both_are_ready(images, papers_weights):
    from nstdiff.models import decoders, fetch_model

    _, _, vgg_file = papers_weights
    fetch_model("vgg19-normalised", source=vgg_file)
    fetch_model("adain-vgg19-normalised", source=Path(decoders.PUBLIC_DECODER_URL.removeprefix("file://")))
    result = stylize(request(images, encoder="auto"))
    assert result.encoder == "vgg19-normalised" and result.parameters["options"]["variant"] == "decoder"
    assert "encoder auto → vgg19-normalised (its AdaIN decoder is ready)" in result.notes


def test_auto_optimises_with_a_reason_when_the_papers_decoder_cannot_be_fetched(images, papers_weights, tmp_path,
                                                                               monkeypatch):
    from nstdiff.models import decoders, fetch_model
    from nstdiff.settings import reload_settings

    fetch_model("vgg19-normalised", source=papers_weights[2])
    monkeypatch.setattr(decoders, "PUBLIC_DECODER_URL", (tmp_path / "unreachable" / "decoder.pth").as_uri())
    for allowed, reason in [("1", "fetch failed: URLError"), ("0", "downloads are disabled")]:
        monkeypatch.setenv("NSTDIFF_ALLOW_DOWNLOADS", allowed)  # allowed, but offline: the fetch itself fails
        reload_settings()
        result = stylize(request(images, encoder="vgg19-normalised", steps=2))
        assert result.parameters["options"]["variant"] == "optimise"
        assert any(re.match(f"adain variant: optimise \\(2 steps; the paper's decoder could not be had: .*{reason}",
                            note) for note in result.notes)
    with pytest.raises(ModelNotFoundError, match="downloads are disabled"):  # asked for by name: still an error
        stylize(request(images, encoder="vgg19-normalised", options={"variant": "decoder"}))


def test_an_unpinned_checkpoint_is_never_unpickled(tmp_path, monkeypatch):
    from nstdiff.models import fetch_model

    other = tmp_path / "decoder.pth"
    torch.save(papers_decoder().state_dict(), other)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called on an unverified file"))
    with pytest.raises(ModelFileError, match="sha256 .* not the file nstdiff knows"):
        fetch_model("adain-vgg19-normalised", source=other)


def test_reduced_precision_feed_forward_stays_close_to_float32(images, isolated_settings):
    save_decoder(isolated_settings)
    exact = stylize(request(images, options={"precision": "fp32"}))
    fast = stylize(request(images, options={"precision": "bf16"}))
    assert "float32" in " ".join(exact.notes) and "bfloat16" in " ".join(fast.notes)
    difference = np.abs(np.asarray(exact.image, float) - np.asarray(fast.image, float))
    assert difference.mean() <= 2 and difference.max() <= 16
    with pytest.raises(InputError, match="fp16 arithmetic needs a GPU"):
        stylize(request(images, options={"precision": "fp16"}))
