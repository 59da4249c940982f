"""Which RQ queue a JobQueue object names: the ``jobqueue`` command's ``-n NAMESPACE JOBQUEUE``.

The answer comes, in this order, from

1. **the Kubernetes API**, through the kubeconfig as kubectl finds it (``$KUBECONFIG``,
   ``~/.kube/config``, or the service account of the pod it runs in): the JobQueue's
   ``spec.queueName``, or ``<namespace>.<name>`` when it sets none (the operator's rule);
2. **the settings the operator published in Redis**, which name the namespace and JobQueue of
   each queue: where there is no kubeconfig, or its user may not read JobQueues;
3. **the name itself** as an RQ queue name, when a queue of that name is declared (so a queue
   whose JobQueue has gone, or one published by hand, stays reachable).

lightkube is imported when a lookup first needs it: the worker, which every pod runs, never
loads it. The module never writes anything and reads nothing but the one JobQueue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import redis

from jobqueue import settings

GROUP: Final = "jobqueue.glec.io"
VERSION: Final = "v1alpha1"
#: The API server's answer must come quickly: a person is waiting at a prompt.
API_TIMEOUT_SECONDS: Final = 5.0


@dataclass(frozen=True)
class Resolved:
    """A queue, and where its name came from (for messages)."""

    queue: str
    source: str


class NotResolved(LookupError):
    """Neither Kubernetes, nor the published settings, nor the name itself name a queue."""


def default_queue_name(namespace: str, name: str) -> str:
    """The queue name of a JobQueue without ``spec.queueName`` (the operator's own rule)."""
    return f"{namespace}.{name}"


def from_api(namespace: str, name: str) -> tuple[str | None, str]:
    """(queue name or None, why not) of JobQueue ``namespace/name`` in the kubeconfig's cluster."""
    import httpx2  # noqa: PLC0415 (lightkube's transport: its errors are connection errors)
    from lightkube import ApiError, Client, ConfigError  # noqa: PLC0415
    from lightkube.generic_resource import create_namespaced_resource  # noqa: PLC0415

    kind = create_namespaced_resource(GROUP, VERSION, "JobQueue", "jobqueues")
    try:
        client = Client(timeout=httpx2.Timeout(API_TIMEOUT_SECONDS))
        obj: Any = client.get(kind, name, namespace=namespace)
    except ConfigError as exc:
        return None, f"no kubeconfig ({exc})"
    except ApiError as exc:
        if exc.status.code == 404:
            return None, f"no JobQueue {namespace}/{name} in the kubeconfig's cluster"
        return None, f"the API server refused to read JobQueue {namespace}/{name}: {exc.status.message}"
    except (httpx2.HTTPError, OSError) as exc:
        return None, f"cannot reach the Kubernetes API ({type(exc).__name__}: {exc})"
    spec = obj.get("spec") or {}
    queue = spec.get("queueName") or default_queue_name(namespace, name)
    return str(queue), ""


def from_settings(conn: redis.Redis, namespace: str, name: str) -> str | None:
    """The queue whose published settings say JobQueue ``namespace/name`` declares it."""
    for queue in sorted(settings.published_queue_names(conn)):
        try:
            found = settings.load(conn, queue)
        except settings.UnknownQueueError:  # (withdrawn meanwhile)
            continue
        if (found.namespace, found.jobqueue) == (namespace, name):
            return queue
    return None


def resolve(conn: redis.Redis, namespace: str, name: str) -> Resolved:
    """The RQ queue of JobQueue ``namespace/name`` (see the module's docstring for the order);
    NotResolved saying what was tried."""
    queue, why = from_api(namespace, name)
    if queue is not None:
        return Resolved(queue, f"JobQueue {namespace}/{name}")
    queue = from_settings(conn, namespace, name)
    if queue is not None:
        return Resolved(queue, f"JobQueue {namespace}/{name} (its settings in Redis; Kubernetes: {why})")
    try:
        settings.load(conn, name)
    except settings.UnknownQueueError:
        raise NotResolved(
            f"no JobQueue {namespace}/{name}: Kubernetes: {why}; no queue in this Redis "
            f"is declared by it, and none is named {name!r} (`jobqueue stats` lists them)"
        ) from None
    return Resolved(name, f"queue {name!r} (no JobQueue {namespace}/{name}: {why})")
