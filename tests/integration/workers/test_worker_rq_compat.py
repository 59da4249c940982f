"""RQ stays RQ: plain RQ producers, RQ's registries and `rq info` work with our queues."""

from __future__ import annotations

import subprocess
import sys

import redis
from rq import Queue, Retry
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import Worker as RQWorker

from integration.workers.whelpers import FN, publish, thread_worker, wait_for, wait_status, worker_env
from jobqueue import enqueue, get_job


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
