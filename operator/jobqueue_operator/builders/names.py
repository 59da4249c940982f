"""Names, labels and owner references: the identities other components find our objects by.

These are contracts (docs/architecture.md, "Names"): the worker Deployment of JobQueue
``x`` is ``x-worker``; its selector is exactly :func:`selector_labels` (selectors are
immutable, so nothing user-controlled may ever enter them); the autoscaler, the dev pod
runner and dashboards select pods by these labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from jobqueue_operator import models

#: Field manager of everything the operator applies (Deployments, CronJobs, status).
OPERATOR_MANAGER: Final = "jobqueue-operator"
#: Field manager of ``spec.replicas`` of worker Deployments (and the autoscaler's status).
AUTOSCALER_MANAGER: Final = "jobqueue-autoscaler"

JOBQUEUE_LABEL: Final = f"{models.GROUP}/jobqueue"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
WORKER_COMPONENT: Final = "worker"
MANAGED_BY: Final = "jobqueue-operator"
#: Annotation on the Deployment and its pods: the RQ queue the workers serve (not a label:
#: queue names may contain ':').
QUEUE_ANNOTATION: Final = f"{models.GROUP}/queue"
#: Annotation on the Deployment: a digest of the apply body it was made from. A restarted
#: operator compares it with what it would apply now and, when they are the same, neither reads
#: nor applies the Deployment (10,000 JobQueues resumed with two requests each took minutes).
APPLIED_ANNOTATION: Final = f"{models.GROUP}/applied"
#: Server-side label selector of every worker Deployment (and pod) the operator manages.
WORKER_SELECTOR: Final = f"{MANAGED_BY_LABEL}={MANAGED_BY},{COMPONENT_LABEL}={WORKER_COMPONENT}"

WORKER_SUFFIX: Final = "-worker"


def deployment_name(jobqueue: str) -> str:
    return f"{jobqueue}{WORKER_SUFFIX}"


def selector_labels(jobqueue: str) -> dict[str, str]:
    """The worker Deployment's immutable selector."""
    return {JOBQUEUE_LABEL: jobqueue, COMPONENT_LABEL: WORKER_COMPONENT}


def worker_labels(jobqueue: str) -> dict[str, str]:
    """Labels of the worker Deployment and its pods (selector labels included)."""
    return {
        **selector_labels(jobqueue),
        "app.kubernetes.io/name": "jobqueue-worker",
        "app.kubernetes.io/instance": jobqueue,
        MANAGED_BY_LABEL: MANAGED_BY,
        "app.kubernetes.io/part-of": "jobqueue",
    }


def owner_reference(*, kind: str, name: str, uid: str, controller: bool = True) -> dict[str, Any]:
    """An owner reference to one of our resources (garbage collection on delete): the
    controller's, or (``controller=False``) one of several owners sharing the object, which
    must not hold up a foreground deletion of its owner."""
    ref: dict[str, Any] = {"apiVersion": models.API_VERSION, "kind": kind, "name": name, "uid": uid}
    if controller:
        ref |= {"controller": True, "blockOwnerDeletion": True}
    return ref


def owned_by_us(child: Mapping[str, Any], *, kind: str, component: str, owner_uid: str | None = None) -> bool:
    """Whether ``child`` (a live object) is one the operator made: it carries our
    ``managed-by`` and ``component`` labels and an owner reference to one of our ``kind`` —
    the controller reference of the object with ``owner_uid`` when that is given (a
    Deployment, a CronJob), any reference otherwise (the Secret several JobQueues share).
    Anything else is never applied, scaled, suspended or deleted: someone else's object of
    the same name is reported (``NameConflict``), not taken over."""
    meta = child.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or labels.get(COMPONENT_LABEL) != component:
        return False
    for ref in meta.get("ownerReferences") or []:
        if str(ref.get("apiVersion", "")).split("/")[0] != models.GROUP or ref.get("kind") != kind:
            continue
        if owner_uid is None or (ref.get("uid") == owner_uid and ref.get("controller") is True):
            return True
    return False


def name_conflict(kind: str, namespace: str, name: str, owner: str) -> str:
    """The message of a ``NameConflict``: an object of ours would take a name someone else's has."""
    return (
        f"a {kind} named {name} already exists in namespace {namespace} and was not made by "
        f"jobqueue-operator for {owner}; it is left untouched: delete or rename it, or rename {owner}"
    )


def recreates(owner: Mapping[str, Any], deleted_child: Mapping[str, Any]) -> bool:
    """Whether ``owner`` (as read after its child was deleted) should make the child again:
    it is not being deleted (else the deletion was garbage collection), and it is the owner
    the child named (not an earlier object of the same name)."""
    if owner["metadata"].get("deletionTimestamp"):
        return False
    owners = {ref.get("uid") for ref in (deleted_child.get("metadata") or {}).get("ownerReferences") or []}
    return owner["metadata"].get("uid") in owners


def jobqueue_of(labels: dict[str, str] | None) -> str | None:
    """The JobQueue a worker Deployment or pod belongs to, from its labels."""
    return (labels or {}).get(JOBQUEUE_LABEL)
