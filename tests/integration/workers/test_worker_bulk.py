"""Bulk operations (issue 21, item 3): list a queue's jobs by state with paging, retry every
failed job, purge a state — with filters, a dry run and counts — against real Redis with real
workers taking jobs at the same time."""

from __future__ import annotations

import json
import time

import pytest
import redis

from integration.workers.whelpers import FN, jq, publish, thread_worker, wait_for
from jobqueue import JobSpec, enqueue_many, get_job
from jobqueue.admin import BULK_BATCH, list_jobs, remove_jobs, retry_jobs
from jobqueue.keys import level_key

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def _fail_all(conn: redis.Redis, url: str, queue: str, specs: list[JobSpec]) -> None:
    enqueue_many(queue, specs, connection=conn)
    with thread_worker(url, queue, concurrency=8):
        wait_for("every job failed", lambda: conn.zcard(f"rq:failed:{queue}") == len(specs), timeout=60)


def _where(conn: redis.Redis, queue: str, job_id: str) -> list[str]:
    """Every structure of the queue that holds the id (a job must be in at most one)."""
    places = [
        f"list:{lvl}" for lvl in range(1, 6) if job_id.encode() in conn.lrange(level_key(queue, lvl), 0, -1)
    ]
    for reg in ("scheduled", "finished", "failed", "canceled"):
        if conn.zscore(f"rq:{reg}:{queue}", job_id) is not None:
            places.append(reg)
    places += ["wip" for m in conn.zrange(f"rq:wip:{queue}", 0, -1) if m.decode().rsplit(":", 1)[0] == job_id]
    return places


def test_retry_failed_jobs_in_batches_with_function_filter_and_dry_run(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    n = BULK_BATCH * 2 + 100  # three batches
    publish(redis_conn, "bulk", attempts=1)
    specs = [JobSpec(FN + "always_fail", ("down",), job_id=f"a{i}") for i in range(n)]
    specs += [JobSpec(FN + "fail_times", (f"b{i}", 1), job_id=f"b{i}") for i in range(50)]
    _fail_all(redis_conn, redis_url, "bulk", specs)

    dry = retry_jobs("bulk", "failed", dry_run=True, connection=redis_conn)
    assert (dry.matched, dry.done, dry.skipped, dry.dry_run) == (n + 50, n + 50, 0, True)
    assert redis_conn.zcard("rq:failed:bulk") == n + 50  # nothing changed

    only_b = retry_jobs("bulk", "failed", function=FN + "fail_times", connection=redis_conn)
    assert (only_b.matched, only_b.done) == (50, 50)
    assert sorted(only_b.ids) == sorted(f"b{i}" for i in range(50))
    assert redis_conn.llen("rq:queue:bulk") == 50
    info = get_job("bulk", "b7", connection=redis_conn)
    assert (info.status, info.attempts_made, info.failed_reason) == ("queued", 0, None)

    rest = retry_jobs("bulk", "failed", connection=redis_conn)
    assert (rest.matched, rest.done, rest.skipped) == (n, n, 0)
    assert redis_conn.zcard("rq:failed:bulk") == 0
    assert redis_conn.llen("rq:queue:bulk") == n + 50
    # fail_times(…, 1) fails once, then succeeds: the retried ones run again and finish
    with thread_worker(redis_url, "bulk", concurrency=8):
        wait_for("b jobs finished", lambda: redis_conn.zcard("rq:finished:bulk") == 50, timeout=60)
        wait_for("a jobs failed again", lambda: redis_conn.zcard("rq:failed:bulk") == n, timeout=60)


def test_retry_while_workers_run_loses_and_duplicates_nothing(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    n = 1500
    publish(redis_conn, "busy", attempts=1)
    enqueue_many(
        "busy", [JobSpec(FN + "always_fail", ("x",), job_id=f"j{i}") for i in range(n)], connection=redis_conn
    )
    retried = 0
    with thread_worker(redis_url, "busy", concurrency=8), thread_worker(redis_url, "busy", pod="pod-u"):
        # while the workers fail jobs, retry whatever has failed so far, several times over
        for _ in range(6):
            wait_for("some failures", lambda: redis_conn.zcard("rq:failed:busy") > 0)
            res = retry_jobs("busy", "failed", connection=redis_conn)
            assert res.done + res.skipped == res.matched
            retried += res.done
        wait_for("all failed again", lambda: redis_conn.zcard("rq:failed:busy") == n, timeout=90)
    assert retried > 0
    for i in range(n):  # each job is in exactly one place, and failed
        assert _where(redis_conn, "busy", f"j{i}") == ["failed"], i
    # every retry ran: a job's attempts were made afresh (the record says 1 of 1)
    assert get_job("busy", "j0", connection=redis_conn).attempts_made == 1


def test_purge_queued_while_workers_claim(redis_conn: redis.Redis, redis_url: str) -> None:
    n = 2000
    publish(redis_conn, "purge")
    enqueue_many(
        "purge",
        [JobSpec(FN + "sleep", (0.002,), job_id=f"p{i}", priority=1 + i % 5) for i in range(n)],
        connection=redis_conn,
    )
    with thread_worker(redis_url, "purge", concurrency=4):
        wait_for("work started", lambda: redis_conn.zcard("rq:finished:purge") > 0)
        res = remove_jobs("purge", "queued", connection=redis_conn)
        assert res.done > 0
        wait_for("the rest finished", lambda: not redis_conn.zcard("rq:wip:purge"))
    finished = redis_conn.zcard("rq:finished:purge")
    # every job was removed (no record) or ran to the end, never both, never neither
    assert res.done + finished == n, (res, finished)
    assert res.matched == res.done + res.skipped
    for lvl in ("", ":p1", ":p2", ":p4", ":p5"):
        assert redis_conn.llen(f"rq:queue:purge{lvl}") == 0
    for job_id in res.ids:
        assert not redis_conn.exists(f"rq:job:{job_id}")


def test_older_than_counts_from_when_the_job_failed(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "age", attempts=1)
    _fail_all(
        redis_conn,
        redis_url,
        "age",
        [JobSpec(FN + "always_fail", ("x",), job_id=f"old{i}") for i in range(5)],
    )
    time.sleep(1.5)
    enqueue_many(
        "age",
        [JobSpec(FN + "always_fail", ("x",), job_id=f"new{i}") for i in range(3)],
        connection=redis_conn,
    )
    with thread_worker(redis_url, "age"):
        wait_for("new failed", lambda: redis_conn.zcard("rq:failed:age") == 8)
    res = remove_jobs("age", "failed", older_than=1.0, connection=redis_conn)
    assert (res.matched, res.done, res.skipped) == (5, 5, 0)
    assert sorted(res.ids) == [f"old{i}" for i in range(5)]
    left = sorted(m.decode() for m in redis_conn.zrange("rq:failed:age", 0, -1))
    assert left == [f"new{i}" for i in range(3)]


def test_remove_scheduled_and_finished_and_refusals(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "mix")
    enqueue_many(
        "mix", [JobSpec(FN + "noop", job_id=f"s{i}", delay=600) for i in range(4)], connection=redis_conn
    )
    enqueue_many("mix", [JobSpec(FN + "noop", job_id=f"f{i}") for i in range(3)], connection=redis_conn)
    with thread_worker(redis_url, "mix"):
        wait_for("finished", lambda: redis_conn.zcard("rq:finished:mix") == 3)
    assert remove_jobs("mix", "scheduled", connection=redis_conn).done == 4
    assert redis_conn.zcard("rq:scheduled:mix") == 0
    assert not redis_conn.exists("rq:job:s0")
    assert remove_jobs("mix", "finished", connection=redis_conn).done == 3
    assert not redis_conn.exists("rq:results:f0")
    with pytest.raises(ValueError, match="a running job is cancelled instead"):
        remove_jobs("mix", "started", connection=redis_conn)
    with pytest.raises(ValueError, match="retry takes state failed"):
        retry_jobs("mix", "queued", connection=redis_conn)
    with pytest.raises(ValueError, match="older_than must be a number of seconds >= 0"):
        remove_jobs("mix", "failed", older_than=-1, connection=redis_conn)


def test_cli_lists_pages_retries_and_purges(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "cli:q", attempts=1)
    _fail_all(
        redis_conn,
        redis_url,
        "cli:q",
        [JobSpec(FN + "always_fail", (f"m{i}",), job_id=f"c{i}") for i in range(12)],
    )
    page = jq(redis_url, "jobs", "cli:q", "--state", "failed", "--limit", "5", "--offset", "10", "-o", "json")
    assert page.returncode == 0, page.stderr
    doc = json.loads(page.stdout)
    assert (doc["total"], doc["offset"], doc["limit"], len(doc["jobs"])) == (12, 10, 5, 2)
    assert doc["jobs"][0]["status"] == "failed"
    assert doc["jobs"][0]["failed_reason"].startswith("ValueError: m")
    table = jq(redis_url, "jobs", "cli:q", "--state", "failed")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["ID", "FUNCTION", "PRIO", "ATTEMPTS", "SINCE", "REASON"]
    assert "failed: 12 job(s) in cli:q; showing 1-12" in table.stderr

    dry = jq(redis_url, "retry", "cli:q", "--state", "failed", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("dry run: would retry 12 failed job(s) of cli:q; nothing changed")
    assert redis_conn.zcard("rq:failed:cli:q") == 12
    done = jq(redis_url, "retry", "cli:q", "--state", "failed", "--older-than", "0s", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["done"] == 12
    purged = jq(redis_url, "remove", "cli:q", "--state", "queued")
    assert (purged.returncode, purged.stdout.strip()) == (0, "removed 12 queued job(s) of cli:q")
    assert redis_conn.llen("rq:queue:cli:q") == 0

    for args, message in (
        (("retry", "cli:q", "c1", "--state", "failed"), "either JOB_ID or --state"),
        (("retry", "cli:q"), "give a JOB_ID, or --state"),
        (("remove", "cli:q", "--state", "failed", "--older-than", "soon"), "is not a duration"),
        (("remove", "cli:q", "c1", "--dry-run"), "go with --state"),
        (("remove", "cli:q", "--state", "started"), "'started' is not one of"),
    ):
        bad = jq(redis_url, *args)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert message in bad.stderr, (args, bad.stderr)
    unknown = jq(redis_url, "retry", "nope", "--state", "failed")
    assert unknown.returncode == 3, unknown.stderr
    assert list_jobs("cli:q", "queued", connection=redis_conn).total == 0
