"""Bulk enqueue with duplicate-id checking, against RQ's enqueue_many (no checking).

    .venv/bin/python benchmarks/bench_worker_enqueue.py [--jobs 50000] [--rq-jobs 20000]

``jobqueue.enqueue_many`` of jobs that each carry an explicit id (10 % of them already in
Redis, so the duplicate path is exercised) versus RQ's ``Queue.enqueue_many`` in a pipeline
(the fastest RQ path: one round trip for all, no check, an existing id overwritten), in the same
run against the same server. Also single-job ``enqueue()`` for reference. Goal: >= 10,000
jobs/s with duplicate checking on.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from jobqueue import JobSpec, enqueue, enqueue_many
from worker_benchlib import emit, publish, redis_server

QUEUE = "enq"


def bulk(conn: Any, n: int) -> dict[str, Any]:
    conn.flushdb()
    publish(conn, QUEUE, attempts=3, backoff={"type": "exponential", "delaySeconds": 1})
    pre = n // 10
    enqueue_many(
        QUEUE, [JobSpec("worker_jobs.noop", [i], job_id=f"job-{i}") for i in range(pre)], connection=conn
    )
    specs = [JobSpec("worker_jobs.noop", [i], {"fleet": "f-1"}, job_id=f"job-{i}") for i in range(n)]
    t0 = time.perf_counter()
    res = enqueue_many(QUEUE, specs, connection=conn)
    dt = time.perf_counter() - t0
    dups = sum(r.duplicate for r in res)
    assert dups == pre, dups
    assert conn.llen(f"rq:queue:{QUEUE}") == n
    return {"jobs": n, "duplicates_detected": dups, "seconds": round(dt, 3), "jobs_per_s": round(n / dt)}


def rq_bulk(conn: Any, n: int) -> dict[str, Any]:
    from rq import Queue
    from rq.serializers import JSONSerializer

    conn.flushdb()
    q = Queue(QUEUE, connection=conn, serializer=JSONSerializer)
    datas = [
        Queue.prepare_data("worker_jobs.noop", (i,), {"fleet": "f-1"}, job_id=f"job-{i}") for i in range(n)
    ]
    t0 = time.perf_counter()
    with conn.pipeline() as pipe:
        q.enqueue_many(datas, pipeline=pipe)
        pipe.execute()
    dt = time.perf_counter() - t0
    return {"jobs": n, "duplicates_detected": 0, "seconds": round(dt, 3), "jobs_per_s": round(n / dt)}


def single(conn: Any, n: int) -> dict[str, Any]:
    conn.flushdb()
    publish(conn, QUEUE)
    t0 = time.perf_counter()
    for i in range(n):
        enqueue(QUEUE, "worker_jobs.noop", i, job_id=f"one-{i}", connection=conn)
    dt = time.perf_counter() - t0
    return {"jobs": n, "seconds": round(dt, 3), "jobs_per_s": round(n / dt)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=50000)
    ap.add_argument("--rq-jobs", type=int, default=20000)
    a = ap.parse_args()
    with redis_server() as (_, conn):
        results = {
            "jobqueue_enqueue_many_dedup": bulk(conn, a.jobs),
            "rq_enqueue_many_no_dedup": rq_bulk(conn, a.rq_jobs),
            "jobqueue_enqueue_single": single(conn, 2000),
        }
    base = results["rq_enqueue_many_no_dedup"]["jobs_per_s"]
    for name, r in results.items():
        print(
            f"{name:<30} {r['jobs']:>7} jobs in {r['seconds']:>7} s -> {r['jobs_per_s']:>7} jobs/s "
            f"({r['jobs_per_s'] / base:.2f}x RQ enqueue_many)"
        )
    ours = results["jobqueue_enqueue_many_dedup"]["jobs_per_s"]
    verdict = "met" if ours >= 10000 else "NOT met"
    print(f"goal (bulk enqueue >= 10,000 jobs/s with duplicate checking): {verdict}")
    emit(
        {
            "benchmark": "worker_enqueue",
            "results": results,
            "ratio_vs_rq_enqueue_many": round(ours / base, 2),
            "goal_met": ours >= 10000,
        }
    )


if __name__ == "__main__":
    main()
