"""The tiny diffusion stand-ins load through diffusers' real loaders and behave like the models they replace.

Each folder from `tests/tiny_diffusion.py` is read back with the standard classes and generates 64×64 images in two
steps; the IP-Adapter, ControlNet and LoRA visibly change the result, and InstantStyle's per-block scales reach the
right attention layers. Also checks `configs/style_presets.toml` through the product's preset loader.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import gradient, stripes
from tests.tiny_diffusion import (
    build_tiny_controlnet,
    build_tiny_ip_adapter,
    build_tiny_lora,
    build_tiny_sd,
    build_tiny_sdxl,
)

torch.set_num_threads(1)
# diffusers' Euler scheduler builds sigmas with np.array(tensor, copy=False) under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

PROMPT = "a lighthouse on a cliff"
SIZE = 64
# InstantStyle (Wang et al. 2024): the image prompt only reaches the style block, the middle attention of up block 0.
STYLE_ONLY = {"up": {"block_0": [0.0, 1.0, 0.0]}}


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_diffusion")


@pytest.fixture(scope="session")
def sd_folder(tiny_root):
    return build_tiny_sd(tiny_root / "sd")


@pytest.fixture(scope="session")
def sdxl_folder(tiny_root):
    return build_tiny_sdxl(tiny_root / "sdxl")


@pytest.fixture(scope="session")
def sd_ip_adapter(tiny_root, sd_folder):
    return build_tiny_ip_adapter(tiny_root / "ip_sd", sd_folder)


@pytest.fixture(scope="session")
def sdxl_ip_adapter(tiny_root, sdxl_folder):
    return build_tiny_ip_adapter(tiny_root / "ip_sdxl", sdxl_folder)


@pytest.fixture
def sd_pipe(sd_folder):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(sd_folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def sdxl_pipe(sdxl_folder):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, seed: int = 0, **kwargs) -> np.ndarray:
    """Two denoising steps at 64×64 (img2img pipelines take their size from `image`)."""
    kwargs.setdefault("prompt", PROMPT)
    kwargs.setdefault("num_inference_steps", 2)
    if "strength" not in kwargs:
        kwargs.update(height=SIZE, width=SIZE)
    generator = torch.Generator().manual_seed(seed)
    return pipe(generator=generator, output_type="np", **kwargs).images[0]


def img2img(pipe, image: Image.Image, seed: int = 0, **kwargs) -> np.ndarray:
    """Strength 0.5 of a 4-step schedule = 2 steps (t = 501, 1). With 2 steps it would be t = 1 alone, a no-op."""
    return generate(pipe, seed, image=image, strength=0.5, num_inference_steps=4, **kwargs)


def photo() -> Image.Image:
    return gradient(SIZE, SIZE, (40, 80, 120), (220, 200, 160))


def style_image() -> Image.Image:
    return stripes(SIZE, SIZE, (230, 30, 20), (20, 20, 110))


def differs(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.abs(a - b).mean()) > 1e-3


def test_sd_folder_generates_txt2img_and_img2img_reproducibly(sd_pipe):
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

    assert isinstance(sd_pipe.scheduler, DDIMScheduler)
    assert sd_pipe.vae_scale_factor == 2 and sd_pipe.unet.config.sample_size * sd_pipe.vae_scale_factor == SIZE
    assert sd_pipe.safety_checker is None and sd_pipe.image_encoder is None

    image = generate(sd_pipe, seed=1)
    assert image.shape == (SIZE, SIZE, 3) and np.isfinite(image).all()
    assert np.array_equal(image, generate(sd_pipe, seed=1))
    assert differs(image, generate(sd_pipe, seed=2))

    pipe_i2i = StableDiffusionImg2ImgPipeline.from_pipe(sd_pipe)
    from_photo = img2img(pipe_i2i, photo())
    assert from_photo.shape == (SIZE, SIZE, 3)
    assert np.array_equal(from_photo, img2img(pipe_i2i, photo()))
    assert differs(from_photo, img2img(pipe_i2i, style_image()))
    assert differs(from_photo, img2img(pipe_i2i, photo(), seed=1))  # the UNet acted: noise matters


def test_sdxl_folder_generates_txt2img_reproducibly(sdxl_pipe):
    from diffusers import EulerDiscreteScheduler

    assert isinstance(sdxl_pipe.scheduler, EulerDiscreteScheduler)
    assert sdxl_pipe.vae_scale_factor == 2
    assert sdxl_pipe.tokenizer_2.pad_token == "!"
    image = generate(sdxl_pipe, seed=3)
    assert image.shape == (SIZE, SIZE, 3) and np.isfinite(image).all()
    assert np.array_equal(image, generate(sdxl_pipe, seed=3))
    assert differs(image, generate(sdxl_pipe, seed=3, prompt="a red bicycle"))


def test_builders_are_deterministic(tmp_path, sd_folder):
    again = build_tiny_sd(tmp_path / "sd")
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors", "model_index.json"):
        assert (again / part).read_bytes() == (sd_folder / part).read_bytes(), part
    other = build_tiny_sd(tmp_path / "sd_seed_1", seed=1)
    unet = "unet/diffusion_pytorch_model.safetensors"
    assert (other / unet).read_bytes() != (sd_folder / unet).read_bytes()


def test_ip_adapter_loads_into_sd_and_steers_the_image(sd_pipe, sd_ip_adapter):
    folder, weight_name, encoder_folder = sd_ip_adapter
    plain = generate(sd_pipe)
    sd_pipe.load_ip_adapter(folder, subfolder="", weight_name=weight_name, image_encoder_folder=encoder_folder)
    assert sd_pipe.image_encoder is not None
    assert sd_pipe.feature_extractor.crop_size == {"height": 32, "width": 32}  # made to fit the encoder
    sd_pipe.set_ip_adapter_scale(0.0)
    assert np.allclose(generate(sd_pipe, ip_adapter_image=style_image()), plain, atol=1e-5)
    sd_pipe.set_ip_adapter_scale(1.0)
    assert differs(generate(sd_pipe, ip_adapter_image=style_image()), plain)


def test_instantstyle_scales_reach_only_the_style_block_of_sdxl(sdxl_pipe, sdxl_ip_adapter):
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    folder, weight_name, encoder_folder = sdxl_ip_adapter
    sdxl_pipe.load_ip_adapter(folder, subfolder="", weight_name=weight_name, image_encoder_folder=encoder_folder)
    sdxl_pipe.set_ip_adapter_scale(0.0)
    without = generate(sdxl_pipe, ip_adapter_image=style_image())

    sdxl_pipe.set_ip_adapter_scale(STYLE_ONLY)
    active = {name for name, processor in sdxl_pipe.unet.attn_processors.items()
              if isinstance(processor, IPAdapterAttnProcessor2_0) and processor.scale[0] > 0}
    # Both transformer layers of up_blocks.0.attentions.1, nothing else.
    assert active == {f"up_blocks.0.attentions.1.transformer_blocks.{i}.attn2.processor" for i in (0, 1)}
    assert differs(generate(sdxl_pipe, ip_adapter_image=style_image()), without)

    sdxl_pipe.set_ip_adapter_scale({"down": {"block_2": [0.0, 1.0]}, **STYLE_ONLY})  # style + layout
    assert any(name.startswith("down_blocks.2.attentions.1") and processor.scale[0] == 1.0
               for name, processor in sdxl_pipe.unet.attn_processors.items()
               if isinstance(processor, IPAdapterAttnProcessor2_0))


def test_sd_controlnet_img2img_follows_the_control_image(tiny_root, sd_folder, sd_pipe, sd_ip_adapter):
    from diffusers import ControlNetModel, StableDiffusionControlNetImg2ImgPipeline

    controlnet = ControlNetModel.from_pretrained(build_tiny_controlnet(tiny_root / "cn_sd", sd_folder))
    pipe = StableDiffusionControlNetImg2ImgPipeline.from_pipe(sd_pipe, controlnet=controlnet)
    edges = img2img(pipe, photo(), control_image=style_image())
    assert edges.shape == (SIZE, SIZE, 3)
    assert differs(edges, img2img(pipe, photo(), control_image=photo()))

    # An IP-Adapter loaded afterwards on the ControlNet pipeline works alongside the control image.
    folder, weight_name, encoder_folder = sd_ip_adapter
    pipe.load_ip_adapter(folder, subfolder="", weight_name=weight_name, image_encoder_folder=encoder_folder)
    styled = img2img(pipe, photo(), control_image=style_image(), ip_adapter_image=style_image())
    assert differs(styled, edges)


def test_sdxl_controlnet_follows_the_control_image(tiny_root, sdxl_folder, sdxl_pipe):
    from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

    controlnet = ControlNetModel.from_pretrained(build_tiny_controlnet(tiny_root / "cn_sdxl", sdxl_folder))
    pipe = StableDiffusionXLControlNetPipeline.from_pipe(sdxl_pipe, controlnet=controlnet)
    first = generate(pipe, image=style_image())
    assert first.shape == (SIZE, SIZE, 3)
    assert differs(first, generate(pipe, image=photo()))


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_lora_loads_changes_the_image_and_unloads(request, tiny_root, family):
    pipe = request.getfixturevalue(f"{family}_pipe")
    pipeline_folder = request.getfixturevalue(f"{family}_folder")
    folder = build_tiny_lora(tiny_root / f"lora_{family}", pipeline_folder, weight_name="style.safetensors")
    plain = generate(pipe)
    pipe.load_lora_weights(folder, weight_name="style.safetensors", adapter_name="style")
    assert pipe.get_active_adapters() == ["style"]
    with_lora = generate(pipe)
    assert differs(with_lora, plain)
    pipe.set_adapters(["style"], adapter_weights=[0.5])
    half = generate(pipe)
    assert differs(half, plain) and differs(half, with_lora)
    pipe.unload_lora_weights()
    assert np.allclose(generate(pipe), plain, atol=1e-6)


def test_style_presets_file_loads_with_distinct_templates():
    from nstdiff.diffusion.presets import load_presets

    presets = load_presets()  # validates names, one {subject} per prompt, strength in [0, 1]
    assert len(presets) >= 36
    assert len({preset.prompt for preset in presets.values()}) == len(presets)
    for preset in presets.values():
        assert 0.3 <= preset.strength <= 0.85, preset.name
        assert preset.title and preset.negative and preset.tags, preset.name
        assert preset.render("a red bicycle").startswith("a red bicycle, "), preset.name
