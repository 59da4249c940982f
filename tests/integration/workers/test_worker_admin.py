"""Job status, retry and remove (the seed's admin endpoints) against real Redis."""

from __future__ import annotations

import pytest
import redis

from integration.workers.whelpers import FN, publish, thread_worker, wait_status
from jobqueue import (
    JobStateError,
    UnknownJobError,
    UnknownQueueError,
    enqueue,
    get_job,
    queue_stats,
    remove,
    retry,
)


def test_unknown_job(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "a")
    with pytest.raises(UnknownJobError, match="no job 'nope' in queue 'a'"):
        get_job("a", "nope", connection=redis_conn)
    with pytest.raises(UnknownJobError):
        retry("a", "nope", connection=redis_conn)
    with pytest.raises(UnknownJobError):
        remove("a", "nope", connection=redis_conn)


def test_job_of_another_queue_is_not_found(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "a")
    publish(redis_conn, "b")
    enqueue("a", FN + "noop", job_id="x", connection=redis_conn)
    with pytest.raises(UnknownJobError, match="belongs to queue 'a'"):
        get_job("b", "x", connection=redis_conn)
    with pytest.raises(UnknownJobError, match="belongs to queue 'a'"):
        remove("b", "x", connection=redis_conn)


def test_failed_job_status_and_retry(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "f", attempts=2, backoff={"type": "fixed", "delaySeconds": 0.1})
    enqueue("f", FN + "always_fail", "boom", job_id="bad", connection=redis_conn)
    enqueue("f", FN + "noop", job_id="fine", connection=redis_conn)
    with thread_worker(redis_url, "f"):
        info = wait_status(redis_conn, "f", "bad", "failed")
        wait_status(redis_conn, "f", "fine", "finished")
    assert info.attempts_made == 2
    assert info.attempts == 2
    assert info.failed_reason == "ValueError: boom"
    assert info.stacktrace
    assert "Traceback" in info.stacktrace
    assert "always_fail" in info.stacktrace
    assert info.finished_at is not None
    assert info.worker
    assert info.pod == "pod-t"
    with pytest.raises(JobStateError, match="is finished; only failed jobs can be retried"):
        retry("f", "fine", connection=redis_conn)

    again = retry("f", "bad", connection=redis_conn)
    assert (again.status, again.attempts_made, again.failed_reason) == ("queued", 0, None)
    assert redis_conn.zscore("rq:failed:f", "bad") is None
    assert redis_conn.lrange("rq:queue:f", 0, -1) == [b"bad"]
    assert redis_conn.ttl("rq:job:bad") == -1  # no longer expiring with the failed retention
    with thread_worker(redis_url, "f"):
        info = wait_status(redis_conn, "f", "bad", "failed")
    assert info.attempts_made == 2  # a fresh set of attempts, used up again


def test_remove_in_each_state(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "r")
    enqueue("r", FN + "noop", job_id="queued", connection=redis_conn)
    enqueue("r", FN + "noop", job_id="sched", delay=60, connection=redis_conn)
    enqueue("r", FN + "noop", job_id="prio", priority=2, connection=redis_conn)
    assert remove("r", "queued", connection=redis_conn) == "queued"
    assert remove("r", "sched", connection=redis_conn) == "scheduled"
    assert remove("r", "prio", connection=redis_conn) == "queued"
    assert redis_conn.llen("rq:queue:r") == 0
    assert redis_conn.zcard("rq:scheduled:r") == 0
    assert redis_conn.llen("rq:queue:r:p2") == 0
    assert not redis_conn.exists("rq:job:queued")
    enqueue("r", FN + "sleep", 1.0, job_id="busy", connection=redis_conn)
    enqueue("r", FN + "noop", job_id="done", connection=redis_conn)
    with thread_worker(redis_url, "r", concurrency=2):
        wait_status(redis_conn, "r", "busy", "started")
        with pytest.raises(JobStateError, match="is running"):
            remove("r", "busy", connection=redis_conn)
        wait_status(redis_conn, "r", "done", "finished")
        assert remove("r", "done", connection=redis_conn) == "finished"
        assert redis_conn.zscore("rq:finished:r", "done") is None
        assert not redis_conn.exists("rq:results:done")
        wait_status(redis_conn, "r", "busy", "finished")


def test_queue_stats_of_an_undeclared_queue(redis_conn: redis.Redis) -> None:
    with pytest.raises(UnknownQueueError):
        queue_stats("ghost", connection=redis_conn)
    publish(redis_conn, "real")
    enqueue("real", FN + "noop", connection=redis_conn)
    assert queue_stats("real", connection=redis_conn).queued == 1
