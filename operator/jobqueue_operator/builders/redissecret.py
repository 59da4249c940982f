"""The Secret through which pods get the operator's default Redis URL, as an apply body.

Queues without ``spec.redis`` live in the operator's default Redis (``JOBQUEUE_REDIS_URL``).
Their pods (worker Deployments, RecurringJob CronJobs) must know that URL, which may carry a
password, so it never goes into a pod spec: the operator keeps it in one Secret per
namespace, :data:`SECRET_NAME`, and the pods read it with ``secretKeyRef``. Anyone who may
read Deployments or CronJobs, but not Secrets (the built-in ``view`` role), sees only the
Secret's name.

**One fixed name per namespace, not one Secret per JobQueue**, because the name is what
RBAC can restrict: a server-side apply that creates an object is authorised as ``create``
*of that name*, so the chart grants ``get``/``create``/``patch``/``delete`` on this one
name only. Per-JobQueue names would need ``patch`` on every Secret of the namespace, and
the response to a patch is the Secret itself, data included: the operator could read them
all.

**Owners.** The Secret's ``ownerReferences`` list every JobQueue of the namespace that uses
the default Redis (not as controller: they share it). The garbage collector drops a
deleted JobQueue's reference and deletes the Secret with the last one, whether or not the
operator runs; the operator deletes it itself when the last such JobQueue switches to
``spec.redis``.

**Revision.** :data:`REVISION_ANNOTATION` counts the URLs the Secret has held. Pods of the
default Redis carry it in their template (:func:`~jobqueue_operator.builders.deployment.build`),
so a changed URL (rotated password, Redis moved) rolls the workers like any spec change —
a container reads ``secretKeyRef`` only when it starts, and workers left on an old Redis
would never see the new queue. A counter rather than a hash of the URL: a hash in a pod
template would let Deployment readers test password guesses offline.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from jobqueue_operator import models
from jobqueue_operator.builders import names

SECRET_NAME: Final = "jobqueue-default-redis"  # noqa: S105 (a name, not a password)
URL_KEY: Final = "url"
REVISION_ANNOTATION: Final = f"{models.GROUP}/redis-revision"
COMPONENT: Final = "default-redis"


@dataclass(frozen=True, order=True)
class Owner:
    """A JobQueue using the default Redis."""

    name: str
    uid: str


@dataclass(frozen=True)
class Live:
    """What the operator needs from the Secret as it is in the cluster."""

    #: created by this operator: our labels and an owner reference to a JobQueue (else it is
    #: someone else's and must be left alone)
    ours: bool
    url: str | None
    revision: int
    owners: frozenset[str]
    uid: str

    @classmethod
    def of(cls, secret: Mapping[str, Any]) -> Live:
        meta = secret.get("metadata") or {}
        try:
            revision = int((meta.get("annotations") or {}).get(REVISION_ANNOTATION, 0))
        except ValueError:
            revision = 0
        return cls(
            ours=names.owned_by_us(secret, kind=models.JOBQUEUE_KIND, component=COMPONENT),
            url=_decode((secret.get("data") or {}).get(URL_KEY)),
            revision=revision,
            owners=frozenset(str(r.get("uid")) for r in meta.get("ownerReferences") or []),
            uid=str(meta.get("uid", "")),
        )


def revision(live: Live | None, url: str, *, known: int = 0) -> int:
    """The revision of ``url``: the live one if the URL is unchanged, else the next.
    ``known``: the revision remembered for this URL (the last one plus one for another URL),
    used when the Secret is gone (deleted by someone): recreating it with the same URL does
    not roll every worker again, with a new one (a rotated password) it does."""
    if live is None:
        return max(known, 1)
    return live.revision if live.url == url and live.revision > 0 else live.revision + 1


def build(*, namespace: str, url: str, revision: int, owners: Iterable[Owner]) -> dict[str, Any]:
    """The apply body of the namespace's default-Redis Secret."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET_NAME,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "jobqueue-default-redis",
                names.COMPONENT_LABEL: COMPONENT,
                names.MANAGED_BY_LABEL: names.MANAGED_BY,
                "app.kubernetes.io/part-of": "jobqueue",
            },
            "annotations": {REVISION_ANNOTATION: str(revision)},
            # sorted: the same owners always give the same body (a no-op apply)
            "ownerReferences": [
                names.owner_reference(kind=models.JOBQUEUE_KIND, name=o.name, uid=o.uid, controller=False)
                for o in sorted(set(owners))
            ],
        },
        "type": "Opaque",
        # `data`, not `stringData`: the API server stores only `data`, so an apply of
        # `stringData` would never match the live object
        "data": {URL_KEY: base64.b64encode(url.encode()).decode()},
    }


def _decode(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
