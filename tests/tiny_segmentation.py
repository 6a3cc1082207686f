"""A tiny random CLIPSeg in the layout of `CIDAS/clipseg-rd64-refined` (config.json, model.safetensors,
preprocessor_config.json, tokenizer files; the refined two-stage transposed-convolution head), saved with
`save_pretrained(safe_serialization=True)` so nstdiff loads it through its real loading code."""
from __future__ import annotations

from pathlib import Path

import torch

from tests.tiny_diffusion import _clip_text_config, _clip_tokenizer, _save_tokenizer

TINY_IMAGE = 32  # the processor's square input; the refined head upsamples the 4×4 patch grid ×16 to 64² logits


def build_tiny_clipseg(folder: Path, seed: int = 0) -> Path:
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPVisionConfig, ViTImageProcessor

    folder = Path(folder)
    tokenizer = _clip_tokenizer()
    text = _clip_text_config(tokenizer, hidden_size=32, projection_dim=16)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                              image_size=TINY_IMAGE, patch_size=8, projection_dim=16)
    config = CLIPSegConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16,
                           extract_layers=[0, 1, 2], reduce_dim=16, decoder_num_attention_heads=2,
                           decoder_intermediate_size=32, use_complex_transposed_convolution=True)
    torch.manual_seed(seed)
    CLIPSegForImageSegmentation(config).save_pretrained(folder, safe_serialization=True)
    image_processor = ViTImageProcessor(size={"height": TINY_IMAGE, "width": TINY_IMAGE},
                                        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    image_processor.save_pretrained(folder)  # preprocessor_config.json, as the real repository has (not a processor
    _save_tokenizer(tokenizer, folder)  # config.json of transformers 5): CLIPSegProcessor assembles the two on load
    return folder


def real_clipseg_config():
    """The configuration of CIDAS/clipseg-rd64-refined (tests/data/hf_repos.json): real sizes, for timing."""
    from transformers import CLIPSegConfig, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                          max_position_embeddings=77, vocab_size=49408, projection_dim=512)
    vision = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              image_size=224, patch_size=16, projection_dim=512)
    return CLIPSegConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=512,
                         extract_layers=[3, 6, 9], reduce_dim=64, decoder_num_attention_heads=4,
                         decoder_intermediate_size=2048, use_complex_transposed_convolution=True)
