"""The job the autoscaler benchmarks run on real worker pods (``worker.imports: [autoscaler_jobs]``).

Each run records, in the queue's own Redis, which pod ran it and when it started and ended
(unix time), so the soak benchmark can tell whether the pod was told to stop while it ran.
Plain ``rq worker`` pods (the KEDA baseline) run it too: they have ``REDIS_URL`` instead of
``JOBQUEUE_REDIS_URL``, and ``@job`` leaves the function a plain one.
"""

from __future__ import annotations

import functools
import os
import time

import redis

from jobqueue import job


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("JOBQUEUE_REDIS_URL") or os.environ["REDIS_URL"])


@job
def work(tag: str, seconds: float) -> str:
    pod = os.environ.get("POD_NAME", "?")
    _redis().rpush(f"soak:start:{tag}", f"{pod} {time.time()}")
    time.sleep(seconds)
    _redis().rpush(f"soak:end:{tag}", f"{pod} {time.time()}")
    return tag
