"""The RecurringJob status rendered from what the operator observed (pure functions)."""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

from jobqueue_operator.builders import recurringstatus, status

NOW = datetime.datetime(2026, 11, 26, 4, 0, 30, tzinfo=datetime.UTC)
TICK = datetime.datetime(2026, 11, 26, 0, 0, tzinfo=datetime.UTC)
TICK_JOB = f"daily-analytics-{int(TICK.timestamp()) // 60}"
TICK_ID = f"rj_glec_{TICK_JOB}"
REACHABLE = recurringstatus.RedisFacts(True, "Reachable", "Redis redis://r:6379/0 answered", published=True)
CRON = recurringstatus.CronJobSummary(
    last_schedule_time=TICK, last_successful_time=TICK, active=frozenset(), suspended=False
)
HEALTHY = recurringstatus.Facts(
    generation=3,
    cron_job_name="daily-analytics",
    schedule="0 0 * * *",
    time_zone="UTC",
    suspend=False,
    queue_name="glec.analytics",
    cronjob=CRON,
    redis=replace(REACHABLE, job_id=TICK_ID, job_status="finished"),
)


def render(facts: recurringstatus.Facts, previous: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return recurringstatus.render(facts, "glec", previous, NOW)


def conditions(out: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in out["conditions"]}


def test_a_healthy_recurring_job() -> None:
    out = render(HEALTHY)
    assert {k: v for k, v in out.items() if k != "conditions"} == {
        "observedGeneration": 3,
        "cronJobName": "daily-analytics",
        "queueName": "glec.analytics",
        "lastScheduleTime": "2026-11-26T00:00:00Z",
        "lastSuccessfulTime": "2026-11-26T00:00:00Z",
        "lastJobId": TICK_ID,
        "lastJobStatus": "finished",
        "nextScheduleTime": "2026-11-27T00:00:00Z",
    }
    assert conditions(out) == {"Ready": ("True", "Scheduled"), "RedisReachable": ("True", "Reachable")}


def test_rq_started_is_reported_as_running() -> None:
    facts = replace(HEALTHY, redis=replace(REACHABLE, job_id=TICK_ID, job_status="started"))
    assert render(facts)["lastJobStatus"] == "running"


def test_a_job_not_in_redis_is_enqueuing_while_its_job_runs_and_missing_after() -> None:
    absent = replace(HEALTHY, redis=replace(REACHABLE, job_id=TICK_ID, job_status=None))
    running = replace(absent, cronjob=replace(CRON, active=frozenset({TICK_JOB})))
    assert render(running)["lastJobStatus"] == "enqueuing"
    assert render(absent)["lastJobStatus"] == "missing"


def test_an_unreadable_or_outdated_job_status_is_unknown() -> None:
    stale = replace(
        HEALTHY, redis=replace(REACHABLE, job_id="rj_glec_daily-analytics-1", job_status="finished")
    )
    assert render(stale)["lastJobStatus"] == "unknown"
    down = replace(
        HEALTHY, redis=recurringstatus.RedisFacts.unreachable("RedisUnavailable", "Redis r: timeout")
    )
    out = render(down)
    assert out["lastJobStatus"] == "unknown"
    assert conditions(out) == {
        "Ready": ("False", "RedisUnreachable"),
        "RedisReachable": ("False", "RedisUnavailable"),
    }


def test_before_the_first_tick_there_is_no_job() -> None:
    out = render(replace(HEALTHY, cronjob=replace(CRON, last_schedule_time=None, last_successful_time=None)))
    assert "lastJobId" not in out
    assert "lastJobStatus" not in out
    assert out["nextScheduleTime"] == "2026-11-27T00:00:00Z"


def test_a_missing_queue_is_reported_and_nothing_is_scheduled() -> None:
    facts = replace(
        HEALTHY,
        queue_name=None,
        redis=None,
        cronjob=None,
        problem=("QueueMissing", "JobQueue 'analytics' does not exist in namespace glec"),
    )
    out = render(facts)
    assert conditions(out) == {
        "Ready": ("False", "QueueMissing"),
        "RedisReachable": ("Unknown", "NotChecked"),
    }
    assert "nextScheduleTime" not in out
    assert "cronJobName" not in out  # there is no CronJob


def test_suspended_means_ready_without_a_next_tick() -> None:
    out = render(replace(HEALTHY, suspend=True))
    assert conditions(out)["Ready"] == ("True", "Suspended")
    assert "nextScheduleTime" not in out


def test_a_schedule_without_dates_is_reported() -> None:
    (ready, _) = render(replace(HEALTHY, schedule="0 0 30 2 *"))["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "ScheduleNeverFires")
    assert "never creates a Job" in ready["message"]


def test_a_queue_without_published_settings_is_reported() -> None:
    facts = replace(HEALTHY, redis=replace(REACHABLE, published=False, job_id=TICK_ID, job_status="finished"))
    assert conditions(render(facts))["Ready"] == ("False", "QueueNotPublished")


def test_transition_times_move_only_when_a_condition_flips() -> None:
    first = render(HEALTHY)
    earlier = [dict(c, lastTransitionTime="2026-01-01T00:00:00Z") for c in first["conditions"]]
    again = render(replace(HEALTHY, redis=replace(REACHABLE, job_id=TICK_ID, job_status="queued")), earlier)
    assert [c["lastTransitionTime"] for c in again["conditions"]] == ["2026-01-01T00:00:00Z"] * 2
    down = render(
        replace(HEALTHY, redis=recurringstatus.RedisFacts.unreachable("RedisUnavailable", "x")), earlier
    )
    assert [c["lastTransitionTime"] for c in down["conditions"]] == ["2026-11-26T04:00:30Z"] * 2


def test_what_was_written_reads_back_the_same_so_a_restart_writes_nothing() -> None:
    out = render(HEALTHY)
    live = {**out, "someoneElses": 1, "conditions": [*out["conditions"], {"type": "Other"}]}
    assert recurringstatus.operator_fields(live) == out


def test_events_mark_problems_and_recoveries_only() -> None:
    healthy = render(HEALTHY)["conditions"]
    missing = render(replace(HEALTHY, problem=("QueueMissing", "JobQueue 'analytics' does not exist")))[
        "conditions"
    ]
    assert [(e.type, e.reason) for e in status.transitions(healthy, missing)] == [("Warning", "QueueMissing")]
    assert [(e.type, e.reason) for e in status.transitions(missing, healthy)] == [("Normal", "Ready")]
    assert status.transitions(healthy, healthy) == []


def test_a_queue_name_another_jobqueue_publishes_is_reported() -> None:
    taken = replace(HEALTHY, redis=replace(REACHABLE, job_id=TICK_ID, job_status="finished", owned=False))
    out = render(taken)
    assert conditions(out)["Ready"] == ("False", "QueueNameConflict")
    ready = next(c for c in out["conditions"] if c["type"] == "Ready")
    assert "published by another JobQueue" in ready["message"]


def test_someone_elses_cronjob_is_a_name_conflict() -> None:
    problem = (
        "NameConflict",
        "a CronJob named daily-analytics already exists in namespace glec and "
        "was not made by jobqueue-operator; it is left untouched",
    )
    out = render(replace(HEALTHY, problem=problem, cronjob=None, redis=None))
    assert conditions(out)["Ready"] == ("False", "NameConflict")
    assert "nextScheduleTime" not in out
