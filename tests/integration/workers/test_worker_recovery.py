"""Lost jobs: the operator's recover_pod() and the workers' own fallback."""

from __future__ import annotations

import time

import pytest
import redis

from integration.workers.whelpers import (
    FN,
    claim,
    publish,
    thread_worker,
    wait_for,
    wait_status,
    worker_process,
)
from jobqueue import enqueue, get_job, protocol
from jobqueue.recovery import recover_pod
from jobqueue.stats import snapshot


def test_recover_pod_requeues_or_fails_and_is_idempotent(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "rp", attempts=2)
    enqueue("rp", FN + "noop", job_id="first-try", connection=redis_conn)
    enqueue("rp", FN + "noop", job_id="other-pod", connection=redis_conn)
    enqueue("rp", FN + "noop", job_id="last-try", attempts=1, connection=redis_conn)
    # pod-a takes two jobs, pod-b one; pod-a then vanishes
    assert [r[0] for r in claim(redis_conn, "rp", 1, pod="pod-a")] == ["first-try"]
    assert [r[0] for r in claim(redis_conn, "rp", 1, pod="pod-b")] == ["other-pod"]
    assert [r[0] for r in claim(redis_conn, "rp", 1, pod="pod-a")] == ["last-try"]
    redis_conn.hset("rq:worker:pod-a.1", mapping={"hostname": "pod-a", "state": "busy"})
    redis_conn.sadd("rq:workers:rp", "rq:worker:pod-a.1")
    redis_conn.sadd("rq:workers", "rq:worker:pod-a.1")

    report = recover_pod(redis_conn, "rp", "pod-a", reason="pod pod-a was OOMKilled")
    assert report.requeued == ["first-try"]
    assert report.failed == ["last-try"]
    assert report.workers_removed == ["pod-a.1"]
    assert report.jobs == 2
    again = get_job("rp", "first-try", connection=redis_conn)
    assert (again.status, again.attempts_made) == ("queued", 1)
    assert again.failed_reason == "pod pod-a was OOMKilled"
    assert redis_conn.lrange("rq:queue:rp", 0, 0) == [b"first-try"]  # back at the front
    gone = get_job("rp", "last-try", connection=redis_conn)
    assert gone.status == "failed"
    assert gone.failed_reason == "pod pod-a was OOMKilled (attempt 1 of 1, none left)"
    assert redis_conn.zscore("rq:failed:rp", "last-try") is not None
    assert get_job("rp", "other-pod", connection=redis_conn).status == "started"
    assert not redis_conn.sismember("rq:workers:rp", "rq:worker:pod-a.1")

    assert recover_pod(redis_conn, "rp", "pod-a", reason="again").jobs == 0  # idempotent
    assert recover_pod(redis_conn, "rp", "never-existed", reason="x").jobs == 0
    with pytest.raises(ValueError, match="pod_name"):
        recover_pod(redis_conn, "rp", "", reason="x")


def test_late_result_of_a_recovered_job_is_dropped(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "late", attempts=3)
    enqueue("late", FN + "noop", job_id="j", connection=redis_conn)
    (row,) = claim(redis_conn, "late", 1, pod="pod-old")
    recover_pod(redis_conn, "late", "pod-old", reason="pod vanished")
    (row2,) = claim(redis_conn, "late", 1, pod="pod-new")
    now = repr(time.time())
    stale_ack = protocol.Ack(row[0], row[1], "ok", "", "", now, now, 60, "", "", "", "")
    claim(redis_conn, "late", 0, pod="pod-old", acks=[stale_ack])
    info = get_job("late", "j", connection=redis_conn)
    assert (info.status, info.pod, info.attempts_made) == ("started", "pod-new", 2)
    assert row2[1] != row[1]


def test_claims_of_a_call_whose_reply_was_lost_are_handed_back_by_the_next_call(
    redis_conn: redis.Redis,
) -> None:
    # A frozen Redis runs a call after the worker's read timed out: the jobs it claimed are
    # unknown to the worker. Its next call names the lost one; they go back, attempt refunded
    # (attempts=1: waiting for their leases to expire would have failed them unrun).
    publish(redis_conn, "lostreply", attempts=1)
    for i in range(4):
        enqueue("lostreply", FN + "noop", job_id=f"j{i}", connection=redis_conn)
    at = time.time()
    lost = claim(redis_conn, "lostreply", 2, worker="w-a", xp="a1.", now=at)
    other = claim(redis_conn, "lostreply", 1, worker="w-b", xp="b1.", now=at)  # same lease, not ours
    unanswered = protocol.Unanswered(at + 30.0, "a1.")
    again = claim(redis_conn, "lostreply", 1, worker="w-a", xp="a2.", lost=[unanswered])

    # both handed back to the front of the queue, so the new call claimed one of them
    (reclaimed,) = [r[0] for r in again]
    (handed_back,) = {r[0] for r in lost} - {reclaimed}
    first = get_job("lostreply", reclaimed, connection=redis_conn)
    assert (first.status, first.attempts_made) == ("started", 1)
    second = get_job("lostreply", handed_back, connection=redis_conn)
    assert (second.status, second.attempts_made) == ("queued", 0)
    kept = get_job("lostreply", other[0][0], connection=redis_conn)
    assert kept.status == "started"
    members = {m.decode() for m in redis_conn.zrange("rq:wip:lostreply", 0, -1)}
    assert members == {f"{again[0][0]}:{again[0][1]}", f"{other[0][0]}:{other[0][1]}"}


def test_live_workers_recover_expired_leases(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "fb", attempts=2)
    enqueue("fb", FN + "record", "recovered", job_id="orphan", connection=redis_conn)
    claim(redis_conn, "fb", 1, pod="dead-pod", lease=1.0)  # claimed, then its pod died silently
    with thread_worker(redis_url, "fb", concurrency=1, heartbeat_seconds=0.2, reap_seconds=0.2):
        info = wait_status(redis_conn, "fb", "orphan", "finished", timeout=10)
    assert info.attempts_made == 2
    assert info.pod == "pod-t"
    assert redis_conn.lrange("test:runs", 0, -1) == [b"recovered"]


@pytest.mark.slow
def test_sigkilled_pod_jobs_are_recovered_by_other_workers_within_30s(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    publish(redis_conn, "kill", attempts=2)
    enqueue("kill", FN + "sleep", 60, job_id="victim", connection=redis_conn)
    with worker_process(redis_url, "kill", pod="pod-doomed") as doomed:
        wait_status(redis_conn, "kill", "victim", "started", timeout=20)
        doomed.kill_pod()
        killed_at = time.time()
    with worker_process(redis_url, "kill", pod="pod-survivor", mode="thread") as survivor:
        info = wait_for(
            "recovery",
            lambda: (i := get_job("kill", "victim", connection=redis_conn)).pod == "pod-survivor" and i,
            timeout=40,
        )
        recovered_after = info.started_at.timestamp() - killed_at if info.started_at else 99
        assert recovered_after < 30, recovered_after
        assert "stopped renewing its lease" in (info.failed_reason or "")
        assert "pod-doomed" in (info.failed_reason or "")
        assert not any(w.pod == "pod-doomed" for w in snapshot(redis_conn, ["kill"])["kill"].workers)
        survivor.kill_pod()  # rather than wait for its 60 s job


def test_delayed_jobs_fire_on_time_after_a_worker_is_sigkilled(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    publish(redis_conn, "dk")
    with (
        worker_process(redis_url, "dk", pod="pod-1", mode="thread") as w1,
        worker_process(redis_url, "dk", pod="pod-2", mode="thread"),
    ):
        wait_for("2 workers", lambda: len(snapshot(redis_conn, ["dk"])["dk"].workers) == 2)
        due = time.time() + 3
        for i in range(5):
            enqueue("dk", FN + "noop", job_id=f"d{i}", delay=due - time.time(), connection=redis_conn)
        w1.kill_pod()  # no scheduler lock to lose: the other worker promotes due jobs itself
        for i in range(5):
            info = wait_status(redis_conn, "dk", f"d{i}", "finished", timeout=15)
            assert info.started_at is not None
            assert -0.01 < info.started_at.timestamp() - due < 1.0
