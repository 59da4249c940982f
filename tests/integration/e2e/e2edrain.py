"""Drain time: N jobs of d seconds into an empty queue of concurrency C at zero replicas, until
the last one has finished — and where the time beyond the ideal N·d/C went.

:func:`run` is the scenario of ``test_e2e_drain.py`` (which asserts that every job finished
exactly once) and of ``benchmarks/e2e_drain.py`` (which prints the figures).

The breakdown is an account of slot-seconds: with S job slots at full scale (S = C here), the
drain D gives S·D slot-seconds, of which N·d are the jobs' own work. The rest, divided by S so
that it reads in seconds of drain time, is, in order:

* **scale-up reaction** — from the first enqueue to ``spec.replicas`` written (no slot exists);
* **worker start** — from that write to each worker's registration in Redis (the RQ worker
  record's ``birth``), averaged over the slots: ReplicaSet, scheduler, kwok binding, the pod
  runner starting the process, Python imports, the worker reading its queue's settings;
* **job overrun** — each job's measured run time (the worker's ``jq_start``→``jq_end``) beyond
  d: ``time.sleep`` overshoot and the test job's own two Redis writes;
* **between jobs** — the remainder: a slot without a job while it is up (claim and result
  round trips, dispatch, and the tail, when the queue is empty and slots wait for the last
  jobs to end).

Scale-down is reported apart (it is not part of the drain): from the last job's end to zero
replicas, which is ``idleSecondsBeforeZero`` plus the autoscaler's reaction.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Any

import redis
from e2ekit import Audit, apply_queue, audit, enqueue_naps, queue_body, wait_settled

import devenv
from integration.scaling.scalekit import ReplicaWatch, replicas


@dataclass
class Drain:
    jobs: int
    job_seconds: float
    concurrency: int
    per_pod: int
    #: every figure below is in seconds, measured from the start of the bulk enqueue
    enqueue_seconds: float
    seconds: float
    #: (seconds, replicas) as a watch saw them
    replicas: list[tuple[float, int]]
    #: one per worker: (registered, job slots)
    workers: list[tuple[float, int]]
    first_start: float
    last_start: float
    run_mean: float
    scale_down_seconds: float | None
    audit: Audit

    @property
    def ideal(self) -> float:
        return self.jobs * self.job_seconds / self.concurrency

    @property
    def ratio(self) -> float:
        return self.seconds / self.ideal

    def breakdown(self) -> dict[str, float]:
        """Seconds of drain time beyond the ideal, by cause (see the module docstring)."""
        slots = sum(n for _, n in self.workers)
        scaled = next((t for t, r in self.replicas if r > 0), 0.0)
        start = sum(n * (born - scaled) for born, n in self.workers) / slots
        overrun = self.jobs * (self.run_mean - self.job_seconds) / slots
        # S·D − N·d = S·scaled + Σ slots·(birth − scaled) + Σ (run − d) + the rest; with S = C,
        # divided by S: D − ideal = reaction + start + overrun + between
        between = self.seconds - self.jobs * self.job_seconds / slots - scaled - start - overrun
        return {
            "scale_up_reaction": round(scaled, 3),
            "worker_start": round(start, 3),
            "job_overrun": round(overrun, 3),
            "between_jobs": round(between, 3),
        }

    def figures(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "job_seconds": self.job_seconds,
            "concurrency": self.concurrency,
            "concurrency_per_pod": self.per_pod,
            "seconds": round(self.seconds, 3),
            "ideal_seconds": round(self.ideal, 3),
            "ratio": round(self.ratio, 3),
            "enqueue_seconds": round(self.enqueue_seconds, 3),
            "replicas": [(round(t, 3), r) for t, r in self.replicas],
            "workers_registered": sorted(round(t, 3) for t, _ in self.workers),
            "first_job_started": round(self.first_start, 3),
            "last_job_started": round(self.last_start, 3),
            "tail_after_last_start": round(self.seconds - self.last_start, 3),
            "job_run_mean": round(self.run_mean, 5),
            "jobs_per_second": round(self.jobs / self.seconds, 1),
            "beyond_ideal": self.breakdown(),
            "scale_down_seconds": None
            if self.scale_down_seconds is None
            else round(self.scale_down_seconds, 3),
            "audit": self.audit.figures(),
        }

    def report(self) -> str:
        b = self.breakdown()
        workers = sorted(t for t, _ in self.workers)
        lines = [
            f"{self.jobs:,} jobs of {self.job_seconds * 1000:g} ms, concurrency {self.concurrency} "
            f"({self.per_pod} per pod), from 0 replicas",
            f"  drain {self.seconds:.2f} s, ideal {self.ideal:.2f} s: ratio {self.ratio:.3f} "
            f"({self.jobs / self.seconds:.0f} jobs/s; goal <= 1.25)",
            f"  enqueue took {self.enqueue_seconds:.2f} s; replicas {self.replicas}",
            f"  workers registered at {workers[0]:.2f}–{workers[-1]:.2f} s; first job started "
            f"{self.first_start:.2f} s, last {self.last_start:.2f} s; mean run {self.run_mean * 1000:.2f} ms",
            "  beyond the ideal (s of drain): "
            + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in b.items()),
        ]
        if self.scale_down_seconds is not None:
            lines.append(f"  back to 0 replicas {self.scale_down_seconds:.1f} s after the last job")
        lines.append(f"  audit: {self.audit.figures()}")
        return "\n".join(lines)


def _unix(iso: bytes | None) -> float:
    if not iso:
        raise ValueError("no timestamp")
    return datetime.datetime.fromisoformat(iso.decode().replace("Z", "+00:00")).timestamp()


def run(
    cluster: devenv.Cluster,
    namespace: str,
    conn: redis.Redis,
    *,
    name: str = "drain",
    jobs: int = 10_000,
    job_seconds: float = 0.05,
    concurrency: int = 20,
    per_pod: int = 5,
    idle_seconds: int = 5,
    scale_down: bool = True,
    timeout: float = 600,
) -> Drain:
    """Apply the queue, enqueue the jobs at once, wait until all ended (and, with
    ``scale_down``, until the Deployment is back at zero); measure."""
    queue = apply_queue(
        cluster,
        conn,
        queue_body(
            name,
            namespace,
            concurrency=concurrency,
            per_pod=per_pod,
            attempts=1,
            scaleDownDelaySeconds=idle_seconds,
            idleSecondsBeforeZero=idle_seconds,
        ),
    )
    deployment = f"{name}-worker"
    devenv.wait_until("the worker Deployment at zero", lambda: replicas(cluster, namespace, deployment) == 0)
    with ReplicaWatch(cluster, namespace, deployment) as watch:
        t0 = time.time()
        ids = enqueue_naps(conn, queue, name, jobs, job_seconds)
        enqueued = time.time() - t0
        wait_settled(conn, queue, jobs, timeout=timeout)
        times = _job_times(conn, ids)
        workers = _workers(conn, ids)
        end = max(e for _, e in times)
        down: float | None = None
        if scale_down:
            devenv.wait_until(
                "back to zero replicas", lambda: watch.timeline[-1][1] == 0, timeout=idle_seconds + 120
            )
            down = watch.timeline[-1][0] - end
        timeline = [(t - t0, r) for t, r in watch.timeline if t >= t0]
    starts = [s for s, _ in times]
    return Drain(
        jobs=jobs,
        job_seconds=job_seconds,
        concurrency=concurrency,
        per_pod=per_pod,
        enqueue_seconds=enqueued,
        seconds=end - t0,
        replicas=timeline,
        workers=[(born - t0, n) for born, n in workers],
        first_start=min(starts) - t0,
        last_start=max(starts) - t0,
        run_mean=sum(e - s for s, e in times) / len(times),
        scale_down_seconds=down,
        audit=audit(conn, ids),
    )


def _job_times(conn: redis.Redis, ids: list[str]) -> list[tuple[float, float]]:
    """(start, end) unix times of every job's last attempt, as its worker recorded them."""
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(f"rq:job:{job_id}", "jq_start", "jq_end")
    return [(float(s), float(e)) for s, e in pipe.execute() if s and e]


def _workers(conn: redis.Redis, ids: list[str]) -> list[tuple[float, int]]:
    """(registration time, slots) of every worker that ran one of the jobs."""
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(f"rq:job:{job_id}", "worker_name")
    names = {n.decode() for n in pipe.execute() if n}
    pipe = conn.pipeline(transaction=False)
    for name in sorted(names):
        pipe.hmget(f"rq:worker:{name}", "birth", "jq_slots")
    return [(_unix(born), int(slots or 1)) for born, slots in pipe.execute() if born]
