"""Loading a module's weights from safetensors, with every mismatch reported as a clear `ModelFileError`."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from nstdiff.errors import ModelFileError


def load_safetensors(module: nn.Module, path: Path, what: str) -> dict[str, str]:
    """Load `module.state_dict()`-named tensors from `path` (no pickles) and return the file's metadata."""
    expected = {key: tensor.shape for key, tensor in module.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            missing = sorted(set(expected) - set(handle.keys()))
            if missing:
                raise ModelFileError(
                    f"'{path}' is not a {what}: missing {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}"
                )
            state = {key: handle.get_tensor(key) for key in expected}
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"'{path}' is not a readable safetensors file ({exc}); fetch or train it again") from None
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key]):
            raise ModelFileError(f"'{path}': {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key])}")
    module.load_state_dict({k: v.float() for k, v in state.items()})
    return metadata


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write safetensors atomically (a temporary file renamed), so a killed write leaves the old file intact."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(partial), metadata=metadata)
    partial.replace(path)


def save_safetensors(module: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write `module`'s weights atomically."""
    save_tensors(module.state_dict(), path, metadata)
