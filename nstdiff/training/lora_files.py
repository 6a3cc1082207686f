"""A LoRA training run's files: the LoRA in diffusers' format with our metadata, its checkpoints (LoRA + AdamW state)
and the folder a run starts in or resumes from (see `nstdiff.training.lora_data` for the layout).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from safetensors import safe_open

from nstdiff.errors import InputError, ModelFileError
from nstdiff.models.diffusion_files import check_pipeline_folder
from nstdiff.models.weights import save_tensors
from nstdiff.training.checkpoints import KEEP_CHECKPOINTS, optimizer_tensors, restore_optimizer
from nstdiff.training.lora_data import RESUME_FIELDS, LoraTraining, read_state

LORA_FILE, OPTIMIZER_FILE = "lora.safetensors", "optimizer.safetensors"


def pipeline_class_of(folder: Path):
    import diffusers

    return getattr(diffusers, check_pipeline_folder(folder))


def write_lora(pipeline_class, unet, lora_config, path: Path, metadata: dict[str, str]) -> None:
    """The UNet's LoRA in diffusers' format (`unet.….lora_A.weight`, adapter config in the header), written by the
    pipeline's own `save_lora_weights`, then rewritten atomically with our `nstdiff.*` metadata added."""
    from peft.utils import get_peft_model_state_dict

    partial = path.with_name(path.name + ".dir")
    shutil.rmtree(partial, ignore_errors=True)
    pipeline_class.save_lora_weights(partial, unet_lora_layers=get_peft_model_state_dict(unet),
                                     weight_name=path.name, unet_lora_adapter_metadata=lora_config.to_dict())
    with safe_open(str(partial / path.name), framework="pt") as handle:
        header = dict(handle.metadata() or {})
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    header.update({f"nstdiff.{key}": value for key, value in metadata.items()})
    save_tensors(tensors, path, header)
    shutil.rmtree(partial, ignore_errors=True)


def save_lora_checkpoint(folder: Path, step: int, pipeline_class, unet, lora_config, optimizer,
                     metadata: dict[str, str]) -> Path:
    final = folder / "checkpoints" / f"step-{step:05d}"
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write_lora(pipeline_class, unet, lora_config, partial / LORA_FILE, {**metadata, "steps": str(step)})
    save_tensors(optimizer_tensors(optimizer, "adamw"), partial / OPTIMIZER_FILE, {"step": str(step)})
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)  # a checkpoint folder without ".partial" is complete
    for old in lora_checkpoints(folder)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def lora_checkpoints(folder: Path) -> list[Path]:
    found = [p for p in (folder / "checkpoints").glob("step-*") if p.is_dir() and not p.name.endswith(".partial")
             and (p / OPTIMIZER_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def load_lora_checkpoint(checkpoint: Path, unet, optimizer) -> int:
    from peft.utils import set_peft_model_state_dict

    with safe_open(str(checkpoint / LORA_FILE), framework="pt") as handle:
        lora = {key.removeprefix("unet."): handle.get_tensor(key) for key in handle.keys()}
    result = set_peft_model_state_dict(unet, lora)
    if getattr(result, "unexpected_keys", None):
        raise ModelFileError(f"checkpoint '{checkpoint}' does not fit this model ({result.unexpected_keys[:2]}); "
                             "train it again with --overwrite")
    with safe_open(str(checkpoint / OPTIMIZER_FILE), framework="pt") as handle:
        step = int(handle.metadata()["step"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    restore_optimizer(optimizer, tensors, "adamw")
    return step


def prepare_folder(config: LoraTraining, folder: Path, main: bool) -> Path | None:
    """Refuse a finished LoRA (unless overwrite), or find the checkpoint to resume; returns that checkpoint."""
    weights = folder / f"{config.name}.safetensors"
    state = read_state(folder)
    if state and state.status == "running" and state.pid != os.getpid():
        raise InputError(f"LoRA '{config.name}' is being trained right now by process {state.pid}; wait for it or "
                         "stop it first")
    if (weights.is_file() or (state and state.status == "finished")) and not config.overwrite:
        raise InputError(f"a LoRA named '{config.name}' already exists in '{folder}'; pick another --name or "
                         "pass --overwrite to replace it")
    if config.overwrite and main and folder.exists():
        shutil.rmtree(folder)
    checkpoints = lora_checkpoints(folder)
    if checkpoints:
        try:
            previous = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            previous = {}
        current = config.resume_key()
        differing = [name for name in RESUME_FIELDS if previous.get(name) != current.get(name)]
        if differing:
            details = ", ".join(f"{name} ({previous.get(name)!r} → {current.get(name)!r})" for name in differing)
            raise InputError(f"LoRA '{config.name}' has an interrupted run with different settings: {details}. "
                             "Use the same settings to resume it, or pass --overwrite to start again")
        return checkpoints[-1]
    if main and folder.exists():  # a run killed before its first checkpoint: start afresh
        for leftover in ("loss.csv", "loss.png", "samples", "checkpoints"):
            target = folder / leftover
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    return None
