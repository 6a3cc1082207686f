"""Memory switches and the pipeline cache on the tiny pipelines: what broke on real GPUs (issue: attention slicing
with an IP-Adapter, offload before the adapter, a cache that never let go, an image encoder read again per job)."""
from __future__ import annotations

import pytest
from PIL import Image

from nstdiff import ImageStyleRequest, stylize
from nstdiff.settings import reload_settings
from tests.test_diffusion import text_request


def reference_request(images, **options) -> ImageStyleRequest:
    return ImageStyleRequest(method="diffusion-reference", content=images["content"], styles=[images["red"]],
                             size=64, steps=2, seed=0, options={"mode": "style", **options})


@pytest.fixture
def fresh_pipelines():
    from nstdiff.diffusion.pipelines import PIPELINES

    PIPELINES.release()
    yield PIPELINES
    PIPELINES.release()


def test_attention_slicing_never_breaks_the_ip_adapter(models, images, fresh_pipelines, monkeypatch):
    monkeypatch.setenv("NSTDIFF_ATTENTION_SLICING", "1")
    reload_settings()
    sliced_text = stylize(text_request(images, steps=2))  # slices the shared UNet's attention
    reference = stylize(reference_request(images))  # loads the IP-Adapter into that UNet
    assert any("attention slicing is off while an IP-Adapter is loaded" in note for note in reference.notes)
    again = stylize(text_request(images, steps=2))  # and unloads it again
    assert again.image.tobytes() == sliced_text.image.tobytes()


def test_offload_is_set_on_each_runs_pipeline_after_its_adapters(models, images, fresh_pipelines, monkeypatch):
    from diffusers import DiffusionPipeline

    from nstdiff.diffusion import pipelines, structure

    calls = []

    def record(pipe, device=None, gpu_id=None):
        calls.append((type(pipe).__name__, pipe.unet.encoder_hid_proj is not None, "controlnet" in pipe.components))

    monkeypatch.setattr(pipelines, "offloads", lambda settings, device: True)  # CUDA offload, recorded on the CPU
    monkeypatch.setattr(structure, "offloads", lambda settings, device: True)
    monkeypatch.setattr(DiffusionPipeline, "enable_model_cpu_offload", record)
    stylize(reference_request(images, structure="canny"))
    stylize(text_request(images, steps=2))
    # once per run, on the variant that runs (ControlNet img2img), with the IP-Adapter already in the UNet
    assert calls == [("StableDiffusionControlNetImg2ImgPipeline", True, True),
                     ("StableDiffusionImg2ImgPipeline", False, False)]


def test_alternating_text_and_reference_reads_the_image_encoder_once(models, images, fresh_pipelines, monkeypatch):
    from transformers import CLIPVisionModelWithProjection

    loads = []
    original = CLIPVisionModelWithProjection.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(CLIPVisionModelWithProjection, "from_pretrained", classmethod(counting))
    first = stylize(reference_request(images))
    stylize(text_request(images, steps=2))
    second = stylize(reference_request(images))
    assert len(loads) == 1
    assert first.image.tobytes() == second.image.tobytes()  # the kept encoder is the same encoder


def test_the_cache_drops_the_least_recently_used_model_past_its_budget(models, images, fresh_pipelines,
                                                                       monkeypatch):
    monkeypatch.setenv("NSTDIFF_DIFFUSION_MEMORY_GB", "0.000001")  # room for one tiny model at a time
    reload_settings()
    stylize(text_request(images, steps=2))
    events = []
    stylize(text_request(images, steps=2, options={"model": "sdxl"}), progress=events.append)
    assert [m.label for m in fresh_pipelines.loaded()] == ["sdxl"]
    assert any("unloaded sd15 to stay within the diffusion memory budget" in e.message for e in events)
    assert all(m.nbytes > 0 for m in fresh_pipelines.loaded())
    monkeypatch.setenv("NSTDIFF_DIFFUSION_MEMORY_GB", "100")
    reload_settings()
    stylize(text_request(images, steps=2))
    assert [m.label for m in fresh_pipelines.loaded()] == ["sdxl", "sd15"]  # least recently used first
    assert isinstance(stylize(text_request(images, steps=2, options={"model": "sdxl"})).image, Image.Image)
    assert [m.label for m in fresh_pipelines.loaded()] == ["sd15", "sdxl"]


def test_the_models_tab_shows_what_each_loaded_model_holds(models, images, fresh_pipelines):
    from ui.app import App

    app = App()
    assert all(row[2] == "" for row in app.models_table())  # nothing loaded yet
    stylize(text_request(images, steps=2))
    rows = {row[0]: row for row in app.models_table()}
    assert rows["sd15"][2].endswith(" GB on cpu") and float(rows["sd15"][2].split()[0]) > 0
    assert rows["sdxl"][2] == ""


def test_sdxl_in_fp16_decodes_with_the_fp16_safe_vae_when_it_is_on_disk(models, images, fresh_pipelines,
                                                                         monkeypatch):
    import torch

    from nstdiff.settings import get_settings
    from tests.tiny_diffusion import _tiny_vae

    monkeypatch.setenv("NSTDIFF_DIFFUSION_DTYPE", "fp16")
    reload_settings()
    events = []
    without = stylize(text_request(images, steps=2, options={"model": "sdxl"}), progress=events.append)
    assert any("sdxl-vae-fp16 is not on disk: the VAE decodes in fp32" in e.message for e in events)
    fresh_pipelines.release()
    fixed_vae = _tiny_vae(seed=42, scaling_factor=0.13025)
    fixed_vae.save_pretrained(models / "diffusion" / "sdxl-vae-fp16")
    try:
        with_fix = stylize(text_request(images, steps=2, options={"model": "sdxl"}))
        vae = fresh_pipelines.get("sdxl", torch.device("cpu"), get_settings(), print).pipeline.vae
        assert vae.dtype == torch.float16
        assert torch.equal(vae.decoder.conv_out.weight.float(), fixed_vae.decoder.conv_out.weight.half().float())
        assert with_fix.image.tobytes() != without.image.tobytes()
    finally:
        import shutil

        shutil.rmtree(models / "diffusion" / "sdxl-vae-fp16")
