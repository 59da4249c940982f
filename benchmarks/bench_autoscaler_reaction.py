"""Reaction to a burst: jobs land in an empty queue → ``spec.replicas`` reaches the needed count.

    .venv/bin/python benchmarks/bench_autoscaler_reaction.py [--rounds 4] [--sizes 4,20,60,100,400]

Both contenders react to the same bursts in the same run, on the same API server, measured by
the same watch of the namespace's Deployments (timestamps taken by this process):

* **ours**: the real operator; one JobQueue per burst size (4 jobs per pod, so the need is
  ceil(size / 4) pods; ``maxReplicas`` is exactly that need), 1 s poll;
* **KEDA (default settings), simulated faithfully against the same Redis backlog**: one
  shadow Deployment per queue, driven by :class:`autoscaler_benchlib.KedaSimulator` — the
  algorithm KEDA's ``redis`` trigger (``listLength: 4``) and the HPA run with their defaults:
  30 s polling to activate 0 → 1, then a 15 s HPA sync computing ``ceil(LLEN / 4)`` and growing
  at most max(×2, +4) per sync.

No pod runner: worker pods are kwok's, so nothing drains the queues and the backlog each
contender sees stays what was enqueued. In each round the bursts start at random moments
within ``--spread`` seconds. Between rounds the queues are emptied; the operator scales
back to 0 on its own (short delays), the shadows are reset (as after KEDA's cooldown).

Prints per-size and overall p50/p95/max for both, how many replica writes each took to get
there ("steps"), the ratio KEDA/ours, and, last, one JSON line.
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
import operator_benchlib as bl
from jobqueue import JobSpec, enqueue_many

PER_POD = 4


def shadow_deployment(name: str, namespace: str) -> dict[str, Any]:
    labels = {"app": name, "bench": "keda-shadow"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": "worker", "image": "registry.invalid/shadow:1"}]}}}}


def empty_queue(conn: redis.Redis, queue: str) -> None:
    ids = conn.lrange(f"rq:queue:{queue}", 0, -1)
    pipe = conn.pipeline(transaction=False)
    pipe.delete(f"rq:queue:{queue}")
    for job_id in ids:
        pipe.delete(f"rq:job:{job_id.decode()}")
    pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--sizes", default="4,20,60,100,400", help="burst sizes (jobs), one queue each")
    parser.add_argument("--spread", type=float, default=30.0, help="bursts of a round start within this")
    parser.add_argument("--timeout", type=float, default=300.0, help="per round, for the slower contender")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    sizes = [int(x) for x in args.sizes.split(",")]
    needs = [math.ceil(size / PER_POD) for size in sizes]
    result: dict[str, Any] = {"benchmark": "autoscaler_reaction", "sizes": sizes, "rounds": args.rounds}
    ours: dict[int, list[tuple[float, int]]] = {size: [] for size in sizes}
    keda: dict[int, list[tuple[float, int] | None]] = {size: [] for size in sizes}
    with bl.environment() as (cluster, redis_server), tempfile.TemporaryDirectory() as tmp:
        conn = redis.Redis.from_url(redis_server.url)
        ns = f"bench-re-{uuid.uuid4().hex[:4]}"
        cluster.kubectl("create", "namespace", ns)
        op = bl.Operator(cluster, [ns], redis_server.url, Path(tmp) / "operator.log").start()
        kube = bl.client(cluster)
        try:
            queues = [f"r{i}" for i in range(len(sizes))]
            bl.kubectl_apply(cluster, [
                bl.jobqueue(q, ns, concurrency=size,
                            worker={"image": "registry.invalid/glec-jobs:1", "imports": ["glec.jobs"],
                                    "concurrencyPerPod": PER_POD},
                            scaling={"minReplicas": 0, "scaleDownDelaySeconds": 1,
                                     "idleSecondsBeforeZero": 2})
                for q, size in zip(queues, sizes, strict=True)])
            bl.kubectl_apply(cluster, [shadow_deployment(f"keda-{q}", ns) for q in queues])
            bl.wait_all("settings published", lambda: all(
                conn.exists(f"jobqueue:settings:{ns}.{q}") for q in queues), timeout=120)
            shadows = [al.ScaledObject(f"keda-{q}", f"rq:queue:{ns}.{q}", max_replicas=need,
                                       list_length=PER_POD) for q, need in zip(queues, needs, strict=True)]
            watch = al.ReplicaTimeline(bl.client(cluster), ns)
            with al.KedaSimulator(kube, conn, ns, shadows, rnd) as sim:
                bl.wait_all("worker Deployments at 0", lambda: all(
                    watch.current(f"{q}-worker") == 0 for q in queues), timeout=120)
                for round_no in range(args.rounds):
                    bl.log(f"round {round_no + 1}/{args.rounds}: {len(sizes)} bursts within "
                           f"{args.spread:.0f} s")
                    offsets = sorted((rnd.uniform(0, args.spread), i) for i in range(len(sizes)))
                    start = time.monotonic()
                    landed: dict[int, float] = {}
                    for offset, i in offsets:
                        time.sleep(max(0.0, start + offset - time.monotonic()))
                        enqueue_many(f"{ns}.{queues[i]}", [JobSpec("glec.jobs.work", args=[n])
                                                           for n in range(sizes[i])], connection=conn)
                        landed[i] = time.monotonic()

                    def done(landed: dict[int, float] = landed) -> bool:
                        return all(watch.reached(f"{queues[i]}-worker", landed[i], needs[i])
                                   and watch.reached(f"keda-{queues[i]}", landed[i], needs[i])
                                   for i in landed)

                    try:
                        bl.wait_all("both contenders at the needed replicas", done, timeout=args.timeout)
                    except TimeoutError:
                        bl.log("timed out: counting the slower contender as not reaching it")
                    for i, t0 in landed.items():
                        mine = watch.reached(f"{queues[i]}-worker", t0, needs[i])
                        assert mine is not None, f"the operator never reached {needs[i]} for {sizes[i]} jobs"
                        ours[sizes[i]].append(mine)
                        keda[sizes[i]].append(watch.reached(f"keda-{queues[i]}", t0, needs[i]))
                    for q in queues:
                        empty_queue(conn, f"{ns}.{q}")
                    sim.reset()
                    bl.wait_all("back to 0", lambda: all(
                        watch.current(f"{q}-worker") == 0 and watch.current(f"keda-{q}") == 0
                        for q in queues), timeout=120)
        finally:
            op.stop()

    all_ours = [t for rows in ours.values() for t, _ in rows]
    all_keda = [r[0] if r else args.timeout for rows in keda.values() for r in rows]
    result["ours"] = bl.summary(all_ours) | {"max_steps": max(s for rows in ours.values() for _, s in rows)}
    result["keda_default_simulated"] = bl.summary(all_keda)
    result["per_size"] = {}
    print(f"burst → spec.replicas at the needed count ({args.rounds} rounds; jobs per pod {PER_POD})")
    print(f"{'jobs':>6}{'pods':>6} | {'ours p50':>9}{'p95':>8}{'max':>8}{'steps':>6} | "
          f"{'KEDA p50':>9}{'p95':>8}{'max':>8}{'steps':>6}")
    for size, need in zip(sizes, needs, strict=True):
        mine = [t for t, _ in ours[size]]
        theirs = [r[0] if r else args.timeout for r in keda[size]]
        m, k = bl.summary(mine), bl.summary(theirs)
        ms = max(s for _, s in ours[size])
        ks = max((r[1] for r in keda[size] if r), default=0)
        result["per_size"][str(size)] = {"pods": need, "ours": m | {"max_steps": ms},
                                         "keda": k | {"max_steps": ks}}
        print(f"{size:>6}{need:>6} | {m['p50']:>9.2f}{m['p95']:>8.2f}{m['max']:>8.2f}{ms:>6} | "
              f"{k['p50']:>9.2f}{k['p95']:>8.2f}{k['max']:>8.2f}{ks:>6}")
    o, kd = result["ours"], result["keda_default_simulated"]
    result["ratio_keda_over_ours_p50"] = round(kd["p50"] / o["p50"], 1)
    result["ratio_keda_over_ours_p95"] = round(kd["p95"] / o["p95"], 1)
    print(f"all bursts: ours p50 {o['p50']:.2f} s, p95 {o['p95']:.2f} s (goal <= 2 s), at most "
          f"{o['max_steps']} write(s); KEDA defaults p50 {kd['p50']:.1f} s, p95 {kd['p95']:.1f} s")
    print(f"KEDA / ours: {result['ratio_keda_over_ours_p50']}x at p50, "
          f"{result['ratio_keda_over_ours_p95']}x at p95")
    bl.emit(result)


if __name__ == "__main__":
    main()
