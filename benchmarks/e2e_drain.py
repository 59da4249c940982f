"""Drain time end to end: 10,000 jobs of 50 ms into an empty queue of concurrency 20 at zero replicas.

    .venv/bin/python benchmarks/e2e_drain.py [--jobs 10000] [--no-baseline]

* **ours**: the chart installed (operator pod under the chart's RBAC), a JobQueue with
  ``concurrency: 20``, 5 job slots per pod, ``minReplicas: 0``; the jobs land at once and the
  autoscaler takes the queue from zero to 4 pods, whose processes the pod runner starts. The
  drain is from the first enqueue to the last job's end; the ideal is N·d/C = 25 s (every slot
  busy from the first instant). Goal: ratio ≤ 1.25.
* **baseline, same run**: plain RQ with no autoscaler and no Kubernetes — 20 ``rq worker
  --burst`` processes (SimpleWorker, JSON serializer) started by hand the moment the same jobs
  are enqueued, drain measured the same way (first enqueue → last job's ``ended_at``).

Prints both, where our time beyond the ideal went (scale-up reaction, worker start, job
overrun, between jobs; see ``tests/integration/e2e/e2edrain.py``) and, last, one JSON line.
The scenario is the one ``tests/integration/e2e/test_e2e_drain.py`` runs and audits.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

import redis
from rq import Queue
from rq.serializers import JSONSerializer

import e2e_benchlib as el
import operator_benchlib as bl
import worker_benchlib as wl
from jobqueue import payload

JOB_SECONDS = 0.05
CONCURRENCY = 20
PER_POD = 5


def plain_rq(url: str, conn: redis.Redis, jobs: int) -> dict[str, Any]:
    """20 RQ SimpleWorkers started with the burst; seconds from the first enqueue to the last end."""
    name = "plain-rq-drain"
    queue = Queue(name, connection=conn, serializer=JSONSerializer)
    cmd = [sys.executable, "-m", "rq.cli", "worker", "--burst", "-w", "rq.worker.SimpleWorker",
           "-S", "rq.serializers.JSONSerializer", "--url", url, "--logging_level", "WARNING", name]
    t0 = time.time()
    ids: list[str] = []
    for start in range(0, jobs, 1000):  # RQ's enqueue_many: one pipeline per chunk
        batch = [Queue.prepare_data("worker_rqjobs.io_sleep", (JOB_SECONDS,))
                 for _ in range(min(1000, jobs - start))]
        ids += [j.id for j in queue.enqueue_many(batch)]
    workers = [subprocess.Popen(cmd, env=wl.env(url), stdout=subprocess.DEVNULL)
               for _ in range(CONCURRENCY)]
    for proc in workers:
        proc.wait(timeout=600)
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(f"rq:job:{job_id}", "status", "ended_at")
    rows = pipe.execute()
    finished = sum(1 for status, _ in rows if status == b"finished")
    end = max(payload.utcparse(e.decode()) or 0.0 for _, e in rows if e)
    seconds = end - t0
    ideal = jobs * JOB_SECONDS / CONCURRENCY
    return {"seconds": round(seconds, 3), "ratio": round(seconds / ideal, 3), "finished": finished}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain-RQ run")
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "e2e_drain"}
    with bl.environment() as environment:
        with el.installed("drain", environment=environment) as setup:
            bl.log(f"draining {args.jobs:,} jobs through the product")
            drain = el.e2edrain.run(setup.cluster, setup.namespace, setup.conn, jobs=args.jobs,
                                 job_seconds=JOB_SECONDS, concurrency=CONCURRENCY, per_pod=PER_POD,
                                 idle_seconds=5)
        print(drain.report())
        result["ours"] = drain.figures()
        if not args.no_baseline:
            bl.log(f"draining {args.jobs:,} jobs with 20 plain RQ workers")
            conn = redis.Redis.from_url(environment[1].url)
            conn.flushdb()
            base = plain_rq(environment[1].url, conn, args.jobs)
            result["plain_rq_20_workers_started_by_hand"] = base
            result["ratio_ours_over_plain_rq"] = round(drain.seconds / base["seconds"], 3)
            print(f"plain RQ, 20 SimpleWorkers started with the burst (no autoscaler): drain "
                  f"{base['seconds']:.2f} s, ratio to ideal {base['ratio']:.3f}, "
                  f"finished {base['finished']:,}")
            print(f"ours / plain RQ: {result['ratio_ours_over_plain_rq']} (ours starts from zero "
                  f"replicas and scales itself)")
    ok = drain.audit.exactly_once() and drain.ratio <= 1.25
    el.conclude(result, f"ratio to the ideal <= 1.25 (here {drain.ratio:.3f}), every job once", ok)


if __name__ == "__main__":
    main()
