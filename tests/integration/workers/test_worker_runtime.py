"""The worker runtime end to end: real Redis, the real `jobqueue worker` command where the
pod contract matters (processes, signals, metrics), in-process threads elsewhere."""

from __future__ import annotations

import itertools
import signal
import time
import urllib.request
from collections import Counter

import pytest
import redis

import devenv
from integration.workers.whelpers import (
    FN,
    publish,
    thread_worker,
    wait_for,
    wait_status,
    worker_process,
)
from jobqueue import JobSpec, enqueue, enqueue_many, get_job, settings
from jobqueue.stats import snapshot


def test_process_mode_runs_jobs_and_refuses_unregistered_functions(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    publish(redis_conn, "pm", attempts=3)
    enqueue("pm", "os.system", "touch /tmp/jobqueue-pwned", job_id="evil", connection=redis_conn)
    enqueue("pm", FN + "not_a_job", job_id="plain", connection=redis_conn)
    # an undecodable payload written straight into Redis
    redis_conn.hset(
        "rq:job:garbage",
        mapping={"data": b"\x80\x04not a pickle or json", "status": "queued", "origin": "pm"},
    )
    redis_conn.rpush("rq:queue:pm", "garbage")
    enqueue("pm", FN + "add", 20, 22, job_id="sum", connection=redis_conn)
    with worker_process(redis_url, "pm", pod="pod-pm", concurrency=2) as w:
        assert wait_status(redis_conn, "pm", "sum", "finished").result == 42
        for job_id, reason in [
            ("evil", "function 'os.system' is not a registered @job function"),
            ("plain", "not_a_job' is not a registered @job function"),
            ("garbage", "payload is pickled, not JSON"),
        ]:
            info = wait_status(redis_conn, "pm", job_id, "failed")
            assert reason in (info.failed_reason or ""), info.failed_reason
            assert info.failed_reason
            assert info.failed_reason.startswith("rejected:")
            assert info.attempts_made == 1  # refused jobs are not retried: retrying cannot help
        assert redis_conn.lrange("test:runs", 0, -1) == []  # nothing ran
        # the worker survived and keeps working
        enqueue("pm", FN + "add", 1, 1, job_id="after", connection=redis_conn)
        assert wait_status(redis_conn, "pm", "after", "finished").result == 2
        assert w.proc.poll() is None


def test_retries_follow_the_exponential_backoff(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "rt", attempts=3, backoff={"type": "exponential", "delaySeconds": 0.4})
    enqueue("rt", FN + "fail_times", "t", 2, job_id="flaky", connection=redis_conn)
    with thread_worker(redis_url, "rt"):
        info = wait_status(redis_conn, "rt", "flaky", "finished")
    assert info.attempts_made == 3
    assert info.result == "ok"
    times = [float(t) for t in redis_conn.lrange("test:attempts:t", 0, -1)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # d, 2d — each retry within ~1 s of being due (generous: a shared, noisy machine)
    assert 0.4 <= gaps[0] < 1.4, gaps
    assert 0.8 <= gaps[1] < 1.8, gaps


def test_attempts_exhausted_fails_with_the_last_reason(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "ex", attempts=2, backoff={"type": "fixed", "delaySeconds": 0})
    enqueue("ex", FN + "fail_times", "e", 5, job_id="doomed", connection=redis_conn)
    with thread_worker(redis_url, "ex"):
        info = wait_status(redis_conn, "ex", "doomed", "failed")
    assert info.attempts_made == 2
    assert info.failed_reason == "RuntimeError: planned failure 2 of 5"
    assert redis_conn.zscore("rq:failed:ex", "doomed") is not None
    assert 0 < redis_conn.ttl("rq:job:doomed") <= 7 * 86400  # keepFailed default


@pytest.mark.parametrize("mode", ["process", "async", "thread"])
def test_timeouts_fail_the_attempt_at_the_deadline(
    redis_conn: redis.Redis, redis_url: str, mode: str
) -> None:
    publish(redis_conn, "to", attempts=1, timeoutSeconds=1)
    fn = FN + ("asleep" if mode == "async" else "sleep")
    enqueue("to", fn, 30, job_id="slow", connection=redis_conn)
    enqueue("to", FN + "add", 1, 2, job_id="next", connection=redis_conn)
    with worker_process(redis_url, "to", mode=mode, concurrency=1):
        started = wait_status(redis_conn, "to", "slow", "started").started_at
        info = wait_status(redis_conn, "to", "slow", "failed", timeout=15)
        assert info.failed_reason
        assert info.failed_reason.startswith("JobTimeoutError: the attempt exceeded its timeout of 1 s")
        assert info.finished_at
        assert started
        assert 0.9 <= (info.finished_at - started).total_seconds() < 5
        # the slot is usable again (process mode: the killed child was replaced)
        assert wait_status(redis_conn, "to", "next", "finished", timeout=15).result == 3


def test_a_crashing_process_fails_its_job_for_good(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "cr", attempts=2, backoff={"type": "fixed", "delaySeconds": 0})
    enqueue("cr", FN + "crash", job_id="boom", connection=redis_conn)
    with worker_process(redis_url, "cr", mode="process", concurrency=1):
        info = wait_status(redis_conn, "cr", "boom", "failed", timeout=20)
        assert info.attempts_made == 1  # it would take its process down again: not retried
        assert info.failed_reason == (
            "WorkerProcessDied: the process running this job died (exit code 3); not retried"
        )
        enqueue("cr", FN + "add", 2, 2, job_id="alive", connection=redis_conn)
        assert wait_status(redis_conn, "cr", "alive", "finished").result == 4


def test_jobs_run_concurrently_up_to_the_concurrency(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "cc")
    for i in range(6):
        enqueue("cc", FN + "sleep", 1.0, job_id=f"s{i}", connection=redis_conn)
    with thread_worker(redis_url, "cc", concurrency=3):
        wait_for("3 running", lambda: snapshot(redis_conn, ["cc"])["cc"].running == 3)
        s = snapshot(redis_conn, ["cc"])["cc"]
        assert s.queued == 3
        assert s.workers[0].busy_slots == 3
        assert s.workers[0].state == "busy"
        for i in range(6):
            wait_status(redis_conn, "cc", f"s{i}", "finished")
    starts = sorted(get_job("cc", f"s{i}", connection=redis_conn).started_at for i in range(6))  # type: ignore
    assert (starts[2] - starts[0]).total_seconds() < 0.5  # the first three together
    assert (starts[3] - starts[0]).total_seconds() >= 0.9  # the fourth waited for a slot


def test_progress_is_readable_while_the_job_runs(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "pg")
    enqueue("pg", FN + "progress_then_sleep", 40, 3, job_id="p", connection=redis_conn)
    with worker_process(redis_url, "pg", mode="process"):
        info = wait_for(
            "progress 40",
            lambda: (i := get_job("pg", "p", connection=redis_conn)).progress == 40 and i,
            timeout=15,
        )
        assert info.status == "started"
        meta = redis_conn.hget("rq:job:p", "meta")
        assert meta is not None
        assert b'"progress":40' in meta


def test_first_sigterm_finishes_running_jobs_and_takes_no_new_ones(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    publish(redis_conn, "gs", attempts=1)
    enqueue("gs", FN + "sleep", 2, job_id="long", connection=redis_conn)
    with worker_process(redis_url, "gs", mode="process", concurrency=1) as w:
        wait_status(redis_conn, "gs", "long", "started", timeout=15)
        for i in range(3):
            enqueue("gs", FN + "noop", job_id=f"later{i}", connection=redis_conn)
        w.signal(signal.SIGTERM)
        assert w.wait(20) == 0
        assert get_job("gs", "long", connection=redis_conn).status == "finished"
        for i in range(3):
            info = get_job("gs", f"later{i}", connection=redis_conn)
            assert (info.status, info.attempts_made) == ("queued", 0)
        assert redis_conn.zcard("rq:wip:gs") == 0
        assert not redis_conn.sismember("rq:workers:gs", next(iter(redis_conn.keys("rq:worker:*")), b""))
        assert "stop requested" in w.log()


def test_second_sigterm_requeues_running_jobs(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "cs", attempts=1)
    enqueue("cs", FN + "sleep", 30, job_id="cut", connection=redis_conn)
    with worker_process(redis_url, "cs", mode="process") as w:
        wait_status(redis_conn, "cs", "cut", "started", timeout=15)
        w.signal(signal.SIGTERM)
        time.sleep(0.3)
        w.signal(signal.SIGTERM)
        assert w.wait(20) == 1
    info = get_job("cs", "cut", connection=redis_conn)
    assert (info.status, info.attempts_made) == ("queued", 0)  # the interrupted attempt is refunded


def test_worker_record_carries_the_pod_name_and_metrics_are_served(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    publish(redis_conn, "mx", attempts=2, backoff={"type": "fixed", "delaySeconds": 0})
    port = devenv.free_port()
    enqueue("mx", FN + "add", 1, 2, connection=redis_conn)
    enqueue("mx", FN + "fail_times", "m", 1, connection=redis_conn)
    enqueue("mx", "os.system", "true", connection=redis_conn)
    with worker_process(redis_url, "mx", pod="pod-metrics", concurrency=2, metrics_port=port):
        workers = wait_for("worker record", lambda: snapshot(redis_conn, ["mx"])["mx"].workers)
        assert workers[0].pod == "pod-metrics"
        assert workers[0].slots == 2
        assert redis_conn.hget(f"rq:worker:{workers[0].name}", "hostname") == b"pod-metrics"
        wait_for("3 jobs done", lambda: snapshot(redis_conn, ["mx"])["mx"].finished == 2)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                return str(resp.read().decode())

        text = wait_for("metrics", lambda: (t := scrape()) and "jobqueue_jobs_succeeded_total{" in t and t)
        lbl = 'function="integration.workers.wjobs.'
        assert f'jobqueue_jobs_succeeded_total{{{lbl}add",queue="mx"}} 1.0' in text
        assert f'jobqueue_jobs_succeeded_total{{{lbl}fail_times",queue="mx"}} 1.0' in text
        assert f'jobqueue_jobs_retried_total{{{lbl}fail_times",queue="mx"}} 1.0' in text
        assert f'jobqueue_jobs_started_total{{{lbl}fail_times",queue="mx"}} 2.0' in text
        assert 'jobqueue_jobs_rejected_total{function="unregistered",queue="mx"} 1.0' in text
        assert "jobqueue_job_run_seconds_bucket" in text
        assert "jobqueue_job_wait_seconds_count" in text
        assert 'jobqueue_worker_slots{queue="mx"} 2.0' in text


def test_delayed_jobs_start_on_time_without_any_scheduler(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "dl")
    with thread_worker(redis_url, "dl", concurrency=2):
        t0 = time.time()
        enqueue("dl", FN + "noop", job_id="d", delay=1.5, connection=redis_conn)
        info = wait_status(redis_conn, "dl", "d", "finished")
    assert info.started_at is not None
    late = info.started_at.timestamp() - (t0 + 1.5)
    assert -0.01 <= late < 1.0, late


def test_retention_ages(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "keep", keepCompleted={"ageSeconds": 0}, keepFailed={"ageSeconds": 120})
    enqueue("keep", FN + "noop", job_id="gone", connection=redis_conn)
    enqueue("keep", FN + "noop", job_id="kept", keep_completed=300, connection=redis_conn)
    enqueue("keep", FN + "always_fail", "x", job_id="bad", connection=redis_conn)
    with thread_worker(redis_url, "keep"):
        wait_status(redis_conn, "keep", "kept", "finished")
        wait_status(redis_conn, "keep", "bad", "failed")
        wait_for("gone", lambda: not redis_conn.exists("rq:job:gone"))
    assert redis_conn.zscore("rq:finished:keep", "gone") is None  # keepCompleted 0: removed at once
    assert 290 < redis_conn.ttl("rq:job:kept") <= 300
    assert 290 < redis_conn.ttl("rq:results:kept") <= 300
    assert 110 < redis_conn.ttl("rq:job:bad") <= 120
    # the id is free again once the job is gone: the idempotency window is the retention
    assert not enqueue("keep", FN + "noop", job_id="gone", connection=redis_conn).duplicate


def test_suspend_stops_taking_jobs_and_resumes(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "sus")
    redis_conn.set("rq:suspended", 1)  # `rq suspend`
    enqueue("sus", FN + "noop", job_id="held", connection=redis_conn)
    with thread_worker(redis_url, "sus"):
        time.sleep(1.5)
        assert get_job("sus", "held", connection=redis_conn).status == "queued"
        redis_conn.delete("rq:suspended")
        wait_status(redis_conn, "sus", "held", "finished", timeout=5)
        qs = publish(redis_conn, "sus")
        settings.publish(redis_conn, qs.model_copy(update={"suspend": True}))  # JobQueue.spec.suspend
        time.sleep(6)  # the worker re-reads its settings every 5 s
        enqueue("sus", FN + "noop", job_id="held2", connection=redis_conn)
        time.sleep(1.5)
        assert get_job("sus", "held2", connection=redis_conn).status == "queued"
        publish(redis_conn, "sus")
        wait_status(redis_conn, "sus", "held2", "finished", timeout=10)


def test_worker_waits_for_its_queue_to_be_declared(redis_conn: redis.Redis, redis_url: str) -> None:
    with thread_worker(redis_url, "undeclared"):
        time.sleep(0.5)
        publish(redis_conn, "undeclared")
        enqueue("undeclared", FN + "add", 3, 4, job_id="x", connection=redis_conn)
        assert wait_status(redis_conn, "undeclared", "x", "finished", timeout=10).result == 7


def test_metrics_of_job_code_are_summed_over_the_pods_processes(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    publish(redis_conn, "mp")
    port = devenv.free_port()
    for i in range(6):
        enqueue("mp", FN + "sleep", 0.3, job_id=f"warm{i}", connection=redis_conn)  # spread over children
        enqueue("mp", FN + "count_event", job_id=f"c{i}", connection=redis_conn)
    # JOBQUEUE_METRICS_PORT wins over --metrics-port (how the dev pod runner spreads local pods)
    with worker_process(
        redis_url,
        "mp",
        mode="process",
        concurrency=2,
        metrics_port=9,
        env={"JOBQUEUE_METRICS_PORT": str(port)},
    ):
        pids = {wait_status(redis_conn, "mp", f"c{i}", "finished").result for i in range(6)}
        assert len(pids) == 2  # counted in two different processes

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                return str(resp.read().decode())

        assert "wjobs_custom_events_total 6.0" in scrape()


def test_sigterm_during_a_stream_of_fast_jobs_leaves_nothing_half_done(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    # fast jobs: the worker prefetches and queues jobs ahead in its processes; a stop must
    # hand every unstarted one back (attempt refunded) and record every finished one
    publish(redis_conn, "stream", attempts=1)
    enqueue_many(
        "stream", [JobSpec(FN + "add", [i, 1], job_id=f"s{i}") for i in range(3000)], connection=redis_conn
    )
    with worker_process(redis_url, "stream", mode="process", concurrency=2) as w:
        wait_for("some done", lambda: redis_conn.zcard("rq:finished:stream") > 200)
        w.signal(signal.SIGTERM)
        assert w.wait(20) == 0
    statuses = Counter()
    for i in range(3000):
        info = get_job("stream", f"s{i}", connection=redis_conn)
        statuses[info.status] += 1
        if info.status == "queued":
            assert info.attempts_made == 0
        else:
            assert info.status == "finished"
            assert info.result == i + 1
    assert statuses["finished"] == redis_conn.zcard("rq:finished:stream") > 200
    assert statuses["queued"] == redis_conn.llen("rq:queue:stream") > 0
    assert redis_conn.zcard("rq:wip:stream") == 0
