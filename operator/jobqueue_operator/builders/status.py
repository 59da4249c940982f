"""The operator's part of a JobQueue's status, the conditions of both kinds, and the events
their changes deserve.

Inputs come from two places that change independently: the reconcile (generation, queue
name, whether the settings reached Redis, whether the Deployment apply worked) and the
watch of the worker Deployment (replicas, readiness, rollout problems). :func:`render`
turns them into the status fields the operator owns; the caller writes them only when
they differ from what is already there.

Conditions (``metav1.Condition``, keyed by type):

* ``RedisReachable`` — the queue's Redis answered and its settings are published there.
  False reasons: ``NoRedisConfigured``, ``SecretNotFound``, ``SecretKeyNotFound``,
  ``InvalidRedisURL``, ``RedisUnavailable``.
* ``Ready`` — the queue can run jobs: settings published, worker Deployment applied and
  healthy. False reasons: ``InvalidSpec``, ``DeploymentFailed``, ``RedisSecretConflict``,
  ``RedisSecretFailed``, ``QueueNameConflict``, ``RedisUnreachable``, ``PodsRejected``,
  ``RolloutStuck``, ``WorkersStarting``; True
  reasons: ``WorkersReady``, ``ScaledToZero``, ``Suspended``, ``RollingOut``,
  ``ScalingUp``.

:func:`conditions` renders these two conditions for a JobQueue and for a RecurringJob
(:mod:`jobqueue_operator.builders.recurringstatus`): ``lastTransitionTime`` moves only when a
condition's status flips, as Kubernetes conventions require, and messages are cut at
:data:`MESSAGE_LIMIT`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from jobqueue_operator.models import ConditionStatus

READY: Final = "Ready"
REDIS_REACHABLE: Final = "RedisReachable"
#: Ready reasons that get no Kubernetes Event of their own: normal operation, or a problem
#: the RedisReachable condition already reports.
QUIET_REASONS: Final = frozenset(
    {
        "WorkersReady",
        "ScaledToZero",
        "ScalingUp",
        "RollingOut",
        "WorkersStarting",
        "Suspended",
        "RedisUnreachable",
    }
)

#: Condition messages quote API and Redis errors; keep the status (and `kubectl describe`) small.
MESSAGE_LIMIT: Final = 2048


@dataclass(frozen=True)
class DeploymentSummary:
    """What the operator needs from a live worker Deployment."""

    desired: int
    replicas: int
    ready: int
    updated: int
    #: the Deployment controller has seen the latest spec
    observed: bool
    #: a reason the pods cannot run (``PodsRejected``, ``RolloutStuck``) and its message
    problem: str | None = None
    problem_message: str = ""

    @classmethod
    def of(cls, deployment: Mapping[str, Any]) -> DeploymentSummary:
        spec = deployment.get("spec") or {}
        status = deployment.get("status") or {}
        generation = (deployment.get("metadata") or {}).get("generation") or 0
        problem, message = None, ""
        for cond in status.get("conditions") or []:
            if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
                problem, message = "PodsRejected", str(cond.get("message", ""))
            elif (
                cond.get("type") == "Progressing"
                and cond.get("status") == "False"
                and cond.get("reason") == "ProgressDeadlineExceeded"
                and problem is None
            ):
                problem, message = "RolloutStuck", str(cond.get("message", ""))
        return cls(
            desired=int(spec.get("replicas", 1)),
            replicas=int(status.get("replicas") or 0),
            ready=int(status.get("readyReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            observed=int(status.get("observedGeneration") or 0) >= int(generation),
            problem=problem,
            problem_message=message,
        )


@dataclass(frozen=True)
class Publication:
    """How publishing the queue's settings in its Redis went."""

    reachable: bool
    published: bool
    reason: str
    message: str

    @classmethod
    def ok(cls, queue_name: str, generation: int | None) -> Publication:
        return cls(
            True, True, "Published", f"settings of queue {queue_name!r} published (generation {generation})"
        )

    @classmethod
    def unreachable(cls, reason: str, message: str) -> Publication:
        return cls(False, False, reason, message)

    @classmethod
    def conflict(cls, message: str) -> Publication:
        return cls(True, False, "QueueNameConflict", message)


@dataclass(frozen=True)
class Inputs:
    generation: int | None
    queue_name: str
    suspend: bool
    #: None: not attempted (the spec could not be read)
    publication: Publication | None
    #: None: the Deployment could not be applied (see ``apply_error``)
    deployment: DeploymentSummary | None
    #: (reason, message) of a failed parse or apply: ``InvalidSpec``, ``DeploymentFailed``, or
    #: the default-Redis Secret not written (``RedisSecretConflict``, ``RedisSecretFailed``)
    apply_error: tuple[str, str] | None = None


@dataclass(frozen=True)
class Transition:
    """A condition change worth a Kubernetes Event."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def ready_condition(inputs: Inputs) -> tuple[ConditionStatus, str, str]:  # noqa: PLR0911 (a decision table)
    pub, dep = inputs.publication, inputs.deployment
    if inputs.apply_error is not None:
        return "False", *inputs.apply_error
    if pub is None:
        return "Unknown", "NotChecked", "the queue's Redis was not checked"
    if not pub.reachable:
        return "False", "RedisUnreachable", pub.message
    if not pub.published:
        return "False", pub.reason, pub.message
    if dep is None:
        return "False", "DeploymentFailed", "the worker Deployment was not applied"
    if dep.problem:
        return "False", dep.problem, dep.problem_message
    counts = f"{dep.ready}/{dep.desired} workers ready"
    if inputs.suspend:
        return "True", "Suspended", f"suspended: workers take no new jobs ({counts})"
    if dep.desired == 0:
        return "True", "ScaledToZero", "no worker needed now; the autoscaler adds them when jobs arrive"
    if dep.ready == 0:
        return "False", "WorkersStarting", f"{counts}: waiting for the first worker"
    if not dep.observed or dep.updated < dep.replicas:
        return "True", "RollingOut", f"{counts}, rolling out the latest spec ({dep.updated} updated)"
    if dep.ready < dep.desired:
        return "True", "ScalingUp", counts
    return "True", "WorkersReady", counts


def redis_condition(inputs: Inputs) -> tuple[ConditionStatus, str, str]:
    pub = inputs.publication
    if pub is None:
        return "Unknown", "NotChecked", "the queue's Redis was not checked"
    return ("True" if pub.reachable else "False"), ("Reachable" if pub.reachable else pub.reason), pub.message


def render(
    inputs: Inputs, previous: Sequence[Mapping[str, Any]] | None, now: datetime.datetime
) -> dict[str, Any]:
    """The operator-owned status fields for ``inputs``; ``previous`` conditions keep their
    ``lastTransitionTime`` while their status stays the same."""
    dep = inputs.deployment
    status: dict[str, Any] = {"observedGeneration": inputs.generation, "queueName": inputs.queue_name}
    if dep is not None:
        status |= {
            "replicas": dep.replicas,
            "readyReplicas": dep.ready,
            "workers": f"{dep.ready}/{dep.desired}",
        }
    else:
        status |= {"replicas": 0, "readyReplicas": 0, "workers": "0/0"}
    status["conditions"] = conditions(
        ready_condition(inputs),
        redis_condition(inputs),
        previous=previous,
        generation=inputs.generation,
        now=now,
    )
    return {k: v for k, v in status.items() if v is not None}


def conditions(
    ready: tuple[ConditionStatus, str, str],
    redis: tuple[ConditionStatus, str, str],
    *,
    previous: Sequence[Mapping[str, Any]] | None,
    generation: int | None,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """The ``Ready`` and ``RedisReachable`` conditions from their (status, reason, message);
    each of ``previous`` keeps its ``lastTransitionTime`` while its status stays the same."""
    before = {c.get("type"): c for c in previous or []}
    out = []
    for type_, (state, reason, message) in ((READY, ready), (REDIS_REACHABLE, redis)):
        old = before.get(type_)
        since = old.get("lastTransitionTime") if old and old.get("status") == state else None
        out.append(
            {
                "type": type_,
                "status": state,
                "reason": reason,
                "message": message[:MESSAGE_LIMIT],
                "lastTransitionTime": since or timestamp(now),
                "observedGeneration": generation,
            }
        )
    return out


def transitions(
    before: Sequence[Mapping[str, Any]] | None, after: Sequence[Mapping[str, Any]]
) -> list[Transition]:
    """Events for condition changes: problems (Warning) and recoveries from them (Normal)."""
    old = {c.get("type"): c for c in before or []}
    events: list[Transition] = []
    for cond in after:
        prev = old.get(cond["type"])
        prev_key = (prev.get("status"), prev.get("reason")) if prev else (None, None)
        if prev_key == (cond["status"], cond["reason"]):
            continue
        if cond["type"] == REDIS_REACHABLE:
            if cond["status"] == "False":
                events.append(Transition("Warning", cond["reason"], cond["message"]))
            elif prev is not None and prev.get("status") == "False":
                events.append(Transition("Normal", "RedisReachable", cond["message"]))
        elif cond["type"] == READY:
            if cond["status"] == "False" and cond["reason"] not in QUIET_REASONS:
                events.append(Transition("Warning", cond["reason"], cond["message"]))
            elif (
                cond["status"] == "True"
                and prev is not None
                and prev.get("status") == "False"
                and prev.get("reason") not in QUIET_REASONS
            ):
                events.append(Transition("Normal", "Ready", cond["message"]))
    return events


def operator_fields(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The operator-owned part of a live status (what :func:`render` would have written)."""
    status = status or {}
    keys = ("observedGeneration", "queueName", "replicas", "readyReplicas", "workers")
    out = {k: status[k] for k in keys if k in status}
    return out | operator_conditions(status)


def operator_conditions(status: Mapping[str, Any]) -> dict[str, Any]:
    """``{"conditions": [...]}`` with the conditions of a live status that :func:`conditions`
    renders, in its order; empty if there are none."""
    ours = [dict(c) for c in status.get("conditions") or [] if c.get("type") in (READY, REDIS_REACHABLE)]
    return {"conditions": sorted(ours, key=lambda c: c["type"] != READY)} if ours else {}


def timestamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
