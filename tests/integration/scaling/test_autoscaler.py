"""The autoscaler end to end: backlog in Redis → replicas → real workers → back down.

Short ``scaleDownDelaySeconds``/``idleSecondsBeforeZero`` keep each test to seconds. Nothing
here asserts a latency (two shared cores): the waits are generous timeouts; the figures are
measured by ``benchmarks/bench_autoscaler_*.py``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from opkit import (
    RunningOperator,
    StartOperator,
    apply,
    condition,
    events,
    get,
    jobqueue,
    kubectl_json,
    wait_for,
)
from scalekit import JOBS, ReplicaWatch, done, pods, replicas, runs, worker_spec

import devenv
import jobqueue as jq
import podrunner
from jobqueue import admin

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis]


def queue(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return jobqueue(name, namespace, **spec)


def enqueue(conn: redis.Redis, queue_name: str, tag: str, seconds: float, **options: Any) -> str:
    result = jq.enqueue(queue_name, f"{JOBS}.nap", tag, seconds, connection=conn, **options)
    return str(result.id)


def scale_events(cluster: devenv.Cluster, namespace: str, name: str) -> list[str]:
    """Messages of the JobQueue's scale Events, oldest first."""
    selector = f"involvedObject.kind=JobQueue,involvedObject.name={name}"
    items = kubectl_json(cluster, "get", "events", "-n", namespace, "--field-selector", selector)["items"]
    items.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [e["message"] for e in items if e["reason"] in ("ScaledUp", "ScaledDown")]


@pytest.mark.slow
def test_a_burst_scales_up_in_one_step_workers_drain_it_and_it_scales_back_to_zero(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    redis_conn: redis.Redis,
    operator: RunningOperator,
    pod_runner: podrunner.PodRunner,
) -> None:
    apply(
        cluster,
        queue(
            "burst",
            namespace,
            concurrency=8,
            worker=worker_spec(concurrency_per_pod=2),
            scaling={
                "minReplicas": 0,
                "maxReplicas": 4,
                "scaleDownDelaySeconds": 3,
                "idleSecondsBeforeZero": 6,
            },
        ),
    )
    wait_for("the worker Deployment", lambda: replicas(cluster, namespace, "burst-worker") == 0)
    queue_name = f"{namespace}.burst"
    wait_for("published settings", lambda: redis_conn.exists(f"jobqueue:settings:{queue_name}"))
    with ReplicaWatch(cluster, namespace, "burst-worker") as watch:
        for i in range(8):
            enqueue(redis_conn, queue_name, f"b{i}", 3)
        wait_for("4 replicas", lambda: replicas(cluster, namespace, "burst-worker") == 4, timeout=30)
        wait_for("every job done", lambda: all(done(redis_conn, f"b{i}") for i in range(8)), timeout=120)
        wait_for("back to zero", lambda: replicas(cluster, namespace, "burst-worker") == 0, timeout=90)
        history = watch.changes()
    # 8 jobs, 2 per pod, concurrency 8: straight from 0 to 4, never through 1, 2 or 3
    assert history[:2] == [0, 4], history
    assert all(len(runs(redis_conn, f"b{i}")) == 1 for i in range(8))
    messages = scale_events(cluster, namespace, "burst")
    assert messages[0].startswith("worker replicas 0 → 4: queued=8"), messages
    assert "→ 0 replicas" in messages[-1], messages
    status = (get(cluster, "jobqueue", "burst", namespace) or {})["status"]
    assert status["desiredReplicas"] == 0
    assert "idle" in status["lastScaleReason"]
    assert status["lastScaleTime"]
    wait_for(
        "figures in status",
        lambda: (get(cluster, "jobqueue", "burst", namespace) or {}).get("status", {}).get("queued") == 0,
        timeout=30,
    )
    scraped = operator.get("/metrics")[1]
    up = f'jobqueue_scaling_decisions_total{{direction="up",jobqueue="burst",namespace="{namespace}"'
    assert up in scraped
    assert "jobqueue_redis_up{redis=" in scraped


@pytest.mark.slow
def test_scale_in_marks_idle_pods_cheapest_and_the_busy_pod_keeps_its_job(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    redis_conn: redis.Redis,
    operator: RunningOperator,
    pod_runner: podrunner.PodRunner,
) -> None:
    apply(
        cluster,
        queue(
            "drain",
            namespace,
            concurrency=3,
            worker=worker_spec(),
            scaling={"maxReplicas": 3, "scaleDownDelaySeconds": 2, "idleSecondsBeforeZero": 600},
        ),
    )
    wait_for("the worker Deployment", lambda: replicas(cluster, namespace, "drain-worker") == 0)
    queue_name = f"{namespace}.drain"
    wait_for("published settings", lambda: redis_conn.exists(f"jobqueue:settings:{queue_name}"))
    enqueue(redis_conn, queue_name, "long", 25)
    for tag in ("short-1", "short-2"):
        enqueue(redis_conn, queue_name, tag, 1)
    wait_for("3 replicas", lambda: replicas(cluster, namespace, "drain-worker") == 3, timeout=30)
    wait_for("the long job started", lambda: runs(redis_conn, "long"), timeout=60)
    busy_pod = runs(redis_conn, "long")[0]
    # the short jobs end, demand falls to the one running job: 3 → 1 after the 2 s delay
    wait_for("scaled in to 1", lambda: replicas(cluster, namespace, "drain-worker") == 1, timeout=60)
    costs = {
        p["metadata"]["name"]: p["metadata"]
        .get("annotations", {})
        .get("controller.kubernetes.io/pod-deletion-cost")
        for p in pods(cluster, namespace, "drain")
    }
    assert costs[busy_pod] is not None
    assert int(costs[busy_pod]) >= 1000, costs

    def staying() -> list[str]:
        return [
            p["metadata"]["name"]
            for p in pods(cluster, namespace, "drain")
            if not p["metadata"].get("deletionTimestamp")
        ]

    wait_for("two pods gone", lambda: staying() == [busy_pod], timeout=60)
    wait_for("the long job finished", lambda: done(redis_conn, "long"), timeout=60)
    assert runs(redis_conn, "long") == [busy_pod]  # once, on the pod that was kept
    assert done(redis_conn, "long") == [busy_pod]


@pytest.fixture
def no_pods_run(cluster: devenv.Cluster, namespace: str) -> None:
    """The test's pods stay fake (kwok's Running, no process): the session's pod runner,
    which an earlier test may have started, leaves a namespace labelled this way alone."""
    cluster.kubectl("label", "namespace", namespace, f"{podrunner.PRIVATE_NAMESPACE_LABEL}=true")


@pytest.mark.usefixtures("no_pods_run")
def test_redis_unreachable_holds_replicas_and_says_so(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    redis_conn: redis.Redis,
    redis_server: devenv.RedisServer,
    operator: RunningOperator,
) -> None:
    """No pod runs: the fake pods take no job, so the backlog (and the need) stays."""
    apply(
        cluster,
        queue(
            "held",
            namespace,
            concurrency=4,
            worker=worker_spec(),
            scaling={"maxReplicas": 4, "scaleDownDelaySeconds": 1, "idleSecondsBeforeZero": 2},
        ),
    )
    wait_for("the worker Deployment", lambda: replicas(cluster, namespace, "held-worker") == 0)
    queue_name = f"{namespace}.held"
    wait_for("published settings", lambda: redis_conn.exists(f"jobqueue:settings:{queue_name}"))
    for i in range(3):
        enqueue(redis_conn, queue_name, f"h{i}", 1)
    wait_for("3 replicas", lambda: replicas(cluster, namespace, "held-worker") == 3, timeout=30)
    redis_server.pause()
    try:
        wait_for(
            "RedisReachable=False",
            lambda: (
                condition(get(cluster, "jobqueue", "held", namespace), "RedisReachable").get("status")
                == "False"
            ),
            timeout=30,
        )
        seen = set()
        for _ in range(16):  # 8 s: far beyond the 1 s scale-down delay and the 2 s idle time
            seen.add(replicas(cluster, namespace, "held-worker"))
            time.sleep(0.5)
        assert seen == {3}
    finally:
        redis_server.resume()
    wait_for(
        "RedisReachable=True",
        lambda: (
            condition(get(cluster, "jobqueue", "held", namespace), "RedisReachable").get("status") == "True"
        ),
        timeout=60,
    )
    assert replicas(cluster, namespace, "held-worker") == 3
    assert any(reason == "RedisUnavailable" for _, reason, _ in events(cluster, namespace, "held"))


@pytest.mark.usefixtures("no_pods_run")
def test_a_paused_queue_is_held_at_min_replicas_and_its_status_says_why(
    *, cluster: devenv.Cluster, namespace: str, redis_conn: redis.Redis, operator: RunningOperator
) -> None:
    """No pod runs: the fake pods take no job, so the backlog (and the need) stays."""
    apply(
        cluster,
        queue(
            "paused",
            namespace,
            concurrency=4,
            worker=worker_spec(),
            scaling={"minReplicas": 1, "maxReplicas": 4, "scaleDownDelaySeconds": 600},
        ),
    )
    queue_name = f"{namespace}.paused"
    wait_for("published settings", lambda: redis_conn.exists(f"jobqueue:settings:{queue_name}"))
    for i in range(3):
        enqueue(redis_conn, queue_name, f"p{i}", 1)
    wait_for("3 replicas", lambda: replicas(cluster, namespace, "paused-worker") == 3, timeout=60)

    admin.pause(queue_name, by="test", connection=redis_conn)
    # at once, although scaleDownDelaySeconds is 600: a pause is not a guess about demand
    wait_for("minReplicas", lambda: replicas(cluster, namespace, "paused-worker") == 1, timeout=60)
    enqueue(redis_conn, queue_name, "p3", 1)  # producers still add; no pod comes for it
    status = wait_for(
        "paused in status",
        lambda: (
            (get(cluster, "jobqueue", "paused", namespace) or {}).get("status", {}).get("paused")
            and get(cluster, "jobqueue", "paused", namespace)["status"]
        ),
        timeout=60,
    )
    assert status["lastScaleReason"].startswith("paused (workers take nothing new until the queue is")
    assert "minReplicas" in status["lastScaleReason"]
    time.sleep(3)
    assert replicas(cluster, namespace, "paused-worker") == 1
    printed = cluster.kubectl("get", "jq", "paused", "-n", namespace, "-o", "wide").stdout
    assert "PAUSED" in printed.splitlines()[0]

    admin.resume(queue_name, connection=redis_conn)
    wait_for(
        "4 replicas for the 4 queued jobs",
        lambda: replicas(cluster, namespace, "paused-worker") == 4,
        timeout=60,
    )
    wait_for(
        "not paused in status",
        lambda: (
            (get(cluster, "jobqueue", "paused", namespace) or {}).get("status", {}).get("paused") is False
        ),
        timeout=60,
    )


@pytest.mark.slow
def test_a_force_deleted_busy_pod_has_its_job_requeued_and_finished_by_another_pod(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    redis_conn: redis.Redis,
    operator: RunningOperator,
    pod_runner: podrunner.PodRunner,
) -> None:
    worker = worker_spec()
    # The workers' own lease reaping (15 s) races the operator's recovery (after 10 s of
    # heartbeat silence) and sometimes wins on a loaded machine; a long lease leaves the
    # operator's path — the one under test — as the only one.
    worker["env"].append({"name": "JOBQUEUE_LEASE_SECONDS", "value": "120"})
    apply(
        cluster,
        queue(
            "chaos",
            namespace,
            concurrency=2,
            worker=worker,
            jobDefaults={"attempts": 2, "timeoutSeconds": 120},
            scaling={"minReplicas": 2, "maxReplicas": 2},
        ),
    )
    wait_for(
        "2 running workers",
        lambda: len(redis_conn.smembers(f"rq:workers:{namespace}.chaos")) == 2,
        timeout=60,
    )
    job_id = enqueue(redis_conn, f"{namespace}.chaos", "victim", 8)
    wait_for("the job started", lambda: runs(redis_conn, "victim"), timeout=30)
    victim = runs(redis_conn, "victim")[0]
    cluster.kubectl("delete", "pod", victim, "-n", namespace, "--grace-period=0", "--force")
    wait_for("the job ran again elsewhere and finished", lambda: done(redis_conn, "victim"), timeout=90)
    first, second = runs(redis_conn, "victim")
    assert first == victim
    assert second != victim
    assert done(redis_conn, "victim") == [second]
    info = jq.get_job(f"{namespace}.chaos", job_id, connection=redis_conn)
    assert info.status == "finished"
    recovered = [m for _, reason, m in events(cluster, namespace, "chaos") if reason == "LostJobsRecovered"]
    assert recovered, events(cluster, namespace, "chaos")
    assert victim in recovered[0]
    assert "1 re-queued" in recovered[0]
    assert 'outcome="requeued"' in operator.get("/metrics")[1]


@pytest.mark.slow
def test_a_pod_deleted_gracefully_finishes_its_job_which_never_runs_twice(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    redis_conn: redis.Redis,
    operator: RunningOperator,
    pod_runner: podrunner.PodRunner,
) -> None:
    """kwok removes a deleted pod from the API at once while its worker drains for the grace
    period: the operator must wait for the worker, not for the pod object."""
    apply(
        cluster,
        queue(
            "grace",
            namespace,
            concurrency=2,
            worker=worker_spec(),
            jobDefaults={"attempts": 3, "timeoutSeconds": 60},
            scaling={"minReplicas": 2, "maxReplicas": 2},
        ),
    )
    wait_for(
        "2 running workers",
        lambda: len(redis_conn.smembers(f"rq:workers:{namespace}.grace")) == 2,
        timeout=60,
    )
    enqueue(redis_conn, f"{namespace}.grace", "patient", 20)  # twice the operator's silence threshold
    wait_for("the job started", lambda: runs(redis_conn, "patient"), timeout=30)
    pod = runs(redis_conn, "patient")[0]
    cluster.kubectl("delete", "pod", pod, "-n", namespace, "--wait=false")
    wait_for("the job finished", lambda: done(redis_conn, "patient"), timeout=90)
    time.sleep(12)  # anything the operator would wrongly do, it would have done by now
    assert runs(redis_conn, "patient") == [pod]
    assert done(redis_conn, "patient") == [pod]
    assert not [r for _, r, _ in events(cluster, namespace, "grace") if r == "LostJobsRecovered"]


@pytest.mark.usefixtures("no_pods_run")
def test_a_worker_budget_goes_to_the_more_important_queue_first(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    redis_url: str,
    redis_conn: redis.Redis,
    start_operator: StartOperator,
) -> None:
    """No pod runs: nothing drains, so both needs stand; 3 pods for a need of 2 + 3."""
    start_operator(namespaces=[namespace], redis_url=redis_url, worker_budget="3")
    for name, priority in (("urgent", 1), ("whenever", 5)):
        apply(cluster, queue(name, namespace, priority=priority, concurrency=3, worker=worker_spec()))
    for name in ("urgent", "whenever"):
        wait_for("published settings", lambda n=name: redis_conn.exists(f"jobqueue:settings:{namespace}.{n}"))
    for i in range(3):
        enqueue(redis_conn, f"{namespace}.whenever", f"w{i}", 1)
    wait_for(
        "the low-priority queue takes the whole budget while alone",
        lambda: replicas(cluster, namespace, "whenever-worker") == 3,
        timeout=30,
    )
    for i in range(2):
        enqueue(redis_conn, f"{namespace}.urgent", f"u{i}", 1)
    wait_for("urgent gets its 2 pods", lambda: replicas(cluster, namespace, "urgent-worker") == 2, timeout=30)
    wait_for(
        "whenever keeps what is left",
        lambda: replicas(cluster, namespace, "whenever-worker") == 1,
        timeout=30,
    )
    status = (get(cluster, "jobqueue", "whenever", namespace) or {})["status"]
    assert "worker budget of 3 pods leaves 1" in status["lastScaleReason"]
