"""What the ray backend costs and gains: the same 20 small jobs on `local` and on `ray` with 1 and 2 replicas.

    python benchmarks/ray_overhead.py [--jobs 20] [--size 96] [--steps 30]

One machine, a Ray instance started here with 2 CPUs; every job is a CPU-bound Gram run (random encoder) on one
thread, locally and in each replica. Measured in one run:
- per-job overhead: the median over jobs of (seconds on ray with 1 replica − seconds on local), each job run on
  both in turn (target ≤ 0.3 s: the object store, the stream of progress events, the result coming back);
- throughput scaling: wall time of the 20 jobs sent at once to 1 replica ÷ to 2 replicas (target ≥ 1.6× on 2
  cores; the machine's other load lowers it);
- the machine's own ceiling for that ratio, without Ray: the same jobs on 1 and on 2 plain worker processes (two
  busy processes on the 2 cores of a virtual machine rarely run at twice the speed of one).
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ray  # noqa: E402
from ray import serve  # noqa: E402

from nstdiff.commands.stylize import EXAMPLES  # noqa: E402
from nstdiff.distributed.ray_executor import APP_PREFIX, RayExecutor  # noqa: E402
from nstdiff.executor import InProcessExecutor  # noqa: E402
from nstdiff.schema import ImageStyleRequest  # noqa: E402
from nstdiff.settings import Settings  # noqa: E402


def seconds(executor, request) -> float:
    started = time.perf_counter()
    executor.run(request)
    return time.perf_counter() - started


def one_by_one(local, remote, requests) -> tuple[float, float, float]:
    """Median seconds per job on each executor, and the median of their differences: each job runs locally and on
    ray in turn, one after another, so the machine's other load falls alike on both."""
    pairs = [(seconds(local, request), seconds(remote, request)) for request in requests]
    return (statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs),
            statistics.median(p[1] - p[0] for p in pairs))


def all_at_once(executor, requests) -> float:
    """Wall seconds for every job sent at once."""
    started = time.perf_counter()
    with ThreadPoolExecutor(len(requests)) as pool:
        list(pool.map(executor.run, requests))
    return time.perf_counter() - started


_WORKER: dict[str, InProcessExecutor] = {}


def _start_worker(settings: Settings, warm_up: ImageStyleRequest, ready) -> None:
    _WORKER["executor"] = InProcessExecutor(settings)
    _WORKER["executor"].run(warm_up)  # torch and the encoder warm, as in a replica
    ready.put(True)


def _run_in_worker(request: ImageStyleRequest) -> None:
    _WORKER["executor"].run(request)


def in_processes(settings: Settings, requests, workers: int) -> float:
    """Wall seconds for every job on `workers` plain processes (no Ray), timed once all of them are warm."""
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    with context.Pool(workers, _start_worker, (settings, requests[0], ready)) as pool:
        for _ in range(workers):
            ready.get(timeout=300)
        started = time.perf_counter()
        pool.map(_run_in_worker, requests, chunksize=1)
        return time.perf_counter() - started


def on_ray(settings: Settings, replicas: int, replacing: bool = False) -> RayExecutor:
    if replacing:
        serve.delete(APP_PREFIX + "classic")  # a fresh deployment with this many replicas
    executor = RayExecutor(settings.model_copy(update={"ray_min_replicas": replicas, "ray_max_replicas": replicas}))
    warm_up = [ImageStyleRequest(method="gram", content=EXAMPLES / "photo.jpg", styles=[EXAMPLES / "painting.jpg"],
                                 size=32, steps=20, seed=0, encoder="random")] * 4 * replicas
    all_at_once(executor, warm_up)  # deployed, torch imported, encoder built: every replica warm
    return executor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    requests = [ImageStyleRequest(method="gram", content=EXAMPLES / "photo.jpg", styles=[EXAMPLES / "painting.jpg"],
                                  size=args.size, steps=args.steps, seed=seed, encoder="random")
                for seed in range(args.jobs)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(backend="ray", outputs_dir=Path(tmp) / "outputs", cache_dir=Path(tmp) / "cache",
                            device="cpu", allow_downloads=False, threads=1, ray_num_cpus=1, queue_max_size=100)
        plain = {n: in_processes(settings, requests, n) for n in (1, 2)}
        local = InProcessExecutor(settings)
        local.run(requests[0])  # torch and the encoder warm, as in a replica
        ray.init(address="local", num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False)
        try:
            one = on_ray(settings, 1)
            local_each, ray_each, overhead = one_by_one(local, one, requests)
            wall = {1: all_at_once(one, requests)}
            wall[2] = all_at_once(on_ray(settings, 2, replacing=True), requests)
        finally:
            serve.shutdown()
            ray.shutdown()
    print(f"{args.jobs} Gram jobs, {args.size} px, {args.steps} steps, one thread each")
    print(f"per job (median), local and ray in turn: local {local_each:.3f} s, ray 1 replica {ray_each:.3f} s "
          f"-> overhead {overhead:+.3f} s (target <= 0.3 s)")
    print(f"all at once: ray 1 replica {wall[1]:.2f} s, 2 replicas {wall[2]:.2f} s "
          f"-> scaling {wall[1] / wall[2]:.2f}x (target >= 1.6x on 2 cores)")
    print(f"without ray: 1 process {plain[1]:.2f} s, 2 processes {plain[2]:.2f} s "
          f"-> this machine's ceiling {plain[1] / plain[2]:.2f}x")


if __name__ == "__main__":
    main()
