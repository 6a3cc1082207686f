"""Weights: where they live, how they are fetched and checked (`resolver`), and the networks that use them.

The lookups by name come from `index`, loaded on first use: importing a light submodule (the diffusion catalogue and
hub, which the torch-free app reads) must not import the torch networks that `index` registers.
"""
from typing import Any

BY_NAME = ("ModelStatus", "fetch_model", "list_models", "model_file", "model_status", "resolve_model")

__all__ = list(BY_NAME)


def __getattr__(name: str) -> Any:
    if name in BY_NAME:
        from nstdiff.models import index

        return getattr(index, name)
    raise AttributeError(f"module 'nstdiff.models' has no attribute '{name}'")
