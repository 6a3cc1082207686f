"""What the benchmarks measure the same way: seconds per iteration from step timestamps, peak memory (CUDA's
allocator, or the process's peak resident set on Linux), and one implementation's run on one pair."""
from __future__ import annotations

import re
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class Run:
    """One implementation on one pair."""

    name: str
    pair: str
    size: tuple[int, int]  # (width, height)
    steps: int
    all_s_per_it: float
    finest_s_per_it: float
    total_s: float
    peak_mib: float
    output: Path
    quality: dict[str, float] = field(default_factory=dict)


def median_seconds(run, repeats: int) -> float:
    """The median wall seconds of `repeats` calls of `run()`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_iteration(stamps: list[float]) -> float:
    """Mean interval between consecutive step completions (NaN with fewer than two steps)."""
    if len(stamps) < 2:
        return float("nan")
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif Path("/proc/self/clear_refs").exists():
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    status = Path("/proc/self/status")
    if status.exists():
        match = re.search(r"^VmHWM:\s+(\d+) kB", status.read_text(), re.MULTILINE)
        return int(match.group(1)) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # never reset: a process-lifetime peak
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def pair_name(content: Path, style: Path) -> str:
    return f"{content.stem}×{style.stem}"
