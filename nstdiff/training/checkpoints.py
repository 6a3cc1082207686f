"""Checkpoints shared by the training loops (AdaIN decoder, fast style, LoRA): the optimizer's state as safetensors
(never a pickle), and a network with its optimizer in one file, so that an interrupted run resumes where it stopped.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from nstdiff.models.weights import save_tensors

KEEP_CHECKPOINTS = 2


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state (Adam's moments and step) as `<prefix>.<parameter>.<name>` tensors."""
    return {f"{prefix}.{index}.{key}": torch.as_tensor(value)
            for index, state in optimizer.state_dict()["state"].items() for key, value in state.items()}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    """Load what `optimizer_tensors` made back into `optimizer` (other keys of `tensors` are left alone)."""
    state = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith(f"{prefix}."):
            _, index, name = key.split(".", 2)
            state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(state)


def save_checkpoint(path: Path, model, optimizer, step: int) -> None:
    """`model`'s weights, the Adam(W) moments and the step in one safetensors file."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(optimizer_tensors(optimizer, "adam"))
    save_tensors(tensors, path, {"step": str(step)})  # a killed write leaves the previous checkpoint intact


def load_checkpoint(path: Path, model, optimizer) -> int:
    """Restore what `save_checkpoint` wrote; returns its step."""
    with safe_open(str(path), framework="pt") as handle:
        step = int(handle.metadata()["step"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    restore_optimizer(optimizer, tensors, "adam")
    return step
