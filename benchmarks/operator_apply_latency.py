"""From ``kubectl apply`` of 50 JobQueues at once to their 50 worker Deployments existing.

    python benchmarks/operator_apply_latency.py [--queues 50] [--rounds 5] [--profile DIR]
    python benchmarks/operator_apply_latency.py --queues 500 --rounds 1      # one large apply

For each round, in a fresh namespace:

* **operator**: one ``kubectl apply`` of N JobQueues; the latency of a queue is the time
  from the start of that ``kubectl apply`` to its Deployment's ADDED event on a watch.
* **baseline (floor)**: one ``kubectl apply`` of N Deployments (the same pod template the
  operator would build) straight to the API server, measured the same way. The operator
  cannot beat this: it is the API server creating and announcing a Deployment.

Also reported: the time until each JobQueue's status shows the reconcile
(``status.observedGeneration``, from a second watch), i.e. until ``kubectl get jq`` has
something to say, and that time less its own Deployment's (goal: at most 0.5 s); and the
operator's CPU per new JobQueue (its process's CPU time from the ``kubectl apply`` until
:data:`SETTLE` seconds after the last status, which covers the autoscaler's first pass over
the new queues and the Events posted in the background): what a burst of creations costs,
less exposed to a noisy machine than the latencies.
Machines are noisy: read p50/p95 over several rounds, never a single number.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from lightkube.generic_resource import create_namespaced_resource

import operator_benchlib as bl
from jobqueue_operator import models
from jobqueue_operator.builders import deployment

#: seconds after the last status of a round that still count towards its CPU (the autoscaler
#: polls every second; its first figures of the new queues come within one pass)
SETTLE = 2.0

JobQueue = create_namespaced_resource(models.GROUP, models.VERSION, "JobQueue", "jobqueues")


def baseline_deployments(namespace: str, count: int) -> list[dict[str, Any]]:
    spec = models.JobQueueSpec.model_validate(
        {"worker": {"image": "registry.invalid/glec-jobs:1", "imports": ["glec.jobs"]}}
    )
    out = []
    for i in range(count):
        body = deployment.build(
            namespace=namespace,
            name=f"direct-{i:03d}",
            uid="",
            spec=spec,
            queue_name=f"{namespace}.direct-{i:03d}",
            defaults=deployment.WorkerDefaults(),
        )
        body["metadata"].pop("ownerReferences")
        out.append(deployment.with_replicas(body, 0))
    return out


def one_round(
    cluster: Any, queues: int, operator_namespace: str, rnd: int, *, op: bl.Operator, profile: Path | None
) -> dict[str, list[float]]:
    base_ns = f"bench-floor-{rnd}-{uuid.uuid4().hex[:4]}"
    cluster.kubectl("create", "namespace", base_ns)
    with bl.DeploymentWatch(cluster, base_ns) as watch:
        started = bl.kubectl_apply(cluster, baseline_deployments(base_ns, queues))
        watch.wait_for(queues, timeout=300)
        floor = [t - started for t in watch.seen.values()]

    ns = operator_namespace
    objects = [bl.jobqueue(f"q{rnd}-{i:03d}", ns) for i in range(queues)]
    cpu = op.cpu_seconds()
    with (
        bl.DeploymentWatch(cluster, ns) as watch,
        bl.DeploymentWatch(cluster, ns, "jobqueues", ".status.observedGeneration") as statuses,
        op.profiled(profile, max(5.0, queues / 10)),
    ):
        started = bl.kubectl_apply(cluster, objects)
        watch.wait_for(queues * (rnd + 1), timeout=300)
        statuses.wait_for(queues * (rnd + 1), timeout=300)
    time.sleep(SETTLE)
    cpu = op.cpu_seconds() - cpu
    mine = [o["metadata"]["name"] for o in objects]
    cluster.kubectl("delete", "namespace", base_ns, "--wait=false")
    return {
        "floor": floor,
        "operator": [watch.seen[f"{n}-worker"] - started for n in mine],
        "status": [statuses.seen[n] - started for n in mine],
        # the reconcile's status write after its Deployment is there: what `kubectl get jq` waits for
        "status_after_deployment": [statuses.seen[n] - watch.seen[f"{n}-worker"] for n in mine],
        "cpu_ms_per_queue": [cpu * 1000 / queues],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=Path, help="directory for py-spy flame graphs of each round")
    args = parser.parse_args()
    results: dict[str, list[float]] = {
        "floor": [],
        "operator": [],
        "status": [],
        "status_after_deployment": [],
        "cpu_ms_per_queue": [],
    }
    with bl.environment() as (cluster, redis_server), tempfile.TemporaryDirectory() as tmp:
        ns = f"bench-op-{uuid.uuid4().hex[:4]}"
        cluster.kubectl("create", "namespace", ns)
        op = bl.Operator(cluster, [ns], redis_server.url, Path(tmp) / "operator.log").start()
        try:
            for rnd in range(args.rounds):
                bl.log(
                    f"round {rnd + 1}/{args.rounds}: {args.queues} Deployments, then {args.queues} JobQueues"
                )
                profile = args.profile / f"apply-{args.queues}-round{rnd + 1}" if args.profile else None
                for key, values in one_round(cluster, args.queues, ns, rnd, op=op, profile=profile).items():
                    results[key] += values
        finally:
            op.stop()
    floor, ours, status, gap = (
        bl.summary(results[k]) for k in ("floor", "operator", "status", "status_after_deployment")
    )
    print(
        f"{args.queues} objects per kubectl apply, {args.rounds} rounds ({len(results['operator'])} queues)"
    )
    print(f"{'seconds from kubectl apply to':<46}{'p50':>8}{'p95':>8}{'max':>8}")
    for label, s in (
        ("Deployment exists, created directly (floor)", floor),
        ("Deployment exists, via JobQueue + operator", ours),
        ("JobQueue status written by the operator", status),
        ("  status written after its Deployment exists", gap),
    ):
        print(f"{label:<46}{s['p50']:>8.3f}{s['p95']:>8.3f}{s['max']:>8.3f}")
    cpu = results["cpu_ms_per_queue"]
    print(
        f"operator CPU per new JobQueue: {sum(cpu) / len(cpu):.1f} ms "
        f"(rounds: {', '.join(f'{c:.1f}' for c in cpu)})"
    )
    ratios = {q: round(ours[q] / max(floor[q], 1e-3), 2) for q in ("p50", "p95")}
    print(
        f"operator overhead over the floor: p50 +{ours['p50'] - floor['p50']:.3f} s ({ratios['p50']}x), "
        f"p95 +{ours['p95'] - floor['p95']:.3f} s ({ratios['p95']}x) (goal <= 1.5x); status after the "
        f"Deployment p95 {gap['p95']:.3f} s (goal <= 0.5 s)"
    )
    bl.emit(
        {
            "benchmark": "operator_apply_latency",
            "queues_per_apply": args.queues,
            "rounds": args.rounds,
            "deployment_seconds": ours,
            "floor_deployment_seconds": floor,
            "status_seconds": status,
            "status_after_deployment_seconds": gap,
            "ratio_to_floor": ratios,
            "operator_cpu_ms_per_queue": round(sum(cpu) / len(cpu), 2),
        }
    )


if __name__ == "__main__":
    main()
