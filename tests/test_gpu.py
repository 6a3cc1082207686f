"""The CUDA path: the same requests as the CPU tests, on the GPU (skipped where no CUDA device is visible)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nstdiff import ImageStyleRequest, stylize
from nstdiff.settings import reload_settings

pytestmark = pytest.mark.gpu


def test_gram_with_every_control_on_cuda(images, tmp_path, monkeypatch):
    monkeypatch.setenv("NSTDIFF_DEVICE", "cuda")
    reload_settings()
    mask = np.zeros((40, 48, 3), np.uint8)
    mask[:, 24:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    for preserve in ("histogram", "luminance"):
        result = stylize(ImageStyleRequest(content=images["content"], styles=[images["red"]], size=48, steps=10,
                                           seed=0, encoder="random",
                                           controls={"preserve_color": preserve, "mask": tmp_path / "mask.png"}))
        assert result.image.size == (48, 40)
        content = np.asarray(Image.open(images["content"]), float)
        assert np.abs(np.asarray(result.image, float)[:, :20] - content[:, :20]).max() <= 1


def test_diffusion_in_fp16_on_cuda_with_structure_and_reference(images, tmp_path, monkeypatch):
    from tests.tiny_diffusion import build_tiny_controlnet, build_tiny_ip_adapter, build_tiny_sd

    parts = tmp_path / "models" / "diffusion"
    sd15 = build_tiny_sd(parts / "sd15")
    build_tiny_controlnet(parts / "sd15-controlnet-canny", sd15)
    built = build_tiny_ip_adapter(tmp_path / "ip", sd15)[0]
    (parts / "sd15-ip-adapter" / "models").mkdir(parents=True)
    (built / "ip-adapter.safetensors").rename(parts / "sd15-ip-adapter" / "models" / "ip-adapter_sd15.safetensors")
    (built / "image_encoder").rename(parts / "sd15-ip-adapter" / "models" / "image_encoder")
    monkeypatch.setenv("NSTDIFF_DEVICE", "cuda")
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(tmp_path / "models"))
    reload_settings()
    text = stylize(ImageStyleRequest(method="diffusion-text", content=images["content"], prompt="ink", size=64,
                                     steps=4, seed=0, options={"structure": "canny"}))
    again = stylize(ImageStyleRequest(method="diffusion-text", content=images["content"], prompt="ink", size=64,
                                      steps=4, seed=0, options={"structure": "canny"}))
    assert text.image.size == (64, 53) and text.image.tobytes() == again.image.tobytes()
    routed = stylize(ImageStyleRequest(content=images["content"], styles=[images["red"]], size=64, steps=4, seed=0,
                                       options={"mode": "full"}))
    assert routed.method == "diffusion-reference"  # auto: a style image, a GPU and a ready model


def test_memory_switches_with_an_ip_adapter_and_controlnet_on_cuda(images, tmp_path, monkeypatch):
    """Offload, attention slicing and VAE tiling with the IP-Adapter and a ControlNet, fp16 weights stored as the
    repositories' `.fp16.` files: every run must work and keep its outputs on one device."""
    from diffusers import DiffusionPipeline

    from nstdiff.diffusion.pipelines import PIPELINES
    from tests.tiny_diffusion import as_catalogue_ip_adapter
    from tests.tiny_diffusion import build_tiny_controlnet, build_tiny_ip_adapter, build_tiny_sd

    parts = tmp_path / "models" / "diffusion"
    plain = build_tiny_sd(tmp_path / "plain")
    DiffusionPipeline.from_pretrained(plain).save_pretrained(parts / "sd15", variant="fp16")  # fp16 files only
    build_tiny_controlnet(parts / "sd15-controlnet-canny", plain)
    built = tmp_path / "ip"
    build_tiny_ip_adapter(built, plain)
    as_catalogue_ip_adapter(built, parts / "sd15-ip-adapter", "models", "ip-adapter_sd15.safetensors")
    for key, value in {"DEVICE": "cuda", "MODELS_DIR": str(tmp_path / "models"), "CPU_OFFLOAD": "1",
                       "ATTENTION_SLICING": "1", "VAE_TILING": "1"}.items():
        monkeypatch.setenv(f"NSTDIFF_{key}", value)
    reload_settings()
    PIPELINES.release()
    try:
        for method, options in (("diffusion-text", {"structure": "canny"}),
                                ("diffusion-reference", {"mode": "style", "structure": "canny"}),
                                ("diffusion-text", {}), ("diffusion-reference", {"mode": "full"})):
            styles = [images["red"]] if method == "diffusion-reference" else []
            result = stylize(ImageStyleRequest(method=method, content=images["content"], styles=styles,
                                               prompt="ink", size=64, steps=3, seed=0, options=options))
            assert result.image.size == (64, 53)
    finally:
        PIPELINES.release()
