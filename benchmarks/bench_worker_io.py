"""I/O-bound jobs (50 ms sleeps) at concurrency 50 in ONE worker pod.

    .venv/bin/python benchmarks/bench_worker_io.py [--jobs 5000] [--rq-jobs 100]

``jobqueue worker --concurrency 50`` in thread mode (``time.sleep``) and in async mode
(``await asyncio.sleep``) drain a pre-filled queue; the goal is >= 500 jobs/s (the ceiling
is 50 / 0.05 s = 1,000 jobs/s). The baseline in the same run is what one RQ worker process
does with the same jobs (RQ runs one job at a time per process: at most 20 jobs/s).
"""

from __future__ import annotations

import argparse

from worker_benchlib import drain, emit, redis_server

QUEUE = "io"
SLEEP = 0.05


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--rq-jobs", type=int, default=100)
    a = ap.parse_args()
    with redis_server() as (url, conn):
        results = {
            "jobqueue_thread_c50": drain(
                url,
                conn,
                queue=QUEUE,
                func="worker_jobs.io_sleep",
                args=[SLEEP],
                n=a.jobs,
                jobqueue_mode="thread",
                concurrency=50,
            ),
            "jobqueue_async_c50": drain(
                url,
                conn,
                queue=QUEUE,
                func="worker_jobs.aio_sleep",
                args=[SLEEP],
                n=a.jobs,
                jobqueue_mode="async",
                concurrency=50,
            ),
            "rq_one_simpleworker": drain(
                url,
                conn,
                queue=QUEUE,
                func="worker_rqjobs.io_sleep",
                args=[SLEEP],
                n=a.rq_jobs,
                rq_worker_class="rq.worker.SimpleWorker",
            ),
        }
    base = results["rq_one_simpleworker"]["jobs_per_s"]
    print(f"{'contender':<22} {'jobs':>6} {'done':>6} {'wall s':>7} {'busy s':>7} {'jobs/s':>7} {'x RQ':>6}")
    for name, r in results.items():
        print(
            f"{name:<22} {r['jobs']:>6} {r['finished']:>6} {r['wall_s']:>7} {r['busy_s']:>7} "
            f"{r['jobs_per_s']:>7} {r['jobs_per_s'] / base:>6.1f}"
        )
    goal = all(
        r["jobs_per_s"] >= 500 and r["finished"] == r["jobs"]
        for k, r in results.items()
        if k.startswith("jobqueue")
    )
    print(f"goal (>= 500 jobs/s of 50 ms jobs at concurrency 50 in one pod): {'met' if goal else 'NOT met'}")
    emit(
        {
            "benchmark": "worker_io",
            "results": results,
            "goal_met": goal,
            "ratios_vs_one_rq_worker": {
                k: round(r["jobs_per_s"] / base, 1) for k, r in results.items() if k.startswith("jobqueue")
            },
        }
    )


if __name__ == "__main__":
    main()
