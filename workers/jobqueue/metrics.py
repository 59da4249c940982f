"""The worker's Prometheus metrics (names from :mod:`jobqueue.metricnames`).

Only the worker's coordinator process records these: it sees every start, end, retry,
timeout and rejection, also of jobs whose process was killed, so the counts are exact
whatever happens to the processes that run the jobs. ``jobqueue worker`` still runs
prometheus_client in *multiprocess mode* (a fresh ``PROMETHEUS_MULTIPROC_DIR`` per worker,
served through ``MultiProcessCollector``): metrics that job code defines itself are then
summed over the pre-forked processes too, and a replaced process's series are retired with
:func:`mark_dead`.

Label cardinality is bounded: ``function`` is a registered job name, or ``unregistered`` for
payloads the worker refused (their names come from whoever wrote to Redis).
"""

from __future__ import annotations

import bisect
import os
import shutil
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client import multiprocess as _mp

from jobqueue import metricnames as n

UNREGISTERED: Final = "unregistered"
#: Run times span no-op jobs (ms) to the seed's 30-60 s reports; wait times the same range.
_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
)
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


class WorkerMetrics:
    """The metric objects of one worker; ``registry=None`` leaves them unregistered (they
    still count, and in multiprocess mode the MultiProcessCollector exposes them)."""

    def __init__(self, queue: str, registry: CollectorRegistry | None = None) -> None:
        self.queue = queue
        labels = ("queue", "function")
        self.started = Counter(n.JOBS_STARTED, "Job attempts started", labels, registry=registry)
        self.succeeded = Counter(n.JOBS_SUCCEEDED, "Job attempts that succeeded", labels, registry=registry)
        self.failed = Counter(
            n.JOBS_FAILED, "Jobs failed for good (no attempts left)", labels, registry=registry
        )
        self.retried = Counter(
            n.JOBS_RETRIED,
            "Job attempts that failed with another attempt scheduled",
            labels,
            registry=registry,
        )
        self.timed_out = Counter(
            n.JOBS_TIMED_OUT, "Job attempts stopped at their timeout", labels, registry=registry
        )
        self.rejected = Counter(
            n.JOBS_REJECTED,
            "Jobs refused without running (unregistered function, undecodable payload)",
            labels,
            registry=registry,
        )
        self.run_seconds = Histogram(
            n.JOB_RUN_SECONDS, "Run time of one attempt", labels, buckets=_BUCKETS, registry=registry
        )
        self.wait_seconds = Histogram(
            n.JOB_WAIT_SECONDS,
            "Time from runnable (enqueued or due) to started",
            labels,
            buckets=_BUCKETS,
            registry=registry,
        )
        self.busy_slots = Gauge(
            n.WORKER_BUSY_SLOTS,
            "Jobs this worker runs right now",
            ("queue",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._children: dict[str, FunctionMetrics] = {}
        self.slots = Gauge(
            n.WORKER_SLOTS,
            "Jobs this worker can run at once",
            ("queue",),
            registry=registry,
            multiprocess_mode="livesum",
        )

    def fn(self, function: str) -> FunctionMetrics:
        """The labelled series of one function (cached: ``labels()`` costs a lock and a lookup)."""
        children = self._children.get(function)
        if children is None:
            q = self.queue
            children = FunctionMetrics(
                started=self.started.labels(q, function), succeeded=self.succeeded.labels(q, function),
                failed=self.failed.labels(q, function), retried=self.retried.labels(q, function),
                timed_out=self.timed_out.labels(q, function), rejected=self.rejected.labels(q, function),
                run_seconds=self.run_seconds.labels(q, function),
                wait_seconds=self.wait_seconds.labels(q, function),
            )  # fmt: skip
            self._children[function] = children
        return children


@dataclass(frozen=True)
class FunctionMetrics:
    started: Counter
    succeeded: Counter
    failed: Counter
    retried: Counter
    timed_out: Counter
    rejected: Counter
    run_seconds: Histogram
    wait_seconds: Histogram


class Tally:
    """Per-job counts and observations of many jobs, written to their series at once.

    In multiprocess mode every ``inc``/``observe`` writes the series' mmap file under a lock;
    at thousands of jobs a second that was a fifth of the coordinator's time. The worker
    adds to a Tally per job and flushes it once per loop turn (before it waits), so the
    series are never more than one turn behind and the totals are the same."""

    def __init__(self) -> None:
        self._counts: dict[Counter, int] = {}
        self._values: dict[Histogram, list[float]] = {}

    def inc(self, counter: Counter) -> None:
        self._counts[counter] = self._counts.get(counter, 0) + 1

    def observe(self, histogram: Histogram, value: float) -> None:
        self._values.setdefault(histogram, []).append(value)

    def flush(self) -> None:
        counts, values = self._counts, self._values
        self._counts, self._values = {}, {}
        for counter, k in counts.items():
            counter.inc(k)
        for histogram, observed in values.items():
            _observe_many(histogram, observed)


def _observe_many(histogram: Histogram, values: list[float]) -> None:
    """``observe`` each value, with one write per bucket and one for the sum. prometheus_client
    has no public call for that: this reads the labelled child's buckets (``_upper_bounds``,
    ``_buckets``, ``_sum``, as its own ``observe`` does), and falls back to ``observe`` per
    value should a future release name them differently."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for v in values:
            histogram.observe(v)
        return
    counts = [0] * len(bounds)
    for v in values:
        counts[bisect.bisect_left(bounds, v)] += 1  # the first bucket whose bound is >= v (+Inf last)
    total.inc(sum(values))
    for i, k in enumerate(counts):
        if k:
            buckets[i].inc(k)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def cleanup_multiprocess(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def mark_dead(pid: int) -> None:
    if multiprocess_dir():
        _mp.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def serve(port: int, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """Expose ``/metrics`` on ``port`` (all interfaces); the registry served is returned."""
    if registry is None:
        registry = CollectorRegistry()
        if multiprocess_dir():
            _mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, registry=registry)
    return registry
