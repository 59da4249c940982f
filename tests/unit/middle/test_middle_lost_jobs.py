"""Lost-job recovery by the autoscaler's poller, in process: which vanished pods it recovers,
and when — from the pod index (the watch) and the workers' heartbeats in Redis, on fake
clocks (middlekit).

Mirrors the two lost-pod tests of tests/integration/scaling/test_autoscaler.py; the Lua
script that re-queues the jobs is tests/integration/workers/test_worker_recovery.py's.
"""

from __future__ import annotations

import prometheus_client

from jobqueue_operator import models
from jobqueue_operator.scaling import lost
from unit.middle.middlekit import NAMESPACE, REDIS_URL, Operator, queue_stats, worker

PODS = ("chaos-worker-a", "chaos-worker-b")
QUEUE = f"{NAMESPACE}.chaos"


async def two_pods_one_busy() -> Operator:
    """Queue ``chaos`` with two worker pods; the first one's worker runs job ``victim``."""
    op = Operator.make()
    op.kube.jobqueue("chaos", concurrency=2, scaling={"minReplicas": 2, "maxReplicas": 2})
    await op.reconcile("chaos")
    for pod in PODS:
        op.kube.pod("chaos", pod)
    op.indexes.refresh()
    op.hub.stats[REDIS_URL][QUEUE] = queue_stats(
        QUEUE, running=1, workers=[worker(PODS[0], "victim"), worker(PODS[1])]
    )
    beat(op, 0)
    await op.cycle()
    return op


def beat(op: Operator, n: int, *pods: str) -> None:
    """The workers of ``pods`` (all by default) record heartbeat number ``n``."""
    for pod in pods or PODS:
        op.hub.heartbeats[REDIS_URL][f"w-{pod}"] = f"2026-01-05T12:00:{n:02d}Z"


def recovered_events(op: Operator) -> list[str]:
    return [e.message for e in op.kube.events if e.reason == "LostJobsRecovered"]


async def test_a_force_deleted_busy_pod_has_its_job_requeued_once_its_workers_fall_silent() -> None:
    op = await two_pods_one_busy()
    op.hub.held[PODS[0]] = ["victim"]
    op.kube.remove("Pod", PODS[0])  # --grace-period=0 --force: gone from the API at once
    op.indexes.refresh()
    before = (
        prometheus_client.REGISTRY.get_sample_value(
            "jobqueue_lost_jobs_recovered_total",
            {"namespace": NAMESPACE, "jobqueue": "chaos", "queue": QUEUE, "outcome": "requeued"},
        )
        or 0.0
    )

    # its process may still be stopping: nothing happens while the silence is shorter than
    # SILENCE_SECONDS (the other pod's worker keeps beating)
    for n in range(1, int(lost.SILENCE_SECONDS)):
        beat(op, n, PODS[1])
        await op.cycle()
    assert op.hub.recovered == []
    for n in range(int(lost.SILENCE_SECONDS), int(lost.SILENCE_SECONDS) + 3):
        beat(op, n, PODS[1])
        await op.cycle()
    ((queue, pod, reason),) = op.hub.recovered  # once
    assert (queue, pod) == (QUEUE, PODS[0])
    assert reason.startswith(f"lost: worker pod {PODS[0]} ")
    (message,) = recovered_events(op)
    assert PODS[0] in message
    assert "1 re-queued" in message
    after = prometheus_client.REGISTRY.get_sample_value(
        "jobqueue_lost_jobs_recovered_total",
        {"namespace": NAMESPACE, "jobqueue": "chaos", "queue": QUEUE, "outcome": "requeued"},
    )
    assert after == before + 1
    assert op.kube.events[-1].kind == models.JOBQUEUE_KIND


async def test_a_failed_read_restarts_the_silence_count() -> None:
    """After a Redis outage a live worker needs a moment to get its next heartbeat through."""
    op = await two_pods_one_busy()
    op.kube.remove("Pod", PODS[0])
    op.indexes.refresh()
    for _ in range(int(lost.SILENCE_SECONDS) - 2):
        await op.cycle()
    op.hub.down.add(REDIS_URL)
    await op.cycle()
    op.hub.down.discard(REDIS_URL)
    for _ in range(int(lost.SILENCE_SECONDS) - 1):
        await op.cycle()
    assert op.hub.recovered == []  # ten silent seconds in all, but not in a row
    for _ in range(3):
        await op.cycle()
    assert [pod for _, pod, _ in op.hub.recovered] == [PODS[0]]


async def test_a_pod_deleted_gracefully_finishes_its_job_which_never_runs_twice() -> None:
    op = await two_pods_one_busy()
    body = op.kube.objects["Pod", NAMESPACE, PODS[0]]
    body["metadata"]["deletionTimestamp"] = "2026-01-05T12:00:01Z"  # draining for its grace period
    op.indexes.refresh()
    for n in range(1, 25):  # far beyond SILENCE_SECONDS: its worker keeps beating while it drains
        beat(op, n)
        await op.cycle()
    assert op.hub.recovered == []

    # the job done, the worker exits cleanly (its record goes) and so does the pod
    op.hub.stats[REDIS_URL][QUEUE] = queue_stats(QUEUE, workers=[worker(PODS[1])])
    del op.hub.heartbeats[REDIS_URL][f"w-{PODS[0]}"]
    op.kube.remove("Pod", PODS[0])
    op.indexes.refresh()
    for n in range(25, 30):
        beat(op, n, PODS[1])
        await op.cycle()
    # no worker record left: the pod is dead, and recover_pod finds nothing it still held
    assert [pod for _, pod, _ in op.hub.recovered] == [PODS[0]]
    assert recovered_events(op) == []
