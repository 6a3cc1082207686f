"""The personal style library: LoRAs trained here (`nstdiff lora train`) or imported, listed, renamed, deleted and
exported in kohya format for AUTOMATIC1111 / ComfyUI users.

Layout: `<models_dir>/loras/<name>/<name>.safetensors` (diffusers/peft keys, or kohya keys for an imported file),
`lora.json` (base family, trigger, rank, steps, dataset size, created, source) and `samples/*.png` from training.
The folders are the truth; the SQLite store (the same one as the history) keeps an index of the usable ones.
Only safetensors files are ever read: a pickle is refused before it is opened. A file is checked whole before it is
imported; an entry that is damaged anyway (edited, half-copied) is listed as such, and can be renamed or deleted.
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

from nstdiff.errors import InputError, ModelFileError, format_validation_error
from nstdiff.models.diffusion_catalogue import load_catalogue
from nstdiff.settings import Settings, get_settings

LORAS_FOLDER = "loras"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # the library's names: also the LoRA's adapter name in the UNet
PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"}
LAYER_PAIRS = (("lora_A", "lora_B"), ("lora_down", "lora_up"))  # (down, up) key names: peft/diffusers, kohya


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
    damaged: str | None = Field(None, description="Why the entry cannot be used; None when it can.")

    @property
    def folder(self) -> Path:
        return self.file.parent


def library_root(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).models_path / LORAS_FOLDER


def check_lora_name(name: str) -> str:
    if not re.fullmatch(NAME_PATTERN, name or ""):  # fullmatch: `$` alone lets "name\n" through
        raise InputError(f"{name!r} is not a usable LoRA name: use 1–64 lower-case letters, digits, '-' or '_', "
                         "starting with a letter or digit")
    return name


def lora_folder(name: str, settings: Settings | None = None) -> Path:
    return library_root(settings) / check_lora_name(name)


def read_header(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensor shapes by key, metadata) of a safetensors file, without loading tensors; a pickle is refused. Its
    messages name the file only (no folder: library paths are not the app user's business)."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelFileError(f"'{path.name}' is a pickle checkpoint, which can run code when opened; nstdiff only "
                             "reads .safetensors LoRAs. Convert it with a tool you trust first.")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            slices = {key: handle.get_slice(key) for key in handle.keys()}
            shapes = {key: part.get_shape() for key, part in slices.items()}
            dtypes = {key: part.get_dtype() for key, part in slices.items()}
    except Exception as exc:
        raise ModelFileError(f"'{path.name}' is not a readable safetensors file ({exc})") from None
    if not shapes:
        raise ModelFileError(f"'{path.name}' holds no tensors")
    _check_layers(path, shapes, dtypes)
    return shapes, metadata


def read_lora_metadata(path: Path) -> dict[str, str]:
    """The `nstdiff.*` metadata of a LoRA file's safetensors header, without the prefix (empty for other LoRAs)."""
    return own_metadata(read_header(path)[1])


def own_metadata(header: dict[str, str]) -> dict[str, str]:
    """nstdiff's keys of a safetensors header (`nstdiff.*`), without the prefix; other tools' keys are left out."""
    return {key.removeprefix("nstdiff."): value for key, value in header.items() if key.startswith("nstdiff.")}


def newest_sample(folder: Path) -> Path | None:
    """The last sample image a training run of this LoRA folder wrote, if any."""
    samples = sorted((Path(folder) / "samples").glob("*.png"))
    return samples[-1] if samples else None


def _check_layers(path: Path, shapes: dict[str, Any], dtypes: dict[str, str]) -> None:
    """Every low-rank layer a (down, up) pair of floating-point matrices with one rank: what a LoRA loader
    multiplies, so a file that passes cannot crash the library or the UNet. (kohya's `.alpha` scalars may be
    integers: diffusers' own kohya export writes them so.)"""
    for key, down_shape in shapes.items():
        for down, up in LAYER_PAIRS:
            if f".{up}." in key and key.replace(f".{up}.", f".{down}.") not in shapes:
                raise ModelFileError(f"'{path.name}' is damaged: '{key}' has no {down} half")
            if f".{down}." not in key:
                continue
            partner = key.replace(f".{down}.", f".{up}.")
            if partner not in shapes:
                raise ModelFileError(f"'{path.name}' is damaged: '{key}' has no {up} half")
            up_shape = shapes[partner]
            if len(down_shape) not in (2, 4) or len(up_shape) != len(down_shape) or 0 in (*down_shape, *up_shape):
                raise ModelFileError(f"'{path.name}' is damaged: layer '{key}' has shapes {list(down_shape)} and "
                                     f"{list(up_shape)}; a LoRA layer is two matrices (4-D for a convolution)")
            if down_shape[0] != up_shape[1]:
                raise ModelFileError(f"'{path.name}' is damaged: layer '{key}' has rank {down_shape[0]} in {down} but "
                                     f"{up_shape[1]} in {up}")
            for half in (key, partner):
                if not dtypes[half].startswith(("F", "BF")):
                    raise ModelFileError(f"'{path.name}' is damaged: '{half}' holds {dtypes[half]} values, not "
                                         "floating point")


def _check_values(path: Path) -> None:
    """Every weight finite: a NaN in a LoRA turns every image it touches black."""
    import torch
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            bad = next((key for key in handle.keys() if not torch.isfinite(handle.get_tensor(key)).all()), None)
    except Exception as exc:
        raise ModelFileError(f"'{path.name}' is not a readable safetensors file ({exc})") from None
    if bad is not None:
        raise ModelFileError(f"'{path.name}' holds NaN or infinite weights in '{bad}' (a training run that diverged?); "
                             "it cannot be used")


def cross_attention_dim(shapes: dict[str, Any]) -> int | None:
    """The UNet cross-attention width a LoRA was made for, from its attn2 key projection's input size."""
    for key, shape in shapes.items():
        if re.search(r"attn2[._]to_k.*(lora_A|lora_down)\.weight$", key):
            return int(shape[1])
    return None


def _info(folder: Path) -> LoraInfo | None:
    """The folder's entry (marked damaged, with the reason, when it cannot be used); None when it holds no weights
    (yet: a training run before its first save)."""
    meta_path = folder / "lora.json"
    file = folder / f"{folder.name}.safetensors"
    if not file.is_file():
        return None
    try:
        shapes, header = read_header(file)
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        # our own metadata: lora.json, else the header's `nstdiff.` keys (other tools' keys are not ours to trust)
        merged = {**own_metadata(header), **meta}
        known = {k: merged.get(k) for k in ("base", "trigger", "rank", "steps", "dataset_size", "created", "source")
                 if merged.get(k) is not None}
        return LoraInfo(name=folder.name, file=file, cross_attention_dim=cross_attention_dim(shapes),
                        sample=newest_sample(folder), **known)
    except ModelFileError as exc:
        reason = str(exc)
    except ValidationError as exc:
        reason = f"its metadata has unusable values ({format_validation_error(exc)})"
    except (OSError, ValueError) as exc:
        reason = f"its lora.json cannot be read ({getattr(exc, 'strerror', None) or exc})"
    return LoraInfo(name=folder.name, file=file, damaged=reason)  # listed, never deleted behind the person's back


def list_loras(settings: Settings | None = None, include_damaged: bool = False) -> list[LoraInfo]:
    """Every usable LoRA in the library (and the damaged entries too, if asked), newest first; the store's index is
    brought up to date on the way."""
    settings = settings or get_settings()
    root = library_root(settings)
    infos = [info for folder in sorted(root.iterdir()) if folder.is_dir() and (info := _info(folder))] \
        if root.is_dir() else []
    usable = [info for info in infos if info.damaged is None]
    from nstdiff.store import Store

    Store(settings.outputs_dir).index_loras([info.model_dump(mode="json") for info in usable])
    return sorted(infos if include_damaged else usable, key=lambda info: info.created or "", reverse=True)


def get_lora(name: str, settings: Settings | None = None, damaged_ok: bool = False) -> LoraInfo:
    """The library entry `name`; a damaged one only with `damaged_ok` (to rename or delete it)."""
    infos = {info.name: info for info in list_loras(settings, include_damaged=True)}
    if name not in infos:
        close = difflib.get_close_matches(name, infos, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else (
            f"; the library has {', '.join(infos)}" if infos else "; the library is empty (train or import one)")
        raise InputError(f"no LoRA named {name!r}{hint}")
    info = infos[name]
    if info.damaged and not damaged_ok:
        raise InputError(f"LoRA '{name}' cannot be used: {info.damaged}. Delete it (nstdiff lora delete {name}) and "
                         "import or train it again")
    return info


def rename_lora(old: str, new: str, settings: Settings | None = None) -> LoraInfo:
    settings = settings or get_settings()
    info = get_lora(old, settings, damaged_ok=True)
    target = library_root(settings) / check_lora_name(new)
    if target.exists():
        raise InputError(f"a LoRA named '{new}' already exists; delete or rename it first")
    info.folder.rename(target)
    (target / f"{old}.safetensors").rename(target / f"{new}.safetensors")
    meta_path = target / "lora.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    except (OSError, ValueError):
        meta = None  # a damaged entry's lora.json moves as it is
    if isinstance(meta, dict):
        meta["name"] = new
        meta_path.write_text(json.dumps(meta, indent=2))
    return get_lora(new, settings, damaged_ok=True)


def delete_lora(name: str, settings: Settings | None = None) -> None:
    info = get_lora(name, settings, damaged_ok=True)
    shutil.rmtree(info.folder)
    list_loras(settings)  # drops it from the index


def import_lora(file: Path, name: str, base: str, trigger: str | None = None,
                settings: Settings | None = None) -> LoraInfo:
    """Copy a safetensors LoRA (diffusers or kohya keys) into the library, after checking the whole file and that it
    fits `base`: nothing reaches the library before every check has passed."""
    settings = settings or get_settings()
    check_lora_name(name)
    file = Path(file)
    if not file.is_file():
        raise InputError(f"no such file: {file}")
    folder = library_root(settings) / name
    if folder.exists():
        raise InputError(f"a LoRA named '{name}' already exists; choose another name")
    shapes, _ = read_header(file)
    width = cross_attention_dim(shapes)
    if width is None:
        raise ModelFileError(f"'{file.name}' has no UNet attention LoRA weights nstdiff can use")
    expected = base_cross_attention_dim(base, settings)
    if width != expected:
        raise InputError(f"'{file.name}' was made for a UNet with cross-attention width {width}, but {base} has "
                         f"{expected}: it belongs to another model family. Pick the right --base.")
    _check_values(file)
    meta = {"name": name, "base": base, "trigger": trigger, "source": f"imported from {file.name}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    folder.mkdir(parents=True)
    try:
        shutil.copyfile(file, folder / f"{name}.safetensors")
        (folder / "lora.json").write_text(json.dumps(meta, indent=2))
    except OSError as exc:  # e.g. a full disk: no half-imported entry is left behind
        shutil.rmtree(folder, ignore_errors=True)
        raise InputError(f"cannot copy '{file}' into the library: {exc.strerror or exc}") from None
    return get_lora(name, settings)


def base_cross_attention_dim(base: str, settings: Settings | None = None) -> int:
    """The base model's UNet cross-attention width: from its config on disk, else from the catalogue."""
    from nstdiff.models.diffusion_hub import resolve_repo
    from nstdiff.errors import ModelNotFoundError

    settings = settings or get_settings()
    try:
        folder = resolve_repo(base, settings.model_copy(update={"allow_downloads": False}))
        return int(json.loads((folder / "unet" / "config.json").read_text())["cross_attention_dim"])
    except (ModelNotFoundError, FileNotFoundError, KeyError, json.JSONDecodeError):
        return load_catalogue().family(base).cross_attention_dim
