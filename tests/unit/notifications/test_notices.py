"""Failure Events: the first at once, then one aggregated Event per window and queue."""

from __future__ import annotations

from datetime import UTC, datetime

from jobqueue.failures import NOTIFICATION_PREFIX, Exhausted
from jobqueue_operator import notices
from jobqueue_operator.notifier import group_name


def failure(n: int, error: str = "SMTP relay down") -> Exhausted:
    return Exhausted(
        entry_id=f"{n}-0",
        queue="email:send",
        job_id=f"mail-{n}",
        function="glec_jobs.send_email",
        args=["a@x.io"],
        kwargs={},
        error=error,
        attempts=5,
        max_attempts=5,
        at=datetime(2026, 11, 26, tzinfo=UTC),
    )


def test_first_failure_at_once_then_one_event_per_window() -> None:
    t = notices.Throttle(window=30)
    assert t.add("q", failure(1), now=100) == (
        "job mail-1 (glec_jobs.send_email) failed after 5 of 5 attempts: SMTP relay down"
    )
    assert [t.add("q", failure(n), now=100 + n) for n in range(2, 8)] == [None] * 6
    assert t.due(now=120) == []  # the window is not over
    ((key, message),) = t.due(now=130)
    assert key == "q"
    assert message.startswith("6 more job(s) failed for good in 30s: job mail-2 (glec_jobs.send_email)")
    assert message.endswith("; and 3 more")
    assert t.add("q", failure(9), now=140) is None  # a window started with that Event
    assert [m for _, m in t.due(now=160)] == [
        "1 more job(s) failed for good in 30s: job mail-9 (glec_jobs.send_email) failed after 5 of 5 "
        "attempts: SMTP relay down"
    ]
    assert t.due(now=190) == []  # quiet for a whole window: forgotten …
    assert t.add("q", failure(10), now=191) is not None  # … so the next failure is posted at once


def test_queues_are_throttled_apart_and_long_errors_cut() -> None:
    t = notices.Throttle(window=30)
    assert t.add("a", failure(1), now=0) is not None
    assert t.add("b", failure(2), now=1) is not None
    message = t.add("c", failure(3, "x" * 1000), now=2)
    assert message is not None
    assert message.endswith("x" * notices.ERROR_CHARS + "…")


def test_the_seed_notice_and_its_idempotent_job_id() -> None:
    f = failure(1)
    notice = f.notice()
    assert (notice["type"], notice["severity"]) == ("JOB_FAILED", "HIGH")
    assert notice["details"]["job_id"] == "mail-1"
    assert notice["details"]["error"] == "SMTP relay down"
    assert f.notification_job_id.startswith(NOTIFICATION_PREFIX)
    assert not f.is_notification
    notification_failed = Exhausted(**{**f.__dict__, "job_id": f.notification_job_id})
    assert notification_failed.is_notification  # never notified again: no loop


def test_consumer_groups_per_served_namespaces() -> None:
    assert group_name(()) == "jobqueue-operator:*"
    assert group_name(("b", "a")) == group_name(("a", "b")) == "jobqueue-operator:a,b"
