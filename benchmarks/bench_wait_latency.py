"""A job's end -> its waiter woken: ``jobqueue.wait`` (a blocking read of the job's results
stream) against, in the same run on one redis-server, the polling wait it replaced (read the
job every 0.2 s) and BullMQ's ``job.waitUntilFinished`` (QueueEvents on its events stream).

    .venv/bin/python benchmarks/bench_wait_latency.py [--jobs 500] [--poll-jobs 100]
                                                      [--bullmq-modules DIR]

Each side runs one real worker process (ours: ``jobqueue worker --mode thread --concurrency
1``; BullMQ: a Worker of concurrency 1 in Node) and one waiter process that, one job after the
other, adds a job and waits for it. The job's last act is to return the time (the wall clock,
shared by the processes of this machine): latency = when the waiter's call returned - that
time. It covers what a synchronous caller pays: the worker recording the end in Redis, Redis
waking the waiter, the waiter reading the outcome. The first 20 jobs of each side are warm-up.

BullMQ is measured when its pinned install (bench_vs_bullmq.py's, ``.cache/bullmq-<version>-
ioredis-<version>/node_modules``, or ``--bullmq-modules``) and ``node`` exist; else the JSON
says why it was not. Figures table first, one JSON line last (ratios: p99 of the baseline /
ours, > 1 is ours faster).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jobqueue import enqueue, get_job, wait
from worker_benchlib import BENCH, ROOT, emit, env, jobqueue_worker_cmd, publish, redis_server

BULLMQ_INSTALL = ROOT / ".cache" / "bullmq-6.7.6-ioredis-6.1.0" / "node_modules"  # bench_vs_bullmq.py's pin
WARMUP = 20
OLD_POLL_SECONDS = 0.2  # what jobqueue.wait did before


def pct_ms(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2)


def figures(latencies: list[float]) -> dict[str, Any]:
    lat = latencies[WARMUP:]
    return {
        "n": len(lat),
        "p50_ms": pct_ms(lat, 0.5),
        "p95_ms": pct_ms(lat, 0.95),
        "p99_ms": pct_ms(lat, 0.99),
        "max_ms": round(max(lat) * 1000, 2),
        "mean_ms": round(sum(lat) / len(lat) * 1000, 2),
    }


def polling_wait(queue: str, job_id: str, conn: Any) -> Any:
    """The wait this replaced: read the job, sleep 0.2 s, again."""
    while True:
        info = get_job(queue, job_id, connection=conn)
        if info.done:
            return info
        time.sleep(OLD_POLL_SECONDS)


def ours(url: str, conn: Any, queue: str, n: int, waiter: Any) -> list[float]:
    publish(conn, queue, attempts=1)
    worker = subprocess.Popen(
        jobqueue_worker_cmd(queue, mode="thread", concurrency=1, burst=False),
        env=env(url),
        stdout=subprocess.DEVNULL,
    )
    try:
        out = []
        for _ in range(n):
            res = enqueue(queue, "worker_jobs.stamp", connection=conn)
            info = waiter(queue, res.id, conn)
            woken = time.time()
            if info.status != "finished":
                sys.exit(f"job {res.id} {info.status}: {info.failed_reason}")
            out.append(woken - float(info.result))
        return out
    finally:
        worker.terminate()
        worker.wait(30)


def bullmq(url: str, queue: str, n: int, modules: Path) -> list[float] | str:
    node = shutil.which("node")
    if not node:
        return "node not found"
    if not (modules / "bullmq" / "package.json").exists():
        return f"no BullMQ install at {modules} (benchmarks/bench_vs_bullmq.py installs it)"
    side = str(BENCH / "bullmq_wait.js")
    e = {**os.environ, "NODE_PATH": str(modules)}
    worker = subprocess.Popen([node, side, "work", url, queue], env=e, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            return "BullMQ worker did not start"
        done = subprocess.run(
            [node, side, "wait", url, queue, str(n)],
            env=e,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if done.returncode:
            return f"BullMQ waiter failed: {done.stderr.strip()[-500:]}"
        return [ms / 1000 for ms in json.loads(done.stdout.splitlines()[-1])["latencies_ms"]]
    finally:
        worker.kill()
        worker.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--poll-jobs", type=int, default=100)
    ap.add_argument("--bullmq-modules", type=Path, default=BULLMQ_INSTALL)
    args = ap.parse_args()
    results: dict[str, Any] = {}
    with redis_server() as (url, conn):
        results["jobqueue_wait"] = figures(
            ours(url, conn, "bw:events", args.jobs, lambda q, i, c: wait(q, i, connection=c))
        )
        results["polling_0.2s"] = figures(ours(url, conn, "bw:poll", args.poll_jobs, polling_wait))
        bull = bullmq(url, "bw-bullmq", args.jobs, args.bullmq_modules)
        if isinstance(bull, str):
            results["bullmq_waitUntilFinished"] = {"not_measured": bull}
        else:
            results["bullmq_waitUntilFinished"] = figures(bull)
    ours_p99 = results["jobqueue_wait"]["p99_ms"]
    print(f"{'waiter':28} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, r in results.items():
        if "not_measured" in r:
            print(f"{name:28} not measured: {r['not_measured']}")
        else:
            cells = (r["n"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["max_ms"])
            print(f"{name:28} {cells[0]:>5} " + " ".join(f"{c:>8}" for c in cells[1:]))
    ratios = {
        name: round(r["p99_ms"] / ours_p99, 2)
        for name, r in results.items()
        if name != "jobqueue_wait" and "p99_ms" in r and ours_p99 > 0
    }
    for name, ratio in ratios.items():
        print(f"p99 {name} / jobqueue_wait: {ratio}x")
    emit(
        {
            "benchmark": "wait_latency",
            "results": results,
            "p99_ratio_baseline_over_ours": ratios,
            "cpus": os.cpu_count(),
        }
    )


if __name__ == "__main__":
    main()
