"""One replica of a method family on a Ray cluster: the local executor, its models kept warm, behind a stream.

A job streams its progress events as they happen, then its result, or a `Failure` (an nstdiff error, rebuilt in
the app's process with its message). Cancelling the Serve request (the app's Cancel) sets the run's cancel token, so
the method stops at its next step exactly as it does locally, and the replica is free again once it has.
Replicas never touch the app's history: results go back to the app's process, which stores them.
"""
from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, AsyncIterator

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
    def of(cls, exc: NstdiffError) -> "Failure":
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
            result.parameters = inputs.restore(result.parameters)
            return result

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
