"""Status rendering: conditions, their transitions, and "nothing changed, nothing written"."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from jobqueue_operator.builders import status

T0 = datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)

READY_DEP = status.DeploymentSummary(desired=2, replicas=2, ready=2, updated=2, observed=True)
OK = status.Inputs(
    generation=3,
    queue_name="q",
    suspend=False,
    publication=status.Publication.ok("q", 3),
    deployment=READY_DEP,
)


def conditions(rendered: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in rendered["conditions"]}


def test_a_healthy_queue() -> None:
    rendered = status.render(OK, None, T0)
    assert rendered["observedGeneration"] == 3
    assert rendered["queueName"] == "q"
    assert (rendered["replicas"], rendered["readyReplicas"], rendered["workers"]) == (2, 2, "2/2")
    assert conditions(rendered) == {
        "Ready": ("True", "WorkersReady"),
        "RedisReachable": ("True", "Reachable"),
    }
    assert all(c["observedGeneration"] == 3 for c in rendered["conditions"])
    assert all(c["lastTransitionTime"] == "2026-01-01T00:00:00Z" for c in rendered["conditions"])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"deployment": dataclasses.replace(READY_DEP, desired=0, replicas=0, ready=0, updated=0)},
            ("True", "ScaledToZero"),
        ),
        ({"deployment": dataclasses.replace(READY_DEP, desired=4)}, ("True", "ScalingUp")),
        ({"deployment": dataclasses.replace(READY_DEP, ready=0)}, ("False", "WorkersStarting")),
        ({"deployment": dataclasses.replace(READY_DEP, updated=1)}, ("True", "RollingOut")),
        ({"deployment": dataclasses.replace(READY_DEP, observed=False)}, ("True", "RollingOut")),
        (
            {
                "deployment": dataclasses.replace(
                    READY_DEP, problem="PodsRejected", problem_message="forbidden"
                )
            },
            ("False", "PodsRejected"),
        ),
        ({"suspend": True}, ("True", "Suspended")),
        (
            {"publication": status.Publication.unreachable("SecretNotFound", "no secret")},
            ("False", "RedisUnreachable"),
        ),
        ({"publication": status.Publication.conflict("taken")}, ("False", "QueueNameConflict")),
        ({"deployment": None, "apply_error": ("DeploymentFailed", "refused")}, ("False", "DeploymentFailed")),
        (
            {"publication": None, "deployment": None, "apply_error": ("InvalidSpec", "bad")},
            ("False", "InvalidSpec"),
        ),
    ],
)
def test_ready_condition(change: dict[str, Any], expected: tuple[str, str]) -> None:
    assert status.ready_condition(dataclasses.replace(OK, **change))[:2] == expected


def test_redis_condition_carries_the_reason_and_message() -> None:
    inputs = dataclasses.replace(OK, publication=status.Publication.unreachable("SecretNotFound", "Secret x"))
    assert status.redis_condition(inputs) == ("False", "SecretNotFound", "Secret x")
    conflict = dataclasses.replace(OK, publication=status.Publication.conflict("taken"))
    assert status.redis_condition(conflict)[0] == "True"  # reachable, just not ours to publish


def test_transition_time_moves_only_when_the_status_flips() -> None:
    first = status.render(OK, None, T0)
    scaling = dataclasses.replace(OK, deployment=dataclasses.replace(READY_DEP, desired=4))
    second = status.render(scaling, first["conditions"], T1)
    assert second["conditions"][0]["reason"] == "ScalingUp"
    assert second["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"  # still True
    broken = dataclasses.replace(OK, publication=status.Publication.unreachable("RedisUnavailable", "down"))
    third = status.render(broken, second["conditions"], T1)
    assert [c["lastTransitionTime"] for c in third["conditions"]] == ["2026-01-01T00:05:00Z"] * 2


def test_rendering_what_is_already_there_changes_nothing() -> None:
    written = status.render(OK, None, T0)
    live = {
        **written,
        "queued": 5,
        "running": 1,  # the autoscaler's fields
        "conditions": [*written["conditions"], {"type": "Scaling", "status": "True"}],
    }
    known = status.operator_fields(live)
    assert known == written
    assert status.render(OK, known["conditions"], T1) == known


def test_events_mark_problems_and_recoveries_only() -> None:
    healthy = status.render(OK, None, T0)["conditions"]
    assert status.transitions(None, healthy) == []  # a new queue: the DeploymentCreated event says it
    down = status.render(
        dataclasses.replace(
            OK, publication=status.Publication.unreachable("RedisUnavailable", "connection refused")
        ),
        healthy,
        T1,
    )
    events = status.transitions(healthy, down["conditions"])
    # one Warning: Ready's RedisUnreachable is the same problem, already reported
    assert [(e.type, e.reason) for e in events] == [("Warning", "RedisUnavailable")]
    assert status.transitions(down["conditions"], down["conditions"]) == []
    up = status.render(OK, down["conditions"], T1)["conditions"]
    assert [(e.type, e.reason) for e in status.transitions(down["conditions"], up)] == [
        ("Normal", "RedisReachable")
    ]
    scaling = status.render(
        dataclasses.replace(OK, deployment=dataclasses.replace(READY_DEP, ready=0)), healthy, T1
    )["conditions"]
    assert status.transitions(healthy, scaling) == []  # normal operation is not an event
    rejected = status.render(
        dataclasses.replace(
            OK,
            deployment=dataclasses.replace(
                READY_DEP, problem="PodsRejected", problem_message="pods forbidden"
            ),
        ),
        healthy,
        T1,
    )["conditions"]
    assert [(e.type, e.reason, e.message) for e in status.transitions(healthy, rejected)] == [
        ("Warning", "PodsRejected", "pods forbidden")
    ]
    assert [(e.type, e.reason) for e in status.transitions(rejected, healthy)] == [("Normal", "Ready")]


def test_deployment_summary_reads_a_live_deployment() -> None:
    live = {
        "metadata": {"generation": 4},
        "spec": {"replicas": 3},
        "status": {
            "observedGeneration": 4,
            "replicas": 3,
            "readyReplicas": 1,
            "updatedReplicas": 3,
            "conditions": [
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": 'pods "x" is forbidden: violates PodSecurity',
                }
            ],
        },
    }
    summary = status.DeploymentSummary.of(live)
    assert (summary.desired, summary.replicas, summary.ready, summary.updated, summary.observed) == (
        3,
        3,
        1,
        3,
        True,
    )
    assert summary.problem == "PodsRejected"
    assert "PodSecurity" in summary.problem_message
    stuck = {
        "metadata": {"generation": 5},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 4,
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": "slow",
                }
            ],
        },
    }
    summary = status.DeploymentSummary.of(stuck)
    assert (summary.observed, summary.problem, summary.ready) == (False, "RolloutStuck", 0)


def test_long_messages_are_truncated() -> None:
    inputs = dataclasses.replace(
        OK, publication=status.Publication.unreachable("RedisUnavailable", "x" * 10000)
    )
    rendered = status.render(inputs, None, T0)
    assert all(len(c["message"]) <= status.MESSAGE_LIMIT for c in rendered["conditions"])
