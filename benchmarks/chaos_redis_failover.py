"""Chaos: the Redis primary SIGKILLed in the middle of a burst, with Sentinel.

    .venv/bin/python benchmarks/chaos_redis_failover.py [--runs 5] [--jobs 2000] [--no-baseline]

Three real Sentinels watch a primary and its replica (Debian's ``redis-sentinel``, all on
loopback, ``down-after-milliseconds 1000``). Two real ``jobqueue worker`` processes (thread
mode, 8 slots each), a producer and the operator's Redis module (``RedisHub``) all use the
``redis+sentinel://`` URL. Half the jobs (50 ms each) are queued at once, the rest arrive in
batches of 50 every 0.1 s; once 30 % have completed the primary is SIGKILLed. Reported per run
and over the runs: the Sentinels' failover time, when workers record results on the new primary
again, when the operator's poll succeeds again, when everything settled, jobs lost (goal 0) and
jobs completed more than once (asynchronous replication: results written to the old primary in
its last moments may never reach the replica; such a job runs again once its claim expires).

**Baseline, same run**: the same with a plain ``redis://`` URL of the primary (no Sentinel in
the URL): nobody follows the promotion; reported is what settled 30 s after the kill.

The scenario is ``failoverkit.sentinel_failover``, which
``tests/integration/workers/test_worker_sentinel.py`` runs and audits. Last line: JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import operator_benchlib as bl

sys.path.insert(0, str(bl.ROOT / "tests" / "integration" / "workers"))
sys.path.insert(0, str(bl.ROOT / "tests"))

import failoverkit

import redisfarm


def _one(jobs: int, direct: bool) -> failoverkit.FailoverRun:
    with tempfile.TemporaryDirectory() as tmp, redisfarm.SentinelGroup().start() as group:
        return failoverkit.sentinel_failover(
            group, Path(tmp), jobs=jobs, job_seconds=0.05, direct=direct, timeout=30 if direct else 300
        )


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 2),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "chaos_redis_failover", "jobs_per_run": args.jobs}
    runs = []
    for n in range(args.runs):
        bl.log(f"run {n + 1}/{args.runs}: {args.jobs} jobs, primary killed at 30 %")
        run = _one(args.jobs, direct=False)
        print(run.report())
        runs.append(run)
    figures = [r.figures() for r in runs]
    result["runs"] = figures
    result["summary"] = {
        key: _spread([f[key] for f in figures if f[key] is not None])
        for key in (
            "failover_seconds",
            "first_completion_after_kill_seconds",
            "operator_poll_back_after_kill_seconds",
            "all_settled_after_kill_seconds",
        )
    }
    result["lost"] = sum(r.lost for r in runs)
    result["duplicated"] = sum(r.duplicated for r in runs)
    result["jobs"] = sum(r.jobs for r in runs)
    print(
        f"over {args.runs} runs ({result['jobs']:,} jobs): {result['summary']}; lost {result['lost']}, "
        f"completed more than once {result['duplicated']}"
    )
    if not args.no_baseline:
        bl.log("baseline: the same with a plain redis:// URL of the primary")
        base = _one(args.jobs, direct=True)
        stranded = base.jobs - base.statuses.get("finished", 0)
        result["baseline"] = {"not_finished_30s_after_kill": stranded, **base.figures()}
        print(
            f"baseline, redis:// of the primary: {stranded:,} of {base.jobs:,} jobs not finished 30 s "
            "after the kill (the new primary has them; nobody uses it)"
        )
    bl.emit({**result, "goal_met": result["lost"] == 0})


if __name__ == "__main__":
    main()
