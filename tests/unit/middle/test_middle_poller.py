"""The autoscaler's poller in process: the real reconciler, status keeper and poller over the
fake API and Redis (middlekit), driven pass by pass with fake clocks.

Mirrors tests/integration/scaling/test_autoscaler.py, which proves the same end to end on a
cluster; here each scenario takes milliseconds and can stop the watch (the indexes) at the
moment it wants to look at.
"""

from __future__ import annotations

from typing import Any

import prometheus_client
import pytest

from jobqueue import settings as qsettings
from jobqueue_operator import models, reconcile
from jobqueue_operator.builders import names
from jobqueue_operator.scaling import policy, poller, views
from unit.middle.middlekit import (
    NAMESPACE,
    REDIS_URL,
    Operator,
    api_error,
    queue_stats,
    worker,
)

JQ = models.JOBQUEUE_KIND


def stats_of(op: Operator, name: str, **figures: Any) -> None:
    """What the next poll of queue ``<namespace>.<name>`` reads."""
    queue = f"{NAMESPACE}.{name}"
    op.hub.stats[REDIS_URL][queue] = queue_stats(queue, **figures)


def scales(op: Operator) -> list[int]:
    return [c.body for c in op.kube.writes("scale")]


def scale_messages(op: Operator, name: str) -> list[str]:
    return [e.message for e in op.kube.events if e.name == name and e.reason in ("ScaledUp", "ScaledDown")]


def replicas(op: Operator, name: str) -> int:
    live = op.kube.get("Deployment", names.deployment_name(name))
    assert live is not None
    return int(live["spec"]["replicas"])


def api_errors(action: str) -> float:
    return (
        prometheus_client.REGISTRY.get_sample_value(
            "jobqueue_autoscaler_api_errors_total", {"action": action}
        )
        or 0.0
    )


async def new_queue(op: Operator, name: str, **spec: Any) -> None:
    op.kube.jobqueue(name, **spec)
    assert await op.reconcile(name) == reconcile.Outcome()


async def test_a_burst_scales_up_in_one_step_and_back_to_zero_when_idle() -> None:
    op = Operator.make()
    await new_queue(
        op,
        "burst",
        concurrency=8,
        worker={"image": "registry.invalid/w:1", "imports": ["w"], "concurrencyPerPod": 2},
        scaling={"minReplicas": 0, "maxReplicas": 4, "scaleDownDelaySeconds": 3, "idleSecondsBeforeZero": 6},
    )
    assert replicas(op, "burst") == 0
    stats_of(op, "burst", queued=8)
    await op.cycle()
    op.indexes.refresh()
    stats_of(op, "burst", queued=0, last_activity_at=op.clock.wall())  # the workers drained it
    for _ in range(10):
        await op.cycle()
        op.indexes.refresh()

    # straight from 0 to 4, never through 1, 2 or 3; down to one warm pod after the scale-down
    # delay, to none after idleSecondsBeforeZero
    assert scales(op) == [4, 1, 0]
    messages = scale_messages(op, "burst")
    assert messages[0].startswith("worker replicas 0 → 4: queued=8"), messages
    assert "→ 0 replicas" in messages[-1], messages
    status = op.kube.objects[JQ, NAMESPACE, "burst"]["status"]
    assert status["desiredReplicas"] == 0
    assert "idle" in status["lastScaleReason"]
    assert status["lastScaleTime"]
    assert status["queued"] == 0
    autoscaler_writes = [c for c in op.kube.calls if c.verb in ("scale", "merge_status")]
    assert {c.manager for c in autoscaler_writes} == {names.AUTOSCALER_MANAGER}


async def test_a_pending_replica_write_outranks_a_lagging_index_and_a_newer_decision_builds_on_it() -> None:
    op = Operator.make()
    await new_queue(
        op,
        "lag",
        concurrency=12,
        worker={"image": "registry.invalid/w:1", "imports": ["w"], "concurrencyPerPod": 2},
        scaling={"maxReplicas": 6, "scaleDownDelaySeconds": 600},
    )
    stats_of(op, "lag", queued=8)
    await op.cycle()
    # the watch has not shown the write yet (the index still says 0): the write stands
    await op.cycle()
    assert scales(op) == [4]
    # a newer decision starts from the replicas written, not from the index's stale 0
    stats_of(op, "lag", queued=12)
    await op.cycle()
    assert scales(op) == [4, 6]
    assert scale_messages(op, "lag")[-1].startswith("worker replicas 4 → 6: queued=12")

    # someone scales the Deployment by hand meanwhile; the index shows that, not our 6
    op.kube.objects["Deployment", NAMESPACE, "lag-worker"]["spec"]["replicas"] = 2
    op.indexes.refresh()
    passes = int(poller.PENDING_WRITE_SECONDS) - 1
    for _ in range(passes):  # our write is trusted for PENDING_WRITE_SECONDS...
        await op.cycle()
    assert scales(op) == [4, 6]
    await op.cycle(after=1.0)  # ...then the index is the truth again, and the need is restored
    assert scales(op) == [4, 6, 6]
    assert scale_messages(op, "lag")[-1].startswith("worker replicas 2 → 6")


async def test_a_write_the_index_shows_ends_the_pending_state_at_once() -> None:
    op = Operator.make()
    await new_queue(op, "quick", concurrency=4, scaling={"maxReplicas": 4, "scaleDownDelaySeconds": 600})
    stats_of(op, "quick", queued=3)
    await op.cycle()
    op.indexes.refresh()
    await op.cycle()  # the watch shows 3: the write is done, a later change counts at once
    op.kube.objects["Deployment", NAMESPACE, "quick-worker"]["spec"]["replicas"] = 1
    op.indexes.refresh()
    await op.cycle()
    assert scales(op) == [3, 3]
    assert scale_messages(op, "quick")[-1].startswith("worker replicas 1 → 3")


async def drain_setup(op: Operator) -> list[str]:
    """Three pods, one of them busy with a long job, demand down to that one job."""
    await new_queue(
        op,
        "drain",
        concurrency=3,
        scaling={"maxReplicas": 3, "scaleDownDelaySeconds": 2, "idleSecondsBeforeZero": 600},
    )
    stats_of(op, "drain", queued=3)
    await op.cycle()
    pods = ["drain-worker-a", "drain-worker-b", "drain-worker-c"]
    for pod in pods:
        op.kube.pod("drain", pod)
    op.indexes.refresh()
    stats_of(op, "drain", running=1, workers=[worker(pods[0]), worker(pods[1], "long"), worker(pods[2])])
    return pods


def costs(op: Operator, pods: list[str]) -> dict[str, int]:
    out = {}
    for pod in pods:
        live = op.kube.get("Pod", pod)
        assert live is not None
        out[pod] = int(live["metadata"]["annotations"][views.DELETION_COST_ANNOTATION])
    return out


async def test_scale_in_waits_for_the_deletion_costs_to_show_then_removes_the_idle_pods() -> None:
    op = Operator.make()
    pods = await drain_setup(op)
    await op.cycle()  # demand fell to 1: the scale-down delay starts
    await op.cycle(after=2.0)  # the delay is over: mark the pods, do not scale yet
    assert scales(op) == [3]
    marked = costs(op, pods)
    assert marked[pods[1]] >= policy.BUSY_POD_COST
    assert marked[pods[0]] == marked[pods[2]] == policy.IDLE_POD_COST
    assert {c.manager for c in op.kube.writes("annotate")} == {names.AUTOSCALER_MANAGER}

    op.indexes.refresh()  # the pod watch shows the annotations: now the ReplicaSet would pick right
    await op.cycle()
    assert scales(op) == [3, 1]
    assert len(op.kube.writes("annotate")) == 3  # nothing written twice
    assert scale_messages(op, "drain")[-1].startswith("worker replicas 3 → 1")
    assert "lower for" in op.kube.objects[JQ, NAMESPACE, "drain"]["status"]["lastScaleReason"]


async def test_scale_in_goes_ahead_when_the_costs_never_show() -> None:
    op = Operator.make()
    pods = await drain_setup(op)
    await op.cycle()
    for _ in range(poller.MAX_COST_WAITS):  # the pod watch never shows the annotations
        await op.cycle(after=2.0)
        assert scales(op) == [3]
    await op.cycle()
    assert scales(op) == [3, 1]  # best effort: the busy worker still drains on SIGTERM
    assert len(op.kube.writes("annotate")) == poller.MAX_COST_WAITS * len(pods)


async def test_redis_unreachable_holds_replicas_and_says_so_then_recovers() -> None:
    op = Operator.make()
    await new_queue(
        op,
        "held",
        concurrency=4,
        scaling={"maxReplicas": 4, "scaleDownDelaySeconds": 1, "idleSecondsBeforeZero": 2},
    )
    assert op.kube.condition(JQ, "held", "RedisReachable")["status"] == "True"
    stats_of(op, "held", queued=3)
    await op.cycle()
    op.indexes.refresh()
    writes_before = len(op.kube.writes("apply_status"))

    op.hub.down.add(REDIS_URL)
    for _ in range(8):  # far beyond the 1 s scale-down delay and the 2 s idle time
        await op.cycle()
        op.indexes.refresh()
    assert scales(op) == [3]
    assert replicas(op, "held") == 3
    lost = op.kube.condition(JQ, "held", "RedisReachable")
    assert (lost["status"], lost["reason"]) == ("False", "RedisUnavailable")
    assert "did not answer" in lost["message"]
    assert op.kube.condition(JQ, "held", "Ready")["reason"] == "RedisUnreachable"
    assert op.kube.reasons("held").count(("Warning", "RedisUnavailable")) == 1  # a transition, not per poll
    assert len(op.kube.writes("apply_status")) == writes_before + 1

    op.hub.down.discard(REDIS_URL)
    await op.cycle()
    back = op.kube.condition(JQ, "held", "RedisReachable")
    assert (back["status"], back["reason"]) == ("True", "Reachable")
    assert back["lastTransitionTime"] != lost["lastTransitionTime"]
    assert op.kube.reasons("held")[-1] == ("Normal", "RedisReachable")
    assert replicas(op, "held") == 3


async def test_a_redis_back_without_the_settings_stays_unreachable_for_the_sweep_to_fix() -> None:
    """A Redis restarted empty: the poller does not claim the queue works; republishing is the
    settings sweep's."""
    op = Operator.make()
    await new_queue(op, "wiped", concurrency=2, scaling={"maxReplicas": 2})
    op.hub.down.add(REDIS_URL)
    await op.cycle()
    op.hub.servers.clear()  # restarted without its data
    op.hub.down.discard(REDIS_URL)
    await op.cycle()
    assert op.kube.condition(JQ, "wiped", "RedisReachable")["status"] == "False"
    report = await op.sweeper.sweep()
    assert report.republished == 1
    assert op.kube.condition(JQ, "wiped", "RedisReachable")["status"] == "True"
    assert f"{NAMESPACE}.wiped" in qsettings.published_queue_names(op.hub.servers[REDIS_URL])  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [403, 409])
async def test_a_refused_scale_is_counted_and_retried_on_the_next_pass(code: int) -> None:
    op = Operator.make()
    await new_queue(op, "refused", concurrency=2, scaling={"maxReplicas": 2})
    stats_of(op, "refused", queued=2)
    errors_before = api_errors("scale")
    op.kube.fail("scale", "Deployment", api_error(code))
    await op.cycle()
    assert [c.error for c in op.kube.calls if c.verb == "scale"] == [code]
    assert api_errors("scale") == errors_before + 1
    assert not scale_messages(op, "refused")  # no Event for a scale that did not happen
    await op.cycle()
    assert scales(op) == [2]
    assert scale_messages(op, "refused") == [op.kube.events[-1].message]
    assert replicas(op, "refused") == 2


async def test_a_deployment_with_copied_labels_is_never_scaled() -> None:
    """Labels alone can be copied: without the JobQueue's controller reference the Deployment
    is not ours (tests/integration/operator/test_operator_name_conflicts.py)."""
    op = Operator.make()
    labels = names.worker_labels("forged")
    op.kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "forged-worker", "namespace": NAMESPACE, "labels": labels},
            "spec": {"replicas": 3, "selector": {"matchLabels": labels}},
        }
    )
    op.kube.jobqueue("forged", scaling={"minReplicas": 1, "maxReplicas": 1})
    outcome = await op.reconcile("forged")
    assert outcome.retry_error is not None
    assert "a Deployment named forged-worker already exists" in outcome.retry_error
    assert op.kube.condition(JQ, "forged", "Ready")["reason"] == "NameConflict"
    for _ in range(5):
        await op.cycle()
    assert op.kube.writes("scale") == []
    assert op.kube.writes("apply", "Deployment") == []
    assert replicas(op, "forged") == 3


@pytest.mark.parametrize("queued", [2, 0], ids=["busy", "at-rest"])
async def test_a_refused_status_write_is_counted_and_made_on_the_next_pass(queued: int) -> None:
    """Regression: a refused write was not tried again while the queue's figures stayed the
    same (an unchanged or resting queue skips its reporting), leaving the status stale."""
    op = Operator.make()
    await new_queue(op, "mute", concurrency=2, scaling={"maxReplicas": 2, "scaleDownDelaySeconds": 600})
    stats_of(op, "mute", queued=queued)
    errors_before = api_errors("status")
    op.kube.fail("merge_status", JQ, api_error(403))
    await op.cycle()
    assert scales(op) == ([2] if queued else [])  # a status write never holds up a scale
    assert api_errors("status") == errors_before + 1
    assert "desiredReplicas" not in op.kube.objects[JQ, NAMESPACE, "mute"]["status"]
    op.indexes.refresh()
    await op.cycle()
    assert op.kube.objects[JQ, NAMESPACE, "mute"]["status"]["desiredReplicas"] == queued


async def test_a_paused_queue_is_held_at_min_replicas_and_its_status_says_why() -> None:
    op = Operator.make()
    await new_queue(
        op,
        "paused",
        concurrency=4,
        scaling={"minReplicas": 1, "maxReplicas": 4, "scaleDownDelaySeconds": 600},
    )
    stats_of(op, "paused", queued=3)
    await op.cycle()
    op.indexes.refresh()
    assert scales(op) == [3]

    stats_of(op, "paused", queued=3, paused=True)
    await op.cycle()  # at once, although scaleDownDelaySeconds is 600: a pause is no guess about demand
    op.indexes.refresh()
    assert scales(op) == [3, 1]
    stats_of(op, "paused", queued=4, paused=True)  # producers still add; no pod comes for it
    for _ in range(3):
        await op.cycle()
    assert scales(op) == [3, 1]
    status = op.kube.objects[JQ, NAMESPACE, "paused"]["status"]
    assert status["paused"] is True
    assert status["lastScaleReason"].startswith("paused (workers take nothing new until the queue is")
    assert "minReplicas" in status["lastScaleReason"]

    stats_of(op, "paused", queued=4)  # resumed
    await op.cycle()
    assert scales(op) == [3, 1, 4]
    assert op.kube.objects[JQ, NAMESPACE, "paused"]["status"]["paused"] is False


async def test_a_worker_budget_goes_to_the_more_important_queue_first() -> None:
    op = Operator.make(budget=3)
    for name, priority in (("urgent", 1), ("whenever", 5)):
        await new_queue(op, name, priority=priority, concurrency=3)
    stats_of(op, "whenever", queued=3)
    await op.cycle()
    op.indexes.refresh()
    assert replicas(op, "whenever") == 3  # alone, the low-priority queue takes the whole budget
    stats_of(op, "urgent", queued=2)
    await op.cycle()
    op.indexes.refresh()
    assert (replicas(op, "urgent"), replicas(op, "whenever")) == (2, 1)
    status = op.kube.objects[JQ, NAMESPACE, "whenever"]["status"]
    assert "worker budget of 3 pods leaves 1" in status["lastScaleReason"]


async def test_with_shards_a_replica_scales_only_the_queues_it_holds_and_stops_the_moment_it_does_not() -> (
    None
):
    held = {"mine"}
    op = Operator.make(owns=lambda key: key[1] in held)
    spec: dict[str, Any] = {
        "concurrency": 4,
        "worker": {"image": "registry.invalid/w:1", "imports": ["w"]},
        "scaling": {"maxReplicas": 4},
    }
    await new_queue(op, "mine", **spec)
    await new_queue(op, "theirs", **spec)
    stats_of(op, "mine", queued=2)
    stats_of(op, "theirs", queued=2)
    await op.cycle()
    op.indexes.refresh()
    assert (replicas(op, "mine"), replicas(op, "theirs")) == (2, 0)

    held.clear()  # the shard went to another replica: nothing of it is written here any more
    stats_of(op, "mine", queued=4)
    await op.cycle()
    op.indexes.refresh()
    assert replicas(op, "mine") == 2
    assert [e.name for e in op.kube.events if e.reason == "ScaledUp"] == ["mine"]

    held.add("theirs")  # a shard gained: its queues are decided from the next pass
    await op.cycle()
    assert replicas(op, "theirs") == 2
