"""Tiny, randomly initialised diffusion models saved in the folder layouts of the real hub repos.

No model weights can be downloaded in tests, so these builders stand in for the real checkpoints the product loads:
SD 1.5 (`stable-diffusion-v1-5`), SDXL base, `h94/IP-Adapter`, a ControlNet and a LoRA (LCM-LoRA or a user's).
Each builder writes a folder that diffusers' ordinary loaders read back unchanged (`Pipeline.from_pretrained`,
`load_ip_adapter(folder, subfolder="", weight_name=..., image_encoder_folder=...)`, `ControlNetModel.from_pretrained`,
`load_lora_weights(folder, weight_name=...)`), so a test covers the product's real loading code. Weights are random
but seeded (same seed → byte-identical files); images are 64×64, and generating one takes a fraction of a second.
Random weights mean the images are noise-like: test that inputs change outputs, not what the outputs look like.

Shapes: a 2-block VAE (`vae_scale_factor` = 2), so a 64 px image is a 32×32 latent = the UNets' `sample_size`.

Traps met building these (diffusers 0.42, transformers 5):
- The CLIP tokenizer is built from a byte-level vocabulary (256 byte characters, the same with `</w>`, then
  `<|startoftext|>`, `<|endoftext|>`) and no merges; `CLIPTokenizer(vocab=dict, merges=[])` takes it in memory
  (`vocab_file=` is silently ignored). The text encoders' `vocab_size`, bos/eos/pad ids come from that tokenizer.
- ControlNet's conditioning embedding downsamples the control image `len(conditioning_embedding_out_channels) - 1`
  times; the default (16, 32, 96, 256) assumes the real VAE's factor 8. With the tiny factor-2 VAE it must be
  (16, 32), otherwise the control features and the latents differ in size.
- InstantStyle's `set_ip_adapter_scale({"up": {"block_0": [0, 1, 0]}})` needs `layers_per_block=2` (3 attentions
  per up block), a cross-attention mid block (the scale dict always names `mid`), and attentions in `down_blocks.2` and
  `up_blocks.0`, as in SDXL.
- `h94/IP-Adapter` keys: `image_proj.proj.{weight,bias}` (4 image tokens × cross_attention_dim, image embed dim),
  `image_proj.norm.{weight,bias}`, and `ip_adapter.{k}.to_k_ip.weight` / `to_v_ip.weight` (hidden, cross_attention_dim)
  with k = 1, 3, 5, … counting the UNet's cross-attention processors in `unet.attn_processors` order.
- A fresh peft LoRA has `lora_B = 0` (no effect); `init_lora_weights=False` keeps both factors random.
- Using them: img2img with 2 steps and strength < 1 runs only t = 1 (DDIM "leading" timesteps 501, 1), so the UNet —
  and any IP-Adapter, ControlNet or LoRA — barely touches the image; use e.g. 4 steps at strength 0.5. The random
  VAE does not reconstruct its input either.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

CLIP_MAX_LENGTH = 77
# SD 1.5 and SDXL share the training noise schedule (their scheduler_config.json values).
SD_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}
IP_ADAPTER_WEIGHT_NAME = "ip-adapter.safetensors"
IMAGE_ENCODER_SUBFOLDER = "image_encoder"
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def _clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """A working CLIP tokenizer with no merges: every byte is one token (words fall apart into letters)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    characters = sorted(ByteLevel.alphabet())
    vocab = {character: index for index, character in enumerate(characters)}
    vocab.update({character + "</w>": index + len(characters) for index, character in enumerate(characters)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], pad_token=pad_token, model_max_length=CLIP_MAX_LENGTH)


def _save_tokenizer(tokenizer, folder: Path) -> None:
    """`save_pretrained` plus the `vocab.json`/`merges.txt` pair that hub CLIP tokenizer folders carry."""
    tokenizer.save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps(tokenizer.get_vocab(), ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def _clip_text_config(tokenizer, hidden_size: int, layers: int = 2, projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden_size // 16),
        max_position_embeddings=CLIP_MAX_LENGTH,
        projection_dim=projection_dim or hidden_size,
        hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _tiny_vae(seed: int, scaling_factor: float):
    """Two down blocks: `pipe.vae_scale_factor` = 2**(2-1) = 2, so 64 px images ↔ 32×32 latents."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        sample_size=64,
        scaling_factor=scaling_factor,
    )


def _drop_absent_components(folder: Path, names: tuple[str, ...]) -> None:
    """Hub SD 1.5 / SDXL repos list no `image_encoder`; diffusers would write `[null, null]` for it."""
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    for name in names:
        index.pop(name, None)
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _sd_pipeline_folder(folder: Path, seed: int, block_out_channels, layers_per_block: int, attention_heads,
                        text_hidden: int, text_layers: int,
                        down_blocks=("CrossAttnDownBlock2D", "DownBlock2D"),
                        up_blocks=("UpBlock2D", "CrossAttnUpBlock2D")) -> Path:
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = Path(folder)
    tokenizer = _clip_tokenizer()
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_clip_text_config(tokenizer, text_hidden, text_layers))
    torch.manual_seed(seed + 1)
    # SD 1.5's block pattern (cross-attention down blocks, plain last one), by default cut to two blocks.
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=down_blocks,
        up_block_types=up_blocks,
        block_out_channels=block_out_channels,
        layers_per_block=layers_per_block,
        attention_head_dim=attention_heads,
        cross_attention_dim=text_hidden,
    )
    pipe = StableDiffusionPipeline(
        vae=_tiny_vae(seed + 2, scaling_factor=0.18215),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**SD_SCHEDULE),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    _save_tokenizer(tokenizer, folder / "tokenizer")
    _drop_absent_components(folder, ("image_encoder",))
    return folder


def build_tiny_sd(folder: Path, seed: int = 0) -> Path:
    """An SD-1.5-shaped `StableDiffusionPipeline` folder (unet, vae, text_encoder, tokenizer, DDIM scheduler).

    UNet (32, 64) channels, 2 layers per block, cross_attention_dim 32 = CLIP text hidden size, sample_size 32.
    safety_checker and feature_extractor are null; there is no image_encoder (as on the hub).
    """
    return _sd_pipeline_folder(folder, seed, block_out_channels=(32, 64), layers_per_block=2, attention_heads=(2, 4),
                               text_hidden=32, text_layers=2)


def build_tiny_sd15_blocks(folder: Path, seed: int = 0) -> Path:
    """`build_tiny_sd` with SD 1.5's whole block layout: three cross-attention down blocks and a plain one, mirrored
    up, 2 layers per block (so 2 transformers per down block, 3 per up block, 1 in the mid block), at 32 channels:
    the block names (`down_blocks.2`, `mid_block`, `up_blocks.1`) that InstantStyle's SD 1.5 maps address."""
    return _sd_pipeline_folder(folder, seed, block_out_channels=(32, 32, 32, 32), layers_per_block=2,
                               attention_heads=8, text_hidden=32, text_layers=2,
                               down_blocks=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                               up_blocks=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


def build_tiny_wide_unet_sd(folder: Path, width: int = 320, seed: int = 0) -> Path:
    """`build_tiny_sd` with a real-width UNet ((width, 2*width), 2 layers per block, 768-d text) for GPU timings."""
    return _sd_pipeline_folder(folder, seed, block_out_channels=(width, 2 * width), layers_per_block=2,
                               attention_heads=(8, 8), text_hidden=768, text_layers=2)


def build_tiny_sdxl(folder: Path, seed: int = 0) -> Path:
    """An SDXL-shaped `StableDiffusionXLPipeline` folder (two text encoders and tokenizers, Euler scheduler).

    UNet blocks as SDXL: down (plain, cross-attn, cross-attn), up (cross-attn, cross-attn, plain), channels
    (32, 64, 64), `transformer_layers_per_block=(1, 1, 2)`, 2 layers per block, cross_attention_dim 64 = 32 + 32 (the
    two encoders' hidden states are concatenated), `addition_embed_type="text_time"` with
    `projection_class_embeddings_input_dim` = 6 time ids × 8 + 32 (text_encoder_2's pooled projection).
    """
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    folder = Path(folder)
    tokenizer = _clip_tokenizer()
    tokenizer_2 = _clip_tokenizer(pad_token="!")  # SDXL's second tokenizer pads with "!"
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_clip_text_config(tokenizer, 32))
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(tokenizer_2, 32, projection_dim=32))
    addition_time_embed_dim = 8
    torch.manual_seed(seed + 2)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        transformer_layers_per_block=(1, 1, 2),
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        cross_attention_dim=64,
        addition_embed_type="text_time",
        addition_time_embed_dim=addition_time_embed_dim,
        projection_class_embeddings_input_dim=6 * addition_time_embed_dim + 32,
    )
    scheduler = EulerDiscreteScheduler(
        **{key: value for key, value in SD_SCHEDULE.items() if key not in ("clip_sample", "set_alpha_to_one")},
        timestep_spacing="leading",
        interpolation_type="linear",
        use_karras_sigmas=False,
    )
    pipe = StableDiffusionXLPipeline(
        vae=_tiny_vae(seed + 3, scaling_factor=0.13025),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )
    pipe.save_pretrained(folder)
    _save_tokenizer(tokenizer, folder / "tokenizer")
    _save_tokenizer(tokenizer_2, folder / "tokenizer_2")
    _drop_absent_components(folder, ("image_encoder", "feature_extractor"))
    return folder


def _load_unet(pipeline_folder: Path):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(Path(pipeline_folder) / "unet")


def build_tiny_ip_adapter(folder: Path, pipeline_folder: Path, seed: int = 0) -> tuple[Path, str, str]:
    """An IP-Adapter for that pipeline's UNet, laid out like `h94/IP-Adapter`'s `models/` folder.

    Writes `ip-adapter.safetensors` (plain IP-Adapter: 4 image tokens) and `image_encoder/` (a tiny
    `CLIPVisionModelWithProjection`, 32 px, projection 32). No image processor config: `load_ip_adapter` creates a
    `CLIPImageProcessor` sized to the encoder when the pipeline has no feature_extractor. Returns
    (folder, weight_name, image_encoder_subfolder) for `load_ip_adapter(folder, subfolder="", weight_name=...,
    image_encoder_folder=...)`.
    """
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    unet = _load_unet(pipeline_folder)
    cross_attention_dim = unet.config.cross_attention_dim
    image_embed_dim = 32
    torch.manual_seed(seed)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=32, patch_size=4, projection_dim=image_embed_dim, hidden_act="quick_gelu",
    ))
    encoder.save_pretrained(folder / IMAGE_ENCODER_SUBFOLDER)

    generator = torch.Generator().manual_seed(seed + 1)

    def linear_weight(out_features: int, in_features: int) -> torch.Tensor:
        # nn.Linear's default scale, drawn from a seeded generator.
        return (torch.rand(out_features, in_features, generator=generator) * 2 - 1) / in_features ** 0.5

    num_image_tokens = 4
    tensors = {
        "image_proj.proj.weight": linear_weight(num_image_tokens * cross_attention_dim, image_embed_dim),
        "image_proj.proj.bias": torch.zeros(num_image_tokens * cross_attention_dim),
        "image_proj.norm.weight": torch.ones(cross_attention_dim),
        "image_proj.norm.bias": torch.zeros(cross_attention_dim),
    }
    # Same walk and hidden sizes as diffusers' `_convert_ip_adapter_attn_to_diffusers`.
    reversed_channels = list(reversed(unet.config.block_out_channels))
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden_size = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden_size = reversed_channels[int(name.split(".")[1])]
        else:
            hidden_size = unet.config.block_out_channels[int(name.split(".")[1])]
        tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = linear_weight(hidden_size, cross_attention_dim)
        tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = linear_weight(hidden_size, cross_attention_dim)
        key_id += 2
    save_file(tensors, folder / IP_ADAPTER_WEIGHT_NAME)
    return folder, IP_ADAPTER_WEIGHT_NAME, IMAGE_ENCODER_SUBFOLDER


def build_tiny_controlnet(folder: Path, pipeline_folder: Path, seed: int = 0) -> Path:
    """`ControlNetModel.from_unet` of that pipeline's UNet (SD or SDXL), saved with `save_pretrained`.

    The conditioning embedding has channels (16, 32): one stride-2 step, matching the tiny VAE's factor 2.
    Random where a trained ControlNet is trained, so the control image visibly changes the result: the zero
    convolutions get PyTorch's default init (zeros would be a no-op), the hint encoder Kaiming-normal weights.
    """
    from diffusers import ControlNetModel

    folder = Path(folder)
    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(_load_unet(pipeline_folder), conditioning_embedding_out_channels=(16, 32))
    for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
        conv.reset_parameters()
    # Default-initialised, the 3-conv SiLU hint encoder shrinks the control image ~100× against the latent features.
    for module in controlnet.controlnet_cond_embedding.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
    controlnet.save_pretrained(folder)
    return folder


def build_tiny_lora(folder: Path, pipeline_folder: Path, rank: int = 4, seed: int = 0,
                    weight_name: str = "pytorch_lora_weights.safetensors", alpha: float | None = None) -> Path:
    """A random (non-zero) peft LoRA on the UNet's `to_q, to_k, to_v, to_out.0`, in diffusers' LoRA file format.

    Saved with the pipeline class's own `save_lora_weights` (keys `unet.….lora_A/B.weight`, plus the adapter
    metadata), so `load_lora_weights(folder, weight_name=...)` reads it like LCM-LoRA or a user's LoRA.
    """
    import diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    folder = Path(folder)
    model_index = json.loads((Path(pipeline_folder) / "model_index.json").read_text())
    pipeline_class = getattr(diffusers, model_index["_class_name"])
    unet = _load_unet(pipeline_folder)
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=LORA_TARGETS, init_lora_weights=False)
    torch.manual_seed(seed)
    unet.add_adapter(config)
    pipeline_class.save_lora_weights(
        folder,
        unet_lora_layers=get_peft_model_state_dict(unet),
        weight_name=weight_name,
        unet_lora_adapter_metadata=config.to_dict(),
    )
    return folder


def build_tiny_depth_estimator(folder: Path, seed: int = 0) -> Path:
    """A tiny Depth Anything V2 estimator (the layout of `depth-anything/Depth-Anything-V2-Small-hf`: config.json,
    model.safetensors, preprocessor_config.json; a DINOv2 backbone and DPT head) that transformers'
    `pipeline("depth-estimation", model=folder)` loads."""
    from transformers import (DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config,
                              DPTImageProcessor)

    torch.manual_seed(seed)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
                            image_size=28, patch_size=14, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
                                 head_hidden_size=8, reassemble_hidden_size=32, patch_size=14)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=False, do_pad=False).save_pretrained(folder)
    return Path(folder)


def build_tiny_captioner(folder: Path, seed: int = 0) -> Path:
    """A tiny BLIP captioner (the layout of `Salesforce/blip-image-captioning-base`: config, safetensors weights,
    processor with a BERT word-piece vocabulary) that `BlipForConditionalGeneration.generate` runs."""
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor, BlipTextConfig, BlipVisionConfig)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "picture", "of", "red", "stripes", "sky"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"))
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    torch.manual_seed(seed)
    text = BlipTextConfig(vocab_size=len(words), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                          num_attention_heads=2, encoder_hidden_size=32, bos_token_id=5, pad_token_id=0,
                          sep_token_id=3, max_position_embeddings=64)
    vision = BlipVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8)
    BlipForConditionalGeneration(BlipConfig(text_config=text.to_dict(), vision_config=vision.to_dict())) \
        .save_pretrained(folder)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer) \
        .save_pretrained(folder)
    return folder


def as_catalogue_ip_adapter(built: Path, target: Path, subfolder: str, weight_name: str) -> None:
    """Lay a tiny IP-Adapter out like h94/IP-Adapter: <subfolder>/<weight_name> and <subfolder>/image_encoder."""
    (target / subfolder).mkdir(parents=True)
    shutil.move(built / "ip-adapter.safetensors", target / subfolder / weight_name)
    shutil.move(built / "image_encoder", target / subfolder / "image_encoder")
