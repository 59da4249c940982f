"""The Prometheus alert rules of jobqueue-operator.

Each alert is a small function returning an :class:`Alert`; :func:`rule_file` assembles them
into a plain Prometheus rule file (``groups: [...]``), which is also the ``spec`` of the
chart's PrometheusRule. Metric names come from :mod:`jobqueue.metricnames`, thresholds from
:data:`~jobqueue_operator.monitoring.config.CONFIG`; annotations use Prometheus' alert
templating (``{{ $labels.queue }}``), which Helm never evaluates because the chart reads the
file with ``.Files.Get``.

Queue-level alerts group by ``namespace`` and ``queue`` (and ``jobqueue`` where the operator's
series carry it): ``namespace`` is the JobQueue's namespace on operator series and the
worker pod's namespace, set by the scrape, on worker series.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from jobqueue import metricnames as m
from jobqueue_operator.monitoring import config

Severity = Literal["warning", "critical"]

#: Labels by which queue-level operator series are aggregated (what identifies a queue).
QUEUE_KEYS = "namespace, jobqueue, queue"
#: Worker series have no ``jobqueue`` label of their own.
WORKER_KEYS = "namespace, queue"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: Severity
    summary: str
    description: str

    def runbook_url(self) -> str:
        return f"{config.CONFIG['runbook_base_url']}#{self.name.lower()}"

    def rule(self) -> dict[str, object]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": self.runbook_url(),
            },
        }


def backlog_growing() -> Alert:
    t = config.CONFIG["thresholds"]["backlog_growing"]
    queued = f'{m.QUEUE_JOBS}{{state="queued"}}'
    return Alert(
        name="JobQueueBacklogGrowing",
        expr=(
            f"sum by ({QUEUE_KEYS}) ({queued}) > {t['min_queued']}\n"
            f"and\n"
            f"sum by ({QUEUE_KEYS}) (deriv({queued}[{t['window']}])) > 0\n"
        ),
        for_=t["for_"],
        severity="warning",
        summary="Queue {{ $labels.queue }} keeps growing faster than its workers drain it.",
        description=(
            "{{ $labels.namespace }}/{{ $labels.jobqueue }} (queue {{ $labels.queue }}) has "
            "{{ $value | humanize }} queued jobs and the backlog has grown for "
            f"{t['for_']}. Workers may be at maxReplicas, stuck, or slower than usual."
        ),
    )


def oldest_job_too_old() -> Alert:
    t = config.CONFIG["thresholds"]["oldest_job_too_old"]
    return Alert(
        name="JobQueueOldestJobTooOld",
        expr=f"max by ({QUEUE_KEYS}) ({m.QUEUE_OLDEST_JOB_AGE_SECONDS}) > {t['max_age_seconds']}\n",
        for_=t["for_"],
        severity="warning",
        summary="The oldest job of queue {{ $labels.queue }} has waited too long.",
        description=(
            "The oldest queued job of {{ $labels.namespace }}/{{ $labels.jobqueue }} "
            "(queue {{ $labels.queue }}) has waited {{ $value | humanizeDuration }}, "
            f"more than {t['max_age_seconds']} s, for {t['for_']}."
        ),
    )


def failure_rate_high() -> Alert:
    t = config.CONFIG["thresholds"]["failure_rate_high"]
    w = t["window"]
    failed = f"sum by ({WORKER_KEYS}) (rate({m.JOBS_FAILED}[{w}]))"
    succeeded = f"sum by ({WORKER_KEYS}) (rate({m.JOBS_SUCCEEDED}[{w}]))"
    return Alert(
        name="JobQueueFailureRateHigh",
        # `or failed * 0`: a queue whose jobs all fail has no succeeded series at all
        expr=(
            f"{failed}\n"
            f"/\n"
            f"(\n"
            f"  {failed}\n"
            f"  +\n"
            f"  ({succeeded} or {failed} * 0)\n"
            f")\n"
            f"> {t['max_ratio']}\n"
            f"and\n"
            f"sum by ({WORKER_KEYS}) (increase({m.JOBS_FAILED}[{w}])) >= {t['min_failures']}\n"
        ),
        for_=t["for_"],
        severity="warning",
        summary="Many jobs of queue {{ $labels.queue }} fail for good.",
        description=(
            "{{ $value | humanizePercentage }} of the jobs of queue {{ $labels.queue }} in "
            "{{ $labels.namespace }} that finished in the last "
            f"{w} failed with no attempts left (threshold {t['max_ratio']:.0%})."
        ),
    )


def workers_not_ready() -> Alert:
    t = config.CONFIG["thresholds"]["workers_not_ready"]
    return Alert(
        name="JobQueueWorkersNotReady",
        expr=(
            f"max by ({QUEUE_KEYS}) ({m.DESIRED_REPLICAS})\n>\nmax by ({QUEUE_KEYS}) ({m.READY_REPLICAS})\n"
        ),
        for_=t["for_"],
        severity="warning",
        summary="Queue {{ $labels.queue }} has fewer ready workers than it needs.",
        description=(
            "{{ $labels.namespace }}/{{ $labels.jobqueue }} wants {{ $value }} worker pods "
            f"but fewer have been Ready for {t['for_']}: look for Pending or crash-looping "
            "pods of Deployment {{ $labels.jobqueue }}-worker."
        ),
    )


def redis_unreachable() -> Alert:
    t = config.CONFIG["thresholds"]["redis_unreachable"]
    return Alert(
        name="JobQueueRedisUnreachable",
        expr=f"{m.REDIS_UP} == 0\n",
        for_=t["for_"],
        severity="critical",
        summary="The operator cannot reach Redis {{ $labels.redis }}.",
        description=(
            "The operator's poller has failed to read Redis {{ $labels.redis }} for "
            f"{t['for_']}: queues on it are neither scaled nor recovered, and producers "
            "and workers using it are probably failing too."
        ),
    )


def operator_down() -> Alert:
    t = config.CONFIG["thresholds"]["operator_down"]
    return Alert(
        name="JobQueueOperatorDown",
        # the operator's own info series: absent when no operator is scraped at all,
        # whatever job label the scrape configuration gives it; and with leader election,
        # operators that all stand by (none holds the Lease: e.g. none may write it) act as
        # little as none at all
        expr=f"absent({m.OPERATOR_INFO}) or max({m.OPERATOR_LEADER}) < 1\n",
        for_=t["for_"],
        severity="critical",
        summary="The jobqueue operator is down (or Prometheus does not scrape it).",
        description=(
            f"No jobqueue operator has exposed metrics, or none has held the leader Lease, for "
            f"{t['for_']}. Worker pools are not scaled, lost jobs are not recovered and JobQueue "
            "changes are not applied."
        ),
    )


def all_alerts() -> list[Alert]:
    return [
        backlog_growing(),
        oldest_job_too_old(),
        failure_rate_high(),
        workers_not_ready(),
        redis_unreachable(),
        operator_down(),
    ]


def rule_file() -> dict[str, object]:
    """A plain Prometheus rule file; its ``groups`` are also the PrometheusRule ``spec``."""
    return {
        "groups": [
            {"name": config.CONFIG["rule_group"], "rules": [a.rule() for a in all_alerts()]},
        ],
    }
