"""The operator's Prometheus metrics (``/metrics`` on JOBQUEUE_METRICS_PORT).

Names come from :mod:`jobqueue.metricnames`, the project's one vocabulary shared with the
dashboards and alert rules; nothing here spells a metric name. Per-queue series carry
``namespace``, ``jobqueue`` and ``queue`` and are removed when their JobQueue is deleted,
so a churn of queues does not leave dead series behind. The autoscaler adds its own
objects (desired replicas, backlog, scaling decisions, poll timings) here.
"""

from __future__ import annotations

import contextlib
from typing import Final

import prometheus_client

from jobqueue import metricnames as mn
from jobqueue_operator import __version__

KIND_JOBQUEUE: Final = "JobQueue"
KIND_SWEEP: Final = "sweep"

OPERATOR_INFO: Final = prometheus_client.Gauge(mn.OPERATOR_INFO, "jobqueue-operator build", ["version"])
RECONCILE_TOTAL: Final = prometheus_client.Counter(
    mn.RECONCILE_TOTAL, "Reconciles (and settings sweeps) by outcome", ["kind", "result"])
RECONCILE_SECONDS: Final = prometheus_client.Histogram(
    mn.RECONCILE_SECONDS, "Duration of one reconcile or settings sweep", ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
REPLICAS: Final = prometheus_client.Gauge(
    mn.REPLICAS, "Worker pods of the queue (Deployment status.replicas)", ["namespace", "jobqueue", "queue"])
READY_REPLICAS: Final = prometheus_client.Gauge(
    mn.READY_REPLICAS, "Ready worker pods of the queue", ["namespace", "jobqueue", "queue"])
ORPHANED_SETTINGS_REMOVED: Final = prometheus_client.Counter(
    mn.ORPHANED_SETTINGS_REMOVED, "Published queue settings removed because their JobQueue is gone")

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
