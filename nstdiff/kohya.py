"""LoRAs for AUTOMATIC1111 and ComfyUI: the library's diffusers-format LoRAs written with kohya's keys and metadata."""
from __future__ import annotations

import json
from pathlib import Path

from nstdiff.imageio import atomic_write, check_writable
from nstdiff.loras import LoraInfo, get_lora, read_header
from nstdiff.models.diffusion_catalogue import load_catalogue
from nstdiff.settings import Settings


def export_kohya(name: str, destination: Path, settings: Settings | None = None) -> Path:
    """Write the LoRA with kohya keys (`lora_unet_…lora_down.weight`, `.alpha`), as AUTOMATIC1111 and ComfyUI load."""
    import torch
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
    from safetensors.torch import load_file, save

    destination = check_writable(destination, {".safetensors"})  # before anything is read or converted
    info = get_lora(name, settings)
    state = load_file(str(info.file))
    alpha, rank = lora_alpha_rank(read_header(info.file)[1])
    if any(".lora_down." in key for key in state):
        converted = state  # imported in kohya format already: its own alphas stay
    else:
        converted = convert_state_dict_to_kohya(state)
        for key in [k for k in converted if k.endswith(".alpha")]:  # diffusers writes alpha = rank, as an integer
            converted[key] = torch.tensor(alpha if alpha is not None else float(converted[key]))
    data = save({k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in converted.items()},
                metadata=kohya_metadata(info, alpha, rank or info.rank))
    return atomic_write(destination, lambda part: part.write_bytes(data))


def kohya_version(info: LoraInfo) -> str:
    """kohya's `ss_base_model_version` (sd_v1, sd_v2, sdxl_base_v1-0) from the base family, else the UNet text width
    the weights fit. AUTOMATIC1111 reads an `sdxl_` prefix as SDXL, anything else as SD 1/2, and hides LoRAs that do
    not match the loaded model."""
    family = load_catalogue().families.get(info.base or "")
    width = family.cross_attention_dim if family else info.cross_attention_dim
    if (family and family.architecture == "sdxl") or width == 2048:
        return "sdxl_base_v1-0"
    return "sd_v2" if width == 1024 else "sd_v1"


def kohya_metadata(info: LoraInfo, alpha: float | None, rank: int | None) -> dict[str, str]:
    version = kohya_version(info)
    return {"ss_base_model_version": version, "ss_v2": str(version == "sd_v2"), "ss_output_name": info.name,
            "ss_network_dim": str(rank or ""), "ss_network_alpha": str(alpha if alpha is not None else rank or ""),
            "nstdiff_base": info.base or "", "nstdiff_trigger": info.trigger or ""}


def lora_alpha_rank(header: dict[str, str]) -> tuple[float | None, int | None]:
    """lora_alpha and r from diffusers' adapter metadata (flat `unet.lora_alpha` / `unet.r` keys, or a nested
    `unet` table as older writers made), or (None, None)."""
    raw = header.get("lora_adapter_metadata") or header.get("unet_lora_adapter_metadata")
    try:
        config = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return None, None
    if not isinstance(config, dict):
        return None, None
    nested = config.get("unet") if isinstance(config.get("unet"), dict) else {}
    alpha = config.get("unet.lora_alpha", nested.get("lora_alpha", config.get("lora_alpha")))
    rank = config.get("unet.r", nested.get("r", config.get("r")))
    return (float(alpha) if isinstance(alpha, (int, float)) else None,
            int(rank) if isinstance(rank, (int, float)) else None)
