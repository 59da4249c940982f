"""Writes the operator's part of each JobQueue's status, once per real change.

Three producers feed one JobQueue's status concurrently: the reconcile handler (spec
generation, settings publication, Deployment apply), the worker Deployment watch
(replicas, readiness) and the settings sweep (Redis recovered or lost). Each writes the
*whole* operator-owned status by server-side apply, so two writers computing from stale
halves could undo each other. The keeper prevents that: per JobQueue it holds the latest
of every input and a lock, renders the status from all of them
(:func:`jobqueue_operator.builders.status.render`) and applies it only when it differs from
what it knows is on the object. Conditions that change post a Kubernetes Event
(:func:`~jobqueue_operator.builders.status.transitions`), so Events mark transitions and
never repeat per poll.

The keeper's knowledge starts from the object's own status at the first reconcile after
the operator starts (kopf's resume), so a restart writes nothing when nothing changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from jobqueue_operator import k8s, models
from jobqueue_operator.builders import names, status
from jobqueue_operator.index import Key

logger = logging.getLogger(__name__)


class Emit(Protocol):
    """Records a Kubernetes Event about an object (:meth:`k8s.Kube.post_event` in production)."""

    async def __call__(self, obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None: ...


def object_ref(body: Mapping[str, Any], kind: str = models.JOBQUEUE_KIND) -> dict[str, Any]:
    """The minimal body an Event needs to point at one of our objects (a JobQueue unless
    ``kind`` says otherwise)."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": models.API_VERSION,
        "kind": kind,
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid")},
    }


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def write_status(
    kube: k8s.KubeApi,
    emit: Emit,
    ref: Mapping[str, Any],
    before: Sequence[Mapping[str, Any]] | None,
    desired: Mapping[str, Any],
) -> bool:
    """Apply ``desired`` as the operator-owned status of ``ref`` (an :func:`object_ref`), then log
    and post an Event for each condition that changed from ``before``. False: the object is
    gone (deleted meanwhile), nothing written."""
    meta = ref["metadata"]
    try:
        await kube.apply_status(
            ref["kind"], meta["namespace"], meta["name"], desired, field_manager=names.OPERATOR_MANAGER
        )
    except k8s.ApiError as e:
        if k8s.is_not_found(e):
            return False
        raise
    for event in status.transitions(before, desired["conditions"]):
        logger.info(
            "%s %s/%s: %s: %s", ref["kind"], meta["namespace"], meta["name"], event.reason, event.message
        )
        await emit(ref, type=event.type, reason=event.reason, message=event.message)
    return True


@dataclass
class _Entry:
    ref: dict[str, Any]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    inputs: status.Inputs | None = None
    #: the operator-owned status known to be on the object
    written: dict[str, Any] | None = None


class StatusKeeper:
    def __init__(
        self, kube: k8s.KubeApi, emit: Emit, *, clock: Callable[[], datetime.datetime] = utcnow
    ) -> None:
        self._kube = kube
        self._emit = emit
        self._clock = clock
        self._entries: dict[Key, _Entry] = {}

    def _entry(self, body: Mapping[str, Any]) -> _Entry:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        entry = self._entries.get(key)
        if entry is None or entry.ref["metadata"]["uid"] != meta.get("uid"):
            entry = self._entries[key] = _Entry(ref=object_ref(body))
        return entry

    async def reconciled(self, body: Mapping[str, Any], inputs: status.Inputs) -> None:
        """The reconcile of ``body`` produced ``inputs``: write what changed."""
        entry = self._entry(body)
        async with entry.lock:
            if entry.written is None:
                entry.written = status.operator_fields(body.get("status"))
            entry.inputs = inputs
            await self._sync(entry)

    async def deployment_seen(self, key: Key, summary: status.DeploymentSummary) -> None:
        """The worker Deployment of ``key`` changed (watch event)."""
        await self._update(key, deployment=summary)

    async def publication_seen(self, key: Key, publication: status.Publication) -> None:
        """The settings sweep found the queue's Redis (un)reachable."""
        await self._update(key, publication=publication)

    async def _update(self, key: Key, **changes: Any) -> None:
        entry = self._entries.get(key)
        if entry is None or entry.inputs is None:
            return  # not reconciled in this process yet: the reconcile will render everything
        async with entry.lock:
            assert entry.inputs is not None
            if entry.inputs.apply_error is not None and "deployment" in changes:
                return  # the Deployment does not reflect this generation; keep the error visible
            entry.inputs = dataclasses.replace(entry.inputs, **changes)
            await self._sync(entry)

    def forget(self, key: Key) -> None:
        self._entries.pop(key, None)

    def known(self, key: Key) -> status.Inputs | None:
        entry = self._entries.get(key)
        return entry.inputs if entry else None

    async def _sync(self, entry: _Entry) -> None:
        assert entry.inputs is not None
        assert entry.written is not None
        before = entry.written.get("conditions")
        desired = status.render(entry.inputs, before, self._clock())
        if desired == entry.written:
            return
        if await write_status(self._kube, self._emit, entry.ref, before, desired):
            entry.written = desired
