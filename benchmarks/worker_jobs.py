"""Job functions for the worker benchmarks (workers import them as ``worker_jobs``, with
``benchmarks/`` on PYTHONPATH). RQ's own workers run ``noop`` too, as a plain function."""

from __future__ import annotations

import asyncio
import os
import time

import redis

from jobqueue import job

_conn: redis.Redis | None = None


@job
def noop() -> None:
    return None


@job
async def aio_noop() -> None:
    return None


@job
def io_sleep(seconds: float) -> None:
    time.sleep(seconds)


@job
async def aio_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@job
def record(tag: str, seconds: float) -> None:
    """Works `seconds`, then logs one *completed* execution of `tag` (the chaos benchmark
    counts a job completed more than once as a duplicate); the start is logged too."""
    conn = _redis()
    conn.rpush("bench:starts", f"{tag} {time.time()!r}")
    time.sleep(seconds)
    conn.rpush("bench:executions", tag)


def _redis() -> redis.Redis:
    global _conn  # noqa: PLW0603 — one connection per process
    if _conn is None:
        _conn = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _conn


@job
def stamp() -> float:
    """Returns the time it ended (time.time()), its last act (bench_wait_latency.py)."""
    return time.time()
