"""The no-op job for RQ's own workers in the benchmarks: a plain module without imports.

RQ's forking Worker re-imports the job's module in every work horse; giving it a module
that imports nothing (not even jobqueue, which ``worker_jobs`` needs for ``@job``) measures
RQ at its best."""


def noop() -> None:
    return None


def io_sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def record(tag: str, seconds: float) -> None:
    """Same as worker_jobs.record, for RQ's workers."""
    import os
    import time

    import redis

    conn = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    conn.rpush("bench:starts", f"{tag} {time.time()!r}")
    time.sleep(seconds)
    conn.rpush("bench:executions", tag)
