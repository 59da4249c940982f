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

**Permissions.** Each method declares, with :func:`needs`, the RBAC rules its request needs
(what controller-gen's markers do for Go operators); :data:`handlers.KOPF_NEEDS
<jobqueue_operator.handlers.KOPF_NEEDS>` adds what kopf itself does for the handlers. A unit
test (``tests/unit/chart/test_chart_rbac.py``) renders the chart and asserts that its operator
rules are exactly these: a call without its rule, or a rule without a call, fails.
"""

from __future__ import annotations

import base64
import datetime
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypeVar, cast

from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import CronJob
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Pod, Secret
from lightkube.types import PatchType

from jobqueue_operator import models
from jobqueue_operator.builders import redissecret

__all__ = [
    "ApiError",
    "Kube",
    "KubeApi",
    "Needs",
    "is_conflict",
    "is_forbidden",
    "is_invalid",
    "is_not_found",
    "permissions",
]

JobQueue: Final = create_namespaced_resource(
    models.GROUP, models.VERSION, models.JOBQUEUE_KIND, models.JOBQUEUE_PLURAL
)
RecurringJob: Final = create_namespaced_resource(
    models.GROUP, models.VERSION, models.RECURRINGJOB_KIND, models.RECURRINGJOB_PLURAL
)

EVENT_COMPONENT: Final = "jobqueue-operator"
#: Kubernetes truncates longer Event messages anyway; keep them readable in `kubectl describe`.
EVENT_MESSAGE_LIMIT: Final = 1024

#: kinds this module can apply (children of our resources, and the Secret of the default Redis)
_APPLIABLE: Final[Mapping[str, Any]] = {"Deployment": Deployment, "CronJob": CronJob, "Secret": Secret}
#: kinds whose status this module writes
_OURS: Final[Mapping[str, Any]] = {models.JOBQUEUE_KIND: JobQueue, models.RECURRINGJOB_KIND: RecurringJob}


# ---- the RBAC each request needs

#: resourceNames that come from the chart's values, not from the code (placeholders)
REDIS_SECRET_NAMES: Final = "<rbac.redisSecretNames>"  # noqa: S105 (names, no secret)
NOTIFICATION_SECRET_NAMES: Final = "<rbac.notificationSecretNames>"  # noqa: S105 (names, no secret)
LEASE_NAME: Final = "<the leader Lease>"
SHARD_LEASE_NAMES: Final = "<the shard and member Leases>"

#: where a rule is granted: in each watched namespace (all of them: a ClusterRole), cluster-wide
#: in either mode, or in the release namespace only (the leader Lease)
Scope = Literal["watched", "cluster", "release"]


@dataclass(frozen=True)
class Needs:
    """One RBAC rule a request needs: ``resource`` is the plural, with ``/subresource``;
    ``names`` limits it to those resourceNames (empty: any name)."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    names: tuple[str, ...] = ()
    scope: Scope = "watched"


#: the rules each method of :class:`Kube` declared, by qualified name
_DECLARED: dict[str, tuple[Needs, ...]] = {}
_F = TypeVar("_F", bound=Callable[..., Any])


def needs(*rules: Needs) -> Callable[[_F], _F]:
    """Declare the rules the decorated method's requests need (collected by :func:`permissions`)."""

    def declare(fn: _F) -> _F:
        _DECLARED[fn.__qualname__] = rules
        return fn

    return declare


def permissions() -> tuple[Needs, ...]:
    """Every rule this module's requests need, as declared next to them."""
    return tuple(rule for rules in _DECLARED.values() for rule in rules)


def declared_methods() -> frozenset[str]:
    """The qualified names of the methods that declared their rules (a test checks that every
    request method of :class:`Kube` is among them)."""
    return frozenset(_DECLARED)


_DEFAULT_REDIS_SECRET: Final = (redissecret.SECRET_NAME,)
#: Setting ownerReferences on an object needs `delete` of it, and `blockOwnerDeletion` needs
#: `update` of the owner's finalizers, on clusters with the OwnerReferencesPermissionEnforcement
#: admission plugin (OpenShift enables it).
_OWNED_CHILDREN: Final = (
    Needs("apps", "deployments", ("create", "patch", "delete")),
    Needs(models.GROUP, f"{models.JOBQUEUE_PLURAL}/finalizers", ("update",)),
    Needs("batch", "cronjobs", ("create", "patch", "delete")),
    Needs(models.GROUP, f"{models.RECURRINGJOB_PLURAL}/finalizers", ("update",)),
    Needs("", "secrets", ("create", "patch", "delete"), names=_DEFAULT_REDIS_SECRET),
)


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

    @needs(Needs("apps", "deployments", ("get",)))
    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(Deployment, namespace, name)

    @needs(*_OWNED_CHILDREN)
    async def apply(self, body: Mapping[str, Any], *, field_manager: str) -> dict[str, Any]:
        """Server-side apply ``body`` (a Deployment, CronJob or Secret) and return the live object."""
        resource = _APPLIABLE[body["kind"]]
        meta = body["metadata"]
        result = await self._client.patch(
            resource,
            meta["name"],
            dict(body),
            namespace=meta["namespace"],
            patch_type=PatchType.APPLY,
            field_manager=field_manager,
            force=True,
        )
        return _as_dict(result)

    @needs(Needs("apps", "deployments", ("delete",)))
    async def delete_deployment(self, namespace: str, name: str) -> None:
        """Delete a Deployment (already gone is fine); its pods go with it."""
        await self._delete(Deployment, namespace, name)

    async def _delete(self, resource: Any, namespace: str, name: str) -> None:
        try:
            await self._client.delete(resource, name, namespace=namespace)
        except ApiError as e:
            if not is_not_found(e):
                raise

    @needs(Needs("batch", "cronjobs", ("get",)))
    async def get_cronjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(CronJob, namespace, name)

    @needs(Needs("batch", "cronjobs", ("patch",)))
    async def suspend_cronjob(self, namespace: str, name: str, *, field_manager: str) -> dict[str, Any]:
        """Set ``spec.suspend`` of a CronJob without re-applying the rest of it (a RecurringJob
        whose JobQueue vanished: the operator cannot rebuild the pod without the queue)."""
        result = await self._client.patch(
            CronJob,
            name,
            {"spec": {"suspend": True}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
            field_manager=field_manager,
        )
        return _as_dict(result)

    @needs(Needs("apps", "deployments/scale", ("patch",)))
    async def scale_deployment(self, namespace: str, name: str, replicas: int, *, field_manager: str) -> None:
        """Set a Deployment's replicas through its scale subresource (the autoscaler's path)."""
        await self._client.patch(
            Deployment.Scale,
            name,
            {"spec": {"replicas": replicas}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
            field_manager=field_manager,
        )

    @needs(Needs("", "pods", ("patch",)))
    async def annotate_pod(
        self, namespace: str, name: str, annotations: Mapping[str, str], *, field_manager: str
    ) -> None:
        """Merge ``annotations`` into a pod's (the autoscaler's pod-deletion-cost before a scale-in)."""
        await self._client.patch(
            Pod,
            name,
            {"metadata": {"annotations": dict(annotations)}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
            field_manager=field_manager,
        )

    # ---- our resources

    @needs(Needs(models.GROUP, models.JOBQUEUE_PLURAL, ("get",)))
    async def get_jobqueue(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(JobQueue, namespace, name)

    @needs(Needs(models.GROUP, models.RECURRINGJOB_PLURAL, ("get",)))
    async def get_recurringjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(RecurringJob, namespace, name)

    @needs(
        Needs(models.GROUP, f"{models.JOBQUEUE_PLURAL}/status", ("patch",)),
        Needs(models.GROUP, f"{models.RECURRINGJOB_PLURAL}/status", ("patch",)),
    )
    async def apply_status(
        self, kind: str, namespace: str, name: str, status: Mapping[str, Any], *, field_manager: str
    ) -> None:
        """Server-side apply ``status`` of a JobQueue/RecurringJob: the fields this manager owns."""
        body = {
            "apiVersion": models.API_VERSION,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "status": dict(status),
        }
        await self._client.patch(
            _OURS[kind].Status,
            name,
            body,
            namespace=namespace,
            patch_type=PatchType.APPLY,
            field_manager=field_manager,
            force=True,
        )

    @needs(Needs(models.GROUP, f"{models.JOBQUEUE_PLURAL}/status", ("patch",)))
    async def merge_status(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], *, field_manager: str
    ) -> None:
        """JSON-merge-patch ``status`` (``None`` values delete keys)."""
        await self._client.patch(
            _OURS[kind].Status,
            name,
            {"status": dict(patch)},
            namespace=namespace,
            patch_type=PatchType.MERGE,
            field_manager=field_manager,
        )

    # ---- events

    @needs(Needs("", "events", ("create",)))
    async def post_event(self, obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        """Record a core/v1 Event about ``obj`` (a body with apiVersion, kind, name, namespace, uid)."""
        meta = obj["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type,
            "reason": reason,
            "message": message[:EVENT_MESSAGE_LIMIT],
            "source": {"component": EVENT_COMPONENT},
            "reportingComponent": EVENT_COMPONENT,
            "reportingInstance": (os.environ.get("POD_NAME") or socket.gethostname())[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._client.create(cast(Event, Event.from_dict(event)))

    # ---- leases (leader election, :mod:`jobqueue_operator.leader`)

    @needs(
        Needs("coordination.k8s.io", "leases", ("get",), names=(LEASE_NAME,), scope="release"),
        Needs("coordination.k8s.io", "leases", ("get",), names=(SHARD_LEASE_NAMES,), scope="release"),
    )
    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(Lease, namespace, name)

    @needs(Needs("coordination.k8s.io", "leases", ("list",), scope="release"))
    async def list_leases(self, namespace: str) -> list[dict[str, Any]]:
        """Every Lease of the namespace (the shard and member Leases of :mod:`.sharding` are read
        in one request per step, not one each)."""
        return [_as_dict(lease) async for lease in self._client.list(Lease, namespace=namespace)]

    @needs(
        Needs("coordination.k8s.io", "leases", ("create", "patch"), names=(LEASE_NAME,), scope="release"),
        Needs(
            "coordination.k8s.io", "leases", ("create", "patch"), names=(SHARD_LEASE_NAMES,), scope="release"
        ),
    )
    async def create_lease(self, body: Mapping[str, Any], *, field_manager: str) -> dict[str, Any]:
        """Create a Lease that was not there, by server-side apply — so that RBAC can limit even
        ``create`` to the Lease's name (an apply is authorised with the name in its URL; a POST
        is not). Without ``force``, a Lease created meanwhile by another field manager makes
        the apply fail with 409 (:func:`is_conflict`) instead of changing its holder."""
        meta = body["metadata"]
        return _as_dict(
            await self._client.patch(
                Lease,
                meta["name"],
                dict(body),
                namespace=meta["namespace"],
                patch_type=PatchType.APPLY,
                field_manager=field_manager,
                force=False,
            )
        )

    @needs(
        Needs("coordination.k8s.io", "leases", ("update",), names=(LEASE_NAME,), scope="release"),
        Needs("coordination.k8s.io", "leases", ("update",), names=(SHARD_LEASE_NAMES,), scope="release"),
    )
    async def replace_lease(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace (PUT) a Lease. ``body`` carries the ``metadata.resourceVersion`` it was read
        at, so the write fails with 409 if anyone changed the Lease since: the compare-and-swap
        leader election rests on."""
        return _as_dict(await self._client.replace(cast(Lease, Lease.from_dict(dict(body)))))

    # ---- configuration

    @needs(Needs("", "secrets", ("get",), names=_DEFAULT_REDIS_SECRET))
    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret as the API returns it (``data`` base64-encoded), or None."""
        return await self._get(Secret, namespace, name)

    @needs(Needs("", "secrets", ("delete",), names=_DEFAULT_REDIS_SECRET))
    async def delete_secret(self, namespace: str, name: str) -> None:
        """Delete a Secret (already gone is fine)."""
        await self._delete(Secret, namespace, name)

    @needs(
        Needs("", "secrets", ("get",), names=(REDIS_SECRET_NAMES,)),
        Needs("", "secrets", ("get",), names=(NOTIFICATION_SECRET_NAMES,)),
    )
    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """A Secret's decoded data, or None if it does not exist."""
        secret = await self._get(Secret, namespace, name)
        if secret is None:
            return None
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


class LeaseApi(Protocol):
    """What the elections need of :class:`Kube` (:mod:`.leader`, :mod:`.sharding`); the
    middle tier runs several shard tables against one in-memory fake of it."""

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def list_leases(self, namespace: str) -> list[dict[str, Any]]: ...
    async def create_lease(self, body: Mapping[str, Any], *, field_manager: str) -> dict[str, Any]: ...
    async def replace_lease(self, body: Mapping[str, Any]) -> dict[str, Any]: ...


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
    async def scale_deployment(
        self, namespace: str, name: str, replicas: int, *, field_manager: str
    ) -> None: ...
    async def annotate_pod(
        self, namespace: str, name: str, annotations: Mapping[str, str], *, field_manager: str
    ) -> None: ...
    async def get_jobqueue(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def get_recurringjob(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def apply_status(
        self, kind: str, namespace: str, name: str, status: Mapping[str, Any], *, field_manager: str
    ) -> None: ...
    async def merge_status(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], *, field_manager: str
    ) -> None: ...
    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def delete_secret(self, namespace: str, name: str) -> None: ...
    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None: ...
