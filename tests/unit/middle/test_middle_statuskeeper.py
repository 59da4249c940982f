"""The StatusKeeper in process: three producers (the reconcile, the Deployment watch, the
Redis checks) feed one JobQueue's status; the keeper writes it over the fake API only when
it changes, with an Event per condition transition, never per call.

The end-to-end counterparts are spread over tests/integration/operator (a restart writes
nothing, RedisReachable flips and recovers, Ready follows the workers).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jobqueue_operator import k8s, models
from jobqueue_operator.builders import status
from jobqueue_operator.statuskeeper import StatusKeeper
from unit.middle.middlekit import NAMESPACE, Clock, FakeKube, api_error

JQ = models.JOBQUEUE_KIND
KEY = (NAMESPACE, "mailer")
PUBLISHED = status.Publication.ok(f"{NAMESPACE}.mailer", 1)
LOST = status.Publication.unreachable("RedisUnavailable", "Redis redis://redis.test:6379/0 did not answer")


def summary(ready: int, desired: int = 2) -> status.DeploymentSummary:
    return status.DeploymentSummary(
        desired=desired, replicas=desired, ready=ready, updated=desired, observed=True
    )


def inputs(**changes: Any) -> status.Inputs:
    base: dict[str, Any] = {
        "generation": 1,
        "queue_name": f"{NAMESPACE}.mailer",
        "suspend": False,
        "publication": PUBLISHED,
        "deployment": summary(0),
    }
    return status.Inputs(**{**base, **changes})


def setup() -> tuple[FakeKube, Clock, StatusKeeper, dict[str, Any]]:
    kube, clock = FakeKube(), Clock()
    body = kube.jobqueue("mailer")
    return kube, clock, StatusKeeper(kube, kube.emit, clock=clock.utc), body


def writes(kube: FakeKube) -> int:
    return len(kube.writes("apply_status", JQ))


async def test_each_producer_writes_only_what_changes_and_events_mark_transitions() -> None:
    kube, clock, keeper, body = setup()
    await keeper.reconciled(body, inputs())
    assert writes(kube) == 1
    assert kube.condition(JQ, "mailer", "Ready")["reason"] == "WorkersStarting"
    started = kube.condition(JQ, "mailer", "Ready")["lastTransitionTime"]

    await keeper.deployment_seen(KEY, summary(0))  # the same: nothing to write
    await keeper.reconciled(body, inputs())
    assert writes(kube) == 1

    clock.tick(30)
    await keeper.deployment_seen(KEY, summary(1))  # Ready flips False -> True
    ready = kube.condition(JQ, "mailer", "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "ScalingUp")
    assert ready["lastTransitionTime"] != started
    flipped = ready["lastTransitionTime"]
    clock.tick(30)
    await keeper.deployment_seen(KEY, summary(2))  # True -> True: the transition time stays
    ready = kube.condition(JQ, "mailer", "Ready")
    assert (ready["reason"], ready["lastTransitionTime"]) == ("WorkersReady", flipped)
    assert kube.objects[JQ, NAMESPACE, "mailer"]["status"]["workers"] == "2/2"
    assert writes(kube) == 3
    assert kube.events == []  # starting, scaling up and ready are normal operation: no Event

    await keeper.publication_seen(KEY, LOST)
    await keeper.publication_seen(KEY, LOST)
    assert kube.condition(JQ, "mailer", "RedisReachable")["reason"] == "RedisUnavailable"
    assert kube.reasons() == [("Warning", "RedisUnavailable")]
    await keeper.publication_seen(KEY, PUBLISHED)
    assert kube.reasons() == [("Warning", "RedisUnavailable"), ("Normal", "RedisReachable")]
    assert writes(kube) == 5


async def test_concurrent_producers_never_undo_each_other() -> None:
    kube, _, keeper, body = setup()
    await keeper.reconciled(body, inputs())
    await asyncio.gather(keeper.deployment_seen(KEY, summary(2)), keeper.publication_seen(KEY, LOST))
    final = kube.objects[JQ, NAMESPACE, "mailer"]["status"]
    assert final["workers"] == "2/2"
    assert kube.condition(JQ, "mailer", "RedisReachable")["status"] == "False"


async def test_a_restart_starts_from_the_objects_status_and_writes_nothing() -> None:
    kube, clock, keeper, body = setup()
    await keeper.reconciled(body, inputs(deployment=summary(2)))
    live = kube.get(JQ, "mailer")
    assert live is not None
    clock.tick(3600)
    again = StatusKeeper(kube, kube.emit, clock=clock.utc)
    await again.deployment_seen(KEY, summary(2))  # not reconciled in this process yet: ignored
    await again.reconciled(live, inputs(deployment=summary(2)))
    assert writes(kube) == 1
    assert kube.events == []


async def test_a_deployment_event_does_not_hide_an_apply_error() -> None:
    kube, _, keeper, body = setup()
    refused = ("DeploymentFailed", "the API server refused the worker Deployment: spec.x: bad")
    await keeper.reconciled(body, inputs(deployment=None, apply_error=refused))
    assert kube.reasons() == [("Warning", "DeploymentFailed")]
    await keeper.deployment_seen(KEY, summary(2))  # the old generation's Deployment
    assert kube.condition(JQ, "mailer", "Ready")["reason"] == "DeploymentFailed"
    assert writes(kube) == 1


async def test_a_write_the_api_refuses_is_made_again_by_the_next_producer() -> None:
    kube, _, keeper, body = setup()
    kube.fail("apply_status", JQ, api_error(409))
    with pytest.raises(k8s.ApiError):  # the reconcile's handler retries
        await keeper.reconciled(body, inputs(publication=LOST))
    assert kube.events == []  # no Event for a condition that was not written
    await keeper.publication_seen(KEY, LOST)
    assert kube.condition(JQ, "mailer", "RedisReachable")["status"] == "False"
    assert kube.reasons() == [("Warning", "RedisUnavailable")]


async def test_a_deleted_object_gets_no_write_and_no_event() -> None:
    kube, _, keeper, body = setup()
    kube.remove(JQ, "mailer")
    await keeper.reconciled(body, inputs(publication=LOST))
    assert kube.events == []
    assert [c.error for c in kube.calls if c.verb == "apply_status"] == [404]


async def test_an_object_created_again_under_the_same_name_starts_afresh() -> None:
    kube, _, keeper, body = setup()
    await keeper.reconciled(body, inputs(deployment=summary(2)))
    kube.remove(JQ, "mailer")
    keeper.forget(KEY)
    reborn = kube.jobqueue("mailer")
    assert reborn["metadata"]["uid"] != body["metadata"]["uid"]
    await keeper.reconciled(reborn, inputs(deployment=summary(2)))
    assert writes(kube) == 2
    assert kube.condition(JQ, "mailer", "Ready")["reason"] == "WorkersReady"
