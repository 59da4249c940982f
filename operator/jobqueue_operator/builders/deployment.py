"""The worker Deployment of a JobQueue, as the body of a server-side apply.

What the body contains is what the operator owns: applying it with one field manager
(``jobqueue-operator``) makes the Deployment follow the spec, and a field dropped from the
body (an env var, a toleration, a resources limit removed from the JobQueue) is removed
from the Deployment, because nobody else owns it.

``spec.replicas`` is deliberately absent: replicas belong to the autoscaler (field manager
``jobqueue-autoscaler``, through the scale subresource). The one exception is the very
first apply, which creates the Deployment; :func:`with_replicas` and
:func:`replicas_claim` serve the hand-over done by the reconcile layer (see
:mod:`jobqueue_operator.reconcile`).

The pod passes the ``restricted`` Pod Security Standard whatever the JobQueue says: non-root
(UID 65532 unless ``worker.securityContext.runAsUser``), no privilege escalation, all
capabilities dropped, RuntimeDefault seccomp, read-only root filesystem with an emptyDir
``/tmp``. Its grace period covers a whole job: a stopping worker finishes its running jobs
(docs/architecture.md, the worker pod contract), so Kubernetes must not SIGKILL it earlier.

**The Redis URL is never in the body.** ``JOBQUEUE_REDIS_URL`` is a ``secretKeyRef``: to the
queue's ``spec.redis.urlSecretRef``, or to the namespace's Secret holding the operator's
default URL (:mod:`~jobqueue_operator.builders.redissecret`), whose revision the pod
template carries so that a changed default URL rolls the workers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

from jobqueue import settings
from jobqueue.settings import resolve
from jobqueue_operator import models
from jobqueue_operator.builders import names, redissecret

CONTAINER: Final = "worker"
#: The pods' JobQueue (with POD_NAMESPACE: whose published settings they accept).
JOBQUEUE_NAME_ENV: Final = settings.OWNER_NAME_ENV
METRICS_PORT: Final = 9100
#: Added to the queue's job timeout for the grace period: the worker's own shutdown
#: (deregistering, flushing metrics) after its last job.
GRACE_MARGIN_SECONDS: Final = 30
#: The distroless "nonroot" UID: images built FROM python:* run as root by default, and the
#: restricted standard needs a numeric non-root UID the kubelet can verify.
DEFAULT_RUN_AS_USER: Final = 65532
#: Old ReplicaSets kept for `kubectl rollout undo`; a worker rolls out on every spec change.
REVISION_HISTORY_LIMIT: Final = 3


@dataclass(frozen=True, kw_only=True)
class WorkerDefaults:
    """What the operator's settings contribute to every worker Deployment."""

    #: the operator has a default Redis (``JOBQUEUE_REDIS_URL``): pods of queues without
    #: ``spec.redis`` read it from the namespace's Secret (never from the pod spec)
    default_redis: bool = False
    #: ``<prefix><priority>`` is the priorityClassName; empty: none
    priority_class_prefix: str = ""
    image_pull_policy: str | None = None


def worker_command(spec: models.JobQueueSpec, queue_name: str) -> list[str]:
    """The worker pod contract's command line (docs/architecture.md)."""
    command = ["jobqueue", "worker", "--queue", queue_name]
    for module in spec.worker.imports:
        command += ["--import", module]
    command += ["--concurrency", str(spec.worker.concurrency_per_pod), "--mode", spec.worker.mode]
    return command


def termination_grace_seconds(spec: models.JobQueueSpec) -> int:
    floor = resolve(spec.job_defaults).timeout_seconds + GRACE_MARGIN_SECONDS
    return max(floor, spec.worker.termination_grace_period_seconds or 0)


def priority_class(spec: models.JobQueueSpec, defaults: WorkerDefaults) -> str | None:
    if spec.worker.priority_class_name:
        return spec.worker.priority_class_name
    if defaults.priority_class_prefix:
        return f"{defaults.priority_class_prefix}{spec.priority}"
    return None


def build(
    *,
    namespace: str,
    name: str,
    uid: str,
    spec: models.JobQueueSpec,
    queue_name: str,
    defaults: WorkerDefaults,
    redis_revision: int | None = None,
) -> dict[str, Any]:
    """The apply body of JobQueue ``namespace/name``'s worker Deployment (no replicas), with
    its own digest in :data:`names.APPLIED_ANNOTATION`. ``redis_revision``: the revision of
    the namespace's default-Redis Secret (for queues on the default Redis)."""
    labels = names.worker_labels(name)
    worker = spec.worker
    pod_annotations = {
        **(worker.pod_annotations or {}),
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORT),
        "prometheus.io/path": "/metrics",
        names.QUEUE_ANNOTATION: queue_name,
    }
    if spec.redis is None and defaults.default_redis and redis_revision is not None:
        pod_annotations[redissecret.REVISION_ANNOTATION] = str(redis_revision)
    container = _drop_empty(
        {
            "name": CONTAINER,
            "image": worker.image,
            "imagePullPolicy": worker.image_pull_policy or defaults.image_pull_policy,
            "command": worker_command(spec, queue_name),
            # the metrics port comes from the environment, not the command line, so the dev pod
            # runner (all pods on one host network) can give every pod its own port
            "env": [
                *operator_env(spec, defaults, jobqueue=name),
                {"name": "JOBQUEUE_METRICS_PORT", "value": str(METRICS_PORT)},
                *(_dump_all(worker.env) or []),
            ],
            "envFrom": _dump_all(worker.env_from),
            "resources": _dump(worker.resources),
            "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
            "securityContext": container_security(),
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 (an emptyDir)
        }
    )
    pod_spec = _drop_empty(
        {
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
            "securityContext": pod_security(worker),
            "terminationGracePeriodSeconds": termination_grace_seconds(spec),
            "enableServiceLinks": False,
            "automountServiceAccountToken": worker.automount_service_account_token,
            "serviceAccountName": worker.service_account_name,
            "priorityClassName": priority_class(spec, defaults),
            "nodeSelector": worker.node_selector,
            "tolerations": _dump_all(worker.tolerations),
            "affinity": worker.affinity,
            "topologySpreadConstraints": worker.topology_spread_constraints,
            "imagePullSecrets": _dump_all(worker.image_pull_secrets),
        }
    )
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": names.deployment_name(name),
            "namespace": namespace,
            "labels": labels,
            "annotations": {names.QUEUE_ANNOTATION: queue_name},
            "ownerReferences": [names.owner_reference(kind=models.JOBQUEUE_KIND, name=name, uid=uid)],
        },
        "spec": {
            "selector": {"matchLabels": names.selector_labels(name)},
            "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
            # New workers start before old ones are told to drain: a rollout never lowers
            # the queue's capacity (old pods may take up to a job timeout to leave).
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                # user labels first: ours win, so the selector can never be broken
                "metadata": {
                    "labels": {**(worker.pod_labels or {}), **labels},
                    "annotations": pod_annotations,
                },
                "spec": pod_spec,
            },
        },
    }
    body["metadata"]["annotations"][names.APPLIED_ANNOTATION] = digest(body)
    return body


def digest(body: Mapping[str, Any]) -> str:
    """A short digest of an apply body: the same for the same body, whatever its key order."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def container_security() -> dict[str, Any]:
    """The securityContext of every container the operator makes (workers, RecurringJob
    enqueuers): the restricted Pod Security Standard, and a root filesystem nothing can
    write to. (A new dict each time: bodies are patched in place downstream.)"""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }


def pod_security(worker: models.WorkerSpec) -> dict[str, Any]:
    """The pod securityContext of every pod the operator makes for a queue: non-root (UID
    65532 unless the queue's ``worker.securityContext`` says otherwise), the runtime's default
    seccomp profile."""
    security = worker.security_context
    return _drop_empty(
        {
            "runAsNonRoot": True,
            "runAsUser": (security and security.run_as_user) or DEFAULT_RUN_AS_USER,
            "runAsGroup": security and security.run_as_group,
            "fsGroup": security and security.fs_group,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    )


def operator_env(
    spec: models.JobQueueSpec, defaults: WorkerDefaults, *, jobqueue: str
) -> list[dict[str, Any]]:
    """What every pod of a queue needs from the operator: its Redis URL (always by Secret
    reference) and who it is — its pod and namespace (downward API) and its JobQueue
    (``JOBQUEUE_NAME``): a worker takes jobs only from a queue whose published settings
    name that namespace and JobQueue (:func:`jobqueue.settings.load`)."""
    env: list[dict[str, Any]] = []
    if spec.redis is not None:
        ref = spec.redis.url_secret_ref
        env.append(_secret_env("JOBQUEUE_REDIS_URL", ref.name, ref.key))
    elif defaults.default_redis:
        env.append(_secret_env("JOBQUEUE_REDIS_URL", redissecret.SECRET_NAME, redissecret.URL_KEY))
    for name, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        env.append({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}})
    env.append({"name": JOBQUEUE_NAME_ENV, "value": jobqueue})
    return env


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def with_replicas(body: Mapping[str, Any], replicas: int) -> dict[str, Any]:
    """``body`` with ``spec.replicas``: only for the apply that creates the Deployment."""
    return {**body, "spec": {**body["spec"], "replicas": replicas}}


def replicas_claim(
    *, namespace: str, name: str, replicas: int, resource_version: str | None = None
) -> dict[str, Any]:
    """The apply body by which the autoscaler's field manager takes ``spec.replicas``; with
    ``resource_version``, only if the Deployment has not changed since (a precondition)."""
    meta = {"name": name, "namespace": namespace}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {"replicas": replicas}}


def replicas_managers(deployment: Mapping[str, Any]) -> set[str]:
    """Field managers owning ``spec.replicas`` of a live Deployment (from managedFields)."""
    owners = set()
    for entry in deployment.get("metadata", {}).get("managedFields") or []:
        fields = entry.get("fieldsV1") or {}
        if "f:replicas" in (fields.get("f:spec") or {}):
            owners.add(str(entry.get("manager", "")))
    return owners


def _dump(model: BaseModel | None) -> dict[str, Any] | None:
    return None if model is None else model.model_dump(by_alias=True, exclude_none=True)


def _dump_all(items: Iterable[BaseModel] | None) -> list[dict[str, Any]] | None:
    return None if items is None else [m.model_dump(by_alias=True, exclude_none=True) for m in items]


def _drop_empty(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Leave out unset optional fields (``None``, empty lists and maps): absent means "not ours"."""
    return {k: v for k, v in mapping.items() if v is not None and v not in ([], {})}
