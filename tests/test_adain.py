"""AdaIN: the operation, both variants, decoders and their files (random encoder and decoder, tiny sizes)."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from nstdiff import ImageStyleRequest, ModelFileError, ModelNotFoundError, stylize
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
    assert any("adain variant: decoder (random.safetensors)" in n for n in result.notes)
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
