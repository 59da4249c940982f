"""Job functions the worker tests run (imported by workers as ``integration.workers.wjobs``).

Each job records what happened in Redis (``JOBQUEUE_TEST_REDIS_URL``), so tests can see a
job's effect from outside the worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import time
from typing import Any

import redis
from prometheus_client import Counter

from jobqueue import current_job, job, update_progress

#: A metric of the application's own, counted inside job processes.
EVENTS = Counter("wjobs_custom_events_total", "Events counted by test jobs")

_conns: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis:
    # one client per URL: in-process test workers run against a different database per test
    url = os.environ["JOBQUEUE_TEST_REDIS_URL"]
    if url not in _conns:
        _conns[url] = redis.Redis.from_url(url)
    return _conns[url]


@job
def noop() -> None:
    return None


@job
def journal(tag: str, seconds: float) -> str:
    """Sleeps ``seconds``, then appends ``tag`` to the file ``JOBQUEUE_TEST_JOURNAL`` (one
    line, one write: whole lines even from many processes). Outside Redis, so a failover that
    loses Redis writes cannot lose the record of a run."""
    time.sleep(seconds)
    fd = os.open(os.environ["JOBQUEUE_TEST_JOURNAL"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{tag}\n".encode())
    finally:
        os.close(fd)
    return tag


@job
def add(a: int, b: int) -> int:
    return a + b


@job
def record(tag: str) -> str:
    """Appends tag to the list `runs` (counts executions)."""
    _redis().rpush("test:runs", tag)
    return tag


@job
def fail_times(tag: str, times: int) -> str:
    """Fails the first `times` attempts, then succeeds; logs each attempt's time."""
    n = _redis().rpush(f"test:attempts:{tag}", repr(time.time()))
    if n <= times:
        raise RuntimeError(f"planned failure {n} of {times}")
    return "ok"


@job
def always_fail(message: str) -> None:
    raise ValueError(message)


@job
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@job
def spin(seconds: float) -> int:
    """Busy CPU loop (pure Python: interruptible in thread mode)."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


@job
async def asleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@job
def with_progress(steps: int, pause: float) -> dict[str, Any]:
    ctx = current_job()
    for i in range(1, steps + 1):
        time.sleep(pause)
        ctx.update_progress(100 * i / steps)
    return {"id": ctx.id, "attempt": ctx.attempt, "attempts": ctx.attempts}


@job
def progress_then_sleep(percent: float, seconds: float) -> None:
    update_progress(percent)
    time.sleep(seconds)


@job
def crash() -> None:
    os._exit(3)


@job
def order(tag: str) -> None:
    _redis().rpush("test:order", tag)


@job
def count_event() -> int:
    EVENTS.inc()
    return os.getpid()


def not_a_job() -> None:
    _redis().rpush("test:runs", "not_a_job ran")


# --- jobs that misbehave (tests/integration/workers/test_worker_poison.py)


class Unprintable(Exception):
    """An exception that cannot be turned into text: its __str__ and __repr__ raise."""

    def __str__(self) -> str:
        raise ValueError("no text for you")

    def __repr__(self) -> str:
        raise ValueError("no repr either")


_BASE = {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt, "GeneratorExit": GeneratorExit}


@job
def unprintable() -> None:
    raise Unprintable()


@job
async def aunprintable() -> None:
    await asyncio.sleep(0)
    raise Unprintable()


@job
def raise_base(kind: str) -> None:
    raise _BASE[kind]("from a job")


@job
async def araise_base(kind: str) -> None:
    await asyncio.sleep(0)
    raise _BASE[kind]("from a job")


@job
async def swallow_cancel(seconds: float) -> str:
    """Ignores every cancellation for `seconds`, then returns (so the test process ends)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)
    _redis().rpush("test:swallowed", "done")
    return "survived"


@job
async def cancel_self() -> None:
    raise asyncio.CancelledError()


@job
def segfault() -> None:
    ctypes.string_at(0)


@job
def sigkilled_once(tag: str) -> str:
    """Its first attempt's process gets SIGKILL (as from the OOM killer); later ones succeed."""
    if _redis().rpush(f"test:attempts:{tag}", repr(time.time())) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return "ok"


@job
def capped(seconds: float) -> int:
    """Counts jobs running at once (test:running) and records the most seen (test:running:max)."""
    r = _redis()
    n = int(r.eval(_ENTER, 2, "test:running", "test:running:max"))
    try:
        time.sleep(seconds)
    finally:
        r.decr("test:running")
    return n


_ENTER = """
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or 0) then redis.call('SET', KEYS[2], n) end
return n
"""


@job
def mark_after(tag: str, seconds: float) -> str:
    """Sleeps, then records `tag` in test:marks: a job stopped before the end records nothing."""
    _redis().rpush("test:started", tag)
    time.sleep(seconds)
    _redis().rpush("test:marks", tag)
    return tag


@job
async def amark_after(tag: str, seconds: float) -> str:
    _redis().rpush("test:started", tag)
    await asyncio.sleep(seconds)
    _redis().rpush("test:marks", tag)
    return tag


@job
def cooperative(tag: str, seconds: float) -> str:
    """Checks current_job().cancel_requested between 10 ms steps (what thread-mode jobs do)."""
    _redis().rpush("test:started", tag)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if current_job().cancel_requested:
            _redis().rpush("test:saw-cancel", tag)
            return "stopped early"
        time.sleep(0.01)
    _redis().rpush("test:marks", tag)
    return tag


@job
def stamp_after(seconds: float) -> float:
    """Sleeps, then returns the time it ended (time.time()), its very last act."""
    time.sleep(seconds)
    return time.time()


@job
def gather(own_redis: bool = True) -> dict[str, Any]:
    """A flow's parent: records its run in `runs` and returns how each dependency ended
    (``own_redis=False``: read through ``$JOBQUEUE_REDIS_URL``, as a job in a pod does)."""
    ctx = current_job()
    conn = _redis() if own_redis else None
    _redis().rpush("test:runs", f"gather:{ctx.id}")
    deps = ctx.dependencies(conn)
    return {
        "results": ctx.dependency_results(conn),
        "ended": {dep: (info.status if info else None) for dep, info in deps.items()},
    }
