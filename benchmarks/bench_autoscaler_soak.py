"""No busy worker killed: a soak where demand rises and falls while long jobs run.

    .venv/bin/python benchmarks/bench_autoscaler_soak.py [--waves 6] [--gap 50]

Two worker Deployments built from the same JobQueue spec run side by side on the real
cluster, their pods run as real ``jobqueue worker`` processes by the pod runner, and get the
very same jobs at the same moments (per wave: some long jobs of 20–40 s and some short ones
of 1–3 s, one job per pod, at most 6 pods):

* **ours**: the JobQueue's Deployment, scaled by the operator (demand = queued + running,
  never below busy pods, idle pods marked cheapest to delete before a scale-in);
* **the HPA's way (baseline)**: the same Deployment under another name, scaled by a
  simulation of KEDA's ``redis`` trigger + HPA with the same delays as ours (stabilisation
  window = ``scaleDownDelaySeconds``, cooldown to zero = ``idleSecondsBeforeZero``; 30 s
  activation polling, 15 s HPA sync, default scale-up policies): replicas follow
  ``ceil(LLEN / 1)`` of the queue — running jobs are invisible to it — and the ReplicaSet
  picks the pods to delete without any pod-deletion-cost.

A job is **interrupted by scale-in** when its pod is told to stop (deleted) while the job
runs: with the project's drain contract (grace period = job timeout + 30 s) it still
finishes, holding a Terminating pod; with Kubernetes' default 30 s grace a longer job would
be killed. The benchmark counts those, jobs run twice and jobs that never finished, for both
contenders, and prints them; last, one JSON line.
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
import podrunner
from jobqueue import JobSpec, enqueue_many
from jobqueue import settings as qsettings
from jobqueue_operator import models
from jobqueue_operator.builders import deployment, published

ROOT = Path(__file__).resolve().parent.parent
MAX_PODS = 6
SCALE_DOWN_DELAY = 10
IDLE_BEFORE_ZERO = 20
JOB_TIMEOUT = 120


def spec() -> dict[str, Any]:
    return {"concurrency": MAX_PODS,
            "worker": {"image": "registry.invalid/soak:1", "imports": ["autoscaler_jobs"], "mode": "thread",
                       "concurrencyPerPod": 1},
            "jobDefaults": {"attempts": 3, "timeoutSeconds": JOB_TIMEOUT},
            "scaling": {"minReplicas": 0, "maxReplicas": MAX_PODS, "scaleDownDelaySeconds": SCALE_DOWN_DELAY,
                        "idleSecondsBeforeZero": IDLE_BEFORE_ZERO}}


def baseline_deployment(namespace: str, name: str, redis_url: str) -> tuple[dict[str, Any], Any]:
    """The worker Deployment the operator would build for JobQueue ``name``, not managed by it:
    no owner reference, another ``managed-by`` (the operator ignores it), settings published
    without an owner (the settings sweep leaves them alone)."""
    model = models.JobQueueSpec.model_validate(spec())
    queue = model.effective_queue_name(namespace, name)
    body = deployment.build(namespace=namespace, name=name, uid="none", spec=model, queue_name=queue,
                            defaults=deployment.WorkerDefaults(default_redis=True))
    del body["metadata"]["ownerReferences"]
    # the operator's pods read the URL from a Secret it keeps for its JobQueues; this
    # baseline belongs to no JobQueue, so its pods get the (local, password-less) URL itself
    (container,) = body["spec"]["template"]["spec"]["containers"]
    container["env"] = [{"name": e["name"], "value": redis_url} if e["name"] == "JOBQUEUE_REDIS_URL" else e
                        for e in container["env"]]
    for labels in (body["metadata"]["labels"], body["spec"]["template"]["metadata"]["labels"]):
        labels["app.kubernetes.io/managed-by"] = "bench-hpa-baseline"
    body = deployment.with_replicas(body, 0)
    settings = published.queue_settings(namespace=namespace, name=name, generation=1, spec=model)
    return body, settings.model_copy(update={"namespace": None, "jobqueue": None})


def runs(conn: redis.Redis, tag: str) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    def parse(key: str) -> list[tuple[str, float]]:
        out = []
        for raw in conn.lrange(key, 0, -1):
            pod, when = raw.decode().split()
            out.append((pod, float(when)))
        return out

    return parse(f"soak:start:{tag}"), parse(f"soak:end:{tag}")


def tally(conn: redis.Redis, tags: list[str], deleted: dict[str, float]) -> dict[str, Any]:
    interrupted, twice, unfinished, busy_pods = 0, 0, 0, set()
    for tag in tags:
        starts, ends = runs(conn, tag)
        if len(starts) > 1:
            twice += 1
        if not ends:
            unfinished += 1
        for pod, started in starts:
            ended = next((t for p, t in ends if p == pod and t >= started), math.inf)
            if started < deleted.get(pod, math.inf) < ended:
                interrupted += 1
                busy_pods.add(pod)
    return {"jobs": len(tags), "interrupted_by_scale_in": interrupted, "busy_pods_deleted": len(busy_pods),
            "ran_more_than_once": twice, "never_finished": unfinished}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waves", type=int, default=6)
    parser.add_argument("--gap", type=float, default=50.0, help="seconds between two waves")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    result: dict[str, Any] = {"benchmark": "autoscaler_soak", "waves": args.waves, "gap_seconds": args.gap}
    with bl.environment() as (cluster, redis_server), tempfile.TemporaryDirectory() as tmp:
        conn = redis.Redis.from_url(redis_server.url)
        ns = f"bench-soak-{uuid.uuid4().hex[:4]}"
        cluster.kubectl("create", "namespace", ns)
        op = bl.Operator(cluster, [ns], redis_server.url, Path(tmp) / "operator.log").start()
        config = podrunner.Config(kubeconfig=cluster.kubeconfig, namespace=ns,
                                  pythonpath=(ROOT / "benchmarks",), state_dir=Path(tmp) / "pods",
                                  shutdown_grace=5.0)
        kube = bl.client(cluster)
        contenders = {"ours": ("soak", "soak-worker"), "hpa": ("soak-hpa", "soak-hpa-worker")}
        tags: dict[str, list[str]] = {"ours": [], "hpa": []}
        try:
            bl.kubectl_apply(cluster, [bl.jobqueue("soak", ns, **spec())])
            body, settings = baseline_deployment(ns, "soak-hpa", redis_server.url)
            qsettings.publish(conn, settings)
            bl.kubectl_apply(cluster, [body])
            bl.wait_all("settings", lambda: conn.exists(f"jobqueue:settings:{ns}.soak"), timeout=120)
            deletions = al.PodDeletions(bl.client(cluster), ns)
            baseline = al.ScaledObject("soak-hpa-worker", f"rq:queue:{ns}.soak-hpa", max_replicas=MAX_PODS,
                                       list_length=1, stabilization=SCALE_DOWN_DELAY,
                                       cooldown=IDLE_BEFORE_ZERO)
            with podrunner.PodRunner(config), al.KedaSimulator(kube, conn, ns, [baseline], rnd):
                for wave in range(args.waves):
                    longs, shorts = rnd.randint(1, MAX_PODS), rnd.randint(0, 8)
                    durations = [rnd.uniform(20, 40) for _ in range(longs)] + [rnd.uniform(1, 3)
                                                                              for _ in range(shorts)]
                    bl.log(f"wave {wave + 1}/{args.waves}: {longs} long jobs, {shorts} short ones, to both")
                    for who, (name, _) in contenders.items():
                        wave_tags = [f"{who}-{wave}-{i}" for i in range(len(durations))]
                        tags[who] += wave_tags
                        enqueue_many(f"{ns}.{name}", [JobSpec("autoscaler_jobs.work", args=[t, d])
                                                      for t, d in zip(wave_tags, durations, strict=True)],
                                     connection=conn)
                    time.sleep(args.gap)

                def drained() -> bool:
                    return all(runs(conn, t)[1] for who in tags for t in tags[who])

                bl.wait_all("every job finished", drained, timeout=600)
                time.sleep(IDLE_BEFORE_ZERO + al.KEDA_POLLING_INTERVAL + 5)  # the last scale-ins
                deleted = dict(deletions.deleted)
            for who in contenders:
                result[who] = tally(conn, tags[who], deleted)
                prefix = contenders[who][1] + "-"
                result[who]["pods_deleted"] = sum(1 for pod in deleted if pod.startswith(prefix))
        finally:
            op.stop()

    o, h = result["ours"], result["hpa"]
    print(f"soak: {args.waves} waves of long (20-40 s) and short (1-3 s) jobs, {args.gap:.0f} s apart, "
          f"to both contenders at once")
    print(f"{'':<44}{'ours':>8}{'HPA way':>10}")
    for label, key in (("jobs", "jobs"), ("pods deleted by scale-in", "pods_deleted"),
                       ("busy pods deleted", "busy_pods_deleted"),
                       ("jobs interrupted by scale-in (goal 0)", "interrupted_by_scale_in"),
                       ("jobs run more than once", "ran_more_than_once"),
                       ("jobs never finished", "never_finished")):
        print(f"{label:<44}{o[key]:>8}{h[key]:>10}")
    result["interrupted_ours_vs_hpa"] = f"{o['interrupted_by_scale_in']} vs {h['interrupted_by_scale_in']}"
    bl.emit(result)


if __name__ == "__main__":
    main()
