"""snapshot(): every figure of every queue, one round trip, read-only."""

from __future__ import annotations

import time
from typing import Any

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from integration.workers.whelpers import FN, claim, publish, thread_worker, wait_for, wait_status
from jobqueue import JobSpec, enqueue, enqueue_many
from jobqueue.stats import snapshot


def _dump(conn: redis.Redis) -> dict[bytes, tuple[bytes | None, int]]:
    return {k: (conn.dump(k), conn.ttl(k) > 0) for k in conn.keys("*")}  # type: ignore[misc]


def test_figures_of_a_queue_in_every_state(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "s1")
    now = time.time()
    enqueue_many(
        "s1", [JobSpec(FN + "noop", priority=p) for p in (1, 1, 2, 3, 3, 3, 5)], connection=redis_conn
    )
    enqueue("s1", FN + "noop", delay=300, connection=redis_conn)
    enqueue("s1", FN + "noop", job_id="due-soon", delay=0.2, connection=redis_conn)
    rows = claim(redis_conn, "s1", 2, pod="pod-1", lease=0.5)  # two running, leases about to expire
    time.sleep(0.6)
    s = snapshot(redis_conn, ["s1"], now=time.time())["s1"]
    # smooth WRR served level 1 then level 2 (16:8 credit)
    assert s.queued == 5
    assert s.queued_by_priority == {1: 1, 2: 0, 3: 3, 4: 0, 5: 1}
    assert (s.scheduled, s.scheduled_due) == (2, 1)
    assert (s.running, s.lost) == (2, 2)
    assert (s.failed, s.finished) == (0, 0)
    assert 0.5 <= s.oldest_queued_seconds < 5
    assert s.last_activity_at is not None
    assert now <= s.last_activity_at <= time.time()
    assert s.workers == []  # the claims came from no registered worker
    assert len(rows) == 2


def test_many_queues_in_one_call_and_unknown_queues_read_empty(redis_conn: redis.Redis) -> None:
    names = [f"m{i}" for i in range(600)]  # more than one chunk
    for i, q in enumerate(names[:30]):
        publish(redis_conn, q)
        enqueue_many(q, [JobSpec(FN + "noop") for _ in range(i)], connection=redis_conn)
    snap = snapshot(redis_conn, names)
    assert list(snap) == names
    assert [snap[q].queued for q in names[:30]] == list(range(30))
    assert all(snap[q].queued == 0 and snap[q].last_activity_at is None for q in names[30:])


def test_oldest_queued_of_a_plain_rq_job(redis_conn: redis.Redis) -> None:
    # no jq_ready field: the age comes from RQ's enqueued_at timestamp, parsed in Lua
    Queue("plain", connection=redis_conn, serializer=JSONSerializer).enqueue(FN + "noop")
    later = time.time() + 42
    s = snapshot(redis_conn, ["plain"], now=later)["plain"]
    assert s.queued == 1
    assert 41 < s.oldest_queued_seconds < 43


def test_workers_and_activity(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "wk")
    enqueue("wk", FN + "sleep", 1, job_id="z", connection=redis_conn)
    with thread_worker(redis_url, "wk", concurrency=3, pod="pod-wk"):
        wait_status(redis_conn, "wk", "z", "started")
        (w,) = wait_for("busy worker", lambda: snapshot(redis_conn, ["wk"])["wk"].workers)
        assert (w.pod, w.state, w.current_job, w.busy_slots, w.slots) == ("pod-wk", "busy", "z", 1, 3)
        wait_status(redis_conn, "wk", "z", "finished")
        s = wait_for(
            "idle", lambda: (x := snapshot(redis_conn, ["wk"])["wk"]).workers[0].state == "idle" and x
        )
        assert s.finished == 1
        assert s.running == 0
        assert s.busy_workers == 0
        assert s.last_activity_at
        assert time.time() - s.last_activity_at < 5
    assert snapshot(redis_conn, ["wk"])["wk"].workers == []


def test_snapshot_is_read_only(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "ro")
    enqueue_many("ro", [JobSpec(FN + "noop", priority=p) for p in (1, 3, 5)], connection=redis_conn)
    enqueue("ro", FN + "noop", delay=0.01, connection=redis_conn)
    claim(redis_conn, "ro", 1, lease=0.01)  # an expired lease: RQ's counters would "clean" it
    redis_conn.sadd("rq:workers:ro", "rq:worker:ghost")  # a dead registration
    time.sleep(0.05)
    before = _dump(redis_conn)
    snapshot(redis_conn, ["ro"])
    assert _dump(redis_conn) == before


def test_a_poller_gets_the_same_stats_back_while_nothing_changes(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "idle")
    publish(redis_conn, "busy")
    enqueue("busy", FN + "noop", connection=redis_conn)
    reuse: dict[str, Any] = {}
    first = snapshot(redis_conn, ["idle", "busy"], reuse=reuse)
    second = snapshot(redis_conn, ["idle", "busy"], reuse=reuse)
    assert second["idle"] is first["idle"]  # idle: the very same object
    assert second["busy"] is not first["busy"]  # a queued job's age grows: made afresh
    assert second["busy"].oldest_queued_seconds >= first["busy"].oldest_queued_seconds
    enqueue("idle", FN + "noop", delay=600, connection=redis_conn)  # any change: new stats
    third = snapshot(redis_conn, ["idle", "busy"], reuse=reuse)
    assert third["idle"] is not second["idle"]
    assert third["idle"].scheduled == 1
    assert snapshot(redis_conn, ["idle"], reuse=reuse)["idle"] is third["idle"]
    assert set(reuse) == {"idle"}  # queues no longer asked for are forgotten
