"""Pause and resume (jobqueue.admin, `jobqueue pause` / `resume`) and listing a queue's jobs
by state, against real Redis and real workers."""

from __future__ import annotations

import json
import time

import pytest
import redis

from integration.workers.test_worker_cli import jq
from integration.workers.whelpers import FN, publish, thread_worker, wait_for, wait_status
from jobqueue import UnknownQueueError, admin, enqueue, get_job, stats


def test_a_paused_queue_takes_jobs_in_but_runs_none_until_resumed(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    publish(redis_conn, "p")
    enqueue("p", FN + "sleep", 1.5, job_id="running", connection=redis_conn)
    with thread_worker(redis_url, "p", concurrency=2):
        wait_status(redis_conn, "p", "running", "started")
        state = admin.pause("p", by="ops@example.com", connection=redis_conn)
        assert (state.paused, state.by) == (True, "ops@example.com")
        assert state.since is not None
        # producers still add; the worker takes nothing new, and the running job finishes
        for i in range(3):
            added = enqueue("p", FN + "record", f"r{i}", job_id=f"r{i}", connection=redis_conn)
            assert added.status == "queued"
        wait_status(redis_conn, "p", "running", "finished", timeout=10)
        time.sleep(2.5)  # two and a half claim intervals of a paused worker: a real chance to take one
        assert [get_job("p", f"r{i}", connection=redis_conn).status for i in range(3)] == ["queued"] * 3
        assert redis_conn.llen("test:runs") == 0
        snap = stats.snapshot(redis_conn, ["p"])["p"]
        assert (snap.paused, snap.queued) == (True, 3)
        again = admin.pause("p", by="someone-else", connection=redis_conn)
        assert (again.since, again.by) == (state.since, "ops@example.com")  # the first pause stands

        assert admin.resume("p", connection=redis_conn) is True
        for i in range(3):
            wait_status(redis_conn, "p", f"r{i}", "finished", timeout=10)
    assert admin.resume("p", connection=redis_conn) is False
    assert stats.snapshot(redis_conn, ["p"])["p"].paused is False
    assert admin.pause_state("p", connection=redis_conn).paused is False


def test_pausing_an_undeclared_queue_is_refused(redis_conn: redis.Redis) -> None:
    with pytest.raises(UnknownQueueError, match="queue 'ghost' is not declared"):
        admin.pause("ghost", connection=redis_conn)
    with pytest.raises(UnknownQueueError):
        admin.resume("ghost", connection=redis_conn)
    assert not redis_conn.exists("jobqueue:paused")


def test_pause_and_resume_from_the_command_line(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "c")
    paused = jq(redis_url, "pause", "c", "--by", "oncall")
    assert paused.returncode == 0, paused.stderr
    assert "queue c is paused (since " in paused.stdout
    assert "by oncall" in paused.stdout
    assert json.loads(jq(redis_url, "stats", "--json").stdout)["c"]["paused"] is True
    resumed = jq(redis_url, "resume", "c")
    assert (resumed.returncode, resumed.stdout.strip()) == (0, "queue c resumed")
    assert jq(redis_url, "resume", "c").stdout.strip() == "queue c was not paused"
    unknown = jq(redis_url, "pause", "nope")
    assert unknown.returncode == 3  # ExitCode.NOT_FOUND
    assert "queue 'nope' is not declared" in unknown.stderr


def test_jobs_listed_by_state_page_by_page(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "l", attempts=1)
    for level, n in ((3, 4), (1, 2), (5, 1)):
        for i in range(n):
            enqueue("l", FN + "noop", job_id=f"q{level}-{i}", priority=level, connection=redis_conn)
    enqueue("l", FN + "noop", job_id="later", delay=300, connection=redis_conn)
    page = admin.list_jobs("l", "queued", offset=0, limit=3, connection=redis_conn)
    assert page.total == 7
    assert [j.id for j in page.jobs] == ["q1-0", "q1-1", "q3-0"]  # level 1 first, then FIFO
    rest = admin.list_jobs("l", "queued", offset=3, limit=10, connection=redis_conn)
    assert [j.id for j in rest.jobs] == ["q3-1", "q3-2", "q3-3", "q5-0"]
    assert admin.list_jobs("l", "queued", offset=7, limit=10, connection=redis_conn).jobs == []
    scheduled = admin.list_jobs("l", "scheduled", connection=redis_conn)
    assert (scheduled.total, [j.id for j in scheduled.jobs]) == (1, ["later"])

    enqueue("l", FN + "always_fail", "boom", job_id="bad", connection=redis_conn)
    with thread_worker(redis_url, "l"):
        wait_status(redis_conn, "l", "bad", "failed")
        wait_for("all queued jobs done", lambda: stats.snapshot(redis_conn, ["l"])["l"].queued == 0)
    failed = admin.list_jobs("l", "failed", connection=redis_conn)
    assert (failed.total, [j.id for j in failed.jobs]) == (1, ["bad"])
    assert failed.jobs[0].failed_reason == "ValueError: boom"
    finished = admin.list_jobs("l", "finished", offset=0, limit=2, connection=redis_conn)
    assert finished.total == 7
    assert len(finished.jobs) == 2

    for state, page_args, message in (
        ("running", {}, "state must be one of queued, scheduled, started, finished, failed"),
        ("queued", {"offset": -1}, "offset must be an integer >= 0"),
        ("queued", {"limit": 0}, "limit must be an integer from 1 to 500"),
        ("queued", {"limit": 501}, "limit must be an integer from 1 to 500"),
    ):
        with pytest.raises(ValueError, match=message):
            admin.list_jobs("l", state, **page_args, connection=redis_conn)
    with pytest.raises(UnknownQueueError):
        admin.list_jobs("nope", "queued", connection=redis_conn)


def test_overview_lists_every_declared_queue(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "b")
    publish(redis_conn, "a", attempts=3)
    enqueue("a", FN + "noop", connection=redis_conn)
    admin.pause("b", connection=redis_conn)
    rows = admin.overview(connection=redis_conn)
    assert [(r.queue, r.stats.queued, r.stats.paused) for r in rows] == [("a", 1, False), ("b", 0, True)]
    assert rows[0].settings is not None
    assert rows[0].settings.job_defaults.attempts == 3
