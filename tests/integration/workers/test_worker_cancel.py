"""Cancel (issue 21, item 2) against real Redis with real workers: a pending job never starts; a
running one is stopped within a second in process and async mode (the real `jobqueue worker`
command), asked to stop in thread mode and abandoned at its timeout if it does not; it ends
`canceled` (RQ's status), never retried — also when its worker is lost meanwhile."""

from __future__ import annotations

import json
import time

import pytest
import redis

from integration.workers.whelpers import (
    FN,
    claim,
    jq,
    publish,
    thread_worker,
    wait_for,
    wait_status,
    worker_process,
)
from jobqueue import JobStateError, UnknownJobError, cancel, enqueue, get_job, payload, protocol, retry
from jobqueue.admin import list_jobs
from jobqueue.worker import _REAP

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def _started(conn: redis.Redis, tag: str) -> bool:
    return tag.encode() in conn.lrange("test:started", 0, -1)


def test_pending_jobs_never_start(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "c", attempts=3)
    enqueue("c", FN + "mark_after", "queued", 0, job_id="q1", priority=2, connection=redis_conn)
    enqueue("c", FN + "mark_after", "scheduled", 0, job_id="s1", delay=0.3, connection=redis_conn)
    enqueue("c", FN + "mark_after", "other", 0, job_id="o1", connection=redis_conn)
    first = cancel("c", "q1", by="alice", connection=redis_conn)
    assert (first.previous_status, first.stopping, first.worker) == ("queued", False, None)
    assert cancel("c", "s1", connection=redis_conn).previous_status == "scheduled"
    info = get_job("c", "q1", connection=redis_conn)
    assert (info.status, info.failed_reason) == ("canceled", "canceled by alice before it started")
    assert info.done
    assert redis_conn.llen("rq:queue:c:p2") == 0
    assert redis_conn.zcard("rq:scheduled:c") == 0
    assert {m.decode() for m in redis_conn.zrange("rq:canceled:c", 0, -1)} == {"q1", "s1"}
    with thread_worker(redis_url, "c"):
        wait_status(redis_conn, "c", "o1", "finished")
        time.sleep(0.6)  # the scheduled one would be due by now
    assert redis_conn.lrange("test:started", 0, -1) == [b"other"]
    assert get_job("c", "s1", connection=redis_conn).status == "canceled"
    assert [j.id for j in list_jobs("c", "canceled", connection=redis_conn).jobs] == ["s1", "q1"]
    with pytest.raises(JobStateError, match="is canceled already; nothing to cancel"):
        cancel("c", "q1", connection=redis_conn)
    with pytest.raises(JobStateError, match="is finished already"):
        cancel("c", "o1", connection=redis_conn)
    with pytest.raises(UnknownJobError):
        cancel("c", "nope", connection=redis_conn)
    # a person may still retry a canceled job on purpose
    assert retry("c", "q1", connection=redis_conn).status == "queued"
    assert redis_conn.zscore("rq:canceled:c", "q1") is None


@pytest.mark.parametrize(("mode", "function"), [("process", "mark_after"), ("async", "amark_after")])
def test_running_job_is_stopped_within_a_second_and_never_retried(
    redis_conn: redis.Redis, redis_url: str, mode: str, function: str
) -> None:
    queue = f"stop-{mode}"
    publish(redis_conn, queue, attempts=3, timeoutSeconds=60)
    enqueue(queue, FN + function, "long", 30, job_id="long", connection=redis_conn)
    with worker_process(redis_url, queue, mode=mode, concurrency=2) as w:
        wait_for("the job running", lambda: _started(redis_conn, "long"), timeout=30)
        asked = time.time()
        res = cancel(queue, "long", connection=redis_conn)
        assert (res.previous_status, res.stopping) == ("started", True)
        assert res.worker is not None
        assert res.worker.startswith("pod-a.")
        info = wait_status(redis_conn, queue, "long", "canceled", timeout=5)
        seen = time.time() - asked
        assert info.finished_at is not None
        stopped = info.finished_at.timestamp() - asked
        assert stopped < 1.0, f"{mode}: the worker stopped it {stopped:.3f} s after the cancel"
        assert seen < 1.0, f"{mode}: canceled in Redis {seen:.3f} s after the cancel"
        how = "its process was killed" if mode == "process" else "its task was cancelled"
        assert info.failed_reason == f"canceled; stopped: {how}"
        # never retried, though attempts were left; and the worker runs the next job
        enqueue(queue, FN + "mark_after", "next", 0, job_id="next", connection=redis_conn)
        wait_status(redis_conn, queue, "next", "finished", timeout=15)
        again = get_job(queue, "long", connection=redis_conn)
        assert (again.status, again.attempts_made) == ("canceled", 1)
        assert redis_conn.lrange("test:marks", 0, -1) == [b"next"]  # "long" never got to the end
        assert "canceled: its" in w.log() or "canceled" in w.log()
    assert redis_conn.zscore(f"rq:canceled:{queue}", "long") is not None


def test_thread_mode_job_reads_the_flag_and_stops(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "t", attempts=3)
    enqueue("t", FN + "cooperative", "co", 30, job_id="co", connection=redis_conn)
    with thread_worker(redis_url, "t"):
        wait_for("running", lambda: _started(redis_conn, "co"))
        asked = time.time()
        cancel("t", "co", connection=redis_conn)
        info = wait_status(redis_conn, "t", "co", "canceled", timeout=5)
    assert info.finished_at is not None
    assert info.finished_at.timestamp() - asked < 1.0
    assert redis_conn.lrange("test:saw-cancel", 0, -1) == [b"co"]
    assert info.failed_reason == (
        "canceled; stopped: it ended after it was asked to stop (current_job().cancel_requested)"
    )
    assert info.attempts_made == 1


def test_thread_mode_job_that_ignores_the_flag_is_abandoned_at_its_timeout(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    publish(redis_conn, "ti", attempts=3, timeoutSeconds=1)
    enqueue("ti", FN + "mark_after", "deaf", 3, job_id="deaf", connection=redis_conn)
    with thread_worker(redis_url, "ti"):
        wait_for("running", lambda: _started(redis_conn, "deaf"))
        cancel("ti", "deaf", connection=redis_conn)
        time.sleep(0.3)
        assert get_job("ti", "deaf", connection=redis_conn).status == "started"  # still running
        info = wait_status(redis_conn, "ti", "deaf", "canceled", timeout=5)
        assert info.failed_reason is not None
        assert "did not stop by its timeout of 1 s and was abandoned" in info.failed_reason
        time.sleep(1.5)
        assert get_job("ti", "deaf", connection=redis_conn).attempts_made == 1  # never retried


def _ack(job_id: str, ex: str, outcome: protocol.Outcome) -> protocol.Ack:
    now = time.time()
    iso = payload.utcformat(now)
    keep = 0.0 if outcome == "retry" else 3600
    return protocol.Ack(
        job_id, ex, outcome, iso, iso, repr(now), repr(now), keep, "", "boom", "", "ValueError: boom"
    )


def test_a_failed_attempt_of_a_job_being_cancelled_is_not_retried(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "race", attempts=5)
    enqueue("race", FN + "noop", job_id="r", connection=redis_conn)
    ((job_id, ex, _),) = claim(redis_conn, "race", 1)
    cancel("race", job_id, by="bob", connection=redis_conn)
    # the attempt failed on its own before the worker read the cancel: it reports a retry
    claim(redis_conn, "race", 0, acks=[_ack(job_id, ex, "retry")])
    info = get_job("race", "r", connection=redis_conn)
    assert info.status == "canceled"
    assert info.failed_reason == "canceled by bob; its attempt had failed: ValueError: boom"
    assert redis_conn.llen("rq:queue:race") == 0
    assert redis_conn.zcard("rq:scheduled:race") == 0


def test_a_job_whose_worker_is_lost_while_cancelling_ends_canceled(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "lost", attempts=5)
    enqueue("lost", FN + "noop", job_id="l", connection=redis_conn)
    claim(redis_conn, "lost", 1, worker="gone", lease=0.1)
    cancel("lost", "l", connection=redis_conn)
    assert redis_conn.lrange("jobqueue:cancel:gone", 0, -1)  # told, but nobody listens
    now = time.time() + 1
    requeued, failed = _REAP(redis_conn, "lost", repr(now), payload.utcformat(now), 100, 15)
    assert (requeued, failed) == ([], [])
    info = get_job("lost", "l", connection=redis_conn)
    assert (info.status, info.failed_reason) == ("canceled", "canceled (its worker was lost)")
    assert redis_conn.llen("rq:queue:lost") == 0


def test_cli_cancel(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "cli", attempts=2)
    enqueue("cli", FN + "noop", job_id="pending", delay=60, connection=redis_conn)
    done = jq(redis_url, "cancel", "cli", "pending")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "canceled job pending (it was scheduled)"
    again = jq(redis_url, "cancel", "cli", "pending")
    assert again.returncode == 1
    assert "is canceled already" in again.stderr
    assert jq(redis_url, "cancel", "cli", "nope").returncode == 3
    enqueue("cli", FN + "mark_after", "run", 30, job_id="run", connection=redis_conn)
    with worker_process(redis_url, "cli"):
        wait_for("running", lambda: _started(redis_conn, "run"), timeout=30)
        stopped = jq(redis_url, "cancel", "cli", "run", "--wait", "--by", "ops")
        assert stopped.returncode == 0, stopped.stderr
        lines = stopped.stdout.splitlines()
        assert lines[0].startswith("job run is running on pod-a.")
        assert lines[1] == "job run canceled: canceled by ops; stopped: its process was killed"
    listed = jq(redis_url, "jobs", "cli", "--state", "canceled", "-o", "json")
    assert [j["id"] for j in json.loads(listed.stdout)["jobs"]] == ["run", "pending"]
