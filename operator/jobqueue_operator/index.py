"""What the operator keeps in memory about every JobQueue: :class:`QueueRef`.

kopf maintains the in-memory index (``@kopf.index`` in :mod:`jobqueue_operator.handlers`)
from the watch stream; this module is the pure projection it stores, one small frozen
record per JobQueue, keyed by ``(namespace, name)``. It is what process-wide loops read
instead of listing objects: the settings sweep here, the autoscaler's poller later. The
index is complete before the first resource handler runs, but a task started at startup
may see it partially filled: never read "absent from the index" as "deleted" without
asking the API.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from jobqueue_operator import models
from jobqueue_operator.builders import names

logger = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclass(frozen=True, kw_only=True)
class QueueRef:
    """A JobQueue, with every default applied."""

    namespace: str
    name: str
    uid: str
    generation: int
    queue_name: str
    #: (Secret name, key) of the queue's Redis URL; None: the operator's default Redis
    redis_secret: tuple[str, str] | None
    priority: int
    concurrency: int
    concurrency_per_pod: int
    min_replicas: int
    max_replicas: int
    scale_down_delay_seconds: int
    idle_seconds_before_zero: int
    suspend: bool
    deployment_name: str
    #: the object is being deleted (foreground deletion); nothing should be created for it
    deleting: bool
    #: spec.failureNotification (None: Events and the metric only)
    failure_notification: models.FailureNotification | None = None
    #: spec.rateLimit.jobs: most jobs that may start in one window (None: no rate limit)
    rate_limit_jobs: int | None = None

    @functools.cached_property
    def key(self) -> Key:  # (read a dozen times per queue per autoscaler pass: made once)
        return self.namespace, self.name

    @property
    def redis_spec(self) -> models.RedisSpec | None:
        if self.redis_secret is None:
            return None
        name, key = self.redis_secret
        return models.RedisSpec(url_secret_ref=models.SecretKeyRef(name=name, key=key))


def queue_ref(body: Mapping[str, Any]) -> QueueRef | None:
    """The index entry of a JobQueue body; None if its spec cannot be read (logged)."""
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    try:
        spec = models.JobQueueSpec.model_validate(body.get("spec") or {})
    except pydantic.ValidationError as e:
        logger.warning("JobQueue %s/%s not indexed: invalid spec: %s", namespace, name, e)
        return None
    secret = spec.redis.url_secret_ref if spec.redis else None
    return QueueRef(
        namespace=namespace,
        name=name,
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
        queue_name=spec.effective_queue_name(namespace, name),
        redis_secret=(secret.name, secret.key) if secret else None,
        priority=spec.priority,
        concurrency=spec.concurrency,
        concurrency_per_pod=spec.worker.concurrency_per_pod,
        min_replicas=spec.scaling.min_replicas,
        max_replicas=spec.effective_max_replicas,
        scale_down_delay_seconds=spec.scaling.scale_down_delay_seconds,
        idle_seconds_before_zero=spec.scaling.idle_seconds_before_zero,
        suspend=spec.suspend,
        deployment_name=names.deployment_name(name),
        deleting=bool(meta.get("deletionTimestamp")),
        failure_notification=spec.failure_notification,
        rate_limit_jobs=spec.rate_limit.jobs if spec.rate_limit else None,
    )


def declares(body: Mapping[str, Any] | None, queue: str) -> bool:
    """Whether JobQueue ``body`` (None: it is gone) still declares ``queue``. One policy for
    the name's owner check and the settings sweep: a JobQueue being deleted declares nothing;
    one whose spec cannot be read is taken at its word from before — unsure counts as yes,
    so neither its queue name nor its settings are given away on a guess."""
    return body is not None and ref_declares(queue_ref(body), queue)


def ref_declares(ref: QueueRef | None, queue: str) -> bool:
    """:func:`declares` for a JobQueue already read into ``ref`` (None: its spec is unreadable)."""
    return ref is None or (not ref.deleting and ref.queue_name == queue)


class QueueRefs:
    """:func:`queue_ref` with a memory: every watch event of one version of a JobQueue gets the
    same :class:`QueueRef` object. Status writes (the autoscaler's every few seconds per busy
    queue) reach the index as events too; validating the spec again for each was a large
    share of the operator's CPU, and an unchanged object lets the poller skip a queue at rest.
    A new ``generation`` (spec changed) or a deletion timestamp makes a new one."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[Any, bool, QueueRef]] = {}

    def of(self, body: Mapping[str, Any]) -> QueueRef | None:
        meta = body.get("metadata") or {}
        uid, version = str(meta.get("uid", "")), (meta.get("generation"), bool(meta.get("deletionTimestamp")))
        last = self._last.get(uid)
        if last is not None and (last[0], last[1]) == version:
            return last[2]
        ref = queue_ref(body)
        if ref is None:
            self._last.pop(uid, None)
        else:
            self._last[uid] = (*version, ref)
        return ref

    def forget(self, uid: str) -> None:
        self._last.pop(uid, None)
