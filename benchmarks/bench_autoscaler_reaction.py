"""Reaction to a burst: jobs land in an empty queue → ``spec.replicas`` and ready pods at the needed count.

    .venv/bin/python benchmarks/bench_autoscaler_reaction.py [--rounds 4] [--sizes 4,20,60,100,400]
        [--no-model]

Every contender reacts to the same bursts in the same run, on the same API server and Redis,
measured by the same watch of the namespace's Deployments (timestamps taken by this process,
from the moment the burst's enqueue starts):

* **ours**: the real operator; one JobQueue per burst size (4 jobs per pod, so the need is
  ceil(size / 4) pods; ``maxReplicas`` is exactly that need), 1 s poll;
* **KEDA 2.21, defaults** (the real one, hack/keda.py): per queue a Deployment of plain
  ``rq worker`` pods and a ScaledObject with the ``redis`` trigger on the same list
  (``listLength: 4``, ``maxReplicaCount`` = the need), everything else KEDA's and the HPA's
  defaults: 30 s polling to activate 0 → 1, then the kube-controller-manager's HPA every 15 s,
  growing at most max(×2, +4) per sync;
* **KEDA 2.21, tuned**: the same with ``pollingInterval: 5`` and an HPA ``behavior`` that may
  jump to the need in one step (no stabilization): what a careful user sets. The HPA's 15 s
  sync is a cluster-wide controller-manager flag, left at its default as on managed clusters;
* **the model** (``--no-model`` leaves it out): :class:`autoscaler_benchlib.KedaSimulator`
  computing KEDA's defaults against the same backlog, writing the scale of a shadow
  Deployment — kept to check the model against the real KEDA (the difference is printed).

No worker runs (no pod runner): the pods are kwok's, so nothing drains the queues and the
backlog every contender sees stays what was enqueued; "ready" is the Deployment's
``readyReplicas`` (scheduler + kwok). In each round the bursts start at random moments within
``--spread`` seconds. Between rounds the queues are emptied; the operator scales back to 0 on
its own (short delays); KEDA's ScaledObjects are deleted and made again with their
Deployments at 0, where KEDA ends after its cooldown — skipping the 5 + 5 minutes its
defaults take to get there.

Wall time ≈ rounds × (the slowest contender, ≈ 2 min for 100 pods with KEDA's defaults, +
~1 min of reset). Prints per-size and overall p50/p95/max per contender, the ratios to ours,
the model's difference from the real KEDA and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

import autoscaler_benchlib as al
import keda
import operator_benchlib as bl
from jobqueue import JobSpec, enqueue_many

PER_POD = 4
#: label of the model's shadow Deployments; their pods stay Pending on purpose (a node
#: selector no node has): the model predicts replicas, not pods
MODEL_NODE_SELECTOR = {"bench.jobqueue.dev/none": "true"}


def shadow_deployment(name: str, namespace: str) -> dict[str, Any]:
    labels = {"app": name, "bench": "keda-model"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": MODEL_NODE_SELECTOR,
                    "containers": [{"name": "worker", "image": "registry.invalid/shadow:1"}],
                },
            },
        },
    }


def empty_queue(conn: redis.Redis, queue: str) -> None:
    ids = conn.lrange(f"rq:queue:{queue}", 0, -1)
    pipe = conn.pipeline(transaction=False)
    pipe.delete(f"rq:queue:{queue}")
    for job_id in ids:
        pipe.delete(f"rq:job:{job_id.decode()}")
    pipe.execute()


def count_pods(cluster: Any, namespace: str) -> int:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-o", "name", "--no-headers").stdout
    return len(out.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--sizes", default="4,20,60,100,400", help="burst sizes (jobs), one queue each")
    parser.add_argument("--spread", type=float, default=30.0, help="bursts of a round start within this")
    parser.add_argument("--timeout", type=float, default=300.0, help="per round, for the slowest contender")
    parser.add_argument("--nodes", type=int, default=6, help="kwok nodes (110 pods each)")
    parser.add_argument("--no-model", action="store_true", help="leave out the simulated KEDA")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    sizes = [int(x) for x in args.sizes.split(",")]
    needs = [math.ceil(size / PER_POD) for size in sizes]
    queues = [f"r{i}" for i in range(len(sizes))]
    #: contender → the Deployment it scales for queue q
    names = {"ours": "{}-worker", "keda_defaults": "kd-{}", "keda_tuned": "kt-{}"}
    if not args.no_model:
        names["keda_model"] = "km-{}"
    spec_times: dict[str, dict[int, list[tuple[float, int] | None]]] = {
        c: {size: [] for size in sizes} for c in names
    }
    ready_times: dict[str, dict[int, list[tuple[float, int] | None]]] = {
        c: {size: [] for size in sizes} for c in names if c != "keda_model"
    }
    result: dict[str, Any] = {
        "benchmark": "autoscaler_reaction",
        "sizes": sizes,
        "rounds": args.rounds,
        "keda_version": keda.Binaries.locate().version,
    }
    with (
        bl.environment(nodes=args.nodes) as (cluster, redis_server),
        keda.Keda(cluster),
        tempfile.TemporaryDirectory() as tmp,
    ):
        conn = redis.Redis.from_url(redis_server.url)
        ns = f"bench-re-{uuid.uuid4().hex[:4]}"
        cluster.create_namespace(ns)
        op = bl.Operator(cluster, [ns], redis_server.url, Path(tmp) / "operator.log").start()
        kube = bl.client(cluster)
        try:
            bl.kubectl_apply(
                cluster,
                [
                    bl.jobqueue(
                        q,
                        ns,
                        concurrency=size,
                        worker={
                            "image": "registry.invalid/glec-jobs:1",
                            "imports": ["glec.jobs"],
                            "concurrencyPerPod": PER_POD,
                        },
                        scaling={"minReplicas": 0, "scaleDownDelaySeconds": 1, "idleSecondsBeforeZero": 2},
                    )
                    for q, size in zip(queues, sizes, strict=True)
                ],
            )
            real = al.RealKeda(
                cluster,
                ns,
                redis_server,
                [
                    al.KedaTarget(names[c].format(q), f"{ns}.{q}", PER_POD, need, tuning)
                    for q, need in zip(queues, needs, strict=True)
                    for c, tuning in (
                        ("keda_defaults", keda.DEFAULTS),
                        ("keda_tuned", keda.tuned(max_replicas=need, scale_down_delay=1, idle_before_zero=2)),
                    )
                ],
            )
            real.apply()
            models = (
                [
                    al.ScaledObject(
                        names["keda_model"].format(q),
                        f"rq:queue:{ns}.{q}",
                        max_replicas=need,
                        list_length=PER_POD,
                    )
                    for q, need in zip(queues, needs, strict=True)
                ]
                if "keda_model" in names
                else []
            )
            bl.kubectl_apply(cluster, [shadow_deployment(m.deployment, ns) for m in models])
            bl.wait_all(
                "settings published",
                lambda: all(conn.exists(f"jobqueue:settings:{ns}.{q}") for q in queues),
                timeout=120,
            )
            watch = al.ReplicaTimeline(bl.client(cluster), ns)
            with al.KedaSimulator(kube, conn, ns, models, rnd) as sim:
                bl.wait_all(
                    "worker Deployments at 0",
                    lambda: all(watch.current(f"{q}-worker") == 0 for q in queues),
                    timeout=120,
                )
                for round_no in range(args.rounds):
                    bl.log(
                        f"round {round_no + 1}/{args.rounds}: {len(sizes)} bursts within {args.spread:.0f} s"
                    )
                    offsets = sorted((rnd.uniform(0, args.spread), i) for i in range(len(sizes)))
                    start = time.monotonic()
                    landed: dict[int, float] = {}
                    for offset, i in offsets:
                        time.sleep(max(0.0, start + offset - time.monotonic()))
                        landed[i] = time.monotonic()
                        enqueue_many(
                            f"{ns}.{queues[i]}",
                            [JobSpec("glec.jobs.work", args=[n]) for n in range(sizes[i])],
                            connection=conn,
                        )

                    def done(landed: dict[int, float] = landed) -> bool:
                        return all(
                            watch.reached(
                                names[c].format(queues[i]), landed[i], needs[i], ready=c in ready_times
                            )
                            for i in landed
                            for c in names
                        )

                    try:
                        bl.wait_all("every contender at the needed replicas", done, timeout=args.timeout)
                    except TimeoutError:
                        bl.log("timed out: counting a contender that never got there as --timeout")
                    for i, t0 in landed.items():
                        for c, pattern in names.items():
                            name = pattern.format(queues[i])
                            spec_times[c][sizes[i]].append(watch.reached(name, t0, needs[i]))
                            if c in ready_times:
                                ready_times[c][sizes[i]].append(watch.reached(name, t0, needs[i], ready=True))
                    assert all(all(rows) for rows in spec_times["ours"].values()), (
                        "the operator never reached a need"
                    )
                    for q in queues:
                        empty_queue(conn, f"{ns}.{q}")
                    real.remove_scaled_objects()
                    sim.reset()
                    bl.wait_all(
                        "every Deployment at 0 and its pods gone",
                        lambda: (
                            all(watch.current(names[c].format(q)) == 0 for q in queues for c in names)
                            and count_pods(cluster, ns) == 0
                        ),
                        timeout=240,
                    )
                    real.apply_scaled_objects()
        finally:
            op.stop()

    report(result, needs, spec_times, ready_times, args.timeout)


def seconds(rows: list[tuple[float, int] | None], timeout: float) -> list[float]:
    return [r[0] if r else timeout for r in rows]


def report(
    result: dict[str, Any],
    needs: list[int],
    spec_times: dict[str, dict[int, list[tuple[float, int] | None]]],
    ready_times: dict[str, dict[int, list[tuple[float, int] | None]]],
    timeout: float,
) -> None:
    contenders = list(spec_times)
    sizes: list[int] = result["sizes"]
    short = {"ours": "ours", "keda_defaults": "KEDA dflt", "keda_tuned": "KEDA tuned", "keda_model": "model"}
    print(
        f"burst → spec.replicas at the needed count, seconds p50 / p95 ({result['rounds']} rounds; "
        f"{PER_POD} jobs per pod; KEDA {result['keda_version']})"
    )
    print(f"{'jobs':>6}{'pods':>5} | " + " | ".join(f"{short[c]:>15}" for c in contenders))
    result["per_size"] = {}
    for size, need in zip(sizes, needs, strict=True):
        row = {}
        cells = []
        for c in contenders:
            s = bl.summary(seconds(spec_times[c][size], timeout))
            steps = max((r[1] for r in spec_times[c][size] if r), default=0)
            row[c] = s | {"max_steps": steps}
            if c in ready_times:
                row[c]["ready"] = bl.summary(seconds(ready_times[c][size], timeout))
            cells.append(f"{s['p50']:>7.2f} /{s['p95']:>6.2f}")
        result["per_size"][str(size)] = {"pods": need, **row}
        print(f"{size:>6}{need:>5} | " + " | ".join(cells))
    for label, table in (("spec.replicas", spec_times), ("ready pods", ready_times)):
        print(f"all bursts, {label}:")
        for c in table:
            values = [t for rows in table[c].values() for t in seconds(rows, timeout)]
            s = bl.summary(values)
            key = c if table is spec_times else f"{c}_ready"
            result[key] = s
            if table is spec_times:
                result[key]["max_steps"] = max(
                    (r[1] for rows in table[c].values() for r in rows if r), default=0
                )
                result[key]["timed_out"] = sum(1 for rows in table[c].values() for r in rows if r is None)
            print(f"  {short[c]:<11} p50 {s['p50']:7.2f} s   p95 {s['p95']:7.2f} s   max {s['max']:7.2f} s")
    o, d, t = result["ours"], result["keda_defaults"], result["keda_tuned"]
    for name, k in (("defaults", d), ("tuned", t)):
        result[f"ratio_keda_{name}_over_ours_p50"] = round(k["p50"] / o["p50"], 1)
        result[f"ratio_keda_{name}_over_ours_p95"] = round(k["p95"] / o["p95"], 1)
        kr, orr = result[f"keda_{name}_ready"], result["ours_ready"]
        result[f"ratio_keda_{name}_over_ours_ready_p50"] = round(kr["p50"] / orr["p50"], 1)
        print(
            f"KEDA {name} / ours: {result[f'ratio_keda_{name}_over_ours_p50']}x at p50, "
            f"{result[f'ratio_keda_{name}_over_ours_p95']}x at p95 (ready pods: "
            f"{result[f'ratio_keda_{name}_over_ours_ready_p50']}x at p50)"
        )
    if "keda_model" in result:
        m = result["keda_model"]
        diffs = [
            model - real
            for size in sizes
            for model, real in zip(
                seconds(spec_times["keda_model"][size], timeout),
                seconds(spec_times["keda_defaults"][size], timeout),
                strict=True,
            )
        ]
        result["model_minus_real_defaults"] = {
            "p50": round(m["p50"] - d["p50"], 2),
            "p95": round(m["p95"] - d["p95"], 2),
            "mean_per_burst": round(sum(diffs) / len(diffs), 2),
        }
        mean = sum(diffs) / len(diffs)
        print(
            f"model − real KEDA defaults: p50 {m['p50'] - d['p50']:+.1f} s, "
            f"p95 {m['p95'] - d['p95']:+.1f} s, mean per burst {mean:+.1f} s "
            "(poll and sync phases are random in both)"
        )
    bl.emit(result)


if __name__ == "__main__":
    main()
