"""Chaos: the leader of two operator replicas killed in the middle of a burst, again and again.

    .venv/bin/python benchmarks/chaos_leader_failover.py [--runs 10] [--no-baseline]

The product as installed by the chart (two operator replicas, leader election on a Lease).
Queue ``steady`` runs a burst of one-second jobs throughout. In each run, once a leader and a
standby are up, the leader is killed and queue ``fresh`` (at zero replicas) gets 8 jobs at
the same moment — work that only a running operator can scale for:

* **SIGKILL** of the leader's process (a crash, an OOM kill): nothing is released, so the
  standby takes the Lease once it has not been renewed for ``leaseDurationSeconds`` (3 s);
  the killed pod's container is restarted (after the pod runner's 10 s back-off, as the
  kubelet's) and comes back as the new standby;
* **pod delete** (``kubectl delete pod``: SIGTERM, as a drain or a scale-in does): the leader
  stops kopf and releases the Lease, the standby takes it at its next look (0.5 s); the
  ReplicaSet makes a new standby.

Then the chart is upgraded (``helm upgrade --reuse-values`` with a new pod annotation: a rolling
update of the operator pods) while ``fresh`` gets 32 more jobs. Reported: kill → the next
operator running (``/healthz``), kill → ``fresh``'s replicas written ("scaling resumes",
p50/p99, goal p99 ≤ 5 s), scale Events against the replica changes a watch saw (goal: no
decision carried out twice), jobs (goal: each ran once).

**Baseline, same run**: one operator replica without leader election — the chart before HA
(``replicaCount: 1``, ``leaderElection.enabled: false``, ``Recreate``) — killed the same ways:
after a SIGKILL nothing scales until its container is restarted; after a pod delete, until
the ReplicaSet's new pod has started. On this machine a pod is replaced in well under a
second (kwok: no kubelet, no image pull), which flatters the baseline's pod-delete figure;
on a real cluster a lost node's pods are replaced only after the node is declared lost
(minutes), while the standby takes over 3 s after the last renewal whatever happened.

The scenario is ``chaoskit.leader_failovers``, which
``tests/integration/e2e/test_chaos_leader_failover.py`` runs and audits. Last line: JSON.
"""

from __future__ import annotations

import argparse
from typing import Any

import e2e_benchlib as el
import operator_benchlib as bl

GOAL_SECONDS = 5.0
SINGLE = {"replicaCount": 1, "leaderElection": {"enabled": False}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10, help="kills of each kind (default 10)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the single-replica run")
    args = parser.parse_args()
    kills = (("sigkill", args.runs), ("delete", args.runs))
    result: dict[str, Any] = {
        "benchmark": "chaos_leader_failover",
        "runs_per_kind": args.runs,
        "load_before": el.load(),
    }
    with bl.environment() as environment:
        with el.installed("ha", environment=environment) as setup:
            bl.log(
                f"two replicas: {args.runs} SIGKILLs and {args.runs} pod deletions of the leader, "
                "then a rolling upgrade"
            )
            ha = el.chaoskit.leader_failovers(setup.product, setup.conn, kills=kills)
        print("two replicas, leader election:")
        print(ha.report())
        result["ha"] = ha.figures()
        base = None
        if not args.no_baseline:
            with el.installed("single", values=SINGLE, environment=environment) as setup:
                bl.log(f"baseline, one replica without leader election: {args.runs} of each kill")
                base = el.chaoskit.leader_failovers(setup.product, setup.conn, kills=kills, upgrade=False)
            print("baseline, one replica, no leader election (the chart before HA):")
            print(base.report())
            result["baseline"] = base.figures()
    ok = ha.decided_twice == 0 and ha.audit.exactly_once() and all(n == 1 for n in ha.children["deployments"])
    for how in ("sigkill", "delete"):
        p99 = ha.figures()["kills"][how]["scaling_resumed_seconds"]["p99"]
        ok = ok and p99 <= GOAL_SECONDS
        if base is not None:
            theirs = base.figures()["kills"][how]["scaling_resumed_seconds"]
            ours = ha.figures()["kills"][how]["scaling_resumed_seconds"]
            ratio = {q: round(ours[q] / theirs[q], 2) for q in ("p50", "p99") if theirs.get(q)}
            result[f"{how}_scaling_resumed_ratio_to_baseline"] = ratio
            print(
                f"{how}: scaling resumed p50 {ours['p50']} s / p99 {ours['p99']} s vs one replica "
                f"p50 {theirs['p50']} s / p99 {theirs['p99']} s (ratio {ratio})"
            )
    el.conclude(
        result,
        f"scaling resumes within {GOAL_SECONDS:g} s (p99) after either kill, no decision "
        "made twice, every job once, through a rolling upgrade",
        ok,
    )


if __name__ == "__main__":
    main()
