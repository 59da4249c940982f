"""Jobs that failed for good are written to the jobqueue:exhausted stream by the script that
fails them (jobqueue.failures): every cause, once, with the payload; read at least once."""

from __future__ import annotations

import dataclasses
import time

import redis

from integration.workers.whelpers import FN, claim, publish, thread_worker, wait_status
from jobqueue import enqueue, failures, recovery

GROUP = "test-group"


def test_a_job_failing_for_good_is_written_once_with_its_payload(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    publish(
        redis_conn,
        "x",
        attempts=2,
        backoff={"type": "fixed", "delaySeconds": 0.1},
        keepFailed={"ageSeconds": 0},
    )  # deleted at once: the entry still has everything
    assert failures.read(redis_conn, group=GROUP, consumer="c") == []  # the group starts here
    enqueue("x", FN + "always_fail", "relay down", kwargs={}, job_id="bad", connection=redis_conn)
    enqueue("x", FN + "fail_times", "flaky", 1, job_id="flaky", connection=redis_conn)  # retried, then ok
    with thread_worker(redis_url, "x"):
        wait_status(redis_conn, "x", "flaky", "finished")
        deadline = time.monotonic() + 20
        while redis_conn.exists("rq:job:bad") and time.monotonic() < deadline:
            time.sleep(0.05)
    (entry,) = failures.read(redis_conn, group=GROUP, consumer="c")
    assert (entry.queue, entry.job_id, entry.function, entry.args) == (
        "x",
        "bad",
        FN + "always_fail",
        ["relay down"],
    )
    assert (entry.error, entry.attempts, entry.max_attempts) == ("ValueError: relay down", 2, 2)
    notice = entry.notice()
    assert notice["title"] == f"Job Failed: {FN}always_fail"
    assert notice["message"] == "Job bad in queue x failed after 2 attempts"
    assert notice["details"]["data"] == {"args": ["relay down"], "kwargs": {}}

    # not acknowledged (the reader died): read again; acknowledged: gone
    (again,) = failures.read(redis_conn, group=GROUP, consumer="c")
    assert again == entry
    failures.ack(redis_conn, GROUP, [entry.entry_id])
    assert failures.read(redis_conn, group=GROUP, consumer="c") == []
    # another group (another operator's namespaces) sees it too
    redis_conn.xgroup_create(failures.STREAM, "other", id="0")
    assert [e.job_id for e in failures.read(redis_conn, group="other", consumer="c")] == ["bad"]


def test_a_lost_job_without_attempts_left_is_written_too(redis_conn: redis.Redis) -> None:
    publish(redis_conn, "l", attempts=1)
    failures.read(redis_conn, group=GROUP, consumer="c")
    enqueue("l", FN + "noop", job_id="orphan", connection=redis_conn)
    assert [c[0] for c in claim(redis_conn, "l", 1, pod="pod-gone")] == ["orphan"]
    redis_conn.delete("rq:workers:l")  # its worker is gone: the operator recovers the pod's jobs
    recovery.recover_pod(redis_conn, "l", "pod-gone", reason="pod pod-gone deleted")
    (entry,) = failures.read(redis_conn, group=GROUP, consumer="c")
    assert (entry.job_id, entry.attempts, entry.max_attempts) == ("orphan", 1, 1)
    assert entry.error.startswith("pod pod-gone deleted")
    assert entry.notification_job_id.startswith(failures.NOTIFICATION_PREFIX)
    # the notification's id depends on the failure alone: every reader, every re-read agrees
    assert dataclasses.replace(entry, error="", args=[]).notification_job_id == entry.notification_job_id
    assert dataclasses.replace(entry, entry_id="1-0").notification_job_id != entry.notification_job_id
