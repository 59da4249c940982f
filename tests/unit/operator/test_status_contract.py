"""Every status the operator renders is one its CRD keeps: validated through the status models
(from which the CRDs are generated) with ``extra="forbid"``.

The API server silently prunes status fields its schema lacks, so a renderer writing a field
the model does not declare would lose it without an error anywhere; here it fails. The cases
reach every reason of both conditions of both kinds (each set is checked, so a new reason
needs a case here).
"""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

import pydantic
import pytest

from jobqueue.stats import QueueStats
from jobqueue_operator import models
from jobqueue_operator.builders import recurringstatus, status
from jobqueue_operator.scaling import reporting

NOW = datetime.datetime(2026, 11, 26, 4, 0, 30, tzinfo=datetime.UTC)
LONG = "x" * (status.MESSAGE_LIMIT + 100)

# ---- JobQueue

DEP = status.DeploymentSummary(desired=2, replicas=2, ready=2, updated=2, observed=True)
OK = status.Inputs(
    generation=3, queue_name="q", suspend=False, publication=status.Publication.ok("q", 3), deployment=DEP
)


def failing_deployment(condition: dict[str, str]) -> status.DeploymentSummary:
    return status.DeploymentSummary.of(
        {
            "metadata": {"generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "conditions": [condition]},
        }
    )


JOBQUEUE_CASES = [
    OK,
    replace(OK, apply_error=("InvalidSpec", "bad"), publication=None, deployment=None),
    replace(OK, apply_error=("DeploymentFailed", LONG), deployment=None),
    replace(OK, apply_error=("RedisSecretConflict", "someone else's Secret")),
    replace(OK, apply_error=("RedisSecretFailed", "forbidden")),
    replace(OK, publication=None),
    replace(OK, publication=status.Publication.unreachable("NoRedisConfigured", "none")),
    replace(OK, publication=status.Publication.unreachable("SecretNotFound", "Secret x")),
    replace(OK, publication=status.Publication.unreachable("SecretKeyNotFound", "key y")),
    replace(OK, publication=status.Publication.unreachable("InvalidRedisURL", "bad URL")),
    replace(OK, publication=status.Publication.unreachable("RedisUnavailable", LONG)),
    replace(OK, publication=status.Publication.conflict("taken")),
    replace(OK, deployment=None),
    replace(
        OK, deployment=failing_deployment({"type": "ReplicaFailure", "status": "True", "message": "quota"})
    ),
    replace(
        OK,
        deployment=failing_deployment(
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "stuck",
            }
        ),
    ),
    replace(OK, suspend=True),
    replace(OK, deployment=replace(DEP, desired=0, replicas=0, ready=0, updated=0)),
    replace(OK, deployment=replace(DEP, ready=0)),
    replace(OK, deployment=replace(DEP, updated=1)),
    replace(OK, deployment=replace(DEP, desired=4)),
]
#: what the cases reach: every reason builders/status.py's docstring lists, and NotChecked
JOBQUEUE_READY = {
    "InvalidSpec",
    "DeploymentFailed",
    "RedisSecretConflict",
    "RedisSecretFailed",
    "QueueNameConflict",
    "RedisUnreachable",
    "PodsRejected",
    "RolloutStuck",
    "WorkersStarting",
    "WorkersReady",
    "ScaledToZero",
    "Suspended",
    "RollingOut",
    "ScalingUp",
    "NotChecked",
}
JOBQUEUE_REDIS = {
    "Reachable",
    "NotChecked",
    "NoRedisConfigured",
    "SecretNotFound",
    "SecretKeyNotFound",
    "InvalidRedisURL",
    "RedisUnavailable",
}
#: what the autoscaler adds to a JobQueue's status (its own field manager, a merge patch)
STATS = QueueStats(
    queue="q",
    queued=4,
    scheduled=1,
    scheduled_due=0,
    running=2,
    lost=0,
    failed=1,
    finished=9,
    oldest_queued_seconds=12.3,
    last_activity_at=None,
    paused=True,
    rate_limited=True,
)
AUTOSCALER = {**reporting.figures(STATS, 3), **reporting.last_scale(NOW.timestamp(), "queued=4 running=2")}


def jobqueue_statuses() -> list[dict[str, Any]]:
    first = [status.render(inputs, None, NOW) for inputs in JOBQUEUE_CASES]
    # and each again over another case's conditions (kept and moved lastTransitionTimes)
    return first + [status.render(inputs, first[0]["conditions"], NOW) for inputs in JOBQUEUE_CASES]


# ---- RecurringJob

TICK = datetime.datetime(2026, 11, 26, 0, 0, tzinfo=datetime.UTC)
TICK_ID = f"rj_glec_daily-{int(TICK.timestamp()) // 60}"
REACHABLE = recurringstatus.RedisFacts(
    True, "Reachable", "Redis answered", published=True, job_id=TICK_ID, job_status="finished"
)
CRON = recurringstatus.CronJobSummary(
    last_schedule_time=TICK, last_successful_time=TICK, active=frozenset(), suspended=False
)
HEALTHY = recurringstatus.Facts(
    generation=3,
    cron_job_name="daily",
    schedule="0 0 * * *",
    time_zone="UTC",
    suspend=False,
    queue_name="glec.analytics",
    cronjob=CRON,
    redis=REACHABLE,
)

RECURRING_CASES = [
    HEALTHY,
    replace(HEALTHY, problem=("QueueMissing", "JobQueue 'a' does not exist"), redis=None, queue_name=None),
    replace(HEALTHY, problem=("UnknownTimeZone", LONG), redis=None, cronjob=None),
    replace(HEALTHY, problem=("CronJobRejected", "refused"), redis=None),
    replace(HEALTHY, problem=("NameConflict", "taken"), redis=None, cronjob=None),
    replace(HEALTHY, problem=("InvalidSpec", "bad"), redis=None, cronjob=None),
    replace(HEALTHY, schedule="0 0 30 2 *"),
    replace(HEALTHY, redis=recurringstatus.RedisFacts.unreachable("RedisUnavailable", LONG)),
    replace(HEALTHY, redis=recurringstatus.RedisFacts.unreachable("SecretNotFound", "Secret x")),
    replace(HEALTHY, redis=replace(REACHABLE, owned=False)),
    replace(HEALTHY, redis=replace(REACHABLE, published=False)),
    replace(HEALTHY, suspend=True),
    replace(HEALTHY, redis=replace(REACHABLE, job_status="started")),
    replace(HEALTHY, redis=replace(REACHABLE, job_status=None)),
    replace(
        HEALTHY,
        redis=replace(REACHABLE, job_status=None),
        cronjob=replace(CRON, active=frozenset({f"daily-{int(TICK.timestamp()) // 60}"})),
    ),
    replace(HEALTHY, cronjob=replace(CRON, last_schedule_time=None, last_successful_time=None)),
]
RECURRING_READY = {
    "Scheduled",
    "QueueMissing",
    "UnknownTimeZone",
    "CronJobRejected",
    "NameConflict",
    "InvalidSpec",
    "ScheduleNeverFires",
    "RedisUnreachable",
    "QueueNameConflict",
    "QueueNotPublished",
    "Suspended",
}
RECURRING_REDIS = {"Reachable", "NotChecked", "RedisUnavailable", "SecretNotFound"}


def recurring_statuses() -> list[dict[str, Any]]:
    first = [recurringstatus.render(facts, "glec", None, NOW) for facts in RECURRING_CASES]
    return first + [
        recurringstatus.render(facts, "glec", first[0]["conditions"], NOW) for facts in RECURRING_CASES
    ]


def reasons(statuses: list[dict[str, Any]], type_: str) -> set[str]:
    return {c["reason"] for s in statuses for c in s["conditions"] if c["type"] == type_}


# ---- the contract


@pytest.mark.parametrize("rendered", jobqueue_statuses())
def test_every_jobqueue_status_is_one_the_crd_keeps(rendered: dict[str, Any]) -> None:
    models.JobQueueStatus.model_validate({**rendered, **AUTOSCALER}, extra="forbid")


@pytest.mark.parametrize("rendered", recurring_statuses())
def test_every_recurringjob_status_is_one_the_crd_keeps(rendered: dict[str, Any]) -> None:
    models.RecurringJobStatus.model_validate(rendered, extra="forbid")


def test_the_cases_reach_every_reason_of_both_conditions() -> None:
    jobqueues, recurringjobs = jobqueue_statuses(), recurring_statuses()
    assert reasons(jobqueues, status.READY) == JOBQUEUE_READY
    assert reasons(jobqueues, status.REDIS_REACHABLE) == JOBQUEUE_REDIS
    assert reasons(recurringjobs, status.READY) == RECURRING_READY
    assert reasons(recurringjobs, status.REDIS_REACHABLE) == RECURRING_REDIS
    last = {s.get("lastJobStatus") for s in recurringjobs}
    assert last == {"finished", "running", "enqueuing", "missing", "unknown", None}


def test_messages_of_both_kinds_are_cut_at_the_same_limit() -> None:
    messages = [c["message"] for s in jobqueue_statuses() + recurring_statuses() for c in s["conditions"]]
    assert max(len(m) for m in messages) == status.MESSAGE_LIMIT


@pytest.mark.parametrize(
    ("model", "rendered"),
    [
        (models.JobQueueStatus, status.render(OK, None, NOW)),
        (models.RecurringJobStatus, recurringstatus.render(HEALTHY, "glec", None, NOW)),
    ],
)
def test_a_field_the_crd_lacks_fails_the_check(
    model: type[pydantic.BaseModel], rendered: dict[str, Any]
) -> None:
    """What the API server would prune without a word: at the top and inside a condition."""
    with pytest.raises(pydantic.ValidationError, match="lastRun"):
        model.model_validate({**rendered, "lastRun": "now"}, extra="forbid")
    conditions = [{**rendered["conditions"][0], "severity": "Error"}, *rendered["conditions"][1:]]
    with pytest.raises(pydantic.ValidationError, match="severity"):
        model.model_validate({**rendered, "conditions": conditions}, extra="forbid")
