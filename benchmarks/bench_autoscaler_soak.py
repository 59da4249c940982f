"""No busy worker killed: a soak where demand rises and falls while long jobs run, then idle → 0 → back.

    .venv/bin/python benchmarks/bench_autoscaler_soak.py [--waves 6] [--gap 50] [--idle 30]
        [--no-zero] [--mode auto|container|process]

Four worker Deployments run side by side on the real cluster, their pods run by the pod runner
(``--mode``: in the benchmarks' worker image under runc, or as host processes), and get the
very same jobs at the same moments (per wave: some long jobs of 20–40 s and some short ones of
1–3 s, one job per pod, at most 6 pods):

* **ours**: a JobQueue's Deployment of ``jobqueue worker`` pods, scaled by the operator (demand =
  queued + running, never below busy pods, idle pods marked cheapest to delete before a
  scale-in; grace period = job timeout + 30 s);
* **KEDA 2.21, defaults** (the real one, hack/keda.py): a Deployment of plain ``rq worker``
  pods (Kubernetes' default 30 s grace, as KEDA users run them) and a ScaledObject with the
  ``redis`` trigger on its queue (``listLength: 1``, ``maxReplicaCount: 6``), everything else
  KEDA's and the HPA's defaults (30 s polling, 300 s cooldown to zero, 300 s scale-down
  stabilization);
* **KEDA 2.21, tuned**: the same with 5 s polling, one-step scale-up, and our delays
  (scale-down stabilization = ``scaleDownDelaySeconds``, cooldown = ``idleSecondsBeforeZero``);
* **the model**: :class:`autoscaler_benchlib.KedaSimulator` with the tuned settings over a
  fourth plain-RQ Deployment — to check the model against the real KEDA.

A job is **interrupted by scale-in** when its pod is told to stop (deleted) while the job runs.
With our drain contract it still finishes, on a pod that lingers in Terminating; a plain RQ
worker finishes it too if it ends within the 30 s grace, else it is SIGKILLed: **killed**
(RQ leaves it in the started registry, to be failed as abandoned). Also counted: jobs run twice,
jobs that never finished, how long jobs waited (enqueue → start), and the pod-seconds each
contender paid from the first wave until it was back at zero (a slow contender runs fewer pods
while its jobs wait, and keeps idle ones long after).

Then, unless ``--no-zero``: **idle → 0 → back** — the time from each contender's last job end
to zero replicas (KEDA's defaults: ~5 min), ``--idle`` seconds at zero, then one short job to
each at the same moment: time to a replica, to a ready pod and to the job's start.

Wall time ≈ waves × gap + ~1 min, + ~6.5 min for idle → 0 → back (KEDA's default cooldown).
Prints the figures and, last, one JSON line.
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
from rq import Queue
from rq.serializers import JSONSerializer

import autoscaler_benchlib as al
import keda
import operator_benchlib as bl
from jobqueue import JobSpec, enqueue_many

MAX_PODS = 6
SCALE_DOWN_DELAY = 10
IDLE_BEFORE_ZERO = 20
JOB_TIMEOUT = 120
#: Kubernetes' default terminationGracePeriodSeconds, which the plain-RQ pods keep
DEFAULT_GRACE = 30
#: contender → its Deployment (ours: the JobQueue's "<name>-worker"); the RQ queue is the
#: Deployment's name for the plain-RQ ones
DEPLOYMENTS = {
    "ours": "soak-worker",
    "keda_defaults": "kd-soak",
    "keda_tuned": "kt-soak",
    "keda_model": "km-soak",
}
LABELS = {
    "ours": "ours",
    "keda_defaults": "KEDA defaults",
    "keda_tuned": "KEDA tuned",
    "keda_model": "model (tuned)",
}


def spec() -> dict[str, Any]:
    return {
        "concurrency": MAX_PODS,
        "worker": {
            "image": al.BENCH_WORKERS.ref,
            "imports": ["autoscaler_jobs"],
            "mode": "thread",
            "concurrencyPerPod": 1,
        },
        "jobDefaults": {"attempts": 3, "timeoutSeconds": JOB_TIMEOUT},
        "scaling": {
            "minReplicas": 0,
            "maxReplicas": MAX_PODS,
            "scaleDownDelaySeconds": SCALE_DOWN_DELAY,
            "idleSecondsBeforeZero": IDLE_BEFORE_ZERO,
        },
    }


TUNED = keda.tuned(
    max_replicas=MAX_PODS, scale_down_delay=SCALE_DOWN_DELAY, idle_before_zero=IDLE_BEFORE_ZERO
)


def runs(conn: redis.Redis, tag: str) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    def parse(key: str) -> list[tuple[str, float]]:
        out = []
        for raw in conn.lrange(key, 0, -1):
            pod, when = raw.decode().split()
            out.append((pod, float(when)))
        return out

    return parse(f"soak:start:{tag}"), parse(f"soak:end:{tag}")


def settled(conn: redis.Redis, tag: str, deleted: dict[str, float]) -> bool:
    """The job ended, or the pod it started on was deleted longer than a grace period ago
    (then it is dead: SIGKILLed at the end of the grace period)."""
    starts, ends = runs(conn, tag)
    if ends:
        return True
    now = time.time()
    return bool(starts) and all(deleted.get(pod, math.inf) + DEFAULT_GRACE + 5 < now for pod, _ in starts)


def tally(
    conn: redis.Redis, tags: list[str], enqueued: dict[str, float], deleted: dict[str, float]
) -> dict[str, Any]:
    interrupted, killed, twice, unfinished, busy_pods = 0, 0, 0, 0, set()
    waits = []
    for tag in tags:
        starts, ends = runs(conn, tag)
        if starts:
            waits.append(min(t for _, t in starts) - enqueued[tag])
        if len(starts) > 1:
            twice += 1
        if not ends:
            unfinished += 1
        for pod, started in starts:
            ended = next((t for p, t in ends if p == pod and t >= started), math.inf)
            if started < deleted.get(pod, math.inf) < ended:
                interrupted += 1
                busy_pods.add(pod)
                killed += ended == math.inf
    wait = bl.summary(waits)
    return {
        "jobs": len(tags),
        "interrupted_by_scale_in": interrupted,
        "killed_by_scale_in": killed,
        "busy_pods_deleted": len(busy_pods),
        "ran_more_than_once": twice,
        "never_finished": unfinished,
        "wait_p50": round(wait["p50"], 1),
        "wait_p95": round(wait["p95"], 1),
    }


class Contenders:
    """Enqueues the same jobs to every contender: through our client to the JobQueue, through
    RQ (JSON serializer) to the plain-RQ queues."""

    def __init__(self, conn: redis.Redis, namespace: str) -> None:
        self.conn, self.namespace = conn, namespace
        self.tags: dict[str, list[str]] = {c: [] for c in DEPLOYMENTS}
        #: tag → unix time its enqueue began
        self.enqueued: dict[str, float] = {}

    def enqueue(self, label: str, durations: list[float]) -> None:
        for who, deployment in DEPLOYMENTS.items():
            tags = [f"{who}-{label}-{i}" for i in range(len(durations))]
            self.tags[who] += tags
            self.enqueued |= dict.fromkeys(tags, time.time())
            if who == "ours":
                enqueue_many(
                    f"{self.namespace}.soak",
                    [
                        JobSpec("autoscaler_jobs.work", args=[t, d])
                        for t, d in zip(tags, durations, strict=True)
                    ],
                    connection=self.conn,
                )
            else:
                Queue(deployment, connection=self.conn, serializer=JSONSerializer).enqueue_many(
                    [
                        Queue.prepare_data("autoscaler_jobs.work", (t, d), timeout=JOB_TIMEOUT)
                        for t, d in zip(tags, durations, strict=True)
                    ]
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waves", type=int, default=6)
    parser.add_argument("--gap", type=float, default=50.0, help="seconds between two waves")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds at zero before the job that wakes")
    parser.add_argument("--no-zero", action="store_true", help="skip idle → 0 → back (~6.5 min)")
    parser.add_argument(
        "--mode",
        choices=["auto", "container", "process"],
        default="auto",
        help="the pod runner's (auto: containers where runc works here)",
    )
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    result: dict[str, Any] = {
        "benchmark": "autoscaler_soak",
        "waves": args.waves,
        "gap_seconds": args.gap,
        "keda_version": keda.Binaries.locate().version,
        "pod_runner_mode": args.mode,
    }
    with (
        bl.environment() as (cluster, redis_server),
        keda.Keda(cluster),
        tempfile.TemporaryDirectory() as tmp,
    ):
        conn = redis.Redis.from_url(redis_server.url)
        ns = f"bench-soak-{uuid.uuid4().hex[:4]}"
        cluster.create_namespace(ns)
        op = bl.Operator(cluster, [ns], redis_server.url, Path(tmp) / "operator.log").start()
        kube = bl.client(cluster)
        jobs = Contenders(conn, ns)
        try:
            bl.kubectl_apply(cluster, [bl.jobqueue("soak", ns, **spec())])
            real = al.RealKeda(
                cluster,
                ns,
                redis_server,
                [
                    al.KedaTarget(
                        DEPLOYMENTS["keda_defaults"], DEPLOYMENTS["keda_defaults"], 1, MAX_PODS, keda.DEFAULTS
                    ),
                    al.KedaTarget(DEPLOYMENTS["keda_tuned"], DEPLOYMENTS["keda_tuned"], 1, MAX_PODS, TUNED),
                ],
            )
            real.apply()
            model_target = al.KedaTarget(
                DEPLOYMENTS["keda_model"], DEPLOYMENTS["keda_model"], 1, MAX_PODS, TUNED
            )
            bl.kubectl_apply(cluster, al.RealKeda(cluster, ns, redis_server, [model_target]).deployments())
            model = al.ScaledObject(
                model_target.deployment,
                model_target.list_key,
                max_replicas=MAX_PODS,
                list_length=1,
                stabilization=SCALE_DOWN_DELAY,
                cooldown=IDLE_BEFORE_ZERO,
                polling_interval=5,
                one_step_up=True,
            )
            bl.wait_all("settings", lambda: conn.exists(f"jobqueue:settings:{ns}.soak"), timeout=120)
            deletions = al.PodDeletions(bl.client(cluster), ns)
            watch = al.ReplicaTimeline(bl.client(cluster), ns)
            with (
                al.pod_runner(cluster, ns, Path(tmp) / "pods", mode=args.mode),
                al.KedaSimulator(kube, conn, ns, [model], rnd),
            ):
                soak_start = time.monotonic()
                for wave in range(args.waves):
                    longs, shorts = rnd.randint(1, MAX_PODS), rnd.randint(0, 8)
                    durations = [rnd.uniform(20, 40) for _ in range(longs)] + [
                        rnd.uniform(1, 3) for _ in range(shorts)
                    ]
                    bl.log(f"wave {wave + 1}/{args.waves}: {longs} long jobs, {shorts} short ones, to all")
                    jobs.enqueue(str(wave), durations)
                    time.sleep(args.gap)

                bl.wait_all(
                    "every job finished or killed",
                    lambda: all(
                        settled(conn, t, deletions.deleted) for tags in jobs.tags.values() for t in tags
                    ),
                    timeout=600,
                )
                for who, name in DEPLOYMENTS.items():
                    result[who] = tally(conn, jobs.tags[who], jobs.enqueued, dict(deletions.deleted))
                    result[who]["pods_deleted"] = sum(
                        1 for pod in deletions.deleted if pod.startswith(name + "-")
                    )
                if not args.no_zero:
                    bl.log("waiting for every contender to scale to zero (KEDA's default cooldown: 300 s)")
                    bl.wait_all(
                        "every contender at zero",
                        lambda: all(watch.current(d) == 0 for d in DEPLOYMENTS.values()),
                        timeout=600,
                    )
                # pod-seconds from the first wave until back at zero (until every job ended with --no-zero)
                end = time.monotonic()
                for who, name in DEPLOYMENTS.items():
                    result[who]["pod_seconds"] = round(watch.replica_seconds(name, soak_start, end))
                if not args.no_zero:
                    result["idle_zero_back"] = zero_and_back(conn, jobs, watch, args.idle)
        finally:
            op.stop()
    report(result)


def zero_and_back(
    conn: redis.Redis, jobs: Contenders, watch: al.ReplicaTimeline, idle: float
) -> dict[str, Any]:
    """Seconds from each contender's last job end to zero replicas (all are at zero: negative
    when a contender went to zero while a job still ran); then, after ``idle`` s at zero, one
    2 s job to each: seconds to a replica, a ready pod, the job's start."""
    clock = time.time() - time.monotonic()  # unix = monotonic + clock
    figures: dict[str, Any] = {}
    for who, name in DEPLOYMENTS.items():
        last_end = max(e for t in jobs.tags[who] for _, e in runs(conn, t)[1])
        zero_at = watch.history[name][-1][0] + clock
        figures[who] = {"to_zero_after_last_job": round(zero_at - last_end, 1)}
    bl.log(f"all at zero; idle {idle:.0f} s, then one job to each")
    time.sleep(idle)
    t0 = time.monotonic()
    jobs.enqueue("wake", [2.0])

    def started(who: str) -> float | None:
        starts = runs(conn, f"{who}-wake-0")[0]
        return starts[0][1] - clock - t0 if starts else None

    bl.wait_all(
        "the wake-up job started everywhere",
        lambda: all(started(w) is not None for w in DEPLOYMENTS),
        timeout=300,
    )
    for who, name in DEPLOYMENTS.items():
        replica = watch.reached(name, t0, 1)
        ready = watch.reached(name, t0, 1, ready=True)
        figures[who] |= {
            "back_replica": replica and round(replica[0], 2),
            "back_ready": ready and round(ready[0], 2),
            "back_job_started": round(started(who) or 0.0, 2),
        }
    return figures


def report(result: dict[str, Any]) -> None:
    print(
        f"soak: {result['waves']} waves of long (20-40 s) and short (1-3 s) jobs, "
        f"{result['gap_seconds']:.0f} s apart, to all contenders at once (KEDA {result['keda_version']})"
    )
    print(f"{'':<40}" + "".join(f"{LABELS[c]:>15}" for c in DEPLOYMENTS))
    for label, key in (
        ("jobs", "jobs"),
        ("pods deleted by scale-in", "pods_deleted"),
        ("busy pods deleted", "busy_pods_deleted"),
        ("jobs interrupted by scale-in (goal 0)", "interrupted_by_scale_in"),
        ("  of which killed (never finished)", "killed_by_scale_in"),
        ("jobs run more than once", "ran_more_than_once"),
        ("jobs never finished", "never_finished"),
        ("job wait (enqueue → start) p50, s", "wait_p50"),
        ("job wait (enqueue → start) p95, s", "wait_p95"),
        ("pod-seconds, first wave → back at 0", "pod_seconds"),
    ):
        print(f"{label:<40}" + "".join(f"{result[c][key]:>15}" for c in DEPLOYMENTS))
    zb = result.get("idle_zero_back")
    if zb:
        print("idle → 0 → back (seconds)")
        for label, key in (
            ("last job end → 0 replicas", "to_zero_after_last_job"),
            ("job after idle → a replica", "back_replica"),
            ("job after idle → a ready pod", "back_ready"),
            ("job after idle → the job started", "back_job_started"),
        ):
            print(f"{label:<40}" + "".join(f"{zb[c][key]!s:>15}" for c in DEPLOYMENTS))
    result["interrupted_ours_vs_keda_defaults_vs_tuned"] = " vs ".join(
        str(result[c]["interrupted_by_scale_in"]) for c in ("ours", "keda_defaults", "keda_tuned")
    )
    result["model_minus_real_tuned_interrupted"] = (
        result["keda_model"]["interrupted_by_scale_in"] - result["keda_tuned"]["interrupted_by_scale_in"]
    )
    bl.emit(result)


if __name__ == "__main__":
    main()
