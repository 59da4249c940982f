"""What the autoscaler keeps in memory about worker Deployments, worker pods and JobQueue status.

The poller runs every second over every queue; reading these objects from the API each time
would cost thousands of requests per second. kopf keeps in-memory indexes of them from its
watch streams instead (``@kopf.index`` in :mod:`jobqueue_operator.handlers`), and these are
the pure projections those indexes store: small frozen records, keyed by the JobQueue's
``(namespace, name)``. Several pods share a key, so the pod index holds one
:class:`PodView` per pod under it.

Like every index read by a task started at startup, these may be incomplete for a moment
after the operator starts: the poller never reads "absent" as "zero" or "deleted".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from jobqueue_operator.builders import names
from jobqueue_operator.builders.status import DeploymentSummary
from jobqueue_operator.index import Key

#: The annotation the ReplicaSet controller reads to choose which pods to delete first.
DELETION_COST_ANNOTATION: Final = "controller.kubernetes.io/pod-deletion-cost"

#: Status fields written by the autoscaler (the others belong to the reconcile).
STATUS_FIELDS: Final = (
    "queued",
    "scheduled",
    "running",
    "failed",
    "oldestQueuedSeconds",
    "desiredReplicas",
    "lastScaleTime",
    "lastScaleReason",
    "paused",
    "rateLimited",
)


@dataclass(frozen=True)
class DeploymentView:
    """A worker Deployment: what the autoscaler needs to know before writing replicas."""

    name: str
    #: ``spec.replicas`` (the Deployment default of 1 when unset)
    replicas: int
    #: uid of the JobQueue holding its controller reference (None: none): a Deployment that
    #: merely carries our labels is never scaled
    controller_uid: str | None = None
    #: the digest of the apply body it was last applied from (``names.APPLIED_ANNOTATION``)
    applied: str | None = None
    #: its state as the JobQueue's status shows it (what a resume that applies nothing reports)
    summary: DeploymentSummary | None = None


@dataclass(frozen=True)
class PodView:
    """A worker pod."""

    name: str
    #: ``controller.kubernetes.io/pod-deletion-cost`` as set now (None: unset or not a number)
    deletion_cost: int | None
    terminating: bool
    #: phase Failed or Succeeded (evicted, or its node shut down): its containers have stopped
    finished: bool
    #: name of the ReplicaSet holding its controller reference (None: none): only pods of the
    #: worker Deployment's ReplicaSets get a deletion cost
    replica_set: str | None = None


def _key(body: Mapping[str, Any]) -> Key | None:
    meta = body.get("metadata") or {}
    jobqueue = names.jobqueue_of(meta.get("labels"))
    if jobqueue is None or not meta.get("namespace"):
        return None
    return str(meta["namespace"]), jobqueue


def deployment_entry(body: Mapping[str, Any]) -> dict[Key, DeploymentView] | None:
    key = _key(body)
    if key is None:
        return None
    replicas = (body.get("spec") or {}).get("replicas")
    name = str(body["metadata"]["name"])
    return {
        key: DeploymentView(
            name=name,
            replicas=1 if replicas is None else int(replicas),
            controller_uid=_controller(body, "JobQueue", "uid"),
            applied=(body["metadata"].get("annotations") or {}).get(names.APPLIED_ANNOTATION),
            summary=DeploymentSummary.of(body),
        )
    }


def pod_entry(body: Mapping[str, Any]) -> dict[Key, PodView] | None:
    key = _key(body)
    if key is None:
        return None
    meta = body["metadata"]
    raw_cost = (meta.get("annotations") or {}).get(DELETION_COST_ANNOTATION)
    try:
        cost = None if raw_cost is None else int(raw_cost)
    except ValueError:
        cost = None
    phase = (body.get("status") or {}).get("phase")
    return {
        key: PodView(
            name=str(meta["name"]),
            deletion_cost=cost,
            terminating=bool(meta.get("deletionTimestamp")),
            finished=phase in ("Failed", "Succeeded"),
            replica_set=_controller(body, "ReplicaSet", "name"),
        )
    }


def _controller(body: Mapping[str, Any], kind: str, field: str) -> str | None:
    """``field`` (uid, name) of the controller owner reference of ``body`` if it is a ``kind``."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") is True and ref.get("kind") == kind:
            return str(ref.get(field))
    return None


def status_entry(body: Mapping[str, Any]) -> dict[Key, dict[str, Any]] | None:
    """The autoscaler's fields of a JobQueue's status, as they are on the object now."""
    meta = body.get("metadata") or {}
    if not meta.get("namespace") or not meta.get("name"):
        return None
    status = body.get("status") or {}
    return {(str(meta["namespace"]), str(meta["name"])): {k: status[k] for k in STATUS_FIELDS if k in status}}
