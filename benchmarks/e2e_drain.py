"""Drain time end to end: 10,000 jobs of 50 ms into an empty queue of concurrency 20 at zero replicas.

    .venv/bin/python benchmarks/e2e_drain.py [--jobs 10000] [--no-baseline] [--no-keda]
        [--mode auto|container|process]

* **ours**: the chart installed (operator pod under the chart's RBAC), a JobQueue with
  ``concurrency: 20``, 5 job slots per pod, ``minReplicas: 0``; the jobs land at once and the
  autoscaler takes the queue from zero to 4 pods, whose processes the pod runner starts. The
  drain is from the first enqueue to the last job's end; the ideal is N·d/C = 25 s (every slot
  busy from the first instant). Goal: ratio ≤ 1.25.
* **KEDA 2.21, same run, same cluster and Redis** (the real one, hack/keda.py; ``--no-keda``
  leaves it out): a Deployment of plain ``rq worker`` pods (SimpleWorker, JSON serializer, one
  job at a time, run by the pod runner in a namespace of their own) at zero replicas, scaled by
  a ScaledObject with the ``redis`` trigger (``listLength: 1``, ``maxReplicaCount: 20``) —
  once with KEDA's and the HPA's defaults (30 s polling, then ×2 or +4 pods per 15 s), once
  tuned (5 s polling, one step to 20);
* **baseline, same run**: plain RQ with no autoscaler and no Kubernetes — 20 ``rq worker
  --burst`` processes (SimpleWorker, JSON serializer) started by hand the moment the same jobs
  are enqueued, drain measured the same way (first enqueue → last job's ``ended_at``).

Prints both, where our time beyond the ideal went (scale-up reaction, worker start, job
overrun, between jobs; see ``tests/integration/e2e/e2edrain.py``) and, last, one JSON line.
The scenario is the one ``tests/integration/e2e/test_e2e_drain.py`` runs and audits.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from rq import Queue
from rq.serializers import JSONSerializer

import autoscaler_benchlib as al
import devenv
import e2e_benchlib as el
import keda
import operator_benchlib as bl
import podrunner
import worker_benchlib as wl
from jobqueue import payload

JOB_SECONDS = 0.05
CONCURRENCY = 20
PER_POD = 5


def enqueue_rq(conn: redis.Redis, name: str, jobs: int) -> list[str]:
    """``jobs`` × ``io_sleep(0.05)`` with RQ's ``enqueue_many`` (one pipeline per 1,000)."""
    queue = Queue(name, connection=conn, serializer=JSONSerializer)
    ids: list[str] = []
    for start in range(0, jobs, 1000):
        batch = [
            Queue.prepare_data("worker_rqjobs.io_sleep", (JOB_SECONDS,))
            for _ in range(min(1000, jobs - start))
        ]
        ids += [j.id for j in queue.enqueue_many(batch)]
    return ids


def rq_drain(conn: redis.Redis, ids: list[str], t0: float) -> dict[str, Any]:
    """Seconds from ``t0`` (unix) to the last job's ``ended_at``, its ratio to the ideal, jobs finished."""
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(f"rq:job:{job_id}", "status", "ended_at")
    rows = pipe.execute()
    finished = sum(1 for status, _ in rows if status == b"finished")
    end = max(payload.utcparse(e.decode()) or 0.0 for _, e in rows if e)
    seconds = end - t0
    ideal = len(ids) * JOB_SECONDS / CONCURRENCY
    return {"seconds": round(seconds, 3), "ratio": round(seconds / ideal, 3), "finished": finished}


def plain_rq(url: str, conn: redis.Redis, jobs: int) -> dict[str, Any]:
    """20 RQ SimpleWorkers started with the burst; seconds from the first enqueue to the last end."""
    name = "plain-rq-drain"
    cmd = [
        sys.executable,
        "-m",
        "rq.cli",
        "worker",
        "--burst",
        "-w",
        "rq.worker.SimpleWorker",
        "-S",
        "rq.serializers.JSONSerializer",
        "--url",
        url,
        "--logging_level",
        "WARNING",
        name,
    ]
    t0 = time.time()
    ids = enqueue_rq(conn, name, jobs)
    workers = [subprocess.Popen(cmd, env=wl.env(url), stdout=subprocess.DEVNULL) for _ in range(CONCURRENCY)]
    for proc in workers:
        proc.wait(timeout=600)
    return rq_drain(conn, ids, t0)


def keda_drain(
    cluster: devenv.Cluster,
    redis_server: devenv.RedisServer,
    tuning: keda.Tuning,
    jobs: int,
    mode: podrunner.Mode,
) -> dict[str, Any]:
    """The same jobs into a plain-RQ Deployment at 0 that the real KEDA scales (``tuning``), in
    a restricted namespace of its own whose pods a pod runner runs; drain measured as above."""
    name = f"keda-{tuning.label}"
    conn = redis.Redis.from_url(redis_server.url)
    conn.flushdb()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        ns = f"bench-drain-{name}-{uuid.uuid4().hex[:4]}"
        cluster.create_namespace(ns)
        cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
        stack.callback(cluster.kubectl, "delete", "namespace", ns, "--wait=false", check=False)
        stack.enter_context(al.pod_runner(cluster, ns, tmp / "pods", mode=mode, shutdown_grace=10.0))
        target = al.KedaTarget(name, name, 1, CONCURRENCY, tuning)
        al.RealKeda(cluster, ns, redis_server, [target]).apply()
        watch = al.ReplicaTimeline(bl.client(cluster), ns)
        started = time.monotonic()
        t0 = time.time()
        ids = enqueue_rq(conn, name, jobs)
        bl.wait_all(
            f"{jobs:,} jobs finished under KEDA ({tuning.label})",
            lambda: Queue(name, connection=conn).finished_job_registry.count >= jobs,
            timeout=900,
        )
        figures = rq_drain(conn, ids, t0)
        first, full = watch.reached(name, started, 1), watch.reached(name, started, CONCURRENCY)
        figures |= {
            "first_replica_seconds": first and round(first[0], 2),
            "all_replicas_seconds": full and round(full[0], 2),
            "replicas": [(round(t - started, 2), r) for t, r in watch.history.get(name, []) if t >= started],
        }
        return figures


def keda_runs(
    environment: tuple[devenv.Cluster, devenv.RedisServer],
    jobs: int,
    ours: float,
    result: dict[str, Any],
    mode: podrunner.Mode,
) -> None:
    """KEDA's defaults, then tuned, each draining the same jobs; figures into ``result``."""
    cluster, redis_server = environment
    with keda.Keda(cluster) as running:
        version = result["keda_version"] = running.binaries.version
        for tuning in (
            keda.DEFAULTS,
            keda.tuned(max_replicas=CONCURRENCY, scale_down_delay=5, idle_before_zero=5),
        ):
            bl.log(f"draining {jobs:,} jobs through plain RQ pods scaled by KEDA ({tuning.label})")
            k = result[f"keda_{tuning.label}"] = keda_drain(cluster, redis_server, tuning, jobs, mode)
            ratio = result[f"ratio_keda_{tuning.label}_over_ours"] = round(k["seconds"] / ours, 2)
            print(
                f"KEDA {version} {tuning.label}: drain {k['seconds']:.2f} s, ratio to ideal "
                f"{k['ratio']:.3f}, finished {k['finished']:,}; first replica "
                f"{k['first_replica_seconds']} s, {CONCURRENCY} replicas {k['all_replicas_seconds']} s "
                f"after the first enqueue; KEDA / ours {ratio}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain-RQ run")
    parser.add_argument("--no-keda", action="store_true", help="skip the two runs under the real KEDA")
    parser.add_argument(
        "--mode",
        choices=["auto", "container", "process"],
        default="auto",
        help="the pod runner's (auto: containers where runc works here)",
    )
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "e2e_drain", "pod_runner_mode": args.mode}
    with bl.environment() as environment:
        with el.installed("drain", environment=environment, mode=args.mode) as setup:
            bl.log(f"draining {args.jobs:,} jobs through the product")
            drain = el.e2edrain.run(
                setup.cluster,
                setup.namespace,
                setup.conn,
                jobs=args.jobs,
                job_seconds=JOB_SECONDS,
                concurrency=CONCURRENCY,
                per_pod=PER_POD,
                idle_seconds=5,
            )
        print(drain.report())
        result["ours"] = drain.figures()
        if not args.no_keda:
            keda_runs(environment, args.jobs, drain.seconds, result, args.mode)
        if not args.no_baseline:
            bl.log(f"draining {args.jobs:,} jobs with 20 plain RQ workers")
            conn = redis.Redis.from_url(environment[1].url)
            conn.flushdb()
            base = plain_rq(environment[1].url, conn, args.jobs)
            result["plain_rq_20_workers_started_by_hand"] = base
            result["ratio_ours_over_plain_rq"] = round(drain.seconds / base["seconds"], 3)
            print(
                f"plain RQ, 20 SimpleWorkers started with the burst (no autoscaler): drain "
                f"{base['seconds']:.2f} s, ratio to ideal {base['ratio']:.3f}, "
                f"finished {base['finished']:,}"
            )
            print(
                f"ours / plain RQ: {result['ratio_ours_over_plain_rq']} (ours starts from zero "
                f"replicas and scales itself)"
            )
            for label in ("defaults", "tuned"):
                if f"keda_{label}" in result:  # the same workers, scaled by KEDA instead of started by hand
                    ratio = result[f"ratio_keda_{label}_over_plain_rq"] = round(
                        result[f"keda_{label}"]["seconds"] / base["seconds"], 3
                    )
                    print(f"KEDA {label} / plain RQ started by hand (the same workers): {ratio}")
    ok = drain.audit.exactly_once() and drain.ratio <= 1.25
    el.conclude(result, f"ratio to the ideal <= 1.25 (here {drain.ratio:.3f}), every job once", ok)


if __name__ == "__main__":
    main()
