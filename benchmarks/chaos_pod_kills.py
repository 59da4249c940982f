"""Chaos: worker pods deleted with grace period 0 at random during a 5,000-job run.

    .venv/bin/python benchmarks/chaos_pod_kills.py [--jobs 5000] [--no-baseline]

Jobs of 100 ms, concurrency 20 at 2 slots per pod; while jobs are still waiting, a random
running worker pod is deleted with ``--grace-period=0 --force`` every 2–4 s (the pod runner
SIGKILLs its process at once, as a node loss or an OOM kill would). Reported: jobs lost
(goal 0), the time from each kill to each job the pod held being back — re-queued, started
elsewhere or failed (goal p99 ≤ 30 s) — and the runs a kill cut short and so repeated.

* **ours**: the product as installed by the chart; the operator sees the pod vanish and
  takes its jobs back as soon as Redis shows its workers stopped heart-beating;
* **baseline, same run**: the same with the operator's autoscaler, and so its recovery, off
  (chart value ``autoscaler.pollInterval: 0``, 10 fixed replicas): only the workers' own lease reaping
  brings the jobs back (15 s lease, reaped every 5 s). Plain RQ has neither: a killed
  worker's job stays in its StartedJobRegistry until the dead worker's record expires and a
  maintenance pass runs (``Worker.clean_registries``, every 10 minutes by default), minutes.

The scenario is ``chaoskit.pod_kills``, which ``tests/integration/e2e/test_chaos_pod_kills.py``
runs and audits. Prints both runs and the ratio, and, last, one JSON line.
"""

from __future__ import annotations

import argparse
from typing import Any

import e2e_benchlib as el
import operator_benchlib as bl

FIXED = {"minReplicas": 10, "maxReplicas": 10}


def run(environment: Any, label: str, jobs: int, *, baseline: bool = False) -> el.chaoskit.PodKills:
    values = {"autoscaler": {"pollInterval": 0}} if baseline else None
    with el.installed(label, values=values, environment=environment) as setup:
        bl.log(f"{label}: {jobs:,} jobs, killing worker pods at random")
        kills = el.chaoskit.pod_kills(
            setup.cluster,
            setup.namespace,
            setup.conn,
            setup.runner,
            jobs=jobs,
            job_seconds=0.1,
            concurrency=20,
            per_pod=2,
            every=(2.0, 4.0),
            seed=8,
            scaling=FIXED if baseline else None,
        )
        setup.conn.flushdb()
        return kills


def lost(kills: el.chaoskit.PodKills) -> int:
    """Jobs that neither finished nor failed for good."""
    a = kills.audit
    return kills.jobs - a.statuses.get("finished", 0) - a.statuses.get("failed", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the lease-reaping-only run")
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "chaos_pod_kills"}
    with bl.environment() as environment:
        runs = {"ours": run(environment, "kills", args.jobs)}
        if not args.no_baseline:
            runs["workers_lease_reaping_only"] = run(environment, "kills-lease", args.jobs, baseline=True)
    for label, kills in runs.items():
        print(f"{label}:\n{kills.report()}")
        result[label] = kills.figures() | {"lost": lost(kills)}
    ours = result["ours"]["taken_back_seconds"]
    if "workers_lease_reaping_only" in result:
        base = result["workers_lease_reaping_only"]["taken_back_seconds"]
        result["ratio_baseline_over_ours_p99"] = round(base["p99"] / ours["p99"], 2)
        print(
            f"kill → job back, p99: ours {ours['p99']} s, lease reaping only {base['p99']} s: "
            f"{result['ratio_baseline_over_ours_p99']}x"
        )
    ok = result["ours"]["lost"] == 0 and ours.get("p99", float("inf")) <= 30
    el.conclude(result, f"0 lost (here {result['ours']['lost']}), p99 <= 30 s (here {ours.get('p99')} s)", ok)


if __name__ == "__main__":
    main()
