"""Every tunable of the generated dashboard and alert rules, in one place.

Alert thresholds, ``for`` durations, rate windows, the dashboard's identity and the runbook
location are read from :data:`CONFIG` by :mod:`~jobqueue_operator.monitoring.alerts` and
:mod:`~jobqueue_operator.monitoring.dashboards`, so the dashboard's threshold lines and the
alerts can never disagree (the kubernetes-mixin ``_config`` idea). Change a value here, run
``make generate``, and the checked-in files, the chart's copies and the ``promtool`` fixtures'
expectations follow (the fixtures are written against these numbers: ``tests/alerts/``).
"""

from __future__ import annotations

from typing import Final, TypedDict


class BacklogGrowing(TypedDict):
    #: fire only above this many queued jobs: a short queue that grows is normal
    min_queued: int
    #: the window over which ``deriv()`` judges the growth
    window: str
    for_: str


class OldestJobTooOld(TypedDict):
    #: seconds the oldest queued job may wait before someone should look
    max_age_seconds: int
    for_: str


class FailureRateHigh(TypedDict):
    #: share of finished jobs that failed for good (no attempts left), 0..1
    max_ratio: float
    #: and at least this many such failures in the window (two failures of three jobs
    #: at night is not an incident)
    min_failures: int
    window: str
    for_: str


class WorkersNotReady(TypedDict):
    #: how long fewer worker pods than desired may be Ready (image pulls, scheduling and
    #: node scale-up usually take a few minutes)
    for_: str


class RedisUnreachable(TypedDict):
    for_: str


class OperatorDown(TypedDict):
    for_: str


class Thresholds(TypedDict):
    backlog_growing: BacklogGrowing
    oldest_job_too_old: OldestJobTooOld
    failure_rate_high: FailureRateHigh
    workers_not_ready: WorkersNotReady
    redis_unreachable: RedisUnreachable
    operator_down: OperatorDown


class Dashboard(TypedDict):
    uid: str
    title: str
    tags: list[str]
    refresh: str
    time_from: str


class Config(TypedDict):
    #: runbooks are the headings of docs/monitoring.md; the alert name lower-cased is the anchor
    runbook_base_url: str
    #: the ``name`` of the rule group in the rule file and in the PrometheusRule
    rule_group: str
    dashboard: Dashboard
    thresholds: Thresholds


CONFIG: Final[Config] = {
    "runbook_base_url": "https://github.com/glec/jobqueue-operator/blob/main/docs/monitoring.md",
    "rule_group": "jobqueue-operator",
    "dashboard": {
        "uid": "jobqueue-overview",
        "title": "JobQueue / Overview",
        "tags": ["jobqueue", "rq", "kubernetes"],
        "refresh": "30s",
        "time_from": "now-3h",
    },
    "thresholds": {
        "backlog_growing": {"min_queued": 100, "window": "10m", "for_": "15m"},
        # ten minutes: the slowest seed queue (reports, 60 s jobs, concurrency 2) drains a
        # backlog of twenty in that time; beyond it a queue is not keeping up
        "oldest_job_too_old": {"max_age_seconds": 600, "for_": "5m"},
        "failure_rate_high": {"max_ratio": 0.1, "min_failures": 5, "window": "10m", "for_": "10m"},
        "workers_not_ready": {"for_": "10m"},
        # the poller retries every second; two minutes rules out a Redis failover blip
        "redis_unreachable": {"for_": "2m"},
        "operator_down": {"for_": "5m"},
    },
}
