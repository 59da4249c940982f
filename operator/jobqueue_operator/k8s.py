"""The only module of the operator that talks to the Kubernetes API (through lightkube).

kopf watches and dispatches; everything the operator *writes* goes through here, with an
async client (never kopf's private one, kopf.md §4.1). Bodies in and out are plain dicts,
the same shape the builders produce and ``kubectl get -o json`` shows, so nothing above
this module depends on lightkube's model classes.

Writes are server-side applies under a named field manager
(:data:`~jobqueue_operator.builders.names.OPERATOR_MANAGER` for what the operator owns,
:data:`~jobqueue_operator.builders.names.AUTOSCALER_MANAGER` for replicas and the
backlog status), so each owner's fields stay its own and a field an owner stops applying
disappears.

Credentials: in-cluster service account, else ``KUBECONFIG``, else ``~/.kube/config``
(lightkube's order).
"""

from __future__ import annotations

import base64
import datetime
import os
import socket
from collections.abc import Mapping
from typing import Any, Final, Protocol, cast

from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import CronJob
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Pod, Secret
from lightkube.types import PatchType

from jobqueue_operator import models

__all__ = ["ApiError", "Kube", "KubeApi", "is_conflict", "is_forbidden", "is_invalid", "is_not_found"]

JobQueue: Final = create_namespaced_resource(
    models.GROUP, models.VERSION, models.JOBQUEUE_KIND, models.JOBQUEUE_PLURAL)
RecurringJob: Final = create_namespaced_resource(
    models.GROUP, models.VERSION, models.RECURRINGJOB_KIND, models.RECURRINGJOB_PLURAL)

EVENT_COMPONENT: Final = "jobqueue-operator"
#: Kubernetes truncates longer Event messages anyway; keep them readable in `kubectl describe`.
EVENT_MESSAGE_LIMIT: Final = 1024

#: kinds this module can apply (children of our resources, and the Secret of the default Redis)
_APPLIABLE: Final[Mapping[str, Any]] = {"Deployment": Deployment, "CronJob": CronJob, "Secret": Secret}
#: kinds whose status this module writes
_OURS: Final[Mapping[str, Any]] = {models.JOBQUEUE_KIND: JobQueue, models.RECURRINGJOB_KIND: RecurringJob}


def _code(error: ApiError) -> int:
    return int(getattr(error.status, "code", 0) or 0)


def is_not_found(error: ApiError) -> bool:
    return _code(error) == 404


def is_forbidden(error: ApiError) -> bool:
    """403: RBAC (or an admission webhook) does not allow the request."""
    return _code(error) == 403


def is_conflict(error: ApiError) -> bool:
    return _code(error) == 409


def is_invalid(error: ApiError) -> bool:
    """422: the API server refused the body itself; retrying the same body cannot help."""
    return _code(error) == 422


def message(error: ApiError) -> str:
    return str(getattr(error.status, "message", "") or error)


def _as_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = obj.to_dict()
    return out


class Kube:
    """An open API client; create it with :meth:`connect`, close it with :meth:`close`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @classmethod
    def connect(cls) -> Kube:
        # HTTP/2: every request shares one TLS connection. Over HTTP/1.1 a burst (fifty new
        # JobQueues: their applies, status writes and Events at once) opened a connection per
        # request beyond the pool's 20 kept alive, and TLS handshakes became the largest CPU
        # cost of a reconcile in the apply-latency profile (docs/performance.md).
        return cls(AsyncClient(http2=True))

    async def close(self) -> None:
        await self._client.close()

    # ---- children (Deployments, CronJobs)

    async def _get(self, resource: Any, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _as_dict(await self._client.get(resource, name, namespace=namespace))
        except ApiError as e:
            if is_not_found(e):
                return None
            raise

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(Deployment, namespace, name)

    async def apply(self, body: Mapping[str, Any], *, field_manager: str) -> dict[str, Any]:
        """Server-side apply ``body`` (a Deployment, CronJob or Secret) and return the live object."""
        resource = _APPLIABLE[body["kind"]]
        meta = body["metadata"]
        result = await self._client.patch(
            resource, meta["name"], dict(body), namespace=meta["namespace"],
            patch_type=PatchType.APPLY, field_manager=field_manager, force=True)
        return _as_dict(result)

    async def delete_deployment(self, namespace: str, name: str) -> None:
        """Delete a Deployment (already gone is fine); its pods go with it."""
        await self._delete(Deployment, namespace, name)

    async def _delete(self, resource: Any, namespace: str, name: str) -> None:
        try:
            await self._client.delete(resource, name, namespace=namespace)
        except ApiError as e:
            if not is_not_found(e):
                raise

    async def get_cronjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(CronJob, namespace, name)

    async def suspend_cronjob(self, namespace: str, name: str, *, field_manager: str) -> dict[str, Any]:
        """Set ``spec.suspend`` of a CronJob without re-applying the rest of it (a RecurringJob
        whose JobQueue vanished: the operator cannot rebuild the pod without the queue)."""
        result = await self._client.patch(
            CronJob, name, {"spec": {"suspend": True}}, namespace=namespace,
            patch_type=PatchType.MERGE, field_manager=field_manager)
        return _as_dict(result)

    async def scale_deployment(self, namespace: str, name: str, replicas: int, *,
                               field_manager: str) -> None:
        """Set a Deployment's replicas through its scale subresource (the autoscaler's path)."""
        await self._client.patch(
            Deployment.Scale, name, {"spec": {"replicas": replicas}}, namespace=namespace,
            patch_type=PatchType.MERGE, field_manager=field_manager)

    async def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str], *,
                           field_manager: str) -> None:
        """Merge ``annotations`` into a pod's (the autoscaler's pod-deletion-cost before a scale-in)."""
        await self._client.patch(
            Pod, name, {"metadata": {"annotations": dict(annotations)}}, namespace=namespace,
            patch_type=PatchType.MERGE, field_manager=field_manager)

    # ---- our resources

    async def get_jobqueue(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(JobQueue, namespace, name)

    async def get_recurringjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(RecurringJob, namespace, name)

    async def apply_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any], *,
                           field_manager: str) -> None:
        """Server-side apply ``status`` of a JobQueue/RecurringJob: the fields this manager owns."""
        body = {"apiVersion": models.API_VERSION, "kind": kind,
                "metadata": {"name": name, "namespace": namespace}, "status": dict(status)}
        await self._client.patch(
            _OURS[kind].Status, name, body, namespace=namespace,
            patch_type=PatchType.APPLY, field_manager=field_manager, force=True)

    async def merge_status(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], *,
                           field_manager: str) -> None:
        """JSON-merge-patch ``status`` (``None`` values delete keys)."""
        await self._client.patch(
            _OURS[kind].Status, name, {"status": dict(patch)}, namespace=namespace,
            patch_type=PatchType.MERGE, field_manager=field_manager)

    # ---- events

    async def post_event(self, obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        """Record a core/v1 Event about ``obj`` (a body with apiVersion, kind, name, namespace, uid)."""
        meta = obj["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid")},
            "type": type, "reason": reason, "message": message[:EVENT_MESSAGE_LIMIT],
            "source": {"component": EVENT_COMPONENT}, "reportingComponent": EVENT_COMPONENT,
            "reportingInstance": (os.environ.get("POD_NAME") or socket.gethostname())[:128],
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        await self._client.create(cast(Event, Event.from_dict(event)))

    # ---- leases (leader election, :mod:`jobqueue_operator.leader`)

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(Lease, namespace, name)

    async def create_lease(self, body: Mapping[str, Any], *, field_manager: str) -> dict[str, Any]:
        """Create a Lease that was not there, by server-side apply — so that RBAC can limit even
        ``create`` to the Lease's name (an apply is authorised with the name in its URL; a POST
        is not). Without ``force``, a Lease created meanwhile by another field manager makes
        the apply fail with 409 (:func:`is_conflict`) instead of changing its holder."""
        meta = body["metadata"]
        return _as_dict(await self._client.patch(
            Lease, meta["name"], dict(body), namespace=meta["namespace"], patch_type=PatchType.APPLY,
            field_manager=field_manager, force=False))

    async def replace_lease(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace (PUT) a Lease. ``body`` carries the ``metadata.resourceVersion`` it was read
        at, so the write fails with 409 if anyone changed the Lease since: the compare-and-swap
        leader election rests on."""
        return _as_dict(await self._client.replace(cast(Lease, Lease.from_dict(dict(body)))))

    # ---- configuration

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret as the API returns it (``data`` base64-encoded), or None."""
        return await self._get(Secret, namespace, name)

    async def delete_secret(self, namespace: str, name: str) -> None:
        """Delete a Secret (already gone is fine)."""
        await self._delete(Secret, namespace, name)

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """A Secret's decoded data, or None if it does not exist."""
        secret = await self._get(Secret, namespace, name)
        if secret is None:
            return None
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


class KubeApi(Protocol):
    """What the reconcilers, the autoscaler, the status keeper, the default-Redis Secrets and
    the Redis addressing need of :class:`Kube`: they are typed against this, so the middle
    test tier (tests/unit/middle) runs them against an in-memory fake of the API, and mypy
    checks that :class:`Kube` still provides every method (handlers.py passes it in)."""

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def apply(self, body: Mapping[str, Any], *, field_manager: str) -> dict[str, Any]: ...
    async def delete_deployment(self, namespace: str, name: str) -> None: ...
    async def get_cronjob(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def suspend_cronjob(self, namespace: str, name: str, *, field_manager: str) -> dict[str, Any]: ...
    async def scale_deployment(self, namespace: str, name: str, replicas: int, *,
                               field_manager: str) -> None: ...
    async def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str], *,
                           field_manager: str) -> None: ...
    async def get_jobqueue(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def get_recurringjob(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def apply_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any], *,
                           field_manager: str) -> None: ...
    async def merge_status(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], *,
                           field_manager: str) -> None: ...
    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def delete_secret(self, namespace: str, name: str) -> None: ...
    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None: ...
