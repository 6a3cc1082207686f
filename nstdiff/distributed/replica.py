"""What runs on a Ray cluster: a replica of a method family (the local executor, its models kept warm, behind a
stream), and a training job as a Ray task.

A job streams its progress events as they happen, then its result, or a `Failure` (an nstdiff error, rebuilt in
the app's process with its message). Cancelling the Serve request (the app's Cancel) sets the run's cancel token, so
the method stops at its next step exactly as it does locally, and the replica is free again once it has.
Replicas never touch the app's history: results go back to the app's process, which stores them.
"""
from __future__ import annotations

import asyncio
import queue
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from nstdiff.context import CancelToken
from nstdiff.distributed.shipping import Unpacked
from nstdiff.errors import NstdiffError
from nstdiff.schema import ProgressEvent
from nstdiff.settings import Settings


@dataclass
class Failure:
    """An nstdiff error sent back as a value: its type, message and attributes (exceptions with their own
    constructor arguments, such as `Cancelled`, do not survive pickling as themselves)."""

    kind: type
    message: str
    state: dict[str, Any]

    @classmethod
    def of(cls, exc: NstdiffError) -> Failure:
        return cls(type(exc), str(exc), dict(vars(exc)))

    def error(self) -> NstdiffError:
        exc = self.kind.__new__(self.kind)
        Exception.__init__(exc, self.message)
        vars(exc).update(self.state)
        return exc


class FamilyReplica:
    """The body of each family's Serve deployment (`ray_executor.py` deploys it with the family's resources)."""

    def __init__(self, settings: dict[str, Any]):
        from nstdiff.executor import InProcessExecutor
        from nstdiff.registry import list_methods

        list_methods()  # imported here, before Serve counts this replica as running, not by its first job
        self.settings = Settings(**settings)
        self.executor = InProcessExecutor(self.settings)
        self.pool = ThreadPoolExecutor(self.settings.ray_jobs_per_replica, thread_name_prefix="nstdiff-job")
        from ray import serve

        context = serve.get_replica_context()
        self.where = f"{socket.gethostname()} ({context.deployment} replica {context.replica_id.unique_id})"

    def _work(self, request: Any, progress, token: CancelToken) -> Any:
        import ray

        with Unpacked(request, ray.get) as inputs:
            try:
                result = self.executor.run(inputs.request, progress, token)
            except NstdiffError as exc:
                return Failure.of(exc)
            return inputs.restore(result)

    async def run(self, request: Any) -> AsyncIterator[Any]:
        """Progress events, then the result or a `Failure`."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        token = CancelToken()
        yield ProgressEvent(step=0, total=0, stage="message", message=f"running on {self.where}")
        job = loop.run_in_executor(self.pool, self._work, request,
                                   lambda event: loop.call_soon_threadsafe(events.put_nowait, event), token)
        try:
            while not job.done():
                next_event = asyncio.ensure_future(events.get())
                await asyncio.wait({next_event, job}, return_when=asyncio.FIRST_COMPLETED)
                if next_event.done():
                    yield next_event.result()
                else:
                    next_event.cancel()
            while not events.empty():
                yield events.get_nowait()
            yield job.result()
        except asyncio.CancelledError:
            token.cancel()  # the method stops at its next step; this replica takes a new job once it has
            await asyncio.shield(asyncio.wait({job}))
            raise
        finally:  # also when Serve closes this generator at a `yield` (GeneratorExit, not a CancelledError)
            if not job.done():
                token.cancel()


def train_task(settings: dict[str, Any], config: Any) -> Iterator[Any]:
    """A training job as a Ray task that streams: progress events, then the trainer's result or a `Failure`. Ray's
    cancel (a KeyboardInterrupt in this thread) sets the cancel token, so training stops after its current step with
    its checkpoints kept, as locally; started again, it resumes from them."""
    from nstdiff.executor import InProcessExecutor

    events: queue.Queue = queue.Queue()
    token, outcome = CancelToken(), {}

    def work() -> None:
        try:
            outcome["result"] = InProcessExecutor(Settings(**settings)).train(config, events.put, token)
        except NstdiffError as exc:
            outcome["result"] = Failure.of(exc)
        except BaseException as exc:  # noqa: BLE001 raised again in the task's thread, so Ray reports it as the task's error
            outcome["error"] = exc
        finally:
            events.put(None)

    trainer = threading.Thread(target=work, daemon=True, name="nstdiff-train")
    trainer.start()
    try:
        while True:
            try:
                event = events.get(timeout=0.2)  # short waits: Ray's cancel interrupts between them
            except queue.Empty:
                continue
            if event is None:
                break
            yield event
    except KeyboardInterrupt:
        token.cancel()
        trainer.join()  # the current step and its checkpoint finish; the trainer's `Cancelled` says which is kept
    if "error" in outcome:
        raise outcome["error"]
    yield outcome["result"]
