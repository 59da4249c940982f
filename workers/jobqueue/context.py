"""What a running job can learn about itself, and how it reports progress.

Inside a job, :func:`current_job` returns the job's id, queue, attempt number and a way to
report progress (0–100) that producers read with :func:`jobqueue.get_job` (and
``jobqueue wait`` draws as a progress bar). It works the same in the three worker modes: a
context variable is set around each call, in the pre-forked process, the thread or the
asyncio task that runs it. Progress goes to the worker's coordinator, which writes it to
Redis with its next round trip (at most a few hundred milliseconds later), and only while the
job is still held by this worker.

Outside a job (a unit test calling the function directly) :func:`current_job` raises
RuntimeError; :func:`update_progress` is the lenient shortcut that does nothing there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

import redis

from jobqueue import client


@dataclass(frozen=True)
class JobContext:
    id: str
    queue: str
    function: str
    attempt: int  # 1 for the first try
    attempts: int  # total tries allowed
    _report: Callable[[float], None] = field(repr=False, compare=False)
    _cancel_asked: Callable[[], bool] = field(default=lambda: False, repr=False, compare=False)

    @property
    def cancel_requested(self) -> bool:
        """True once someone cancelled this job (:func:`jobqueue.cancel`). Thread mode cannot
        stop a running thread: a long job there should check this between steps and return
        (it then ends ``canceled``); one that does not is abandoned at its timeout. Process and
        async mode stop the job themselves within a second."""
        return self._cancel_asked()

    def dependencies(self, connection: redis.Redis | None = None) -> dict[str, client.JobInfo | None]:
        """The jobs this one waited for (its flow's children, its ``depends_on``), by id: how
        each ended (``status``, ``failed_reason``) and its ``result``; None for one whose record
        is gone. Reads Redis at ``$JOBQUEUE_REDIS_URL`` (set in worker pods) unless given a
        ``connection``."""
        return client.dependencies(self.id, connection=connection)

    def dependency_results(self, connection: redis.Redis | None = None) -> dict[str, Any]:
        """The return values of the jobs this one waited for that finished, by id (with
        ``allow_failure`` the others are left out: :meth:`dependencies` says how they ended)."""
        return {
            dep: info.result
            for dep, info in self.dependencies(connection).items()
            if info is not None and info.status == "finished"
        }

    def update_progress(self, percent: float) -> None:
        """Report progress, 0 (nothing done) … 100 (done)."""
        if (
            isinstance(percent, bool)
            or not isinstance(percent, int | float)
            or math.isnan(percent)
            or not (0 <= percent <= 100)
        ):
            raise ValueError(f"progress must be a number from 0 to 100, got {percent!r}")
        self._report(float(percent))


_current: ContextVar[JobContext | None] = ContextVar("jobqueue_current_job", default=None)


def current_job() -> JobContext:
    """The job this code runs in; RuntimeError when not called from inside a job."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("current_job() is only available while a jobqueue worker runs a job")
    return ctx


def update_progress(percent: float) -> None:
    """``current_job().update_progress(percent)``, and a no-op outside a job."""
    ctx = _current.get()
    if ctx is not None:
        ctx.update_progress(percent)


def activate(ctx: JobContext) -> Token[JobContext | None]:
    return _current.set(ctx)


def deactivate(token: Token[JobContext | None]) -> None:
    _current.reset(token)
