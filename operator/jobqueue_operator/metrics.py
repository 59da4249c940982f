"""The operator's Prometheus metrics (``/metrics`` on JOBQUEUE_METRICS_PORT).

Names come from :mod:`jobqueue.metricnames`, the project's one vocabulary shared with the
dashboards and alert rules; nothing here spells a metric name. Per-queue series carry
``namespace``, ``jobqueue`` and ``queue`` and are removed when their JobQueue is deleted,
so a churn of queues does not leave dead series behind. The autoscaler adds its own
objects (desired replicas, backlog, scaling decisions, poll timings) here.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Final

import prometheus_client

from jobqueue import metricnames as mn
from jobqueue_operator import __version__

KIND_JOBQUEUE: Final = "JobQueue"
KIND_SWEEP: Final = "sweep"

OPERATOR_INFO: Final = prometheus_client.Gauge(mn.OPERATOR_INFO, "jobqueue-operator build", ["version"])
LEADER: Final = prometheus_client.Gauge(
    mn.OPERATOR_LEADER,
    "1 while this replica holds the leader Lease (and acts), 0 while it stands by",
    ["lease"],
)
SHARDS_HELD: Final = prometheus_client.Gauge(
    mn.OPERATOR_SHARDS_HELD, "Autoscaler shards this replica holds the Lease of (JOBQUEUE_SHARDS; 0 when off)"
)
SHARD_MEMBERS: Final = prometheus_client.Gauge(
    mn.OPERATOR_SHARD_MEMBERS, "Replicas that share the autoscaler's shards, as this replica sees them"
)
RECONCILE_TOTAL: Final = prometheus_client.Counter(
    mn.RECONCILE_TOTAL, "Reconciles (and settings sweeps) by outcome", ["kind", "result"]
)
RECONCILE_SECONDS: Final = prometheus_client.Histogram(
    mn.RECONCILE_SECONDS,
    "Duration of one reconcile or settings sweep",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REPLICAS: Final = prometheus_client.Gauge(
    mn.REPLICAS, "Worker pods of the queue (Deployment status.replicas)", ["namespace", "jobqueue", "queue"]
)
READY_REPLICAS: Final = prometheus_client.Gauge(
    mn.READY_REPLICAS, "Ready worker pods of the queue", ["namespace", "jobqueue", "queue"]
)
ORPHANED_SETTINGS_REMOVED: Final = prometheus_client.Counter(
    mn.ORPHANED_SETTINGS_REMOVED, "Published queue settings removed because their JobQueue is gone"
)

# ---- the autoscaler (jobqueue_operator.scaling.poller)

_QUEUE: Final = ["namespace", "jobqueue", "queue"]
QUEUE_JOBS: Final = prometheus_client.Gauge(
    mn.QUEUE_JOBS, "Jobs of the queue by state, as the autoscaler last read them", [*_QUEUE, "state"]
)
QUEUE_OLDEST_JOB_AGE_SECONDS: Final = prometheus_client.Gauge(
    mn.QUEUE_OLDEST_JOB_AGE_SECONDS, "Seconds the longest-waiting runnable job has waited", _QUEUE
)
QUEUE_WORKERS: Final = prometheus_client.Gauge(
    mn.QUEUE_WORKERS, "RQ worker processes of the queue by state", [*_QUEUE, "state"]
)
DESIRED_REPLICAS: Final = prometheus_client.Gauge(
    mn.DESIRED_REPLICAS, "Worker pods the autoscaler wants for the queue", _QUEUE
)
SCALING_DECISIONS: Final = prometheus_client.Counter(
    mn.SCALING_DECISIONS, "Replica changes made by the autoscaler", [*_QUEUE, "direction", "reason"]
)
LOST_JOBS_RECOVERED: Final = prometheus_client.Counter(
    mn.LOST_JOBS_RECOVERED, "Jobs of vanished worker pods re-queued or failed", [*_QUEUE, "outcome"]
)
POLL_DURATION_SECONDS: Final = prometheus_client.Histogram(
    mn.POLL_DURATION_SECONDS,
    "One read of every queue on a Redis (round trips included)",
    ["redis"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
POLL_ERRORS: Final = prometheus_client.Counter(mn.POLL_ERRORS, "Failed reads of a Redis", ["redis"])
REDIS_UP: Final = prometheus_client.Gauge(mn.REDIS_UP, "1 if the last read of the Redis succeeded", ["redis"])
AUTOSCALER_CYCLE_SECONDS: Final = prometheus_client.Histogram(
    mn.AUTOSCALER_CYCLE_SECONDS,
    "One autoscaler pass over every queue: reads, decisions and writes",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
AUTOSCALER_API_ERRORS: Final = prometheus_client.Counter(
    mn.AUTOSCALER_API_ERRORS, "Kubernetes API calls of the autoscaler that failed", ["action"]
)

# ---- jobs that failed for good (jobqueue_operator.failures)

JOBS_EXHAUSTED: Final = prometheus_client.Counter(
    mn.JOBS_EXHAUSTED, "Jobs that failed for good (no attempt left), every cause", _QUEUE
)
FAILURE_NOTIFICATIONS: Final = prometheus_client.Counter(
    mn.FAILURE_NOTIFICATIONS,
    "Failure notifications by channel (job, webhook) and outcome (sent, failed)",
    [*_QUEUE, "channel", "outcome"],
)

OPERATOR_INFO.labels(version=__version__).set(1)


def serve(port: int) -> None:
    """Serve ``/metrics`` on ``port`` from a background thread (0: don't)."""
    if port:
        prometheus_client.start_http_server(port)


def observe_workers(namespace: str, jobqueue: str, queue: str, *, replicas: int, ready: int) -> None:
    REPLICAS.labels(namespace, jobqueue, queue).set(replicas)
    READY_REPLICAS.labels(namespace, jobqueue, queue).set(ready)


def forget_queue(namespace: str, jobqueue: str, queue: str) -> None:
    for gauge in (REPLICAS, READY_REPLICAS):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, jobqueue, queue)


_JOB_STATES: Final = ("queued", "scheduled", "running", "failed")
_WORKER_STATES: Final = ("busy", "idle")


@dataclass
class QueueSeries:
    """The autoscaler's per-queue series, resolved once: ``labels()`` is a dict lookup under a
    lock, and a thousand queues times ten series every second adds up."""

    labels: tuple[str, str, str]
    jobs: dict[str, prometheus_client.Gauge]
    oldest: prometheus_client.Gauge
    workers: dict[str, prometheus_client.Gauge]
    desired: prometheus_client.Gauge
    #: label values used with the counters, so that :meth:`forget` can remove them
    _decisions: set[tuple[str, str]] = field(default_factory=set)
    _outcomes: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, namespace: str, jobqueue: str, queue: str) -> QueueSeries:
        labels = (namespace, jobqueue, queue)
        return cls(
            labels=labels,
            jobs={s: QUEUE_JOBS.labels(*labels, s) for s in _JOB_STATES},
            oldest=QUEUE_OLDEST_JOB_AGE_SECONDS.labels(*labels),
            workers={s: QUEUE_WORKERS.labels(*labels, s) for s in _WORKER_STATES},
            desired=DESIRED_REPLICAS.labels(*labels),
        )

    def scaled(self, direction: str, reason: str) -> None:
        self._decisions.add((direction, reason))
        SCALING_DECISIONS.labels(*self.labels, direction, reason).inc()

    def recovered(self, outcome: str, jobs: int) -> None:
        self._outcomes.add(outcome)
        LOST_JOBS_RECOVERED.labels(*self.labels, outcome).inc(jobs)

    def forget(self) -> None:
        """Remove every series of this queue (its JobQueue is gone)."""
        for metric, extra in ((QUEUE_JOBS, _JOB_STATES), (QUEUE_WORKERS, _WORKER_STATES)):
            for value in extra:
                with contextlib.suppress(KeyError):
                    metric.remove(*self.labels, value)
        for gauge in (QUEUE_OLDEST_JOB_AGE_SECONDS, DESIRED_REPLICAS):
            with contextlib.suppress(KeyError):
                gauge.remove(*self.labels)
        for direction, reason in self._decisions:
            with contextlib.suppress(KeyError):
                SCALING_DECISIONS.remove(*self.labels, direction, reason)
        for outcome in self._outcomes:
            with contextlib.suppress(KeyError):
                LOST_JOBS_RECOVERED.remove(*self.labels, outcome)
