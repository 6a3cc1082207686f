"""The executor for a Ray cluster: each method family is a Ray Serve deployment whose replicas keep their models warm.

The app's process (or the CLI) routes a request as the local executor would, to learn its family (classic image
methods, diffusion, audio, mesh, video), puts its input files in Ray's object store (`shipping.py`) and streams the
job from a replica of that family (`replica.py`): progress events as they happen, then the result, which the caller
stores as it does locally. Cancel cancels the Serve request, which the replica turns into the method's cancel token.
A replica that dies mid-job (a killed process, a lost machine) is replaced by Serve; the job runs once more on
another replica, and a second loss is a clear error. Ray is imported only here, when this backend is chosen.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from nstdiff.context import CancelToken, ProgressCallback
from nstdiff.distributed.replica import Failure, FamilyReplica, train_task
from nstdiff.distributed.room import check_room
from nstdiff.distributed.shipping import pack
from nstdiff.errors import Cancelled, InputError, NstdiffError, ResourceError
from nstdiff.executor import InProcessExecutor, as_image_request, method_name
from nstdiff.registry import get_method
from nstdiff.routing import ROUTED, route
from nstdiff.schema import ProgressEvent
from nstdiff.settings import Settings, get_settings

log = logging.getLogger(__name__)

APP_PREFIX = "nstdiff-"  # each family is its own Serve application, deployed the first time a job needs it
QUEUE_FULL = "Queue is full! Please try again."  # the words the app's own queue uses
_BUILDING = threading.Lock()  # one Serve deployment built at a time (see `_deploy`)
WAIT_NOTE_S = 5.0  # a training task not started after this long says what it waits for
# Scaling down, Serve stops a family's newest replica, busy or not, and kills its job after 20 s by default (it would
# start over elsewhere): a stopping replica finishes its job first, as long as a job may take
FINISH_BEFORE_STOP_S = 24 * 3600.0


class ReplicaLostError(NstdiffError):
    """The replica running a job died twice (a killed process, a lost machine): the job did not finish."""


def family_of(name: str) -> str:
    """The deployment a method runs on: its modality, with image methods split into classic and diffusion (the
    GPU ones)."""
    capabilities = get_method(name).capabilities
    if capabilities.modality == "image":
        return "diffusion" if capabilities.needs_gpu else "classic"
    return capabilities.modality


class RayExecutor(InProcessExecutor):
    """Runs jobs on Ray Serve replicas; menus, model lists and libraries are answered by the app's own process."""

    def __init__(self, settings: Settings | None = None):
        super().__init__(settings or get_settings())
        import ray
        from ray import serve

        if not ray.is_initialized():  # no address: a Ray instance on this machine, so the same command works alone
            try:
                ray.init(address=self.settings.ray_address, include_dashboard=False, log_to_driver=True)
            except ConnectionError as exc:
                raise InputError(f"cannot join the Ray cluster at {self.settings.ray_address} ({exc}); start it "
                                 "with `ray start --head` there, or check ray_address / --ray-address") from None
            # the training processes the app starts (`nstdiff lora train`) join this cluster, not a new one
            os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
        serve.start(proxy_location="Disabled")  # no HTTP ingress: the app calls the deployments through handles
        self.address = ray.get_runtime_context().gcs_address
        self._handles: dict[str, Any] = {}
        self._deploying: dict[str, threading.Lock] = {}  # one per family: a family waiting for its replicas (a
        self._locks = threading.Lock()  # busy GPU) does not hold up the jobs of the others

    # -- deployments -----------------------------------------------------------------------------------------------

    def handle(self, family: str) -> Any:
        """The streaming handle of `family`'s deployment, deployed on first use."""
        if family in self._handles:
            return self._handles[family]
        with self._locks:
            lock = self._deploying.setdefault(family, threading.Lock())
        with lock:
            if family not in self._handles:
                self._handles[family] = self._deploy(family).options(stream=True)
            return self._handles[family]

    def _deploy(self, family: str) -> Any:
        from ray import serve
        from ray.serve.config import AutoscalingConfig

        running = serve.status().applications.get(APP_PREFIX + family)
        if running and _word(running.status) in {"RUNNING", "DEPLOYING", "UNHEALTHY"}:  # deployed by another process
            log.info("using the running %s deployment (its replica settings stay until `serve shutdown`)", family)
            return serve.get_deployment_handle(family, app_name=APP_PREFIX + family)
        settings = self.settings
        gpus = settings.ray_num_gpus.get(family, 0.0)
        # Serve would wait for room forever, and the job with it: replicas of the other families keep theirs
        check_room(f"a {family} replica", settings.ray_num_cpus, gpus, busy_is_an_error=True)
        # the queue's length averaged over as long as it must last (Serve's default: 30 s)
        look_back_s = min(30.0, max(1.0, settings.ray_scale_up_after_s))
        autoscaling = {"min_replicas": settings.ray_min_replicas, "max_replicas": settings.ray_max_replicas,
                       "initial_replicas": max(1, settings.ray_min_replicas),
                       "target_ongoing_requests": settings.ray_jobs_per_replica,
                       "upscale_delay_s": settings.ray_scale_up_after_s,
                       "downscale_delay_s": settings.ray_scale_down_after_s, "look_back_period_s": look_back_s}
        if "metrics_interval_s" in AutoscalingConfig.model_fields:
            # how often the app's handle tells Serve its queue (default 10 s: Serve saw an idle family while its
            # first job ran, and scaled it to none); deprecated in Serve 2.60, which has nothing in its place yet
            autoscaling["metrics_interval_s"] = look_back_s / 2
        options = dict(
            ray_actor_options={"num_cpus": settings.ray_num_cpus, "num_gpus": gpus},
            max_ongoing_requests=settings.ray_jobs_per_replica,
            max_queued_requests=settings.queue_max_size,  # beyond it, the queue-full message
            graceful_shutdown_timeout_s=FINISH_BEFORE_STOP_S, autoscaling_config=autoscaling,
        )
        for attempt in (1, 2):
            try:
                with _BUILDING:
                    deployment = serve.deployment(FamilyReplica, name=family, **options)
                break
            except ValueError as exc:
                # Serve pickles its request router between a process-wide register and unregister of its module,
                # which another thread building a config (a handle taking an update) can undo; once more succeeds
                if "pickle by value" not in str(exc) or attempt == 2:
                    raise
        log.info("deploying the %s replicas (%g GPU each, %d to %d replicas)", family, gpus,
                 settings.ray_min_replicas, settings.ray_max_replicas)
        return serve.run(deployment.bind(settings.model_dump(mode="json")), name=APP_PREFIX + family,
                         route_prefix=None)

    def health(self) -> dict[str, Any]:
        from ray import serve

        deployments = {}
        for app_name, application in serve.status().applications.items():
            if app_name.startswith(APP_PREFIX):
                for name, deployment in application.deployments.items():
                    states = deployment.replica_states.items()
                    deployments[name] = {"status": _word(deployment.status),
                                         "replicas": {_word(state): n for state, n in states}}
        return {"backend": "ray", "address": self.address, "deployments": deployments}

    # -- jobs ------------------------------------------------------------------------------------------------------

    def family(self, request: Any) -> str:
        name = method_name(request)
        if name in ROUTED:  # routed here only to choose the deployment: the replica routes again, noting why
            name = route(as_image_request(request), self.settings)[0]
        return family_of(name)

    def run(self, request: Any, progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Any:
        import ray

        family = self.family(request)
        handle = self.handle(family)
        packed = pack(request, self.settings, ray.put)
        for attempt in (1, 2):
            try:
                return self._follow(handle.run.remote(packed), progress, cancel or CancelToken())
            except _LostReplica as lost:
                if attempt == 2:
                    raise ReplicaLostError(
                        f"the {family} replica running this job was lost twice ({lost}); the job did not finish: "
                        "run it again, and if it keeps failing check the cluster (`ray status`)") from None
                log.warning("a %s replica was lost mid-job (%s); running the job once more", family, lost)

    def train(self, config: BaseModel, progress: ProgressCallback | None = None,
              cancel: CancelToken | None = None) -> Any:
        """Training as a Ray task on a machine with the family's resources (a LoRA: a diffusion replica's GPUs).
        Ray runs it once more if its worker dies; it resumes from its checkpoints, which live in the models folder
        (the same path on every machine, or a shared one, for a resume on another machine)."""
        import ray

        from nstdiff.training.lora_data import LoraTraining

        family = "diffusion" if isinstance(config, LoraTraining) else "classic"
        cpus, gpus = self.settings.ray_num_cpus, self.settings.ray_num_gpus.get(family, 0.0)
        check_room("this training", cpus, gpus, busy_is_an_error=False)  # busy: it starts when room frees up
        task = ray.remote(train_task).options(num_cpus=cpus, num_gpus=gpus, num_returns="streaming", max_retries=1)
        started = threading.Event()

        def note_the_wait() -> None:
            if not started.wait(WAIT_NOTE_S) and progress:
                free = ray.available_resources()
                progress(ProgressEvent(step=0, total=0, stage="message", message=(
                    f"waiting for room on the Ray cluster: this training asks for {cpus:g} CPU and {gpus:g} GPU, "
                    f"{free.get('CPU', 0.0):g} CPU and {free.get('GPU', 0.0):g} GPU are free (replicas keep theirs "
                    "until idle for ray_scale_down_after_s); Cancel to stop waiting")))

        def on_progress(event: ProgressEvent) -> None:
            started.set()
            if progress:
                progress(event)

        threading.Thread(target=note_the_wait, daemon=True, name="nstdiff-wait-note").start()
        try:
            return self._follow(_TaskStream(task.remote(self.settings.model_dump(mode="json"), config)), on_progress,
                                cancel or CancelToken())
        except _LostReplica as lost:
            raise ReplicaLostError(f"the machine training this was lost twice ({lost}); start the training again: "
                                   "it resumes from its last checkpoint") from None
        finally:
            started.set()

    def _follow(self, response: Any, progress: ProgressCallback | None, cancel: CancelToken) -> Any:
        """The job's events passed to `progress`, then its result; Cancel (from the token or the callback) cancels
        the request on its replica."""
        import ray
        from ray.serve.exceptions import BackPressureError, RequestCancelledError

        done = threading.Event()
        settled = False  # the stream ended (a result, an error, a refusal, a lost replica): nothing left to cancel
        step = [0, 0]

        def forward_cancel() -> None:
            while not done.is_set():
                if cancel.wait(0.1):
                    response.cancel()
                    return

        threading.Thread(target=forward_cancel, daemon=True, name="nstdiff-cancel").start()
        try:
            for item in _items(response):
                if isinstance(item, ProgressEvent):
                    if item.total:
                        step[:] = item.step, item.total
                    if progress:
                        progress(item)
                    continue
                settled = True
                if isinstance(item, Failure):
                    raise item.error()
                return item
            settled = True
            raise _LostReplica("its stream ended without a result")
        except (RequestCancelledError, ray.exceptions.TaskCancelledError):
            settled = True
            raise Cancelled(*step) from None
        except BackPressureError:
            settled = True
            raise ResourceError(QUEUE_FULL) from None
        except _LostReplica:
            settled = True
            if cancel.cancelled:  # a cancelled stream may just end: the job stopped as asked, nothing was lost
                raise Cancelled(*step) from None
            raise
        except ray.exceptions.RayTaskError as exc:  # an unexpected error in the method: raised as itself
            settled = True
            raise exc.cause if isinstance(exc.cause, Exception) else exc
        finally:
            done.set()
            if not settled:
                response.cancel()  # a callback that raised, or Ctrl-C: the replica stops too


class _TaskStream:
    """A streaming Ray task's items, with the `cancel()` of a Serve response."""

    def __init__(self, refs: Any):
        self.refs = refs

    def __iter__(self) -> Iterator[Any]:
        import ray

        return (ray.get(ref) for ref in self.refs)

    def cancel(self) -> None:
        import ray

        ray.cancel(self.refs)


def _word(state: Any) -> str:
    """A Serve status or replica state as its word (they are str enums, or plain strings)."""
    return str(getattr(state, "value", state))


class _LostReplica(Exception):
    pass


def _items(response: Any) -> Iterator[Any]:
    """The stream's items, a dead replica's errors as `_LostReplica`."""
    import ray
    from ray.serve.exceptions import ReplicaUnavailableError

    try:
        yield from response
    except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError, ReplicaUnavailableError) as exc:
        raise _LostReplica(type(exc).__name__) from None
