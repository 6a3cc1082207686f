"""What a Ray cluster has room for: asked of Ray before a family's replicas or a training are placed, because Serve
and Ray would otherwise wait for room forever, and the job with them."""
from __future__ import annotations

from nstdiff.errors import ResourceError


def check_room(what: str, cpus: float, gpus: float, busy_is_an_error: bool) -> None:
    """Refuse what the cluster could never place (more than all its machines have), and, `busy_is_an_error`, what
    it cannot place now, naming what was asked for and what there is."""
    import ray

    total, free = ray.cluster_resources(), ray.available_resources()
    if gpus > total.get("GPU", 0.0):
        raise ResourceError(
            f"the Ray cluster has no GPU for {what} (it asks for {gpus:g}, setting ray_num_gpus); join a GPU machine "
            "with `ray start --address HEAD:6379`, or set its ray_num_gpus to 0 to run on CPU")
    if cpus > total.get("CPU", 0.0):
        raise ResourceError(
            f"the Ray cluster has {total.get('CPU', 0.0):g} CPUs in all and {what} asks for {cpus:g} (setting "
            "ray_num_cpus): lower it, or join a machine with `ray start --address HEAD:6379`")
    if busy_is_an_error and (cpus > free.get("CPU", 0.0) + 1e-6 or gpus > free.get("GPU", 0.0) + 1e-6):
        raise ResourceError(
            f"the Ray cluster has no room now for {what} (it asks for {cpus:g} CPU and {gpus:g} GPU; free: "
            f"{free.get('CPU', 0.0):g} CPU, {free.get('GPU', 0.0):g} GPU): lower ray_num_cpus, ray_num_gpus or "
            "ray_max_replicas, or join a machine with `ray start --address HEAD:6379`")
