"""Status writes: scales at once, backlog figures at most every few seconds, nothing unchanged."""

from __future__ import annotations

from jobqueue.stats import QueueStats
from jobqueue_operator.scaling import reporting


def stats(queued: int = 0, oldest: float = 0.0) -> QueueStats:
    return QueueStats(
        queue="q",
        queued=queued,
        scheduled=1,
        scheduled_due=0,
        running=2,
        lost=0,
        failed=3,
        finished=0,
        oldest_queued_seconds=oldest,
        last_activity_at=None,
    )


def test_figures_round_the_oldest_age() -> None:
    assert reporting.figures(stats(queued=7, oldest=12.6), 3) == {
        "queued": 7,
        "scheduled": 1,
        "running": 2,
        "failed": 3,
        "oldestQueuedSeconds": 13,
        "desiredReplicas": 3,
        "paused": False,
        "rateLimited": False,
    }


def test_a_pause_is_written_at_once() -> None:
    on_object = reporting.figures(stats(), 1)
    wanted = {**on_object, "paused": True}
    assert reporting.status_patch(on_object, wanted, last_write=100.0, now=101.0) == {"paused": True}


def test_nothing_changed_means_no_write() -> None:
    wanted = reporting.figures(stats(), 1)
    assert reporting.status_patch(dict(wanted), wanted, last_write=None, now=0) is None


def test_only_changed_fields_are_written() -> None:
    on_object = reporting.figures(stats(queued=5), 1)
    patch = reporting.status_patch(on_object, reporting.figures(stats(queued=9), 1), last_write=0, now=100)
    assert patch == {"queued": 9}


def test_backlog_figures_wait_for_the_interval() -> None:
    on_object = reporting.figures(stats(queued=5), 1)
    wanted = reporting.figures(stats(queued=6), 1)
    interval = reporting.STATUS_INTERVAL_SECONDS
    assert reporting.status_patch(on_object, wanted, last_write=100, now=100 + interval - 0.1) is None
    assert reporting.status_patch(on_object, wanted, last_write=100, now=100 + interval) == {"queued": 6}


def test_a_scale_is_written_at_once() -> None:
    on_object = reporting.figures(stats(queued=5), 1)
    wanted = {**reporting.figures(stats(queued=40), 10), **reporting.last_scale(1_800_000_000, "why")}
    patch = reporting.status_patch(on_object, wanted, last_write=100, now=100.5)
    assert patch is not None
    assert patch["desiredReplicas"] == 10
    assert patch["lastScaleTime"] == "2027-01-15T08:00:00Z"
    assert patch["lastScaleReason"] == "why"


def test_first_write_after_a_start_needs_no_wait() -> None:
    assert reporting.status_patch(None, {"queued": 1}, last_write=None, now=0) == {"queued": 1}


def test_scale_events() -> None:
    assert reporting.scale_event(2, 10, "queued=40 running=0 → 10 replicas") == (
        "ScaledUp",
        "worker replicas 2 → 10: queued=40 running=0 → 10 replicas",
    )
    assert reporting.scale_event(10, 0, "idle")[0] == "ScaledDown"


def test_an_age_alone_is_refreshed_less_often() -> None:
    on_object = reporting.figures(stats(queued=5, oldest=30), 1)
    older = reporting.figures(stats(queued=5, oldest=45), 1)
    usual, age_only = reporting.STATUS_INTERVAL_SECONDS, reporting.AGE_ONLY_INTERVAL_SECONDS
    assert reporting.status_patch(on_object, older, last_write=100, now=100 + usual) is None
    assert reporting.status_patch(on_object, older, last_write=100, now=100 + age_only) == {
        "oldestQueuedSeconds": 45
    }
    # with another figure it goes out on the usual interval, the age with it
    both = reporting.figures(stats(queued=6, oldest=45), 1)
    assert reporting.status_patch(on_object, both, last_write=100, now=100 + usual) == {
        "queued": 6,
        "oldestQueuedSeconds": 45,
    }
