"""Masks from words (CLIPSeg), GrabCut and masks on the style images, as a user of the API and the CLI meets them.

The model path runs a tiny random CLIPSeg saved in the real repository's layout and loaded through the resolver.
Where a test needs a known mask shape, CLIPSeg's logits are scripted (`scripted`): everything after the model
(sigmoid, resizing, threshold, feather, regions, the methods) is the real code.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from nstdiff import ImageStyleRequest, InputError, ModelFileError, ModelNotFoundError, stylize
from nstdiff.controls import words
from nstdiff.controls.grabcut import grabcut_mask
from nstdiff.models.segmentation import Segmenter, load_segmenter
from nstdiff.settings import reload_settings
from tests.conftest import stripes
from tests.tiny_segmentation import build_tiny_clipseg

GRID = 64  # the scripted logits' side, like the tiny model's output (the real one's is 352)


@pytest.fixture(scope="session")
def tiny_clipseg(tmp_path_factory):
    return build_tiny_clipseg(tmp_path_factory.mktemp("clipseg") / "clipseg")


@pytest.fixture
def clipseg_in_models_folder(tiny_clipseg, tmp_path, monkeypatch):
    """The tiny CLIPSeg where `nstdiff models fetch clipseg` puts it: <models>/diffusion/clipseg."""
    models = tmp_path / "models"
    (models / "diffusion").mkdir(parents=True)
    (models / "diffusion" / "clipseg").symlink_to(tiny_clipseg, target_is_directory=True)
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(models))
    return reload_settings()


# the scripted model's answer per phrase: a probability map over (u, v) ∈ [0, 1]² (u across, v down)
SCRIPT = {
    "sky": lambda u, v: (v < 0.4) * 0.95 + 0.02,
    "ground": lambda u, v: (v >= 0.4) * 0.95 + 0.02,
    "right": lambda u, v: (u >= 0.5) * 0.95 + 0.02,
    "ramp": lambda u, v: np.clip(u, 0.001, 0.999),
    "the dog": lambda u, v: (((u - 0.5) ** 2 + (v - 0.5) ** 2) < 0.25 ** 2) * 0.95 + 0.02,
    "unicorn": lambda u, v: 0 * u + 0.03,
}


@pytest.fixture
def scripted(monkeypatch):
    """CLIPSeg's logits scripted per phrase (SCRIPT); records the phrases asked for."""
    asked: list[list[str]] = []

    class Inputs(dict):
        def to(self, device):
            return self

    def processor(text, images, padding, return_tensors):
        assert all(image.mode == "RGB" for image in images) and len(images) == len(text)
        return Inputs(phrases=list(text))

    def model(phrases):
        asked.append(phrases)
        v, u = np.mgrid[0:GRID, 0:GRID] / (GRID - 1)
        probabilities = np.stack([SCRIPT[p](u, v) for p in phrases]).astype(np.float32)
        return SimpleNamespace(logits=torch.logit(torch.from_numpy(probabilities)))

    processor.tokenizer = lambda text: SimpleNamespace(input_ids=text.split())
    model.config = SimpleNamespace(text_config=SimpleNamespace(max_position_embeddings=77))
    fake = Segmenter(processor, model, torch.device("cpu"), "scripted")
    monkeypatch.setattr(words, "load_segmenter", lambda settings, device, message=None: fake)
    return asked


def mask_of(phrases, threshold=0.4, feather=0.0, size=(80, 60)):
    photo = Image.new("RGB", size, (90, 120, 160))
    return words.words_mask(photo, phrases, size, threshold, feather, reload_settings(), torch.device("cpu"))


def run(images, steps=20, **kwargs):
    base = {"content": images["content"], "styles": [images["red"]], "size": 48, "steps": steps, "seed": 0,
            "encoder": "random", "controls": {"strength": 0.95}}
    base.update(kwargs)
    return stylize(ImageStyleRequest(**base))


# -- the model ---------------------------------------------------------------------------------------------------

def test_the_phrase_reaches_the_tiny_clipseg_from_the_models_folder(clipseg_in_models_folder):
    settings = clipseg_in_models_folder
    segmenter = load_segmenter(settings, torch.device("cpu"))
    assert load_segmenter(settings, torch.device("cpu")) is segmenter  # loaded once, then kept
    seen = []
    hook = segmenter.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"]),
                                                     with_kwargs=True)
    try:
        photo = Image.fromarray(np.asarray(stripes(70, 50)))
        scores = words.phrase_scores(photo, ["sky", "a red dog"], (70, 50), settings, torch.device("cpu"))
    finally:
        hook.remove()
    texts = segmenter.processor.tokenizer.batch_decode(seen[0], skip_special_tokens=True)
    assert [t.replace(" ", "") for t in texts] == ["sky", "areddog"]  # byte-level vocabulary: letters, no merges
    assert scores.shape == (2, 50, 70) and 0 <= float(scores.min()) and float(scores.max()) <= 1
    assert (scores[0] - scores[1]).abs().max() > 1e-3  # the phrase conditions the mask


def test_a_phrase_longer_than_the_model_reads_is_refused_with_a_message(clipseg_in_models_folder):
    text_model = load_segmenter(clipseg_in_models_folder, torch.device("cpu")).model.config.text_config
    phrase = "the small brown dog " * (text_model.max_position_embeddings // 4)
    with pytest.raises(InputError, match=r"tokens long; the segmentation model reads at most \d+"):
        words.phrase_scores(Image.new("RGB", (40, 30)), ["sky", phrase], (40, 30), clipseg_in_models_folder,
                            torch.device("cpu"))


def test_a_clipseg_with_only_a_pickle_is_refused_unread(tmp_path, monkeypatch):
    folder = tmp_path / "clipseg-bin"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "clipseg"}))
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle: loading it would fail differently")
    monkeypatch.setenv("NSTDIFF_SEGMENTATION_MODEL", str(folder))
    with pytest.raises(ModelFileError, match="has only pytorch_model.bin, a pickle that nstdiff never loads"):
        load_segmenter(reload_settings(), torch.device("cpu"))


def test_without_a_model_the_error_names_the_fetch_command(images):
    with pytest.raises(ModelNotFoundError, match="nstdiff models fetch clipseg"):
        run(images, controls={"only": ["the dog"]})


# -- threshold, feather, several phrases, area ----------------------------------------------------------------------

@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_the_threshold_decides_what_matches(scripted, threshold):
    found = mask_of(["ramp"], threshold=threshold)  # the score rises from 0 at the left to 1 at the right
    assert found.area == pytest.approx(1 - threshold, abs=0.03)
    columns = found.mask.numpy().mean(0)
    assert set(np.unique(found.mask.numpy())) <= {0.0, 1.0}  # no feather: a hard mask
    assert columns[: int(80 * threshold) - 2].max() == 0 and columns[int(80 * threshold) + 2:].min() == 1


def test_the_feather_softens_the_edge_by_about_its_width(scripted):
    hard, soft = mask_of(["right"]).mask.numpy(), mask_of(["right"], feather=8).mask.numpy()
    edge = 40
    partial = np.flatnonzero(((soft > 0) & (soft < 1)).any(0))  # exactly 0 or 1 elsewhere: untouched is untouched
    assert partial.min() >= edge - 8 and partial.max() < edge + 8  # soft only within 8 px of the edge
    assert len(partial) >= 12  # and over most of them
    assert (soft[:, :edge - 8] == 0).all() and (soft[:, edge + 8:] == 1).all()
    assert set(np.unique(hard)) == {0.0, 1.0}


def test_several_phrases_make_one_region_and_its_area_is_reported(scripted, images):
    union = mask_of(["sky", "right"])
    assert union.area == pytest.approx(0.4 + 0.6 * 0.5, abs=0.03)
    assert scripted[-1] == ["sky", "right"]
    result = run(images, steps=2, controls={"only": ["sky", "right"], "mask_feather": 0})
    assert any(note.startswith("mask 'sky, right': ") and note.endswith("% of the photo") for note in result.notes)


def test_a_phrase_that_matches_nothing_says_so(scripted, images):
    with pytest.raises(InputError, match=r"the phrase 'unicorn' matched nothing in the photo \(max score 0\.03\); "
                                         r"try another word or lower the threshold"):
        run(images, controls={"regions": [{"where": ["sky"], "style": 1}, {"where": ["unicorn"], "style": 2}]},
            styles=[images["red"], images["blue"]])


# -- regions through the methods ----------------------------------------------------------------------------------

def region_style_distance(image: Image.Image, rows: slice, style: Image.Image) -> float:
    """Σ_l ‖G_l(image under the region's mask) − G_l(style)‖² / ‖G_l(style)‖², guided Grams (Gatys et al. 2017) on
    the random encoder the runs optimised with: how well a region took its style."""
    from nstdiff.losses import STYLE_LAYERS, gram_matrix
    from nstdiff.methods.base import to_tensor
    from nstdiff.models.encoders import load_encoder

    net = load_encoder("random", torch.device("cpu"), reload_settings(), print).module
    mask = torch.zeros(image.height, image.width)
    mask[rows] = 1
    with torch.no_grad():
        ours = net(to_tensor(image, torch.device("cpu")), list(STYLE_LAYERS))
        theirs = net(to_tensor(style.convert("RGB"), torch.device("cpu")), list(STYLE_LAYERS))
    total = 0.0
    for layer, feature in ours.items():
        guide = torch.nn.functional.interpolate(mask[None, None], size=feature.shape[-2:], mode="area")[0, 0]
        target = gram_matrix(theirs[layer])
        total += float((gram_matrix(feature, guide) - target).square().sum() / target.square().sum())
    return total


def test_region_styles_stay_inside_their_regions(scripted, images):
    styles = [images["red"], images["blue"]]
    regions = {"regions": [{"where": ["sky"], "style": 1}, {"where": ["ground"], "style": 2}], "mask_feather": 0,
               "strength": 0.95}
    masked = run(images, steps=40, styles=styles, controls=regions).image
    blended = run(images, steps=40, styles=styles).image
    top, bottom = slice(0, 13), slice(19, 40)  # the sky is v < 0.4 of 40 rows; a margin around the seam
    for rows, style in ((top, styles[0]), (bottom, styles[1])):
        masked_error = region_style_distance(masked, rows, Image.open(style))
        blended_error = region_style_distance(blended, rows, Image.open(style))
        assert masked_error < 0.9 * blended_error, (masked_error, blended_error)


@pytest.mark.parametrize("method", ["gram", "adain"])
def test_only_and_except_leave_the_rest_of_the_photo_untouched(scripted, images, method):
    content = np.asarray(Image.open(images["content"]), float)
    only = np.asarray(run(images, method=method, steps=10, controls={"only": ["the dog"], "mask_feather": 2,
                                                                     "strength": 0.95}).image, float)
    v, u = np.mgrid[0:40, 0:48]
    distance = np.hypot(u / 47 - 0.5, v / 39 - 0.5)
    assert np.abs(only[distance > 0.36] - content[distance > 0.36]).max() <= 1  # outside the dog, as it was
    assert np.abs(only[distance < 0.15] - content[distance < 0.15]).mean() > 10  # the dog restyled
    spared = np.asarray(run(images, method=method, steps=10, controls={"except": ["the dog"], "mask_feather": 2,
                                                                       "strength": 0.95}).image, float)
    assert np.abs(spared[distance < 0.15] - content[distance < 0.15]).max() <= 1
    assert np.abs(spared[distance > 0.36] - content[distance > 0.36]).mean() > 10


def test_style_masks_choose_which_part_of_the_style_paints(images, tmp_path):
    half = np.asarray(stripes(48, 48, (230, 30, 20), (120, 10, 10))).copy()
    half[:, 24:] = np.asarray(stripes(24, 48, (20, 40, 230), (10, 10, 110), period=8))
    Image.fromarray(half).save(tmp_path / "two_halves.png")
    for side, columns in (("left", slice(0, 24)), ("right", slice(24, 48))):
        mask = np.zeros((48, 48), np.uint8)
        mask[:, columns] = 255
        Image.fromarray(mask).save(tmp_path / f"{side}.png")
    red = run(images, styles=[tmp_path / "two_halves.png"], steps=30,
              controls={"strength": 0.95, "style_masks": [tmp_path / "left.png"]}).image
    blue = run(images, styles=[tmp_path / "two_halves.png"], steps=30,
               controls={"strength": 0.95, "style_masks": [tmp_path / "right.png"]}).image
    red, blue = np.asarray(red, float).mean((0, 1)), np.asarray(blue, float).mean((0, 1))
    assert red[0] - red[2] > blue[0] - blue[2] + 40  # the red half painted it, then the blue half


@pytest.mark.parametrize("controls, styles, message", [
    ({"mask": "m.png", "only": ["sky"]}, 1, "either a painted mask or regions named in words"),
    ({"only": ["sky"], "regions": [{"where": ["sky"], "style": 1}]}, 1, "either regions .* or only"),
    ({"regions": [{"where": ["sky"], "style": 3}]}, 2, "region 'sky' names style 3 but there are 2 style images"),
    ({"regions": [{"where": ["sky"], "style": 1}]}, 2, "style 2 paints no region"),
    ({"style_masks": ["a.png"]}, 2, "style_masks has 1 masks for 2 style images"),
    ({"only": ["  "]}, 1, "a phrase is empty"),
])
def test_inconsistent_word_controls_are_refused_up_front(images, controls, styles, message):
    with pytest.raises(ValueError, match=message):
        ImageStyleRequest(content=images["content"], styles=[images["red"]] * styles, controls=controls)


def test_style_masks_only_where_a_method_uses_them(images, tmp_path):
    Image.new("L", (48, 48), 255).save(tmp_path / "all.png")
    with pytest.raises(InputError, match="method 'adain' does not use masks on the style images; use method gram"):
        run(images, method="adain", controls={"style_masks": [tmp_path / "all.png"]})
    auto = run(images, method="auto", quality="fast", steps=None, controls={"style_masks": [tmp_path / "all.png"]})
    assert auto.method == "gram" and any("masks on the style images are read by the Gram method only" in note
                                         for note in auto.notes)
    Image.new("L", (20, 20), 255).save(tmp_path / "small.png")
    with pytest.raises(InputError, match="style mask 1 is 20x20 but style 1 is 48x48"):
        run(images, controls={"style_masks": [tmp_path / "small.png"]})


# -- GrabCut: one object without a model --------------------------------------------------------------------------

@pytest.fixture
def square_photo():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 90, (120, 160, 3)).astype(np.uint8)
    pixels[..., 2] += 100  # a noisy blue background
    square = np.zeros((120, 160), bool)
    square[40:90, 50:110] = True
    pixels[square] = rng.integers(170, 255, (square.sum(), 3)).astype(np.uint8)  # a noisy bright square
    return Image.fromarray(pixels), square


@pytest.mark.parametrize("prompt", [{"box": (35, 25, 130, 105)}, {"foreground": [(80, 65)]},
                                    {"box": (30, 20, 150, 110), "foreground": [(60, 50)], "background": [(5, 5)]}])
def test_grabcut_isolates_a_square(square_photo, prompt):
    photo, square = square_photo
    found = grabcut_mask(photo, **prompt)
    assert (found & square).sum() / (found | square).sum() > 0.9


def test_a_large_photo_is_cut_on_a_smaller_copy_and_the_mask_comes_back_at_its_size(square_photo, monkeypatch):
    import nstdiff.controls.grabcut as grabcut

    photo, square = square_photo
    seen = []
    real = grabcut.cv2.grabCut
    monkeypatch.setattr(grabcut.cv2, "grabCut", lambda pixels, *a: seen.append(pixels.shape) or real(pixels, *a))
    monkeypatch.setattr(grabcut, "WORK_SIDE", 80)  # the photo is 160 px wide: cut at half size
    found = grabcut_mask(photo, box=(35, 25, 130, 105), foreground=[(80, 65)])
    assert seen == [(60, 80, 3)] and found.shape == (120, 160)
    assert (found & square).sum() / (found | square).sum() > 0.85


def test_grabcut_needs_a_box_or_a_click(square_photo):
    with pytest.raises(InputError, match="needs a box around the object or at least one click"):
        grabcut_mask(square_photo[0])
    with pytest.raises(InputError, match="outside the 160x120 photo"):
        grabcut_mask(square_photo[0], foreground=[(500, 5)])


# -- the CLI ----------------------------------------------------------------------------------------------------

def nstdiff(*args, env=None):
    return subprocess.run([sys.executable, "-m", "nstdiff", *map(str, args)], capture_output=True, text=True,
                          timeout=300, check=False, env={**os.environ, **(env or {})})


def test_cli_regions_named_in_words(images, tiny_clipseg, tmp_path):
    out = tmp_path / "out.png"
    run_ = nstdiff("stylize", images["content"], "--region", f"sky,clouds={images['red']}", "--region",
                   f"ground={images['blue']}", "--mask-threshold", "0.02", "--mask-feather", 1, "--size", 32,
                   "--steps", 2, "--encoder", "random", "--seed", 1, "-o", out,
                   env={"NSTDIFF_SEGMENTATION_MODEL": str(tiny_clipseg)})
    assert run_.returncode == 0, run_.stderr
    meta = json.loads(Image.open(out).text["nstdiff"])
    controls = meta["parameters"]["controls"]
    assert controls["regions"] == [{"where": ["sky", "clouds"], "style": 1}, {"where": ["ground"], "style": 2}]
    assert controls["mask_threshold"] == 0.02 and controls["mask_feather"] == 1
    assert [s["image"] for s in meta["parameters"]["styles"]] == [str(images["red"]), str(images["blue"])]
    assert any(note.startswith("mask 'sky, clouds': ") for note in meta["notes"])


@pytest.mark.parametrize("args, message", [
    (["--region", "sky"], "'sky' is not PHRASES=STYLE_IMAGE"),
    (["--style", "{red}", "--region", "sky={blue}"], "give the styles through --region only"),
    (["--only", "the dog", "--style", "{red}"], "model 'clipseg' is not available"),
    (["--style", "{red}", "--style-mask", "{red}", "--method", "adain"], "does not use masks on the style images"),
])
def test_cli_word_mask_mistakes(images, tmp_path, args, message):
    args = [a.format(red=images["red"], blue=images["blue"]) for a in args]
    run_ = nstdiff("stylize", images["content"], *args, "--size", 32, "--steps", 2, "--encoder", "random",
                   "-o", tmp_path / "o.png")
    assert run_.returncode != 0 and message in run_.stderr, run_.stderr
    assert not (tmp_path / "o.png").exists()
