"""Operator memory (RSS) and CPU with 1,000 JobQueues in place.

    python benchmarks/operator_footprint.py [--queues 1000] [--window 60] [--leader-election]
        [--controller-qps 200]
    python benchmarks/operator_footprint.py --queues 10000     # the restart at 10,000 queues

Phases, one operator process watching one namespace:

1. **empty**: the operator with no JobQueue — the baseline (interpreter, kopf, clients);
2. **create**: N JobQueues applied in batches of 100; time and CPU until every one has a
   worker Deployment and a written status;
3. **steady**: nothing changes for ``--window`` seconds: RSS and CPU (this includes the
   settings sweep every 30 s over all N queues — the operator's only periodic work);
4. **restart**: a new operator process with the N queues in place: time and CPU until
   every queue is resumed (kopf's resume handlers re-check every Deployment) — the start of
   the first 2 s with no write of the operator's and no more CPU than the steady phase's
   plus 10 % of a core — then RSS, and the JobQueue and Deployment writes it made meanwhile
   (nothing changed, so each is needless; goal: 0, quiet within 60 s at 10,000 queues). The
   Deployment controller may still be writing the status of the Deployments made in phase 2:
   those are counted apart (``EventCount.operator_writes`` tells them apart).

Worker Deployments keep 0 replicas (minReplicas 0), so the cluster holds N Deployments but
no pods: the figures are the operator's, not the fake nodes'.

``--leader-election``: both processes run as the chart runs them, on a leader Lease (the
second takes over the Lease the first releases). Reported besides: how often the leader's
Lease renewal came late (its event loop busy: the create and resume bursts are the worst
case) and whether it ever lost the Lease (goal: never).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import operator_benchlib as bl


def all_reconciled(cluster: Any, namespace: str, count: int) -> bool:
    out = cluster.kubectl(
        "get",
        "jobqueues",
        "-n",
        namespace,
        "--no-headers",
        "-o",
        "custom-columns=G:.status.observedGeneration",
        timeout=120,
    ).stdout.split()
    return sum(1 for g in out if g not in ("<none>", "")) >= count


def measure_window(op: bl.Operator, seconds: float) -> dict[str, float]:
    cpu0, t0 = op.cpu_seconds(), time.monotonic()
    peak = 0.0
    while time.monotonic() - t0 < seconds:
        peak = max(peak, op.rss_mib())
        time.sleep(1)
    elapsed = time.monotonic() - t0
    return {
        "rss_mib": round(op.rss_mib(), 1),
        "rss_peak_mib": round(peak, 1),
        "cpu_percent_of_one_core": round(100 * (op.cpu_seconds() - cpu0) / elapsed, 2),
    }


#: Resuming is over when, over this many seconds, the restarted operator writes nothing and
#: uses no more than its steady CPU before the restart plus QUIET_CPU_MARGIN % of a core. The
#: steady figure counts: with 10,000 queues the autoscaler's pass alone is a sizeable share.
QUIET_SECONDS = 2.0
QUIET_CPU_MARGIN = 10.0


def wait_resumed(
    op: bl.Operator, steady_cpu: float, jqs: bl.EventCount, deps: bl.EventCount, timeout: float = 1800
) -> float:
    """The monotonic time the first quiet interval began (kopf logs at WARNING here, so CPU
    and the operator's writes are what tell that every resume handler has run). Every JobQueue
    write is the operator's; of the Deployments', only those ``deps`` tells are."""
    deadline = time.monotonic() + timeout
    cpu, writes, since = op.cpu_seconds(), -1, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(QUIET_SECONDS)
        now, seen = op.cpu_seconds(), sum(jqs.counts.values()) + deps.operator_writes
        if 100 * (now - cpu) / QUIET_SECONDS <= steady_cpu + QUIET_CPU_MARGIN and seen == writes:
            return since
        cpu, writes, since = now, seen, time.monotonic()
    raise TimeoutError(f"the restarted operator not quiet after {timeout} s")


def restarted(
    op: bl.Operator,
    namespace: str,
    steady_cpu: float,
    profile: Path | None = None,
    profile_seconds: float = 60,
) -> dict[str, Any]:
    """Start ``op`` (not started yet) with every JobQueue of ``namespace`` in place and
    nothing changed: the time until it is quiet (:func:`wait_resumed`; ``steady_cpu``: its
    predecessor's steady CPU), the CPU it took, and the writes it made — each one needless.
    With ``profile``, its first ``profile_seconds`` are sampled by py-spy into that path."""
    writes = contextlib.ExitStack()
    jqs = writes.enter_context(bl.EventCount(op.cluster, namespace, "jobqueues"))
    deps = writes.enter_context(bl.EventCount(op.cluster, namespace, "deployments"))
    with writes:
        t0 = time.monotonic()
        op.start()
        cpu0 = op.cpu_seconds()
        with op.profiled(profile, profile_seconds):
            quiet = wait_resumed(op, steady_cpu, jqs, deps)
    return {
        "seconds_to_quiet": round(quiet - t0, 1),
        "cpu_seconds": round(op.cpu_seconds() - cpu0, 1),
        "rss_mib": round(op.rss_mib(), 1),
        "log_lines": len(op.log_path.read_text().splitlines()),
        "jobqueue_writes": sum(jqs.counts.values()),
        # the rest are the Deployment controller's status writes (of recently made ones)
        "deployment_writes_by_operator": deps.operator_writes,
        "deployment_writes": sum(deps.counts.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds of each steady measurement")
    parser.add_argument("--leader-election", action="store_true", help="run the operator on a leader Lease")
    parser.add_argument(
        "--controller-qps",
        type=int,
        default=bl.CONTROLLER_QPS,
        help="the kube-controller-manager's API rate (its own default: 20)",
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy the restart's first minute into DIR/restart.svg/.txt"
    )
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "operator_footprint", "queues": args.queues}
    with (
        bl.environment(controller_qps=args.controller_qps) as (cluster, redis_server),
        tempfile.TemporaryDirectory() as tmp,
    ):
        ns = f"bench-fp-{uuid.uuid4().hex[:4]}"
        cluster.kubectl("create", "namespace", ns)
        lease = {"JOBQUEUE_LEADER_LEASE": "bench-leader", "POD_NAMESPACE": ns} if args.leader_election else {}
        op = bl.Operator(cluster, [ns], redis_server.url, Path(tmp) / "operator.log", extra_env=lease).start()
        try:
            bl.log(f"empty operator: measuring {args.window:.0f} s")
            result["empty"] = measure_window(op, args.window)

            bl.log(f"creating {args.queues} JobQueues")
            cpu0, t0 = op.cpu_seconds(), time.monotonic()
            for start in range(0, args.queues, 100):
                batch = [bl.jobqueue(f"q-{i:04d}", ns) for i in range(start, min(start + 100, args.queues))]
                bl.kubectl_apply(cluster, batch)
            bl.wait_all(
                "every JobQueue reconciled",
                lambda: all_reconciled(cluster, ns, args.queues),
                timeout=1800,
                interval=max(0.5, args.queues / 2000),  # each check lists every queue
            )
            elapsed = time.monotonic() - t0
            result["create"] = {
                "seconds": round(elapsed, 1),
                "queues_per_second": round(args.queues / elapsed, 1),
                "cpu_seconds": round(op.cpu_seconds() - cpu0, 1),
                "rss_mib": round(op.rss_mib(), 1),
            }

            bl.log(f"steady with {args.queues} JobQueues: measuring {args.window:.0f} s")
            result["steady"] = measure_window(op, args.window)
        finally:
            op.stop()

        bl.log("restarting the operator with every JobQueue in place")
        op = bl.Operator(cluster, [ns], redis_server.url, Path(tmp) / "operator-2.log", extra_env=lease)
        try:
            result["restart"] = restarted(
                op,
                ns,
                result["steady"]["cpu_percent_of_one_core"],
                profile=args.profile / f"restart-{args.queues}" if args.profile else None,
            )
            result["restart_steady"] = measure_window(op, args.window)
        finally:
            op.stop()
        if args.leader_election:
            logs = "".join((Path(tmp) / name).read_text() for name in ("operator.log", "operator-2.log"))
            result["leader_election"] = {
                "late_renewals": logs.count("renewal "),
                "leadership_lost": logs.count("stops leading"),
            }

    print(f"operator with {args.queues} JobQueues (one namespace, Deployments at 0 replicas)")
    print(f"{'':<34}{'RSS MiB':>10}{'CPU % of a core':>18}")
    for label, key in (
        ("no JobQueue (baseline)", "empty"),
        (f"{args.queues} JobQueues, steady", "steady"),
        ("after a restart, steady", "restart_steady"),
    ):
        row = result[key]
        print(f"{label:<34}{row['rss_mib']:>10.1f}{row['cpu_percent_of_one_core']:>18.2f}")
    per_queue = 1024 * (result["steady"]["rss_mib"] - result["empty"]["rss_mib"]) / args.queues
    print(f"per JobQueue: {per_queue:.1f} KiB")
    c, r = result["create"], result["restart"]
    print(f"creating {args.queues}: {c['seconds']} s ({c['queues_per_second']}/s), {c['cpu_seconds']} CPU-s")
    print(
        f"restart with {args.queues} in place: quiet after {r['seconds_to_quiet']} s, "
        f"{r['cpu_seconds']} CPU-s, {r['jobqueue_writes']} JobQueue and "
        f"{r['deployment_writes_by_operator']} Deployment writes by the operator (nothing changed: "
        f"every one is needless; goal 0), {r['deployment_writes']} Deployment events in all"
    )
    if "leader_election" in result:
        le = result["leader_election"]
        print(
            f"on a leader Lease: {le['late_renewals']} late renewals, leadership lost "
            f"{le['leadership_lost']} times (goal 0)"
        )
    bl.emit(result)


if __name__ == "__main__":
    main()
