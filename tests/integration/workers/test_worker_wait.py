"""Completion events (issue 21, item 5): ``wait`` blocks on the job's results stream and wakes
when the job ends — finished, failed for good, rejected, canceled — without polling, against
real Redis with real workers."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from integration.workers.whelpers import FN, publish, thread_worker, wait_for
from jobqueue import cancel, enqueue, wait

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def _calls(conn: redis.Redis) -> dict[str, int]:
    stats = conn.info("commandstats")
    return {k: int(stats.get(f"cmdstat_{k}", {"calls": 0})["calls"]) for k in ("xread", "hgetall")}


def _waiting(conn: redis.Redis, queue: str, job_id: str, **kw: Any) -> tuple[threading.Thread, list[Any]]:
    """wait() on a thread; its outcome (JobInfo or exception) and when it returned."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(wait(queue, job_id, connection=conn, **kw))
        except Exception as exc:  # (shown by the test's assertion)
            out.append(exc)
        out.append(time.time())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_wait_wakes_at_the_end_without_polling(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "w")
    enqueue("w", FN + "stamp_after", 2.0, job_id="long", connection=redis_conn)
    with thread_worker(redis_url, "w"):
        wait_for("started", lambda: redis_conn.hget("rq:job:long", "status") == b"started")
        before = _calls(redis_conn)
        t, out = _waiting(redis_conn, "w", "long")
        t.join(10)
        after = _calls(redis_conn)
    info, woken = out
    assert info.status == "finished"
    # one blocking read for the whole two seconds, and the job read twice (before and after)
    assert after["xread"] - before["xread"] == 1
    assert after["hgetall"] - before["hgetall"] == 2
    assert 0 <= woken - info.result < 0.25, woken - info.result


def test_wait_follows_a_retry_to_the_end(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "r", attempts=2, backoff={"type": "fixed", "delaySeconds": 0.3})
    enqueue("r", FN + "fail_times", "once", 1, job_id="once", connection=redis_conn)
    t, out = _waiting(redis_conn, "r", "once")
    with thread_worker(redis_url, "r"):
        t.join(15)
    info = out[0]
    assert (info.status, info.attempts_made) == ("finished", 2)


@pytest.mark.parametrize("end", ["failed", "rejected", "canceled"])
def test_wait_wakes_on_every_kind_of_end(redis_conn: redis.Redis, redis_url: str, end: str) -> None:
    publish(redis_conn, "e", attempts=1)
    function = {"failed": "always_fail", "rejected": "not_a_job", "canceled": "mark_after"}[end]
    args: tuple[Any, ...] = {"failed": ("no",), "rejected": (), "canceled": ("c", 30)}[end]
    enqueue("e", FN + function, *args, job_id="j", connection=redis_conn)
    before = _calls(redis_conn)
    t, out = _waiting(redis_conn, "e", "j")
    with thread_worker(redis_url, "e", mode="async" if end == "canceled" else "thread"):
        if end == "canceled":
            wait_for("running", lambda: redis_conn.lrange("test:started", 0, -1) == [b"c"])
            cancel("e", "j", connection=redis_conn)
        t.join(10)
    info = out[0]
    assert info.status == ("failed" if end != "canceled" else "canceled"), info
    assert _calls(redis_conn)["xread"] - before["xread"] == 1  # woken by the end itself


def test_wait_times_out(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "later")
    enqueue("later", FN + "noop", job_id="later", delay=60, connection=redis_conn)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"job 'later' is still scheduled after 0\.3 s"):
        wait("later", "later", timeout=0.3, connection=redis_conn)
    assert 0.3 <= time.monotonic() - started < 2
