"""A dozen dead Redis URLs must not slow the scaling of a healthy queue (issue 20).

    .venv/bin/python benchmarks/bench_autoscaler_dead_urls.py [--rounds 12] [--dead 12]

One operator, one healthy queue on the default Redis, and — in every other block of rounds —
``--dead`` more JobQueues in the same namespace whose ``spec.redis`` names a server that
accepts connections and never answers (a listener of this process that never reads: the
worst case, each call waits out its timeouts rather than failing at once). Each round
enqueues a burst into the healthy queue and measures, from a watch of its Deployment, how
long until ``spec.replicas`` reaches the needed count; then the queue is emptied and scales
back to 0. Blocks alternate (clean, dead, clean, dead …) so both conditions see the same
machine noise, in the same run.

Before the fix every Redis shared 4 threads with 2 s timeouts: 8 dead URLs delayed an
unrelated queue's call by 3.9 s. Prints p50/p95/max per condition and the ratio
with/without at p95 (1.0 = no cost), then one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import math
import socket
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
BURST = 20
BLOCK = 3  # rounds per block


def dead_listeners(count: int) -> list[socket.socket]:
    """Servers that accept TCP connections (the kernel does, from the backlog) and never answer."""
    out = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1024)
        out.append(s)
    return out


def dead_objects(namespace: str, listeners: list[socket.socket]) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for i, s in enumerate(listeners):
        url = f"redis://:pw@127.0.0.1:{s.getsockname()[1]}/0"
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"dead-{i}", "namespace": namespace},
                "data": {"url": base64.b64encode(url.encode()).decode()},
            }
        )
        objects.append(
            bl.jobqueue(
                f"dead-{i}",
                namespace,
                worker={"image": "registry.invalid/x:1", "imports": ["glec.jobs"]},
                redis={"urlSecretRef": {"name": f"dead-{i}", "key": "url"}},
            )
        )
    return objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="rounds per condition")
    parser.add_argument("--dead", type=int, default=12, help="JobQueues on dead Redis URLs")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    need = math.ceil(BURST / PER_POD)
    times: dict[str, list[float]] = {"clean": [], "dead": []}
    listeners = dead_listeners(args.dead)
    with bl.environment() as (cluster, redis_server), tempfile.TemporaryDirectory() as tmp:
        conn = redis.Redis.from_url(redis_server.url)
        ns = f"bench-dead-{uuid.uuid4().hex[:4]}"
        cluster.kubectl("create", "namespace", ns)
        op = bl.Operator(cluster, [ns], redis_server.url, Path(tmp) / "operator.log").start()
        try:
            bl.kubectl_apply(
                cluster,
                [
                    bl.jobqueue(
                        "healthy",
                        ns,
                        concurrency=BURST,
                        worker={
                            "image": "registry.invalid/glec-jobs:1",
                            "imports": ["glec.jobs"],
                            "concurrencyPerPod": PER_POD,
                        },
                        scaling={"minReplicas": 0, "scaleDownDelaySeconds": 1, "idleSecondsBeforeZero": 2},
                    )
                ],
            )
            bl.wait_all(
                "settings published",
                lambda: bool(conn.exists(f"jobqueue:settings:{ns}.healthy")),
                timeout=120,
            )
            watch = al.ReplicaTimeline(bl.client(cluster), ns)
            bl.wait_all("the healthy queue at 0", lambda: watch.current("healthy-worker") == 0, timeout=120)
            dead = dead_objects(ns, listeners)
            condition = "clean"
            while min(len(t) for t in times.values()) < args.rounds:
                condition = "dead" if condition == "clean" else "clean"
                if condition == "dead":
                    bl.kubectl_apply(cluster, dead)
                    time.sleep(8)  # their first calls time out, the breaker and probation settle in
                else:
                    cluster.kubectl(
                        "delete",
                        "jobqueues",
                        *[f"dead-{i}" for i in range(args.dead)],
                        "-n",
                        ns,
                        "--ignore-not-found",
                        "--wait=true",
                    )
                    time.sleep(3)
                for _ in range(BLOCK):
                    if len(times[condition]) >= args.rounds:
                        break
                    landed = time.monotonic()
                    enqueue_many(
                        f"{ns}.healthy",
                        [JobSpec("glec.jobs.work", args=[n]) for n in range(BURST)],
                        connection=conn,
                    )
                    bl.wait_all(
                        "the needed replicas",
                        lambda t0=landed: watch.reached("healthy-worker", t0, need) is not None,
                        timeout=args.timeout,
                    )
                    reached = watch.reached("healthy-worker", landed, need)
                    assert reached is not None
                    times[condition].append(reached[0])
                    bl.log(f"{condition}: {reached[0]:.2f} s")
                    conn.delete(f"rq:queue:{ns}.healthy")
                    bl.wait_all(
                        "back to 0", lambda: watch.current("healthy-worker") == 0, timeout=args.timeout
                    )
        finally:
            op.stop()
            for s in listeners:
                s.close()

    clean, dead_ = bl.summary(times["clean"]), bl.summary(times["dead"])
    # the noise: the same condition, the earlier against the later half of its rounds
    half = len(times["clean"]) // 2
    first, second = bl.summary(times["clean"][:half]), bl.summary(times["clean"][half:])
    noise = round(max(first["p95"], second["p95"]) / min(first["p95"], second["p95"]), 2)
    result: dict[str, Any] = {
        "benchmark": "autoscaler_dead_urls",
        "dead_urls": args.dead,
        "rounds": args.rounds,
        "burst": BURST,
        "pods": need,
        "without_dead_urls": clean,
        "with_dead_urls": dead_,
        "ratio_p95": round(dead_["p95"] / clean["p95"], 2),
        "ratio_p50": round(dead_["p50"] / clean["p50"], 2),
        "noise_ratio_p95_clean_halves": noise,
    }
    print(f"burst of {BURST} jobs -> spec.replicas {need}, {args.rounds} rounds each, blocks interleaved")
    print(f"{'':>22}{'p50':>8}{'p95':>8}{'max':>8}")
    for label, s in (("without dead URLs", clean), (f"with {args.dead} dead URLs", dead_)):
        print(f"{label:>22}{s['p50']:>8.2f}{s['p95']:>8.2f}{s['max']:>8.2f}")
    print(
        f"with / without: {result['ratio_p50']}x at p50, {result['ratio_p95']}x at p95 "
        f"(noise: the clean rounds' two halves differ {noise}x at p95)"
    )
    bl.emit(result)


if __name__ == "__main__":
    main()
