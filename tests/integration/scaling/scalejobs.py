"""Job functions the autoscaler's integration tests run on real worker pods.

Imported by the workers as ``integration.scaling.scalejobs``: from the tests' worker image
(tests/testimages.py) in container mode, from the repository's ``tests/`` folder (on the pod
runner's ``PYTHONPATH``) in process mode. Each run records which pod ran
it, in the queue's own Redis, so tests can tell a job that ran once from one that ran twice.
"""

from __future__ import annotations

import functools
import os
import time

import redis

from jobqueue import job


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["JOBQUEUE_REDIS_URL"])


@job
def nap(tag: str, seconds: float) -> str:
    """Sleep ``seconds``; ``test:runs:<tag>`` gets the pod at the start, ``test:done:<tag>`` at the end."""
    pod = os.environ.get("POD_NAME", "?")
    _redis().rpush(f"test:runs:{tag}", pod)
    time.sleep(seconds)
    _redis().rpush(f"test:done:{tag}", pod)
    return tag


@job
def hog_once(tag: str, megabytes: int) -> str:
    """Allocate ``megabytes`` on the first run only (a memory limit then kills the worker); later
    runs finish. ``test:runs:<tag>`` and ``test:done:<tag>`` as for :func:`nap`."""
    pod = os.environ.get("POD_NAME", "?")
    first = _redis().rpush(f"test:runs:{tag}", pod) == 1
    if first:
        hog = bytearray(megabytes * 2**20)
        hog[::4096] = b"x" * len(hog[::4096])  # touch every page: RSS, not just address space
    _redis().rpush(f"test:done:{tag}", pod)
    return tag
