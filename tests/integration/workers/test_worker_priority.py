"""Priority levels inside one queue: high levels go first, low levels never starve."""

from __future__ import annotations

from collections import Counter

import redis

from integration.workers.whelpers import FN, claim, publish, thread_worker, wait_status
from jobqueue import JobSpec, enqueue, enqueue_many


def test_a_high_priority_job_jumps_a_long_backlog(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "jp")
    enqueue_many("jp", [JobSpec(FN + "noop", job_id=f"n{i}") for i in range(500)], connection=redis_conn)
    claim(redis_conn, "jp", 10)
    enqueue("jp", FN + "noop", job_id="urgent", priority=1, connection=redis_conn)
    assert claim(redis_conn, "jp", 1)[0][0] == "urgent"


def test_weighted_shares_when_every_level_is_backlogged(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "ws")
    specs = [
        JobSpec(FN + "noop", job_id=f"l{lvl}-{i}", priority=lvl) for lvl in range(1, 6) for i in range(200)
    ]
    enqueue_many("ws", specs, connection=redis_conn)
    got = [row[0] for _ in range(31) for row in claim(redis_conn, "ws", 5)]  # 155 claims, 5 at a time
    shares = Counter(job_id.split("-")[0] for job_id in got)
    # smooth weighted round-robin 16:8:4:2:1 -> exactly proportional over 5 rounds of 31
    assert shares == {"l1": 80, "l2": 40, "l3": 20, "l4": 10, "l5": 5}
    # and the lowest level is served regularly, not only at the end: within every 31 claims
    positions = [i for i, job_id in enumerate(got) if job_id.startswith("l5")]
    assert max(b - a for a, b in zip([-1, *positions], positions, strict=False)) <= 31


def test_fifo_within_a_level(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "ff")
    enqueue_many(
        "ff", [JobSpec(FN + "noop", job_id=f"j{i}", priority=2) for i in range(20)], connection=redis_conn
    )
    assert [row[0] for row in claim(redis_conn, "ff", 20)] == [f"j{i}" for i in range(20)]


def test_priorities_end_to_end(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "e2e")
    enqueue_many(
        "e2e",
        [JobSpec(FN + "order", [f"low{i}"], priority=5) for i in range(5)]
        + [JobSpec(FN + "order", [f"high{i}"], priority=1, job_id=f"h{i}") for i in range(5)],
        connection=redis_conn,
    )
    with thread_worker(redis_url, "e2e", concurrency=1):
        for i in range(5):
            wait_status(redis_conn, "e2e", f"h{i}", "finished")
    order = [x.decode() for x in redis_conn.lrange("test:order", 0, -1)]
    # 16:1 weights: the five high jobs all run before the second low one
    assert order.index("high4") < order.index("low1")


def test_ids_that_are_not_queued_any_more_are_skipped(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "sk")
    enqueue_many("sk", [JobSpec(FN + "noop", job_id=f"k{i}") for i in range(3)], connection=redis_conn)
    redis_conn.rpush("rq:queue:sk", "k0")  # listed twice
    redis_conn.delete("rq:job:k1")  # removed behind our back
    got = [row[0] for row in claim(redis_conn, "sk", 10)]
    assert got == ["k0", "k2"]
    assert redis_conn.llen("rq:queue:sk") == 0
