"""RQ stays RQ: plain RQ producers, RQ's registries and `rq info` work with our queues."""

from __future__ import annotations

import itertools
import subprocess
import sys

import redis
from rq import Callback, Queue, Repeat, Retry
from rq.job import Dependency, Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import Worker as RQWorker

from integration.workers.whelpers import FN, publish, thread_worker, wait_for, wait_status, worker_env
from jobqueue import enqueue, get_job, remove


def _rq_queue(conn: redis.Redis, name: str) -> Queue:
    return Queue(name, connection=conn, serializer=JSONSerializer)


def test_a_job_enqueued_by_plain_rq_runs(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "compat", attempts=1)
    q = _rq_queue(redis_conn, "compat")
    ok = q.enqueue(FN + "add", 2, 3, job_id="rq-made")
    flaky = q.enqueue(FN + "fail_times", "rq", 1, job_id="rq-retry", retry=Retry(max=1))
    with thread_worker(redis_url, "compat"):
        wait_status(redis_conn, "compat", "rq-made", "finished")
        wait_status(redis_conn, "compat", "rq-retry", "finished")
    job = Job.fetch(ok.id, connection=redis_conn, serializer=JSONSerializer)
    assert job.get_status() == "finished"
    assert job.return_value() == 5
    assert job.worker_name
    assert job.started_at
    assert job.ended_at
    assert ok.id in FinishedJobRegistry("compat", connection=redis_conn).get_job_ids(cleanup=False)
    # RQ's own retry count (Retry(max=1)) is honoured: 2 attempts
    assert get_job("compat", flaky.id, connection=redis_conn).attempts_made == 2


def test_rq_registries_and_records_stay_correct(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "reg", attempts=1)
    enqueue("reg", FN + "sleep", 1.5, job_id="busy", connection=redis_conn)
    enqueue("reg", FN + "always_fail", "nope", job_id="bad", connection=redis_conn)
    with thread_worker(redis_url, "reg", concurrency=2, pod="pod-reg"):
        wait_status(redis_conn, "reg", "busy", "started")
        started = StartedJobRegistry("reg", connection=redis_conn)
        assert "busy" in started.get_job_ids(cleanup=False)
        job = Job.fetch("busy", connection=redis_conn, serializer=JSONSerializer)
        assert job.get_status() == "started"
        assert job.func_name == FN + "sleep"
        workers = RQWorker.all(queue=_rq_queue(redis_conn, "reg"))
        assert len(workers) == 1
        assert workers[0].hostname == "pod-reg"
        assert workers[0].get_state() == "busy"
        wait_status(redis_conn, "reg", "bad", "failed")
        failed = FailedJobRegistry("reg", connection=redis_conn)
        assert failed.get_job_ids(cleanup=False) == ["bad"]
        bad = Job.fetch("bad", connection=redis_conn, serializer=JSONSerializer)
        result = bad.latest_result()
        assert bad.get_status() == "failed"
        assert result is not None
        assert result.type == result.Type.FAILED
        assert "ValueError: nope" in (result.exc_string or "")
        wait_status(redis_conn, "reg", "busy", "finished")
        assert started.get_job_ids(cleanup=False) == []
        assert FinishedJobRegistry("reg", connection=redis_conn).get_job_ids(cleanup=False) == ["busy"]
        record = RQWorker.all(queue=_rq_queue(redis_conn, "reg"))[0]
        wait_for(
            "counts",
            lambda: (record.refresh() or record.successful_job_count == 1) and record.failed_job_count == 1,
        )
    assert RQWorker.all(queue=_rq_queue(redis_conn, "reg")) == []  # unregistered on stop


def test_rq_info_reads_our_queues_and_workers(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "info")
    enqueue("info", FN + "noop", job_id="a", connection=redis_conn)
    enqueue("info", FN + "noop", job_id="b", priority=1, connection=redis_conn)
    enqueue("info", FN + "sleep", 3, job_id="c", connection=redis_conn)
    enqueue("info", FN + "noop", job_id="d", delay=300, connection=redis_conn)
    rq = [sys.executable, "-m", "rq.cli", "info", "--url", redis_url, "-S", "rq.serializers.JSONSerializer"]
    out = subprocess.run(
        [*rq, "--raw"], capture_output=True, text=True, check=True, env=worker_env(redis_url, "x")
    ).stdout
    assert "queue info 2," in out
    assert "queue info:p1 1," in out
    with thread_worker(redis_url, "info", concurrency=1, pod="pod-info"):
        wait_status(redis_conn, "info", "c", "started")
        out = subprocess.run(
            [*rq, "--raw"], capture_output=True, text=True, check=True, env=worker_env(redis_url, "x")
        ).stdout
        assert "1 executing" in out
        assert "(pod-info " in out
        assert "busy info" in out
    # our job is still intact after rq info's registry clean-up ran
    assert get_job("info", "d", connection=redis_conn).status == "scheduled"


# --------------------------------------------------------------------------------------
# RQ's depends_on (docs/jobs.md, "Working with RQ")


def test_rq_depends_on_queues_children_when_their_parents_finish(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    publish(redis_conn, "dep", attempts=1)
    publish(redis_conn, "dep-other", attempts=1)
    q, other = _rq_queue(redis_conn, "dep"), _rq_queue(redis_conn, "dep-other")
    parent = q.enqueue(FN + "sleep", 0.5, job_id="parent")
    second = q.enqueue(FN + "sleep", 1.0, job_id="second")
    child = q.enqueue(FN + "record", "child", job_id="child", depends_on=parent)
    both = q.enqueue(FN + "record", "both", job_id="both", depends_on=[parent, second])
    at_front = Dependency([child], enqueue_at_front=True)
    grand = q.enqueue(FN + "record", "grand", job_id="grand", depends_on=at_front)
    elsewhere = other.enqueue(FN + "record", "elsewhere", job_id="elsewhere", depends_on=parent)
    assert [j.get_status() for j in (child, both, grand, elsewhere)] == ["deferred"] * 4
    waited = [("child", "dep"), ("both", "dep"), ("grand", "dep"), ("elsewhere", "dep-other")]
    with thread_worker(redis_url, "dep", concurrency=2), thread_worker(redis_url, "dep-other", pod="pod-o"):
        for job_id, queue in waited:
            wait_status(redis_conn, queue, job_id, "finished")
    runs = [r.decode() for r in redis_conn.lrange("test:runs", 0, -1)]
    assert sorted(runs) == ["both", "child", "elsewhere", "grand"]
    assert runs.index("child") < runs.index("grand")
    for job_id in ("both", "grand", "child"):  # each after all of its parents ended
        assert get_job("dep", job_id, connection=redis_conn).attempts_made == 1
    assert redis_conn.zcard("rq:deferred:dep") == redis_conn.zcard("rq:deferred:dep-other") == 0
    assert not redis_conn.exists("rq:job:parent:dependents")


def test_rq_depends_on_a_failed_parent_fails_the_child_and_its_children(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    publish(redis_conn, "depf", attempts=1)
    q = _rq_queue(redis_conn, "depf")
    bad = q.enqueue(FN + "always_fail", "boom", job_id="bad")
    orphan = q.enqueue(FN + "record", "orphan", job_id="orphan", depends_on=bad)
    q.enqueue(FN + "record", "grand", job_id="grand", depends_on=orphan)
    q.enqueue(FN + "record", "tolerant", job_id="tolerant", depends_on=Dependency([bad], allow_failure=True))
    with thread_worker(redis_url, "depf"):
        assert wait_status(redis_conn, "depf", "tolerant", "finished").attempts_made == 1
        info = wait_status(redis_conn, "depf", "orphan", "failed")
        why = "failed (RQ's depends_on without allow_failure)"
        assert info.failed_reason == f"not run: its dependency bad {why}"
        grand = wait_status(redis_conn, "depf", "grand", "failed")
        assert grand.failed_reason == f"not run: its dependency orphan {why}"
    assert [r.decode() for r in redis_conn.lrange("test:runs", 0, -1)] == ["tolerant"]
    assert redis_conn.zcard("rq:deferred:depf") == 0
    assert set(FailedJobRegistry("depf", connection=redis_conn).get_job_ids(cleanup=False)) == {
        "bad", "orphan", "grand"
    }  # fmt: skip


def test_deferred_jobs_whose_parent_ended_elsewhere_are_settled(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    """A parent that vanished (deleted, expired) or that another worker failed without telling
    its children: a live worker's sweep settles them within a few seconds."""
    publish(redis_conn, "deps", attempts=1)
    q = _rq_queue(redis_conn, "deps")
    elsewhere = _rq_queue(redis_conn, "no-workers-here")
    gone = elsewhere.enqueue(FN + "noop", job_id="gone")
    failed = elsewhere.enqueue(FN + "noop", job_id="failed-by-rq")
    q.enqueue(FN + "record", "after-gone", job_id="after-gone", depends_on=gone)
    q.enqueue(FN + "record", "after-failed", job_id="after-failed", depends_on=failed)
    redis_conn.delete("rq:job:gone")  # as RQ sees it: a missing dependency is met
    redis_conn.hset("rq:job:failed-by-rq", "status", "failed")  # (what a plain RQ worker leaves)
    with thread_worker(redis_url, "deps", reap_seconds=0.5):
        wait_status(redis_conn, "deps", "after-gone", "finished", timeout=20)
        info = wait_status(redis_conn, "deps", "after-failed", "failed", timeout=20)
        assert info.failed_reason == (
            "not run: its dependency failed-by-rq failed (RQ's depends_on without allow_failure)"
        )


def test_removing_a_parent_fails_its_deferred_children(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "depr")
    q = _rq_queue(redis_conn, "depr")
    parent = q.enqueue(FN + "noop", job_id="parent")
    q.enqueue(FN + "record", "child", job_id="child", depends_on=parent)
    assert remove("depr", "parent", connection=redis_conn) == "queued"
    info = get_job("depr", "child", connection=redis_conn)
    assert (info.status, info.failed_reason) == (
        "failed", "not run: its dependency parent was removed (RQ's depends_on without allow_failure)"
    )  # fmt: skip


def test_rq_options_we_do_not_carry_out_fail_the_job_at_once(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "unsup", attempts=3)
    q = _rq_queue(redis_conn, "unsup")
    q.enqueue(FN + "record", "cb", job_id="callback", on_success=Callback(FN + "noop"))
    q.enqueue(FN + "record", "rep", job_id="repeat", repeat=Repeat(times=2))
    q.enqueue(FN + "record", "ok", job_id="plain")
    with thread_worker(redis_url, "unsup"):
        cb = wait_status(redis_conn, "unsup", "callback", "failed")
        assert cb.failed_reason == (
            f'rejected: uses RQ\'s on_success callback (success_callback_name "{FN}noop"), which jobqueue '
            f"workers do not carry out"
        )
        rep = wait_status(redis_conn, "unsup", "repeat", "failed")
        assert rep.failed_reason == (
            'rejected: uses RQ\'s Repeat (repeats_left "2"), which jobqueue workers do not carry out'
        )
        wait_status(redis_conn, "unsup", "plain", "finished")
    assert [r.decode() for r in redis_conn.lrange("test:runs", 0, -1)] == ["ok"]  # neither ran


def test_rq_retry_intervals_are_honoured(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "rqi", attempts=1)
    q = _rq_queue(redis_conn, "rqi")
    q.enqueue(FN + "fail_times", "ri", 2, job_id="spaced", retry=Retry(max=2, interval=[1, 2]))
    with thread_worker(redis_url, "rqi"):
        info = wait_status(redis_conn, "rqi", "spaced", "finished", timeout=30)
    assert info.attempts_made == 3
    times = [float(t) for t in redis_conn.lrange("test:attempts:ri", 0, -1)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # RQ's own rule: intervals[len - retries_left], i.e. 1 s, then 2 s (generous upper bounds)
    assert 1.0 <= gaps[0] < 2.0, gaps
    assert 2.0 <= gaps[1] < 3.0, gaps
