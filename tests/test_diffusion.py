"""Diffusion methods on tiny random pipelines laid out in the models folder exactly like the real downloads, loaded
through the product's own resolver and loaders (CPU, 64 px, a few steps)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from nstdiff import ImageStyleRequest, ModelNotFoundError, stylize
from nstdiff.errors import Cancelled, InputError, ModelFileError
from nstdiff.settings import reload_settings
from tests.conftest import cancel_at


def text_request(images, **kwargs) -> ImageStyleRequest:
    base = dict(method="diffusion-text", content=images["content"], prompt="ukiyo-e woodblock print", size=64,
                steps=4, seed=1, controls={"strength": 0.8})
    base.update(kwargs)
    return ImageStyleRequest(**base)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_text_style_keeps_the_size_and_is_reproducible_per_seed(models, images):
    first, again = stylize(text_request(images)), stylize(text_request(images))
    other_seed = stylize(text_request(images, seed=2))
    assert first.image.size == (64, 53)  # the content's aspect at size 64
    assert first.method == "diffusion-text" and first.encoder == "sd15"
    assert first.image.tobytes() == again.image.tobytes()
    assert first.image.tobytes() != other_seed.image.tobytes()


def test_two_prompts_give_different_images(models, images):
    a = stylize(text_request(images, prompt="ukiyo-e woodblock print"))
    b = stylize(text_request(images, prompt="charcoal sketch"))
    assert np.abs(pixels(a.image) - pixels(b.image)).mean() > 1


def test_strength_near_zero_returns_the_input(models, images):
    result = stylize(text_request(images, controls={"strength": 0.01}))
    content = Image.open(images["content"]).convert("RGB").resize(result.image.size)
    assert np.abs(pixels(result.image) - pixels(content)).max() <= 3
    assert any("content is returned unchanged" in note for note in result.notes)


def test_progress_fires_once_per_denoising_step_and_cancel_stops_early(models, images):
    events = []
    stylize(text_request(images, steps=10, controls={"strength": 0.5}), progress=events.append)
    assert [e.step for e in events if e.stage == "denoise"] == [1, 2, 3, 4, 5]  # img2img runs strength × steps

    cancel, on_progress, seen = cancel_at(2)
    with pytest.raises(Cancelled):
        stylize(text_request(images, steps=10, controls={"strength": 1.0}), progress=on_progress, cancel=cancel)
    assert seen[-1].step == 2


def test_txt2img_without_a_content_image(models):
    result = stylize(ImageStyleRequest(method="diffusion-text", prompt="a lighthouse", size=64, steps=2, seed=0))
    assert result.image.size == (64, 64)


def test_presets_built_in_and_your_own(models, images, tmp_path, monkeypatch):
    """The tiny tokenizer counts bytes, so the long built-in prompts are run through a short preset of one's own."""
    from nstdiff.diffusion.presets import load_presets

    assert len(load_presets()) >= 30
    mine = tmp_path / "presets.toml"
    mine.write_text('[[preset]]\nname = "my-ink"\ntitle = "My ink"\nprompt = "{subject}, ink"\n'
                    'negative = "photo"\nstrength = 0.45\n')
    monkeypatch.setenv("NSTDIFF_PRESETS_FILE", str(mine))
    reload_settings()
    assert "my-ink" in load_presets() and "ukiyo-e" in load_presets()
    result = stylize(text_request(images, prompt="a cat", controls={}, options={"preset": "my-ink"}))
    assert result.parameters["options"]["negative_prompt"] == "photo"
    assert "strength 0.45, preset my-ink" in " ".join(result.notes)  # the preset's suggested strength
    explicit = stylize(text_request(images, prompt="a cat", controls={"strength": 0.8}, options={"preset": "my-ink"}))
    assert "strength 0.8, preset my-ink" in " ".join(explicit.notes)  # the person's own strength wins
    with pytest.raises(InputError, match="unknown preset 'my-inc'; did you mean my-ink"):
        stylize(text_request(images, options={"preset": "my-inc"}))
    mine.write_text('[[preset]]\nname = "Bad Name"\ntitle = "x"\nprompt = "no subject"\n')
    with pytest.raises(InputError, match="presets file .*presets.toml: name: String should match pattern"):
        load_presets()


def test_structure_guidance_runs_a_controlnet_on_the_photos_edges(models, images):
    plain = stylize(text_request(images))
    held = stylize(text_request(images, options={"structure": "canny", "structure_scale": 2.0}))
    assert held.image.size == plain.image.size
    assert held.image.tobytes() != plain.image.tobytes()
    depth = stylize(text_request(images, options={"structure": "depth", "structure_scale": 2.0}))
    assert depth.image.tobytes() not in (plain.image.tobytes(), held.image.tobytes())
    with pytest.raises(InputError, match="structure guidance keeps the structure of a content image"):
        stylize(ImageStyleRequest(method="diffusion-text", prompt="x", size=64, options={"structure": "canny"}))


def test_fast_mode_loads_lcm_lora_and_switching_back_restores_the_base(models, images):
    before = stylize(text_request(images))
    events = []
    fast = stylize(text_request(images, steps=None, options={"fast": True}), progress=events.append)
    after = stylize(text_request(images))
    assert fast.parameters["options"]["guidance"] == 1.0 and "4 steps" in " ".join(fast.notes)
    assert fast.image.tobytes() != before.image.tobytes()
    assert after.image.tobytes() == before.image.tobytes()  # the LoRA is off again


def test_instantstyle_scales_land_exactly_on_the_intended_blocks(models, images):
    from nstdiff.diffusion.pipelines import PIPELINES

    def scaled_blocks(mode: str) -> set[str]:
        stylize(ImageStyleRequest(method="diffusion-reference", content=images["content"], styles=[images["red"]],
                                  size=64, steps=2, seed=0, options={"model": "sdxl", "mode": mode}))
        unet = PIPELINES.get("sdxl", *_cpu()).pipeline.unet
        scales = {name: processor.scale for name, processor in unet.attn_processors.items()
                  if hasattr(processor, "scale") and isinstance(processor.scale, list)}
        assert scales, "no IP-Adapter processors were installed"
        return {".".join(name.split(".")[:4]) for name, scale in scales.items() if any(scale)}

    assert scaled_blocks("style") == {"up_blocks.0.attentions.1"}
    assert scaled_blocks("layout") == {"up_blocks.0.attentions.1", "down_blocks.2.attentions.1"}


def _cpu():
    import torch

    from nstdiff.settings import get_settings

    return torch.device("cpu"), get_settings(), print


def test_style_reference_follows_the_reference_image(models, images):
    def run(style: str, scale: float = 1.0):
        return stylize(ImageStyleRequest(method="diffusion-reference", content=images["content"],
                                         styles=[images[style]], size=64, steps=3, seed=0,
                                         options={"mode": "full", "reference_scale": scale})).image

    red, blue, off = run("red"), run("blue"), run("blue", 0.0)
    assert red.tobytes() != blue.tobytes()  # the reference matters …
    text_only = stylize(text_request(images, prompt="best quality, high quality", steps=3, seed=0,
                                     controls={"strength": 0.7}))
    assert off.size == text_only.image.size  # … and scale 0 still runs through the adapter path


def test_chain_refines_a_classic_result(models, images):
    events = []
    result = stylize(ImageStyleRequest(method="chain", content=images["content"], styles=[images["red"]], size=64,
                                       steps=4, seed=0, encoder="random"), progress=events.append)
    assert result.method == "chain" and result.image.size == (64, 53)
    assert any(note.startswith("chain: adain (random) first") for note in result.notes)
    assert {e.stage for e in events} >= {"optimise", "denoise"}


def test_routing_says_which_method_ran_and_why(models, images):
    text = stylize(ImageStyleRequest(content=images["content"], prompt="pop art", size=64, steps=2, seed=0))
    assert text.method == "diffusion-text" and "method auto → diffusion-text" in text.notes[0]
    classic = stylize(ImageStyleRequest(content=images["content"], styles=[images["red"]], size=32, steps=2,
                                        encoder="random", seed=0))
    assert classic.method == "gram" and "no GPU" in classic.notes[0]
    with pytest.raises(InputError, match="needs diffusion-reference, which cannot run here: no GPU"):
        stylize(ImageStyleRequest(content=images["content"], styles=[images["red"]], prompt="x", size=32))


def test_a_model_folder_with_a_missing_part_names_it(diffusion_models, images, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(diffusion_models / "diffusion" / "sd15", broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(ModelFileError, match="missing its 'unet' folder"):
        stylize(text_request(images, options={"model": str(broken)}))


def test_a_missing_model_offline_says_what_to_fetch(images):
    with pytest.raises(ModelNotFoundError, match="nstdiff models fetch sd15"):
        stylize(text_request(images))


def test_prompt_length_and_bad_numbers_are_rejected_clearly(models, images):
    with pytest.raises(InputError, match=r"the prompt is \d+ tokens long; sd15 reads at most 77"):
        stylize(text_request(images, prompt="woodblock " * 20))
    with pytest.raises(ValidationError, match="prompt\n  String should have at most 1000 characters"):
        text_request(images, prompt="x" * 1001)
    with pytest.raises(InputError, match="guidance: Input should be less than or equal to 30"):
        stylize(text_request(images, options={"guidance": 50}))
    with pytest.raises(InputError, match="takes no style image; use diffusion-reference"):
        stylize(ImageStyleRequest(method="diffusion-text", styles=[images["red"]], size=64))


def test_text_style_and_style_reference_tabs_through_the_app(diffusion_models, images, tmp_path):
    from gradio_client import Client, handle_file

    from nstdiff.settings import Settings
    from tests.servers import RunningServer

    settings = Settings(outputs_dir=tmp_path / "outputs", cache_dir=tmp_path / "cache", models_dir=diffusion_models,
                        device="cpu", allow_downloads=False)
    server = RunningServer(settings)
    try:
        client = Client(server.url, verbose=False)
        common = dict(structure="none", family="sd15", fast=False, size=64, steps=4, seed=1)
        path, info = client.predict(content=handle_file(str(images["content"])), prompt="ukiyo-e woodblock print",
                                    preset="none", negative="", strength=0.8, **common, api_name="/text_style")
        assert Image.open(path).size == (64, 53) and "**diffusion-text**" in info
        path, info = client.predict(content=handle_file(str(images["content"])), style=handle_file(
            str(images["red"])), prompt="", mode="full", reference_scale=1.0, strength=0.8, **common,
            api_name="/style_reference")
        assert Image.open(path).size == (64, 53) and "**diffusion-reference**" in info
        with pytest.raises(Exception, match="Describe a style in words, or pick a preset"):
            client.predict(content=None, prompt="", preset="none", negative="", strength=0.8, **common,
                           api_name="/text_style")
        labels = [item["caption"] for item in client.predict(api_name="/history")]
        assert sum("diffusion" in label for label in labels) == 2
    finally:
        server.stop()


def test_content_leak_subtraction_changes_the_reference_embedding(models, images):
    def run(**options):
        return stylize(ImageStyleRequest(method="diffusion-reference", content=images["content"],
                                         styles=[images["red"]], size=64, steps=4, seed=0,
                                         options={"model": "sdxl", "mode": "full", **options})).image.tobytes()

    plain = run()
    assert run(reference_content="red stripes", content_subtraction=0.0) == plain  # λ = 0: the plain embedding
    assert run(reference_content="red stripes", content_subtraction=2.0) != plain
    with pytest.raises(InputError, match="needs an SDXL-family model"):
        stylize(ImageStyleRequest(method="diffusion-reference", content=images["content"], styles=[images["red"]],
                                  size=64, steps=2, options={"reference_content": "red stripes"}))


def test_cli_imports_a_model_folder_and_restyles_from_words(diffusion_models, images, tmp_path, monkeypatch, capsys):
    import json

    from nstdiff.commands import main

    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(tmp_path / "models"))
    reload_settings()
    assert main(["models", "fetch", "sd15", "--from", str(diffusion_models / "diffusion" / "sd15")]) == 0
    assert (tmp_path / "models" / "diffusion" / "sd15" / "model_index.json").is_file()
    out = tmp_path / "out.png"
    args = ["stylize", str(images["content"]), "--prompt", "ukiyo-e woodblock print", "--method", "diffusion",
            "--strength", "0.8", "--steps", "4", "--guidance", "5", "--size", "64", "--seed", "2", "-o", str(out)]
    assert main(args) == 0
    metadata = json.loads(Image.open(out).text["nstdiff"])
    assert metadata["method"] == "diffusion-text" and metadata["parameters"]["options"]["guidance"] == 5.0
    assert "method diffusion → diffusion-text" in metadata["notes"][0]
    assert main([*args, "--structure", "canny"]) != 0  # its ControlNet is not in this models folder
    assert "nstdiff models fetch sd15-controlnet-canny" in capsys.readouterr().err


def test_download_and_hugging_face_cache_branches_of_the_resolver(diffusion_models, tmp_path, monkeypatch):
    """The two hub branches with huggingface_hub's snapshot_download stood in for by a local copy: what nstdiff asks
    for (the repo, only the files it needs) and what it does with the answer."""
    import huggingface_hub

    from nstdiff.models.diffusion_hub import resolve_repo
    from nstdiff.models import model_status

    calls = []

    def fake_snapshot(repo, allow_patterns=None, local_files_only=False, local_dir=None):
        calls.append((repo, local_files_only))
        if local_files_only:
            if repo == "someone/cached-model":
                return str(diffusion_models / "diffusion" / "sd15")
            raise FileNotFoundError(repo)
        assert "unet/diffusion_pytorch_model.safetensors" in allow_patterns and "*.bin" not in allow_patterns
        shutil.copytree(diffusion_models / "diffusion" / "sd15", local_dir)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(tmp_path / "models"))
    assert resolve_repo("someone/cached-model", reload_settings()) == diffusion_models / "diffusion" / "sd15"
    with pytest.raises(ModelNotFoundError, match="downloads are disabled"):
        resolve_repo("sd15")
    monkeypatch.setenv("NSTDIFF_ALLOW_DOWNLOADS", "1")
    path = resolve_repo("sd15", reload_settings(), message=print)
    assert path == tmp_path / "models" / "diffusion" / "sd15" and model_status("sd15").ready
    assert calls[-1] == ("stable-diffusion-v1-5/stable-diffusion-v1-5", False)


def test_out_of_gpu_memory_releases_the_cache_and_retries_once(models, images, monkeypatch):
    import torch

    from nstdiff.diffusion.pipelines import PIPELINES
    from nstdiff.methods.diffusion_text import DiffusionTextMethod

    real, failures = DiffusionTextMethod.generate, []

    def flaky(self, *args, **kwargs):
        if len(failures) < 1:
            failures.append(1)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(self, *args, **kwargs)

    stylize(text_request(images))
    monkeypatch.setattr(DiffusionTextMethod, "generate", flaky)
    released = []
    monkeypatch.setattr(PIPELINES, "release", lambda: released.append(1) or PIPELINES._models.clear())
    assert stylize(text_request(images)).image.size == (64, 53)
    assert released == [1]


def test_turbo_family_fast_mode_uses_its_own_schedule(diffusion_models, images, tmp_path, monkeypatch):
    shutil.copytree(diffusion_models, tmp_path / "models")
    shutil.copytree(tmp_path / "models" / "diffusion" / "sd15", tmp_path / "models" / "diffusion" / "sd-turbo")
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(tmp_path / "models"))
    reload_settings()
    result = stylize(text_request(images, steps=None, options={"model": "sd-turbo", "fast": True}))
    assert "sd-turbo, 2 steps, guidance 0" in " ".join(result.notes)


def test_pipelines_stay_warm_unless_the_setting_says_otherwise(models, images, monkeypatch):
    from nstdiff.diffusion.pipelines import PIPELINES

    stylize(text_request(images))
    warm = dict(PIPELINES._models)
    stylize(text_request(images, prompt="charcoal"))
    assert warm and dict(PIPELINES._models) == warm  # the same loaded pipeline served the second request
    monkeypatch.setenv("NSTDIFF_KEEP_PIPELINES_WARM", "0")
    reload_settings()
    stylize(text_request(images))
    assert not PIPELINES._models


def test_short_schedules_still_denoise_and_too_many_steps_are_refused(diffusion_models, images, tmp_path,
                                                                      monkeypatch):
    shutil.copytree(diffusion_models, tmp_path / "models")
    shutil.copytree(tmp_path / "models" / "diffusion" / "sd15", tmp_path / "models" / "diffusion" / "sd-turbo")
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(tmp_path / "models"))
    reload_settings()
    turbo = stylize(text_request(images, steps=None, controls={"strength": 0.3}, options={"model": "sd-turbo"}))
    assert "strength 0.3 × 2 steps is less than one denoising step; 4 steps used" in turbo.notes
    with pytest.raises(InputError, match="1001 denoising steps is more than sd15's 1000 noise levels"):
        stylize(text_request(images, steps=1001))


def test_routing_explains_what_it_cannot_do(models, images, monkeypatch):
    import torch

    from nstdiff import routing

    monkeypatch.setattr("nstdiff.context.pick_device", lambda setting: torch.device("cuda"))
    assert routing.reference_ready("sd-turbo", reload_settings()) == (False, "sd-turbo has no IP-Adapter in the "
                                                                             "catalogue")
    assert routing.reference_ready("/some/folder", reload_settings())[0] is False
    monkeypatch.setattr("nstdiff.context.pick_device", lambda setting: torch.device("cpu"))
    with pytest.raises(InputError, match=r"a style image with diffusion options \(preset\) needs diffusion-reference"):
        stylize(ImageStyleRequest(content=images["content"], styles=[images["red"]], size=32,
                                  options={"preset": "ukiyo-e"}))


def test_model_references_that_are_neither_folder_nor_repo_are_named(models, images):
    with pytest.raises(ModelNotFoundError, match="not a folder, family or repo id"):
        stylize(text_request(images, options={"model": "../my-model"}))


def test_a_folder_model_can_be_fetched_again(diffusion_models, tmp_path, monkeypatch):
    from nstdiff.models import fetch_model, model_status

    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(tmp_path / "models"))
    reload_settings()
    for _ in range(2):
        fetch_model("sd15", source=diffusion_models / "diffusion" / "sd15")
    assert model_status("sd15").ready


@pytest.mark.parametrize("method, changes, message", [
    ("diffusion-reference", {"options": {"model": "sd-turbo"}}, "has no IP-Adapter in the catalogue"),
    ("diffusion-reference", {"options": {"model": "sd15", "reference_content": "a house"}}, "needs an SDXL-family"),
    ("diffusion-reference", {"styles": ["content", "red"]}, "takes one style image"),
    ("diffusion-text", {"content": None, "styles": [], "prompt": "ink", "options": {"structure": "canny"}},
     "structure guidance keeps the structure of a content image"),
])
def test_requests_a_diffusion_method_cannot_honour_are_refused_before_any_model_is_looked_for(images, method,
                                                                                               changes, message):
    """Like diffusers' `check_inputs`: with no model on disk and downloads off, the request's own problem is what the
    person hears about, not a missing model."""
    data = {"method": method, "content": images["content"], "styles": [images["red"]], "size": 64, **changes}
    data["styles"] = [images[name] if isinstance(name, str) else name for name in data["styles"]]
    with pytest.raises(InputError, match=message):
        stylize(ImageStyleRequest(**data))
