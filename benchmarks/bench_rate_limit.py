"""spec.rateLimit over a minute across three worker pods: the observed start rate against the
limit, and the most starts in any window, beside the same pods without a limit in the same run.

    .venv/bin/python benchmarks/bench_rate_limit.py [--jobs 50] [--per 1] [--seconds 60] [--pods 3]

One redis-server; three ``jobqueue worker --mode thread --concurrency 4`` processes ("pods")
on one queue with more no-op jobs than the limit lets run in ``--seconds``; start times are
``jq_start`` read back from Redis. The window check counts starts in every window of
``per - 0.05`` s (a job starts within a few ms of its claim, and the claims are what the limit
counts). The rate is taken from the first start to the last, less the first window's jobs
(m windows of starts span m - 1 windows). The baseline is the same pods on the same kind of
queue without a limit, 20,000 jobs: how far above the limit they go.
Table first, one JSON line last (ratio: observed / limit).
"""

from __future__ import annotations

import argparse
import bisect
import subprocess
import time
from typing import Any

import redis

from jobqueue import JobSpec, enqueue_many, settings
from worker_benchlib import emit, env, jobqueue_worker_cmd, redis_server


def declare(conn: redis.Redis, queue: str, limit: dict[str, float] | None) -> None:
    settings.publish(
        conn,
        settings.QueueSettings.model_validate(
            {"queueName": queue, "imports": ["worker_jobs"], "rateLimit": limit}
        ),
    )


def run(url: str, conn: redis.Redis, queue: str, *, n: int, seconds: float, pods: int) -> list[float]:
    """Start times of the jobs started in the first ``seconds`` after the first one."""
    ids = [f"{queue.replace(':', '-')}-{i}" for i in range(n)]
    enqueue_many(queue, [JobSpec("worker_jobs.noop", job_id=i) for i in ids], connection=conn)
    procs = [
        subprocess.Popen(
            jobqueue_worker_cmd(queue, mode="thread", concurrency=4, burst=False),
            env=env(url, f"pod-{p}"),
            stdout=subprocess.DEVNULL,
        )
        for p in range(pods)
    ]
    try:
        while not conn.zcard(f"rq:finished:{queue}"):
            time.sleep(0.05)
        first = min(float(conn.hget(f"rq:job:{i}", "jq_start") or "inf") for i in ids)
        time.sleep(max(0.0, first + seconds + 1 - time.time()))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    pipe = conn.pipeline(transaction=False)
    for i in ids:
        pipe.hget(f"rq:job:{i}", "jq_start")
    times = sorted(float(t) for t in pipe.execute() if t)
    return times[: bisect.bisect_left(times, times[0] + seconds)]


def most_in_window(times: list[float], width: float) -> int:
    return max((bisect.bisect_left(times, t + width) - i for i, t in enumerate(times)), default=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--per", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--pods", type=int, default=3)
    args = ap.parse_args()
    limit = args.jobs / args.per
    out: dict[str, Any] = {
        "benchmark": "rate_limit",
        "limit_per_second": limit,
        "pods": args.pods,
        "seconds": args.seconds,
    }
    with redis_server() as (url, conn):
        declare(conn, "rl:free", None)
        free = run(url, conn, "rl:free", n=20000, seconds=5.0, pods=args.pods)
        declare(conn, "rl:limited", {"jobs": args.jobs, "perSeconds": args.per})
        limited = run(
            url,
            conn,
            "rl:limited",
            n=int(limit * args.seconds * 1.3) + args.jobs,
            seconds=args.seconds,
            pods=args.pods,
        )
    # m windows' worth of starts span m - 1 windows: the first window's jobs are left out
    observed = (len(limited) - args.jobs) / (limited[-1] - limited[0])
    out |= {
        "observed_per_second": round(observed, 3),
        "ratio_observed_over_limit": round(observed / limit, 4),
        "most_in_any_window": most_in_window(limited, args.per - 0.05),
        "window_jobs": args.jobs,
        "unlimited_at_least_per_second": round(len(free) / 5.0, 1),
    }
    print(f"limit {args.jobs} per {args.per:g} s = {limit:g}/s, {args.pods} pods, {args.seconds:g} s")
    print(
        f"  observed {observed:.3f}/s ({out['ratio_observed_over_limit']:.4f} x the limit); "
        f"most starts in any {args.per - 0.05:g} s window: {out['most_in_any_window']} of {args.jobs}"
    )
    print(
        f"  the same pods without a limit: at least {out['unlimited_at_least_per_second']}/s "
        "(they ran out of work)"
    )
    emit(out)


if __name__ == "__main__":
    main()
