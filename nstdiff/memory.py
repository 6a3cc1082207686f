"""Memory: refuse a job that cannot fit before it runs, turn an out-of-memory during a run into the same error, and
size the diffusion models' cache. Estimates come from the methods (`estimate_memory(request, settings)`)."""
from __future__ import annotations

import gc
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import psutil

from nstdiff.errors import ResourceError
from nstdiff.settings import Settings

if TYPE_CHECKING:
    import torch


def total_memory(device: "torch.device") -> int:
    """Bytes of memory `device` has: the GPU's on CUDA, else the system's."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_properties(device).total_memory
    return psutil.virtual_memory().total


MEMORY_FRACTION = 0.8  # of the memory free when a job starts: the rest for the system, other jobs, the estimate's error
OUT_OF_MEMORY = ("out of memory", "DefaultCPUAllocator: can't allocate memory", "not enough memory")


@dataclass(frozen=True)
class MemoryBudget:
    limit: int  # bytes
    source: str  # where the limit comes from, for the message


def available_memory(device: "torch.device") -> int:
    """Bytes free for a new job on `device`: the GPU's free memory plus torch's cached blocks on CUDA; else the
    system's (MPS shares it), within the container's own limit where one is set (cgroup v2)."""
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    available = psutil.virtual_memory().available
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            return min(available, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return available


def memory_budget(settings: Settings, device: "torch.device") -> MemoryBudget:
    if settings.max_job_memory_gb is not None:
        return MemoryBudget(int(settings.max_job_memory_gb * 1e9), "NSTDIFF_MAX_JOB_MEMORY_GB")
    return MemoryBudget(int(available_memory(device) * MEMORY_FRACTION),
                        f"{MEMORY_FRACTION:.0%} of what is free now; NSTDIFF_MAX_JOB_MEMORY_GB sets it")


def check_memory(method: Any, request: Any, settings: Settings, device: "torch.device") -> None:
    """Raise `ResourceError` when the method's estimate for `request` is over the budget, naming a size that fits.
    Image methods have an estimate; an extension may add one for a request with a `size`; others are not checked."""
    estimate = getattr(method, "estimate_memory", None)
    needed = estimate(request, settings) if estimate else None
    budget = memory_budget(settings, device) if needed is not None else None
    if budget is None or needed <= budget.limit:
        return
    fits = largest_fitting_size(estimate, request, settings, budget.limit)
    raise ResourceError(f"a {request.size} px {method.name} run needs about {needed / 1e9:.1f} GB; this machine "
                        f"allows {budget.limit / 1e9:.1f} GB ({budget.source}); "
                        + (f"use a size of {fits} px or less" if fits else "even the smallest size does not fit"))


def largest_fitting_size(estimate: Callable[[Any, Settings], int], request: Any, settings: Settings,
                         budget: int) -> int | None:
    """The largest size below the request's whose estimate fits (estimates grow with the size), or None."""
    def fits(size: int) -> bool:
        return estimate(request.model_copy(update={"size": size}), settings) <= budget

    low, high = 16, request.size - 1  # 16: the smallest size a request may ask for
    if not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch.cuda.OutOfMemoryError, or the CPU allocator's RuntimeError."""
    return isinstance(exc, MemoryError) or any(text in str(exc) for text in OUT_OF_MEMORY)


def release_memory(device: "torch.device") -> None:
    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


def out_of_memory_message(request: Any) -> str:
    size = getattr(request, "size", None)
    if size is None:
        return "ran out of memory; try a smaller input, or close other programs"
    return f"ran out of memory at {size} px; try a size of {max(16, int(size / math.sqrt(2)))} px or less (half " \
           "the pixels)"


