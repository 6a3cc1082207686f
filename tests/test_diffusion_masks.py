"""Region masks on the diffusion methods (blended latent diffusion): only the white area changes, the black area comes
back bit-identical, and the latents outside the mask follow the photo at every denoising step. Tiny random pipelines
from the models folder, through the product's own loaders (CPU, 64 px, a few steps)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from nstdiff import ImageStyleRequest, stylize
from nstdiff.errors import Cancelled, InputError
from nstdiff.imageio import resize_long_side
from nstdiff.settings import reload_settings
from tests.conftest import cancel_at

SIZE = 64
KEPT_COLUMNS = slice(0, 30)  # the black left half of the mask at the 64 × 53 result (its seam is at column 32)
CHANGED_COLUMNS = slice(36, None)


@pytest.fixture
def half_mask(images, tmp_path):
    """Black (untouched) on the left half of the content, white (restyle) on the right."""
    width, height = Image.open(images["content"]).size
    mask = np.full((height, width, 3), 255, np.uint8)
    mask[:, : width // 2] = 0
    path = tmp_path / "mask.png"
    Image.fromarray(mask).save(path)
    return path


def masked(images, mask, method="diffusion-text", **kwargs) -> ImageStyleRequest:
    base = {"method": method, "content": images["content"], "size": SIZE, "steps": 4, "seed": 1,
            "controls": {"strength": 0.8, "mask": mask}}
    if method == "diffusion-text":
        base["prompt"] = "ukiyo-e woodblock print"
    else:
        base["styles"] = [images["red"]]
    base.update(kwargs)
    return ImageStyleRequest(**base)


def content_at_job_size(images) -> np.ndarray:
    return np.asarray(resize_long_side(Image.open(images["content"]).convert("RGB"), SIZE), dtype=np.int16)


def assert_only_the_white_area_changed(result, images) -> None:
    out, content = np.asarray(result.image, dtype=np.int16), content_at_job_size(images)
    assert out.shape == content.shape
    assert np.array_equal(out[:, KEPT_COLUMNS], content[:, KEPT_COLUMNS])  # bit-identical
    assert np.abs(out[:, CHANGED_COLUMNS] - content[:, CHANGED_COLUMNS]).mean() > 5


@pytest.fixture
def with_lora(diffusion_models, tmp_path, monkeypatch):
    """The tiny models plus one library LoRA for sd15, `ink`."""
    from tests.tiny_diffusion import build_tiny_lora

    models = tmp_path / "models"
    shutil.copytree(diffusion_models, models)
    folder = build_tiny_lora(models / "loras" / "ink", models / "diffusion" / "sd15", seed=1,
                             weight_name="ink.safetensors")
    (folder / "lora.json").write_text(json.dumps({"name": "ink", "base": "sd15", "trigger": "<ink>", "rank": 4,
                                                  "steps": 10, "dataset_size": 4, "created": "2026-12-01T00:00:00"}))
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(models))
    reload_settings()


def test_a_masked_text_style_changes_only_the_white_area_and_is_reproducible(models, images, half_mask):
    first, again = stylize(masked(images, half_mask)), stylize(masked(images, half_mask))
    assert_only_the_white_area_changed(first, images)
    assert first.image.tobytes() == again.image.tobytes()
    other_seed = np.asarray(stylize(masked(images, half_mask, seed=2)).image, dtype=np.int16)
    out = np.asarray(first.image, dtype=np.int16)
    assert np.array_equal(other_seed[:, KEPT_COLUMNS], out[:, KEPT_COLUMNS])
    assert np.abs(other_seed[:, CHANGED_COLUMNS] - out[:, CHANGED_COLUMNS]).mean() > 1
    unmasked = np.asarray(stylize(masked(images, None)).image, dtype=np.int16)
    assert np.abs(unmasked[:, KEPT_COLUMNS] - out[:, KEPT_COLUMNS]).mean() > 5  # without it the left half changes


def test_the_latents_outside_the_mask_follow_the_photo_at_every_step(models, images, half_mask, monkeypatch):
    """What the UNet sees at each step: outside the mask the photo's latents noised to that step (the same whatever
    the prompt), inside the prompt's own denoising. Without a mask the prompts differ everywhere after the first step."""
    from diffusers import UNet2DConditionModel

    seen: list[torch.Tensor] = []
    forward = UNet2DConditionModel.forward

    def recording(self, sample, *args, **kwargs):
        seen.append(sample[0].detach().clone())  # (the conditional and unconditional halves are the same latents)
        return forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", recording)

    def unet_inputs(prompt: str, mask) -> list[torch.Tensor]:
        seen.clear()
        stylize(masked(images, mask, prompt=prompt, steps=8))
        return list(seen)

    ink, pop = unet_inputs("ink wash", half_mask), unet_inputs("pop art", half_mask)
    assert len(ink) == len(pop) == 6  # strength 0.8 × 8 steps
    left, right = (slice(None), slice(None), slice(0, 12)), (slice(None), slice(None), slice(20, None))
    assert torch.equal(ink[0], pop[0])  # the same start: the photo noised with the seed's noise
    for step in range(1, 6):
        assert torch.allclose(ink[step][left], pop[step][left], atol=1e-5), step
        assert not torch.allclose(ink[step][right], pop[step][right], atol=1e-3), step
    free_ink, free_pop = unet_inputs("ink wash", None), unet_inputs("pop art", None)
    assert not torch.allclose(free_ink[-1][left], free_pop[-1][left], atol=1e-3)


@pytest.mark.parametrize("method, options", [
    ("diffusion-text", {"structure": "canny", "structure_scale": 2.0}),
    ("diffusion-text", {"fast": True}),
    ("diffusion-reference", {"mode": "full"}),
    ("chain", {}),
])
def test_masks_work_with_structure_fast_mode_the_reference_and_the_chain(models, images, half_mask, method, options):
    extra = {"encoder": "random"} if method == "chain" else {}
    result = stylize(masked(images, half_mask, method=method, options=options, **extra))
    assert_only_the_white_area_changed(result, images)


def test_masks_work_with_a_library_lora(with_lora, images, half_mask):
    plain = stylize(masked(images, half_mask))
    inked = stylize(masked(images, half_mask, options={"loras": ["ink:1.0"]}))
    assert_only_the_white_area_changed(inked, images)
    assert inked.image.tobytes() != plain.image.tobytes()


def test_cancel_stops_a_masked_run(models, images, half_mask):
    cancel, on_progress, seen = cancel_at(2)
    with pytest.raises(Cancelled):
        stylize(masked(images, half_mask, steps=10, controls={"strength": 1.0, "mask": half_mask}),
                progress=on_progress, cancel=cancel)
    assert seen[-1].step == 2


def test_an_all_black_mask_returns_the_photo_without_running(models, images, tmp_path):
    black = tmp_path / "black.png"
    Image.new("RGB", Image.open(images["content"]).size).save(black)
    result = stylize(masked(images, black))
    assert np.array_equal(np.asarray(result.image, dtype=np.int16), content_at_job_size(images))
    assert any("marks nothing to change" in note for note in result.notes)


def test_a_mask_with_several_style_colours_is_refused_for_one_prompt(models, images, half_mask, tmp_path):
    two = np.asarray(Image.open(half_mask)).copy()
    two[: two.shape[0] // 2, two.shape[1] // 2:] = (255, 0, 0)  # a second (red) region
    path = tmp_path / "two.png"
    Image.fromarray(two).save(path)
    for method in ("diffusion-text", "diffusion-reference"):
        with pytest.raises(InputError, match=r"paint with the area to change = #ffffff, and black for untouched"):
            stylize(masked(images, path, method=method))
