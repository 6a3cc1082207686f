"""The personal style library: LoRAs trained here (`nstdiff lora train`) or imported, listed, renamed, deleted and
exported in kohya format for AUTOMATIC1111 / ComfyUI users.

Layout: `<models_dir>/loras/<name>/<name>.safetensors` (diffusers/peft keys, or kohya keys for an imported file),
`lora.json` (base family, trigger, rank, steps, dataset size, created, source) and `samples/*.png` from training.
The folders are the truth; the SQLite store (the same one as the history) keeps an index of them for listing.
Only safetensors files are ever read: a pickle is refused before it is opened.
"""
from __future__ import annotations

import difflib
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from nstdiff.errors import InputError, ModelFileError
from nstdiff.settings import Settings, get_settings
from nstdiff.training.lora_data import LORAS_FOLDER, check_lora_name, newest_sample, own_metadata

PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"}


class LoraInfo(BaseModel):
    name: str
    file: Path
    base: str | None = None
    trigger: str | None = None
    rank: int | None = None
    steps: int | None = None
    dataset_size: int | None = None
    created: str | None = None
    source: str = "trained"
    cross_attention_dim: int | None = Field(None, description="From the weights: which UNet width it fits.")
    sample: Path | None = None

    @property
    def folder(self) -> Path:
        return self.file.parent


def library_root(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).models_path / LORAS_FOLDER


def read_header(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensor shapes by key, metadata) of a safetensors file, without loading tensors; a pickle is refused."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelFileError(f"'{path.name}' is a pickle checkpoint, which can run code when opened; nstdiff only "
                             "reads .safetensors LoRAs. Convert it with a tool you trust first.")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            shapes = {key: handle.get_slice(key).get_shape() for key in handle.keys()}
    except Exception as exc:
        raise ModelFileError(f"'{path}' is not a readable safetensors file ({exc})") from None
    if not shapes:
        raise ModelFileError(f"'{path}' holds no tensors")
    return shapes, metadata


def cross_attention_dim(shapes: dict[str, Any]) -> int | None:
    """The UNet cross-attention width a LoRA was made for, from its attn2 key projection's input size."""
    for key, shape in shapes.items():
        if re.search(r"attn2[._]to_k.*(lora_A|lora_down)\.weight$", key):
            return int(shape[1])
    return None


def _info(folder: Path) -> LoraInfo | None:
    meta_path = folder / "lora.json"
    file = folder / f"{folder.name}.safetensors"
    if not file.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        shapes, header = read_header(file)
    except (json.JSONDecodeError, ModelFileError):
        return None  # a damaged entry is left out of the list, never deleted
    # our own metadata: lora.json, else the header's `nstdiff.` keys (other tools' header keys are not ours to trust)
    merged = {**own_metadata(header), **meta}
    known = {k: merged.get(k) for k in ("base", "trigger", "rank", "steps", "dataset_size", "created", "source")
             if merged.get(k) is not None}
    try:
        return LoraInfo(name=folder.name, file=file, cross_attention_dim=cross_attention_dim(shapes),
                        sample=newest_sample(folder), **known)
    except ValidationError:
        return None  # metadata we cannot read: left out of the list like a damaged file


def list_loras(settings: Settings | None = None) -> list[LoraInfo]:
    """Every LoRA in the library, newest first; the store's index is brought up to date on the way."""
    settings = settings or get_settings()
    root = library_root(settings)
    infos = [info for folder in sorted(root.iterdir()) if folder.is_dir() and (info := _info(folder))] \
        if root.is_dir() else []
    from nstdiff.store import Store

    Store(settings.outputs_dir).index_loras([info.model_dump(mode="json") for info in infos])
    return sorted(infos, key=lambda info: info.created or "", reverse=True)


def get_lora(name: str, settings: Settings | None = None) -> LoraInfo:
    infos = {info.name: info for info in list_loras(settings)}
    if name not in infos:
        close = difflib.get_close_matches(name, infos, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else (
            f"; the library has {', '.join(infos)}" if infos else "; the library is empty (train or import one)")
        raise InputError(f"no LoRA named '{name}'{hint}")
    return infos[name]


def rename_lora(old: str, new: str, settings: Settings | None = None) -> LoraInfo:
    settings = settings or get_settings()
    info = get_lora(old, settings)
    target = library_root(settings) / check_lora_name(new)
    if target.exists():
        raise InputError(f"a LoRA named '{new}' already exists; delete or rename it first")
    info.folder.rename(target)
    (target / f"{old}.safetensors").rename(target / f"{new}.safetensors")
    meta_path = target / "lora.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        meta["name"] = new
        meta_path.write_text(json.dumps(meta, indent=2))
    return get_lora(new, settings)


def delete_lora(name: str, settings: Settings | None = None) -> None:
    info = get_lora(name, settings)
    shutil.rmtree(info.folder)
    list_loras(settings)  # drops it from the index


def export_kohya(name: str, destination: Path, settings: Settings | None = None) -> Path:
    """Write the LoRA with kohya keys (`lora_unet_…lora_down.weight`, `.alpha`), as AUTOMATIC1111 and ComfyUI load."""
    import torch
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
    from safetensors.torch import load_file, save_file

    info = get_lora(name, settings)
    state = load_file(str(info.file))
    if any(".lora_down." in key for key in state):
        converted = state  # imported in kohya format already
    else:
        _, header = read_header(info.file)
        scale = _alpha_scale(header)
        peft_state = {key: value * scale if ".lora_B." in key else value for key, value in state.items()}
        converted = convert_state_dict_to_kohya(peft_state)
    destination = Path(destination)
    if destination.suffix != ".safetensors":
        raise InputError("export a LoRA to a .safetensors file")
    metadata = {"ss_base_model_version": info.base or "", "ss_output_name": info.name,
                "nstdiff_trigger": info.trigger or ""}
    save_file({k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in converted.items()},
              str(destination), metadata=metadata)
    return destination


def _alpha_scale(header: dict[str, str]) -> float:
    """lora_alpha / r from diffusers' adapter metadata: kohya's alpha = rank means scale 1, so fold the rest in."""
    raw = header.get("lora_adapter_metadata") or header.get("unet_lora_adapter_metadata")
    if not raw:
        return 1.0
    config = json.loads(raw)
    config = config.get("unet", config) if isinstance(config, dict) else {}
    alpha, rank = config.get("lora_alpha"), config.get("r")
    return float(alpha) / float(rank) if alpha and rank else 1.0


def import_lora(file: Path, name: str, base: str, trigger: str | None = None,
                settings: Settings | None = None) -> LoraInfo:
    """Copy a safetensors LoRA (diffusers or kohya keys) into the library, after checking it fits `base`."""
    settings = settings or get_settings()
    check_lora_name(name)
    file = Path(file)
    if not file.is_file():
        raise InputError(f"no such file: {file}")
    shapes, _ = read_header(file)
    width = cross_attention_dim(shapes)
    if width is None:
        raise ModelFileError(f"'{file.name}' has no UNet attention LoRA weights nstdiff can use")
    expected = base_cross_attention_dim(base, settings)
    if width != expected:
        raise InputError(f"'{file.name}' was made for a UNet with cross-attention width {width}, but {base} has "
                         f"{expected}: it belongs to another model family. Pick the right --base.")
    folder = library_root(settings) / name
    if folder.exists():
        raise InputError(f"a LoRA named '{name}' already exists; choose another name")
    folder.mkdir(parents=True)
    shutil.copyfile(file, folder / f"{name}.safetensors")
    meta = {"name": name, "base": base, "trigger": trigger, "source": f"imported from {file.name}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (folder / "lora.json").write_text(json.dumps(meta, indent=2))
    return get_lora(name, settings)


def base_cross_attention_dim(base: str, settings: Settings | None = None) -> int:
    """The base model's UNet cross-attention width: from its config on disk, else from the catalogue."""
    from nstdiff.diffusion.catalogue import load_catalogue
    from nstdiff.diffusion.hub import resolve_repo
    from nstdiff.errors import ModelNotFoundError

    settings = settings or get_settings()
    try:
        folder = resolve_repo(base, settings.model_copy(update={"allow_downloads": False}))
        return int(json.loads((folder / "unet" / "config.json").read_text())["cross_attention_dim"])
    except (ModelNotFoundError, FileNotFoundError, KeyError, json.JSONDecodeError):
        return load_catalogue().family(base).cross_attention_dim
