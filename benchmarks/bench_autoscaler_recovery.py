"""Lost jobs: a busy worker pod is force-deleted → how soon is its job back in the queue?

    .venv/bin/python benchmarks/bench_autoscaler_recovery.py [--trials 12]

A JobQueue with 2 worker pods (real ``jobqueue worker`` processes via the pod runner). Each
trial enqueues one 20 s job, waits until a pod runs it, then deletes that pod with
``--grace-period=0 --force`` (the pod runner SIGKILLs the process at once, as a node loss or
an OOM kill would) and measures the time from the deletion to the job being put back in
the queue (its ``jq_ready`` time, written by whoever re-queued it). Then the job runs to its
end on the other pod, and the next trial starts once two workers are up again.

* **ours**: the operator watching worker pods; it re-queues the jobs of a vanished pod as
  soon as Redis shows the pod's workers have stopped heart-beating (goal: within 30 s, p99);
* **baseline, same run**: the same operator with the autoscaler (and so the recovery) off,
  ``JOBQUEUE_POLL_INTERVAL=0``: the job then comes back only when a surviving worker reaps
  its expired lease (15 s lease, reaped every 5 s). Plain RQ would leave it in its
  StartedJobRegistry until the dead worker's record expires (90 s+) and a maintenance pass
  runs (``Worker.clean_registries``); BullMQ's stalled-job check is 15–60 s.

Prints both distributions and the ratio, and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

import operator_benchlib as bl
import podrunner
from jobqueue import JobSpec, enqueue_many

ROOT = Path(__file__).resolve().parent.parent
JOB_SECONDS = 20.0


def spec() -> dict[str, Any]:
    return {
        "concurrency": 2,
        "worker": {
            "image": "registry.invalid/recovery:1",
            "imports": ["autoscaler_jobs"],
            "mode": "thread",
            "concurrencyPerPod": 1,
        },
        "jobDefaults": {"attempts": 5, "timeoutSeconds": 120},
        "scaling": {"minReplicas": 2, "maxReplicas": 2},
    }


def live_workers(conn: redis.Redis, queue: str) -> int:
    names = conn.smembers(f"rq:workers:{queue}")
    states = [conn.hget(n.decode(), "state") for n in names]
    return sum(1 for s in states if s in (b"idle", b"busy"))


def trial(cluster: Any, conn: redis.Redis, ns: str, queue: str, tag: str) -> float:
    bl.wait_all("two idle workers", lambda: live_workers(conn, queue) >= 2, timeout=180)
    job = JobSpec("autoscaler_jobs.work", args=[tag, JOB_SECONDS])
    (result,) = enqueue_many(queue, [job], connection=conn)
    job_key = f"rq:job:{result.id}"
    bl.wait_all("the job running", lambda: conn.llen(f"soak:start:{tag}") >= 1, timeout=60)
    pod = conn.lindex(f"soak:start:{tag}", 0).decode().split()[0]  # type: ignore[union-attr]
    time.sleep(1.0)
    killed = time.time()
    cluster.kubectl("delete", "pod", pod, "-n", ns, "--grace-period=0", "--force")

    def requeued() -> float | None:
        ready = conn.hget(job_key, "jq_ready")
        value = float(ready) if ready else 0.0
        return value if value > killed else None

    back = bl.devenv.wait_until("the job re-queued", requeued, timeout=180, interval=0.05)
    bl.wait_all(
        "the job finished on the other pod",
        lambda: conn.llen(f"soak:end:{tag}") >= 1,
        timeout=JOB_SECONDS + 120,
    )
    return float(back) - killed


def run(
    cluster: Any, redis_url: str, conn: redis.Redis, tmp: Path, *, label: str, trials: int, **env: str
) -> list[float]:
    ns = f"bench-rec-{label}-{uuid.uuid4().hex[:4]}"
    cluster.kubectl("create", "namespace", ns)
    op = bl.Operator(cluster, [ns], redis_url, tmp / f"operator-{label}.log", extra_env=env).start()
    config = podrunner.Config(
        kubeconfig=cluster.kubeconfig,
        namespace=ns,
        pythonpath=(ROOT / "benchmarks",),
        state_dir=tmp / f"pods-{label}",
        shutdown_grace=5.0,
    )
    out = []
    try:
        bl.kubectl_apply(cluster, [bl.jobqueue("lost", ns, **spec())])
        with podrunner.PodRunner(config):
            for n in range(trials):
                seconds = trial(cluster, conn, ns, f"{ns}.lost", f"{label}-{n}")
                bl.log(
                    f"{label} trial {n + 1}/{trials}: job back in the queue {seconds:.1f} s after the kill"
                )
                out.append(seconds)
    finally:
        op.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "autoscaler_recovery", "trials": args.trials}
    with bl.environment() as (cluster, redis_server), tempfile.TemporaryDirectory() as tmp:
        conn = redis.Redis.from_url(redis_server.url)
        ours = run(cluster, redis_server.url, conn, Path(tmp), label="ours", trials=args.trials)
        lease = run(
            cluster,
            redis_server.url,
            conn,
            Path(tmp),
            label="lease",
            trials=args.trials,
            JOBQUEUE_POLL_INTERVAL="0",
        )
    result["ours"] = bl.summary(ours) | {"p99": round(bl.pct(ours, 99), 3)}
    result["workers_lease_reaping_only"] = bl.summary(lease) | {"p99": round(bl.pct(lease, 99), 3)}
    o, b = result["ours"], result["workers_lease_reaping_only"]
    result["ratio_baseline_over_ours_p50"] = round(b["p50"] / o["p50"], 2)
    print(f"force-deleted busy pod → its job back in the queue ({args.trials} trials each)")
    print(f"{'':<38}{'p50':>8}{'p99':>8}{'max':>8}")
    print(f"{'ours (operator sees the pod vanish)':<38}{o['p50']:>8.1f}{o['p99']:>8.1f}{o['max']:>8.1f}")
    print(f"{'baseline: workers reap leases only':<38}{b['p50']:>8.1f}{b['p99']:>8.1f}{b['max']:>8.1f}")
    print(f"goal: p99 <= 30 s; baseline / ours at p50: {result['ratio_baseline_over_ours_p50']}x")
    bl.emit(result)


if __name__ == "__main__":
    main()
