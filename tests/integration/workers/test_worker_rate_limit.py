"""Rate limits (issue 21, item 1): spec.rateLimit {jobs, perSeconds} holds over every worker —
three real `jobqueue worker` pods on one queue start at most `jobs` jobs in any window, and as
many as that while there is work (the observed rate within 2 % of the limit)."""

from __future__ import annotations

import bisect
import time

import pytest
import redis

from integration.workers.whelpers import FN, JOBS, WorkerProcess, wait_for
from jobqueue import InvalidJobError, JobSpec, enqueue, enqueue_many, settings, stats

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def declare(conn: redis.Redis, queue: str, jobs: int, per: float) -> None:
    settings.publish(
        conn,
        settings.QueueSettings.model_validate(
            {"queueName": queue, "imports": [JOBS], "rateLimit": {"jobs": jobs, "perSeconds": per}}
        ),
    )


def starts(conn: redis.Redis, ids: list[str]) -> list[float]:
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(f"rq:job:{job_id}", "jq_start")
    return sorted(float(t) for t in pipe.execute() if t)


def observed_rate(times: list[float], jobs: int) -> float:
    """Jobs per second from the first start to the last, the first window's jobs left out:
    m windows' worth of starts span m - 1 windows (a count over a fixed span would be off by a
    whole window whenever the span's end splits one)."""
    return (len(times) - jobs) / (times[-1] - times[0])


def most_in_any_window(times: list[float], width: float) -> int:
    return max(bisect.bisect_left(times, t + width) - i for i, t in enumerate(times))


@pytest.mark.parametrize(("jobs", "per", "seconds"), [(40, 1.0, 15.0), (15, 2.5, 15.0)])
def test_three_pods_run_at_the_limit_and_never_above(
    redis_conn: redis.Redis, redis_url: str, jobs: int, per: float, seconds: float
) -> None:
    queue = "limited"
    declare(redis_conn, queue, jobs, per)
    n = int(jobs * seconds / per * 1.5)  # more than the limit lets run: demand all along
    ids = [f"j{i}" for i in range(n)]
    enqueue_many(queue, [JobSpec(FN + "noop", job_id=i) for i in ids], connection=redis_conn)
    pods = [WorkerProcess(redis_url, queue, pod=f"pod-{p}", mode="thread", concurrency=4) for p in "abc"]
    try:
        wait_for("the first job", lambda: redis_conn.zcard(f"rq:finished:{queue}") > 0, timeout=30)
        first = min(starts(redis_conn, ids))
        time.sleep(max(0.0, first + seconds + 1.0 - time.time()))
        # what the autoscaler writes to status.rateLimited (`kubectl get jq -o wide`: LIMITED)
        assert stats.snapshot(redis_conn, [queue])[queue].rate_limited
    finally:
        for w in pods:
            w.stop()
    wait_for(
        "the limit no longer binding",
        lambda: not stats.snapshot(redis_conn, [queue])[queue].rate_limited,
        timeout=5,
    )
    times = starts(redis_conn, ids)
    assert len(times) < n  # the limit, not the work, ended the run
    rate, limit = observed_rate(times, jobs), jobs / per
    assert abs(rate - limit) <= 0.02 * limit, f"observed {rate:.2f} jobs/s, limit {limit:.2f}"
    # never above it: a job starts within 50 ms of its claim, so no (per - 0.05) s window holds more
    assert most_in_any_window(times, per - 0.05) <= jobs
    print(
        f"limit {limit:.2f}/s: observed {rate:.3f}/s over {times[-1] - times[0]:.1f} s; most in a window "
        f"{most_in_any_window(times, per - 0.05)} of {jobs}"
    )
    # the pods shared the work (whichever asks first when the window frees takes the free units)
    assert len({redis_conn.hget(f"rq:job:{i}", "jq_pod") for i in ids} - {None}) >= 2


def test_each_key_has_its_own_window_and_never_holds_up_the_others(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    queue = "per-key"
    settings.publish(
        redis_conn,
        settings.QueueSettings.model_validate(
            {"queueName": queue, "imports": [JOBS], "keyRateLimit": {"jobs": 5, "perSeconds": 1}}
        ),
    )
    # tenant a's backlog first; tenant b's jobs and jobs without a key behind it
    specs = [JobSpec(FN + "noop", job_id=f"a{i}", rate_key="tenant-a") for i in range(60)]
    specs += [JobSpec(FN + "noop", job_id=f"b{i}", rate_key="tenant-b") for i in range(10)]
    specs += [JobSpec(FN + "noop", job_id=f"n{i}") for i in range(10)]
    enqueue_many(queue, specs, connection=redis_conn)
    pods = [WorkerProcess(redis_url, queue, pod=f"pod-{p}", mode="thread", concurrency=4) for p in "ab"]
    try:
        wait_for("the first job", lambda: redis_conn.zcard(f"rq:finished:{queue}") > 0, timeout=30)
        time.sleep(5.5)
        waiting = redis_conn.hget("rq:job:a59", "status")
    finally:
        for w in pods:
            w.stop()
    a = starts(redis_conn, [f"a{i}" for i in range(60)])
    b = starts(redis_conn, [f"b{i}" for i in range(10)])
    n = starts(redis_conn, [f"n{i}" for i in range(10)])
    first = min(a + b + n)
    assert len(n) == 10
    assert max(n) - first < 0.5  # no key: not held up by tenant a's backlog
    assert len(b) == 10
    assert max(b) - first < 1.5  # tenant b: two windows of 5, beside tenant a
    assert most_in_any_window(b, 0.95) <= 5
    assert most_in_any_window(a, 0.95) <= 5  # tenant a: 5 a second, never more
    # and as many as that: windows begin every second from its first start, so 5 or 6 of them
    # (25 to 30 starts) fall in the 5 s from it, depending on where the span ends
    assert 25 <= len([t for t in a if t < min(a) + 5.0]) <= 30
    assert waiting == b"scheduled"  # the rest of its backlog waits for a reserved window
    with pytest.raises(InvalidJobError, match="rate_key must be a string of 1-200 characters"):
        enqueue(queue, FN + "noop", rate_key="", connection=redis_conn)
