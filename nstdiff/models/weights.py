"""Loading a module's weights from safetensors, with every mismatch reported as a clear `ModelFileError`."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Hashable

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from nstdiff.errors import ModelFileError


def load_safetensors(module: nn.Module, path: Path, what: str) -> dict[str, str]:
    """Load `module.state_dict()`-named tensors from `path` (no pickles) and return the file's metadata."""
    expected = module.state_dict()
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            present = set(handle.keys())
            state = {key: handle.get_tensor(key) for key in expected if key in present}
    except Exception as exc:
        raise ModelFileError(f"'{path}' is not a readable safetensors file ({exc}); fetch or train it again") from None
    load_tensors(module, state, f"'{path}'", what)
    return metadata


def load_tensors(module: nn.Module, state: dict[str, torch.Tensor], source: str, what: str) -> None:
    """Load named tensors into `module`, naming the first missing key or wrong shape in a `ModelFileError`."""
    expected = {key: tensor.shape for key, tensor in module.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ModelFileError(f"{source} is not a {what}: missing {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}")
    for key in expected:
        if tuple(state[key].shape) != tuple(expected[key]):
            raise ModelFileError(f"{source}: {key} has shape {tuple(state[key].shape)}, expected {tuple(expected[key])}")
    module.load_state_dict({key: state[key].float() for key in expected})


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write safetensors atomically (a temporary file renamed), so a killed write leaves the old file intact."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(partial), metadata=metadata)
    partial.replace(path)


def save_safetensors(module: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write `module`'s weights atomically."""
    save_tensors(module.state_dict(), path, metadata)


class FrozenModules:
    """The last `size` networks read from safetensors files, frozen (eval, no parameter gradients) on their device
    and dtype: each is read once and shared by every caller until newer ones push it out."""

    def __init__(self, size: int = 2):
        self.size, self._modules, self._lock = size, {}, threading.Lock()

    def load(self, key: Hashable, make: Callable[[], nn.Module], path: Path, what: str, device, dtype) -> nn.Module:
        with self._lock:
            module = self._modules.get(key)
            if module is None:
                module = make()
                load_safetensors(module, path, what)
                module = module.to(device=device, dtype=dtype).eval().requires_grad_(False)
                if len(self._modules) >= self.size:
                    self._modules.pop(next(iter(self._modules)))
                self._modules[key] = module
        return module
