"""A RecurringJob's status: the facts the reconciler gathers about it, and the status they make.

Pure (no API, no Redis): :mod:`jobqueue_operator.recurring` gathers the facts — the live
CronJob, the queue's Redis, the spec's problems — and writes what :func:`render` makes of
them. The conditions (``Ready``, ``RedisReachable``) are rendered by
:func:`jobqueue_operator.builders.status.conditions`, as a JobQueue's are.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from jobqueue_operator.builders import cronjob, status
from jobqueue_operator.models import ConditionStatus

#: RQ's name for a job a worker is running; the status says "running" (the seed's word).
_RQ_RUNNING: Final = "started"
#: lastJobStatus when the job is not in Redis: its Job is still running, or it is over (the
#: enqueue failed, or the job's retention ended); and when Redis could not be read.
ENQUEUING: Final = "enqueuing"
MISSING: Final = "missing"
UNKNOWN: Final = "unknown"
#: lastJobStatus of a job that used up its attempts (a Warning Event, once per job)
FAILED: Final = "failed"


@dataclass(frozen=True)
class CronJobSummary:
    """What the status needs from the live CronJob."""

    last_schedule_time: datetime.datetime | None
    last_successful_time: datetime.datetime | None
    #: names of the Jobs still running (a tick's pod may not have enqueued yet)
    active: frozenset[str]
    suspended: bool

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> CronJobSummary:
        st = body.get("status") or {}
        return cls(
            last_schedule_time=_parse_time(st.get("lastScheduleTime")),
            last_successful_time=_parse_time(st.get("lastSuccessfulTime")),
            active=frozenset(str(ref.get("name")) for ref in st.get("active") or []),
            suspended=bool((body.get("spec") or {}).get("suspend")),
        )


@dataclass(frozen=True)
class RedisFacts:
    """The queue's Redis as last read: reachable or why not, and the last job's RQ status."""

    reachable: bool
    reason: str
    message: str
    published: bool = False
    #: RQ status of the job ``job_id`` (None: not in Redis)
    job_status: str | None = None
    job_id: str | None = None
    #: the settings there are the target JobQueue's (not another JobQueue's of that name)
    owned: bool = True

    @classmethod
    def unreachable(cls, reason: str, message: str) -> RedisFacts:
        return cls(False, reason, message)


@dataclass(frozen=True)
class Facts:
    """Everything the status of one RecurringJob is rendered from."""

    generation: int | None
    cron_job_name: str
    schedule: str
    time_zone: str
    suspend: bool
    #: RQ queue name of the target JobQueue (None while it is missing)
    queue_name: str | None = None
    #: (reason, message) of a problem that keeps the RecurringJob from working
    problem: tuple[str, str] | None = None
    cronjob: CronJobSummary | None = None
    #: None: not checked (no queue to check)
    redis: RedisFacts | None = None


def last_job_id(facts: Facts, namespace: str) -> str | None:
    """The job id of the latest tick, from the CronJob's ``lastScheduleTime``."""
    if facts.cronjob is None or facts.cronjob.last_schedule_time is None:
        return None
    return cronjob.job_id(
        namespace, cronjob.scheduled_job_name(facts.cron_job_name, facts.cronjob.last_schedule_time)
    )


def last_job_status(facts: Facts, namespace: str) -> str | None:
    """queued, scheduled, running, finished, failed … (RQ's), or enqueuing / missing / unknown."""
    job_id = last_job_id(facts, namespace)
    if job_id is None or facts.cronjob is None:
        return None
    redis = facts.redis
    if redis is None or not redis.reachable or redis.job_id != job_id:
        return UNKNOWN
    if redis.job_status is not None:
        return "running" if redis.job_status == _RQ_RUNNING else redis.job_status
    job_name = cronjob.scheduled_job_name(facts.cron_job_name, facts.cronjob.last_schedule_time)  # type: ignore[arg-type]
    return ENQUEUING if job_name in facts.cronjob.active else MISSING


def next_tick(facts: Facts, now: datetime.datetime) -> tuple[datetime.datetime | None, str | None]:
    """(next tick, None) or (None, why there is none to announce)."""
    if facts.problem is not None or facts.suspend:
        return None, None
    try:
        return cronjob.next_schedule_time(facts.schedule, facts.time_zone, now), None
    except cronjob.NeverFires as e:
        return None, f"{e}: the CronJob never creates a Job (Kubernetes accepts such schedules)"
    except (ValueError, KeyError) as e:  # a time zone or schedule this process cannot read
        return None, f"cannot compute the next tick of {facts.schedule!r} in {facts.time_zone}: {e}"


def ready_condition(  # noqa: PLR0911 (a decision table)
    facts: Facts,
    never: str | None,
) -> tuple[ConditionStatus, str, str]:
    redis = facts.redis
    if facts.problem is not None:
        return "False", *facts.problem
    if never is not None:
        return "False", "ScheduleNeverFires", never
    if redis is not None and not redis.reachable:
        return "False", "RedisUnreachable", redis.message
    if redis is not None and redis.published and not redis.owned:
        return (
            "False",
            "QueueNameConflict",
            (
                f"queue {facts.queue_name!r} is published by another JobQueue than the target one (see the "
                "JobQueue's conditions): its ticks would not reach that JobQueue's workers"
            ),
        )
    if redis is not None and not redis.published:
        return (
            "False",
            "QueueNotPublished",
            (
                f"queue {facts.queue_name!r} has no published settings in its Redis (see the JobQueue's "
                "conditions): every tick's enqueue would fail"
            ),
        )
    where = f"into queue {facts.queue_name!r} on schedule {facts.schedule!r} ({facts.time_zone})"
    if facts.suspend:
        return "True", "Suspended", f"suspended: CronJob {facts.cron_job_name} enqueues nothing"
    return "True", "Scheduled", f"CronJob {facts.cron_job_name} enqueues one job per tick {where}"


def redis_condition(facts: Facts) -> tuple[ConditionStatus, str, str]:
    redis = facts.redis
    if redis is None:
        return "Unknown", "NotChecked", "the queue's Redis was not checked (no target JobQueue)"
    return ("True" if redis.reachable else "False"), redis.reason, redis.message


def render(
    facts: Facts, namespace: str, previous: Sequence[Mapping[str, Any]] | None, now: datetime.datetime
) -> dict[str, Any]:
    """The status fields the operator owns; conditions keep their ``lastTransitionTime``
    while their status stays the same."""
    summary = facts.cronjob
    upcoming, never = next_tick(facts, now)
    out: dict[str, Any] = {
        "observedGeneration": facts.generation,
        "cronJobName": facts.cron_job_name if summary else None,
        "queueName": facts.queue_name,
        "lastScheduleTime": _time(summary.last_schedule_time) if summary else None,
        "lastSuccessfulTime": _time(summary.last_successful_time) if summary else None,
        "lastJobId": last_job_id(facts, namespace),
        "lastJobStatus": last_job_status(facts, namespace),
        "nextScheduleTime": _time(upcoming),
    }
    out["conditions"] = status.conditions(
        ready_condition(facts, never),
        redis_condition(facts),
        previous=previous,
        generation=facts.generation,
        now=now,
    )
    return {k: v for k, v in out.items() if v is not None}


_FIELDS: Final = (
    "observedGeneration",
    "cronJobName",
    "queueName",
    "lastScheduleTime",
    "lastSuccessfulTime",
    "lastJobId",
    "lastJobStatus",
    "nextScheduleTime",
)


def operator_fields(live: Mapping[str, Any] | None) -> dict[str, Any]:
    """The operator-owned part of a live status (what :func:`render` would have written)."""
    live = live or {}
    out = {k: live[k] for k in _FIELDS if live.get(k) is not None}
    return out | status.operator_conditions(live)


def _time(when: datetime.datetime | None) -> str | None:
    return None if when is None else status.timestamp(when)


def _parse_time(text: Any) -> datetime.datetime | None:
    if not text:
        return None
    with contextlib.suppress(ValueError):
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return None
