"""The autoscaler's cost spread over replicas with ``autoscaler.shards``, against the leader alone.

    .venv/bin/python benchmarks/bench_autoscaler_shards.py [--queues 1000] [--replicas 3]
        [--shards 12] [--window 30] [--busy 0.1]

N real JobQueues (minReplicas 0) in one namespace of the real API server, ``--busy`` of them
with a backlog (2 queued jobs, no worker: they sit at 2 replicas and their status figures are
written every 10 s), then, on the same objects, one after the other:

1. **baseline — the leader alone**: the operators as the chart runs them without shards
   (``--replicas`` processes on the leader Lease; the leader scales every queue, the standbys
   wait): each process's CPU (% of one core) and RSS over ``--window``;
2. **sharded**: the same processes with ``JOBQUEUE_SHARDS=--shards``: each scales the queues
   of its shards (the leader also reconciles); the same figures, and the shards each holds.

Reported: the busiest process's CPU in each setup and the ratio (sharded / leader alone: the
goal is about 1 / replicas for the autoscaler's share), the sum over all processes (what the
cluster pays in total, watches of every replica included), and RSS. The API server, etcd and
Redis are not counted. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

import bench_autoscaler_scale as scale
import operator_benchlib as bl
import operator_footprint
from jobqueue import JobSpec, enqueue_many

LEASE = "bench-leader"


def start_all(
    cluster: bl.devenv.Cluster, ns: str, url: str, tmp: Path, *, label: str, count: int, shards: int
) -> list[tuple[bl.Operator, int]]:
    """``count`` operator processes on the leader Lease (and ``shards``), with their metrics ports."""
    out = []
    for n in range(count):
        port = bl.devenv.free_port()
        env = {
            "JOBQUEUE_METRICS_PORT": str(port),
            "JOBQUEUE_LEADER_LEASE": LEASE,
            "POD_NAMESPACE": ns,
            "POD_NAME": f"{label}-{n}",
        }
        if shards:
            env["JOBQUEUE_SHARDS"] = str(shards)
        out.append((bl.Operator(cluster, [ns], url, tmp / f"{label}-{n}.log", extra_env=env).start(), port))
    return out


def gauge(port: int, name: str) -> float:
    return scale.metric(scale.scrape(port), name)


def measure(ops: list[tuple[bl.Operator, int]], seconds: float) -> list[dict[str, Any]]:
    """CPU and RSS of every process over the same window."""
    cpu0 = [op.cpu_seconds() for op, _ in ops]
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    rows = []
    for (op, port), c0 in zip(ops, cpu0, strict=True):
        assert op.proc is not None
        if op.proc.poll() is not None:
            lines = [ln[:400] for ln in op.log_path.read_text().splitlines()]
            raise RuntimeError(f"operator {op.log_path.name} exited:\n" + "\n".join(lines[-40:]))
        rows.append(
            {
                "cpu_percent_of_one_core": round(100 * (op.cpu_seconds() - c0) / elapsed, 2),
                "rss_mib": round(op.rss_mib(), 1),
                "leader": gauge(port, "jobqueue_operator_leader") >= 1,
                "shards_held": int(gauge(port, "jobqueue_operator_shards_held")),
            }
        )
    return rows


def create_queues(
    cluster: bl.devenv.Cluster, conn: redis.Redis, ns: str, names: list[str], busy: float
) -> None:
    """The JobQueues, reconciled, and a backlog of 2 jobs in the first ``busy`` share of them."""
    bl.log(f"creating {len(names)} JobQueues")
    for start in range(0, len(names), 100):
        bl.kubectl_apply(cluster, [bl.jobqueue(n, ns, concurrency=5) for n in names[start : start + 100]])
    bl.wait_all(
        "every JobQueue reconciled",
        lambda: operator_footprint.all_reconciled(cluster, ns, len(names)),
        timeout=1800,
    )
    backlog = names[: max(1, int(len(names) * busy))]
    for n in backlog:
        enqueue_many(
            f"{ns}.{n}", [JobSpec("glec.jobs.anything", args=[i]) for i in range(2)], connection=conn
        )
    bl.wait_all("busy queues at 2 replicas", lambda: scale.all_scaled(cluster, ns, backlog, 2), timeout=600)


def settle(ops: list[tuple[bl.Operator, int]], ns: str, shards: int) -> None:
    if shards:
        bl.wait_all(
            "every shard held",
            lambda: sum(gauge(port, "jobqueue_operator_shards_held") for _, port in ops) == shards,
            timeout=300,
        )
    time.sleep(scale.SETTLE_SECONDS)
    for op, _ in ops:
        scale.wait_quiet(op, ns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--shards", type=int, default=12)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--busy", type=float, default=0.1)
    parser.add_argument("--logs", type=Path, help="keep the operators' logs in this directory")
    args = parser.parse_args()

    result: dict[str, Any] = {
        "benchmark": "autoscaler_shards",
        "queues": args.queues,
        "replicas": args.replicas,
        "shards": args.shards,
        "window_seconds": args.window,
    }
    names = [f"q-{i:04d}" for i in range(args.queues)]
    with bl.environment() as (cluster, redis_server), tempfile.TemporaryDirectory() as tmpdir:
        tmp = args.logs or Path(tmpdir)
        tmp.mkdir(parents=True, exist_ok=True)
        conn = redis.Redis.from_url(redis_server.url)
        ns = f"bench-sh-{uuid.uuid4().hex[:4]}"
        cluster.kubectl("create", "namespace", ns)
        for label, shards in (("alone", 0), ("sharded", args.shards)):
            ops = start_all(
                cluster, ns, redis_server.url, tmp, label=label, count=args.replicas, shards=shards
            )
            try:
                if label == "alone":
                    create_queues(cluster, conn, ns, names, args.busy)
                settle(ops, ns, shards)
                bl.log(f"{label}: measuring {args.window:.0f} s")
                result[label] = measure(ops, args.window)
            finally:
                for op, _ in ops:
                    op.stop()

    alone, sharded = result["alone"], result["sharded"]
    busiest_alone = max(r["cpu_percent_of_one_core"] for r in alone)
    busiest_sharded = max(r["cpu_percent_of_one_core"] for r in sharded)
    result["busiest_process_ratio"] = round(busiest_sharded / max(busiest_alone, 1e-6), 2)
    result["total_cpu_ratio"] = round(
        sum(r["cpu_percent_of_one_core"] for r in sharded)
        / max(sum(r["cpu_percent_of_one_core"] for r in alone), 1e-6),
        2,
    )
    print(
        f"{args.queues} JobQueues ({int(args.queues * args.busy)} with a backlog), {args.replicas} operator "
        f"processes, {args.window:.0f} s windows"
    )
    print(f"{'':<34}{'CPU % per process':>30}{'busiest':>9}{'sum':>8}{'RSS MiB (max)':>15}")
    for label, rows in (("leader alone (shards off)", alone), (f"sharded ({args.shards} shards)", sharded)):
        cpus = " ".join(
            f"{r['cpu_percent_of_one_core']:.1f}{'L' if r['leader'] else ''}"
            + (f"/{r['shards_held']}s" if r["shards_held"] else "")
            for r in rows
        )
        print(
            f"{label:<34}{cpus:>30}{max(r['cpu_percent_of_one_core'] for r in rows):>9.2f}"
            f"{sum(r['cpu_percent_of_one_core'] for r in rows):>8.2f}{max(r['rss_mib'] for r in rows):>15.1f}"
        )
    print("(L: the leader; /Ns: shards held)")
    print(
        f"busiest process, sharded / leader alone: {result['busiest_process_ratio']}x; "
        f"all processes together: {result['total_cpu_ratio']}x"
    )
    bl.emit(result)


if __name__ == "__main__":
    main()
