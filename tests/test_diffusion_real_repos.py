"""What the tiny stand-ins could not show: the real repositories' block layouts and file listings.

SD 1.5 is built here with its whole block layout (tiny channels), so InstantStyle's SD 1.5 maps are checked against
the block names they address. The real repositories' file listings are recorded in `tests/data/hf_repos.json` (with
their sources); the tests check our download patterns and markers against them.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from nstdiff import ImageStyleRequest, stylize
from nstdiff.settings import reload_settings
from tests.test_diffusion import _as_catalogue_ip_adapter
from tests.tiny_diffusion import build_tiny_ip_adapter, build_tiny_sd15_blocks


@pytest.fixture(scope="module")
def sd15_blocks_models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sd15-blocks")
    sd15 = build_tiny_sd15_blocks(root / "diffusion" / "sd15")
    built = tmp_path_factory.mktemp("sd15-blocks-ip")
    build_tiny_ip_adapter(built, sd15)
    _as_catalogue_ip_adapter(built, root / "diffusion" / "sd15-ip-adapter", "models", "ip-adapter_sd15.safetensors")
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
