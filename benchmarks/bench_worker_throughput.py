"""No-op job throughput of ONE worker process: jobqueue vs RQ's SimpleWorker and Worker.

    .venv/bin/python benchmarks/bench_worker_throughput.py [--jobs 10000] [--rq-simple-jobs 2000]
                                                           [--rq-fork-jobs 600]

Each contender drains a pre-filled queue of no-op jobs in burst mode against the same
redis-server, one after the other in the same run:

* ``jobqueue worker --mode process --concurrency 1`` (a coordinator + one pre-forked child,
  like RQ's Worker + its work horse), and ``--mode thread --concurrency 1`` (one process,
  like RQ's SimpleWorker);
* ``rq worker -w rq.worker.SimpleWorker`` and ``rq worker`` (the forking Worker), both with
  the JSON serializer and ``--logging_level WARNING`` (so neither side pays for per-job logs).

Throughput is jobs / (last job's end - first job's start), read back from the job hashes,
so interpreter start-up is excluded for everyone (the wall time with start-up is shown too).
After each run the registries are checked: every job ``finished`` in its hash and in
``rq:finished``, nothing left in the queue or ``rq:wip``.
"""

from __future__ import annotations

import argparse
from typing import Any

from worker_benchlib import drain, emit, redis_server

QUEUE = "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--rq-simple-jobs", type=int, default=2000)
    ap.add_argument("--rq-fork-jobs", type=int, default=600)
    a = ap.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with redis_server() as (url, conn):
        for mode in ("process", "thread"):
            results[f"jobqueue_{mode}_c1"] = drain(
                url, conn, queue=QUEUE, func="worker_jobs.noop", args=[], n=a.jobs, jobqueue_mode=mode
            )
        # RQ's work horses re-import the job module for every job: give them an import-free one
        for name, cls, n in (
            ("rq_simpleworker", "rq.worker.SimpleWorker", a.rq_simple_jobs),
            ("rq_worker_fork", "rq.worker.Worker", a.rq_fork_jobs),
        ):
            results[name] = drain(
                url, conn, queue=QUEUE, func="worker_rqjobs.noop", args=[], n=n, rq_worker_class=cls
            )

    simple = results["rq_simpleworker"]["jobs_per_s"]
    fork = results["rq_worker_fork"]["jobs_per_s"]
    print(
        f"{'contender':<22} {'jobs':>6} {'wall s':>7} {'busy s':>7} {'jobs/s':>7}  {'x Simple':>8} "
        f"{'x Worker':>8}  registries"
    )
    for name, r in results.items():
        print(
            f"{name:<22} {r['jobs']:>6} {r['wall_s']:>7} {r['busy_s']:>7} {r['jobs_per_s']:>7}  "
            f"{r['jobs_per_s'] / simple:>8.1f} {r['jobs_per_s'] / fork:>8.1f}  "
            f"{'ok' if r['registries']['ok'] else r['registries']}"
        )
    ratios = {
        k: {
            "vs_simpleworker": round(r["jobs_per_s"] / simple, 2),
            "vs_worker": round(r["jobs_per_s"] / fork, 2),
        }
        for k, r in results.items()
        if k.startswith("jobqueue")
    }
    goal = all(v["vs_simpleworker"] >= 3 and v["vs_worker"] >= 10 for v in ratios.values())
    print(
        f"goal (>= 3x SimpleWorker and >= 10x Worker, registries correct): "
        f"{'met' if goal and all(r['registries']['ok'] for r in results.values()) else 'NOT met'}"
    )
    emit(
        {
            "benchmark": "worker_throughput",
            "results": results,
            "ratios": ratios,
            "goal_met": goal and all(r["registries"]["ok"] for r in results.values()),
        }
    )


if __name__ == "__main__":
    main()
