"""What the tiny stand-ins could not show: the real repositories' block layouts and file listings.

SD 1.5 is built here with its whole block layout (tiny channels), so InstantStyle's SD 1.5 maps are checked against
the block names they address. The real repositories' file listings are recorded in `tests/data/hf_repos.json` (with
their sources); the tests check our download patterns and markers against them.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from nstdiff import ImageStyleRequest, stylize
from nstdiff.settings import reload_settings
from tests.tiny_diffusion import as_catalogue_ip_adapter
from tests.tiny_diffusion import build_tiny_ip_adapter, build_tiny_sd15_blocks


@pytest.fixture(scope="module")
def sd15_blocks_models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sd15-blocks")
    sd15 = build_tiny_sd15_blocks(root / "diffusion" / "sd15")
    built = tmp_path_factory.mktemp("sd15-blocks-ip")
    build_tiny_ip_adapter(built, sd15)
    as_catalogue_ip_adapter(built, root / "diffusion" / "sd15-ip-adapter", "models", "ip-adapter_sd15.safetensors")
    return root


def test_instantstyle_sd15_maps_cover_whole_blocks_as_its_own_script_does(sd15_blocks_models, images, monkeypatch):
    import torch

    from nstdiff.diffusion.pipelines import PIPELINES
    from nstdiff.settings import get_settings

    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(sd15_blocks_models))
    reload_settings()
    PIPELINES.release()

    def scaled_layers(mode: str) -> set[str]:
        stylize(ImageStyleRequest(method="diffusion-reference", content=images["content"], styles=[images["red"]],
                                  size=64, steps=2, seed=0, options={"model": "sd15", "mode": mode}))
        unet = PIPELINES.get("sd15", torch.device("cpu"), get_settings(), print).pipeline.unet
        scales = {name: processor.scale for name, processor in unet.attn_processors.items()
                  if isinstance(getattr(processor, "scale", None), list)}
        assert scales, "no IP-Adapter processors were installed"
        return {re.match(r".*?\.attentions\.\d+", name).group(0) for name, scale in scales.items() if any(scale)}

    try:
        up_1 = {f"up_blocks.1.attentions.{i}" for i in range(3)}
        assert scaled_layers("style") == up_1
        assert scaled_layers("layout") == up_1 | {"down_blocks.2.attentions.0", "down_blocks.2.attentions.1",
                                                  "mid_block.attentions.0"}
    finally:
        PIPELINES.release()


LISTINGS = json.loads((Path(__file__).parent / "data" / "hf_repos.json").read_text())["repos"]
PICKLES = (".bin", ".ckpt", ".pth", ".pt", ".pkl")
SETUPS = [("cpu", "auto"), ("cuda", "auto"), ("cuda", "fp32"), ("cuda", "bf16"), ("cpu", "fp16")]


def loader_files(name: str, variant: str) -> set[str]:
    """The weight files nstdiff's loader opens for catalogue part `name`, as stored in `variant`."""
    from nstdiff.models.diffusion_catalogue import load_catalogue
    from nstdiff.models.diffusion_files import PIPELINE_WEIGHTS, variant_file
    from nstdiff.models.diffusion_hub import catalogue_part

    part = catalogue_part(name)
    if part.weights is None:  # a pipeline: the components of its architecture
        components = ["unet", "vae", "text_encoder"]
        if load_catalogue().families[name].architecture == "sdxl":
            components.append("text_encoder_2")
        weights = [PIPELINE_WEIGHTS[c] for c in components]
    else:
        weights = list(part.weights)
    return {variant_file(w, variant) for w in weights}


def part_names() -> list[str]:
    from nstdiff.models import diffusion_hub

    return sorted(diffusion_hub._PARTS)


@pytest.mark.parametrize("device,dtype", SETUPS)
@pytest.mark.parametrize("name", part_names())
def test_downloads_select_every_file_the_loader_opens_and_no_pickle(name, device, dtype):
    from huggingface_hub.utils import filter_repo_objects

    from nstdiff.models.diffusion_hub import catalogue_part, preferred_variant
    from nstdiff.settings import Settings

    part = catalogue_part(name)
    listing = list(LISTINGS[part.repo]["files"])
    variant = preferred_variant(part, Settings(device=device, diffusion_dtype=dtype))
    chosen = set(filter_repo_objects(listing, allow_patterns=part.patterns(variant)))
    opened = loader_files(name, variant)
    assert opened <= set(listing), f"{part.repo} has no {sorted(opened - set(listing))}"
    assert {f for f in chosen if not f.endswith((".json", ".txt"))} == opened  # those weights, nothing more
    assert not [f for f in chosen if f.endswith(PICKLES)]
    if "fp16" in part.variants and (dtype == "fp16" or (device, dtype) == ("cuda", "auto")):
        assert variant == "fp16"  # half the download where the models run in fp16
    elif "fp32" in part.variants and dtype in ("fp32", "bf16"):
        assert variant == "fp32"


def test_the_catalogue_states_each_repositorys_variants_and_sizes_as_recorded():
    from nstdiff.models.diffusion_catalogue import load_catalogue
    from nstdiff.models.diffusion_hub import _PARTS

    catalogue = load_catalogue()
    by_repo: dict[str, list[str]] = {}
    for name, part in _PARTS.items():
        by_repo.setdefault(part.repo, []).append(name)
    assert set(by_repo) == set(catalogue.repos)  # every repository we fetch has its facts stated
    for repo, names in by_repo.items():
        files = LISTINGS[repo]["files"]
        for variant in ("fp32", "fp16"):
            needed = set().union(*(loader_files(n, variant) for n in names))  # parts stored once count once
            present = needed <= set(files)
            assert (variant in catalogue.repos[repo]) == present, (repo, variant)
            sizes = [files[f].get("bytes") for f in sorted(needed)] if present else []
            if sizes and None not in sizes:  # every weight file's size is recorded: the stated size adds them up
                assert catalogue.repos[repo][variant] == pytest.approx(sum(sizes) / 1e6, rel=0.02), (repo, variant)


def test_shared_parts_are_stored_once():
    from nstdiff.models import model_status

    assert model_status("sdxl-ip-adapter").path == model_status("sdxl-turbo-ip-adapter").path
    assert model_status("sdxl-controlnet-canny").path == model_status("sdxl-turbo-controlnet-canny").path
    assert model_status("sd15-ip-adapter").path != model_status("sdxl-ip-adapter").path


@pytest.mark.parametrize("name", part_names())
def test_a_part_is_ready_only_with_its_weights(name, tmp_path):
    from nstdiff.models.diffusion_catalogue import load_catalogue
    from nstdiff.models.diffusion_files import PIPELINE_WEIGHTS
    from nstdiff.models.diffusion_hub import catalogue_part

    part = catalogue_part(name)
    folder = tmp_path / "part"
    for file in LISTINGS[part.repo]["files"]:
        if file.endswith((".json", ".txt")):
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            (folder / file).write_text("{}")
    if part.weights is None:  # the model index names the components
        family = load_catalogue().families[name]
        components = {c: ["diffusers", "X"] for c in PIPELINE_WEIGHTS if c != "text_encoder_2"
                      or family.architecture == "sdxl"}
        (folder / "model_index.json").write_text(json.dumps(components))
    assert not part.complete(folder)  # configs alone (a stale or partial download) are not a model
    variant = part.variants[-1]
    for file in loader_files(name, variant):
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        (folder / file).write_bytes(b"weights")
    assert part.complete(folder) and part.variant_in(folder) == variant


def test_a_cache_with_fp16_files_only_loads_that_variant_and_a_partial_one_is_not_ready(tmp_path, images,
                                                                                        monkeypatch):
    """A person who followed diffusers' `from_pretrained(..., variant="fp16")` docs has only `.fp16.` files in the
    Hugging Face cache; one whose download broke has only the configs. The first must run, the second be missing."""
    import huggingface_hub
    from diffusers import DiffusionPipeline

    from nstdiff.models.diffusion_hub import locally_available
    from nstdiff.diffusion.pipelines import PIPELINES
    from tests.tiny_diffusion import build_tiny_sd

    fp16_only, partial = tmp_path / "fp16-only", tmp_path / "partial"
    DiffusionPipeline.from_pretrained(build_tiny_sd(tmp_path / "plain")).save_pretrained(fp16_only, variant="fp16")
    assert not (fp16_only / "unet" / "diffusion_pytorch_model.safetensors").exists()
    partial.mkdir()
    (partial / "model_index.json").write_text((fp16_only / "model_index.json").read_text())
    caches = {"stable-diffusion-v1-5/stable-diffusion-v1-5": partial, "someone/fp16-model": fp16_only}

    def cached_snapshot(repo, allow_patterns=None, local_files_only=False, local_dir=None):
        assert local_files_only, "nothing may be downloaded here"
        if repo not in caches:
            raise FileNotFoundError(repo)
        return str(caches[repo])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cached_snapshot)
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(tmp_path / "models"))
    reload_settings()
    assert not locally_available("sd15")  # routing must not call a broken download ready
    PIPELINES.release()
    try:
        result = stylize(ImageStyleRequest(method="diffusion-text", content=images["content"], prompt="ink wash",
                                           size=64, steps=2, seed=0, options={"model": "someone/fp16-model"}))
        assert result.image.size == (64, 53)
    finally:
        PIPELINES.release()


def test_every_model_a_request_needs_is_checked_before_any_work(diffusion_models, images, tmp_path, monkeypatch):
    """A chain whose diffusion model is missing must not run minutes of its classic stage first; a reference run
    without its IP-Adapter must not load the base model first; the chain's first method takes its own options."""
    from nstdiff import ModelNotFoundError
    from nstdiff.diffusion.pipelines import PIPELINES
    from nstdiff.errors import InputError

    models = tmp_path / "models"
    shutil.copytree(diffusion_models / "diffusion" / "sd15", models / "diffusion" / "sd15")
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(models))
    reload_settings()
    PIPELINES.release()
    loads = []
    monkeypatch.setattr(PIPELINES, "_load_model", lambda *args: loads.append(args) or pytest.fail("loaded"))
    events = []
    chain = ImageStyleRequest(method="chain", content=images["content"], styles=[images["red"]], size=32, steps=2,
                              seed=0, encoder="random", options={"model": "sdxl", "alpha": 0.4})
    with pytest.raises(ModelNotFoundError, match="sdxl"):
        stylize(chain, progress=events.append)
    assert not [e for e in events if e.stage != "message"]  # no classic step ran
    with pytest.raises(ModelNotFoundError, match="sd15-ip-adapter"):
        stylize(ImageStyleRequest(method="diffusion-reference", content=images["content"], styles=[images["red"]],
                                  size=64, steps=2, seed=0))
    with pytest.raises(ModelNotFoundError, match="sd15-controlnet-depth"):
        stylize(ImageStyleRequest(method="diffusion-text", content=images["content"], prompt="ink", size=64,
                                  steps=2, seed=0, options={"structure": "depth"}))
    assert loads == []
    with pytest.raises(InputError, match="invalid options for method 'adain'.*alpha"):
        stylize(chain.model_copy(update={"options": {"alpha": 5.0}}))


def test_the_chains_first_method_gets_its_own_options(models, images):
    def chain(**first):
        return stylize(ImageStyleRequest(method="chain", content=images["content"], styles=[images["red"]], size=64,
                                         steps=2, seed=0, encoder="random", options=first))

    plain, faint = chain(), chain(alpha=0.0)
    assert faint.parameters["options"]["first_options"] == {"alpha": 0.0}
    assert faint.image.tobytes() != plain.image.tobytes()
