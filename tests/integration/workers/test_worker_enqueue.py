"""Producer API against real Redis: RQ-compatible jobs, defaults, dedup, bulk, delays, levels."""

from __future__ import annotations

import threading

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from integration.workers.whelpers import FN, publish
from jobqueue import InvalidJobError, JobSpec, UnknownQueueError, client, enqueue, enqueue_many, get_job, keys
from jobqueue._redis import Script


def test_enqueued_job_is_a_plain_rq_job(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "ei:update", attempts=3, timeoutSeconds=30)
    res = enqueue("ei:update", FN + "add", 2, 3, job_id="ei-fleet-1", connection=redis_conn)
    assert (res.id, res.duplicate, res.status) == ("ei-fleet-1", False, "queued")
    job = Job.fetch("ei-fleet-1", connection=redis_conn, serializer=JSONSerializer)
    assert (job.func_name, job.args, job.kwargs) == (FN + "add", [2, 3], {})
    assert job.get_status() == "queued"
    assert job.origin == "ei:update"
    assert job.timeout == 30
    assert job.retries_left == 2
    q = Queue("ei:update", connection=redis_conn, serializer=JSONSerializer)
    assert q.job_ids == ["ei-fleet-1"]
    assert redis_conn.sismember(keys.RQ_QUEUES, "rq:queue:ei:update")


def test_unknown_queue_is_a_clear_error(redis_conn: redis.Redis) -> None:
    with pytest.raises(UnknownQueueError, match="queue 'nope' is not declared"):
        enqueue("nope", FN + "add", 1, 2, connection=redis_conn)


def test_duplicate_id_returns_the_existing_job_and_changes_nothing(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "q")
    first = enqueue("q", FN + "add", 1, 1, job_id="same", connection=redis_conn)
    again = enqueue("q", FN + "add", 9, 9, job_id="same", connection=redis_conn)
    assert not first.duplicate
    assert again.duplicate
    assert again.status == "queued"
    assert redis_conn.lrange("rq:queue:q", 0, -1) == [b"same"]
    assert get_job("q", "same", connection=redis_conn).args == [1, 1]
    # still a duplicate once the job ran (until its retention removes it)
    redis_conn.hset("rq:job:same", "status", "finished")
    assert enqueue("q", FN + "add", 1, 1, job_id="same", connection=redis_conn).status == "finished"


def test_concurrent_producers_add_an_id_once(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "q")
    results: list[bool] = []

    def produce() -> None:
        conn = redis.Redis.from_url(redis_url)
        for i in range(50):
            results.append(enqueue("q", FN + "noop", job_id=f"race-{i}", connection=conn).duplicate)

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(False) == 50
    assert results.count(True) == 150
    assert redis_conn.llen("rq:queue:q") == 50


def test_bulk_enqueue_detects_duplicates_in_redis_and_within_the_batch(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "bulk", attempts=2)
    enqueue("bulk", FN + "noop", job_id="old", connection=redis_conn)
    specs = [JobSpec(FN + "add", [i, i], job_id=f"j{i}") for i in range(1200)]
    specs += [JobSpec(FN + "noop", job_id="old"), JobSpec(FN + "noop", job_id="j5")]
    res = enqueue_many("bulk", specs, connection=redis_conn)
    assert len(res) == 1202
    assert [r.duplicate for r in res[-2:]] == [True, True]
    assert not any(r.duplicate for r in res[:-2])
    assert redis_conn.llen("rq:queue:bulk") == 1201
    assert get_job("bulk", "j1199", connection=redis_conn).attempts == 2


def test_bulk_enqueue_keeps_call_order_per_level_and_says_how_each_job_was_added(
    redis_conn: redis.Redis,
) -> None:
    # the script pushes each level's ids once per call and answers only the jobs not simply
    # added: the order and each job's result must be as if added one by one
    publish(redis_conn, "ord")
    enqueue("ord", FN + "noop", job_id="was-here", priority=1, connection=redis_conn)
    redis_conn.hset("rq:job:odd", "origin", "ord")  # a record without status
    specs = [
        JobSpec(
            FN + "add", [i, i], job_id=f"o{i}", priority=(1, 3, 5)[i % 3], delay=30 if i % 7 == 0 else None
        )
        for i in range(client.BULK_CHUNK * 2 + 7)
    ]
    specs[600:600] = [JobSpec(FN + "noop", job_id="was-here"), JobSpec(FN + "noop", job_id="odd")]
    res = enqueue_many("ord", specs, connection=redis_conn)
    assert [r.id for r in res] == [s.job_id for s in specs]
    assert [(r.duplicate, r.status) for r in res[600:602]] == [(True, "queued"), (True, "unknown")]
    for spec, r in zip(specs, res, strict=True):
        if spec.job_id not in ("was-here", "odd"):
            assert (r.duplicate, r.status) == (False, "scheduled" if spec.delay else "queued")
    for level, key in ((1, "rq:queue:ord:p1"), (3, "rq:queue:ord"), (5, "rq:queue:ord:p5")):
        want = [s.job_id for s in specs[:600] + specs[602:] if s.priority == level and not s.delay]
        assert [x.decode() for x in redis_conn.lrange(key, 0, -1)] == (
            ["was-here"] if level == 1 else []
        ) + want
    job = get_job("ord", "o1", connection=redis_conn)
    assert (job.status, job.priority, job.args, job.attempts) == ("queued", 3, [1, 1], 1)


def test_bulk_enqueue_loads_its_script_again_after_a_script_flush(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "flushed")
    enqueue("flushed", FN + "noop", job_id="first", connection=redis_conn)
    redis_conn.script_flush()  # (what a Redis restart or failover does to the script cache)
    specs = [JobSpec(FN + "noop", job_id=f"f{i}") for i in range(client.BULK_CHUNK * 3)]
    res = enqueue_many("flushed", specs, connection=redis_conn)
    assert not any(r.duplicate for r in res)  # (each chunk ran once: none saw its own job)
    assert redis_conn.llen("rq:queue:flushed") == 1 + len(specs)


def test_a_batch_of_script_calls_raises_the_first_error_and_leaves_the_client_usable(
    redis_conn: redis.Redis,
) -> None:
    script = Script("if ARGV[1] == 'bad' then return redis.error_reply('BAD ' .. ARGV[2]) end return ARGV[2]")
    assert script.many(redis_conn, [("ok", "1"), ("ok", "2")]) == [b"1", b"2"]
    with pytest.raises(redis.ResponseError, match="BAD 2"):
        script.many(redis_conn, [("ok", "1"), ("bad", "2"), ("bad", "3")])
    assert redis_conn.ping()
    assert script.many(redis_conn, [("ok", "4")]) == [b"4"]


def test_bulk_enqueue_validates_everything_first(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "bulk")
    specs = [JobSpec(FN + "noop", job_id="ok1"), JobSpec(FN + "noop", job_id="bad:id")]
    with pytest.raises(InvalidJobError, match="job #1: job id"):
        enqueue_many("bulk", specs, connection=redis_conn)
    assert not redis_conn.exists("rq:job:ok1")


def test_delayed_job_is_in_rqs_scheduled_registry(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "later")
    res = enqueue("later", FN + "noop", job_id="d1", delay=30, connection=redis_conn)
    assert res.status == "scheduled"
    reg = ScheduledJobRegistry("later", connection=redis_conn, serializer=JSONSerializer)
    assert reg.get_job_ids(cleanup=False) == ["d1"]
    info = get_job("later", "d1", connection=redis_conn)
    assert info.status == "scheduled"
    assert info.ready_at is not None
    assert info.created_at is not None
    assert (info.ready_at - info.created_at).total_seconds() == pytest.approx(30, abs=0.01)


def test_priority_levels_are_separate_rq_lists(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "p")
    enqueue("p", FN + "noop", job_id="hi", priority=1, connection=redis_conn)
    enqueue("p", FN + "noop", job_id="mid", connection=redis_conn)
    enqueue("p", FN + "noop", job_id="lo", priority=5, connection=redis_conn)
    assert redis_conn.lrange("rq:queue:p:p1", 0, -1) == [b"hi"]
    assert redis_conn.lrange("rq:queue:p", 0, -1) == [b"mid"]
    assert redis_conn.lrange("rq:queue:p:p5", 0, -1) == [b"lo"]
    # registered like RQ queues, so `rq info` lists them
    assert {b"rq:queue:p", b"rq:queue:p:p1", b"rq:queue:p:p5"} <= redis_conn.smembers(keys.RQ_QUEUES)


def test_signal_list_is_pushed_for_idle_workers(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "s")
    enqueue("s", FN + "noop", connection=redis_conn)
    enqueue("s", FN + "noop", connection=redis_conn)
    assert redis_conn.llen("jobqueue:signal:s") == 1
