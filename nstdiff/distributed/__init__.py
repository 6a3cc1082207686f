"""Where jobs run: the local executor, or replicas on a Ray cluster (`ray_executor.py`), chosen by the setting
`backend`. Ray is imported only when it is chosen, so the local backend needs no Ray installed."""
from __future__ import annotations

import importlib.util

from nstdiff.errors import InputError
from nstdiff.executor import Executor, InProcessExecutor
from nstdiff.settings import Settings, get_settings


def build_executor(settings: Settings | None = None) -> Executor:
    """The executor the settings ask for (`backend`: local or ray)."""
    settings = settings or get_settings()
    if settings.backend == "local":
        return InProcessExecutor(settings)
    if importlib.util.find_spec("ray") is None:
        raise InputError("backend 'ray' needs Ray Serve: pip install 'nstdiff[ray]' (or set backend = \"local\")")
    from nstdiff.distributed.ray_executor import RayExecutor

    return RayExecutor(settings)
