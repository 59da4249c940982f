"""What the autoscaler tells users, and when: the JobQueue status figures and scale Events.

Pure functions. The poller reads every queue every second, but a status write is a PATCH,
an etcd write and a watch event to every watcher of JobQueues (kopf included), so:

* a scale (or a new ``desiredReplicas``) is written at once, with ``lastScaleTime`` and
  ``lastScaleReason``: that is what ``kubectl get jq`` and ``describe`` are for;
* the backlog figures (queued, running, …) are written at most every
  :data:`STATUS_INTERVAL_SECONDS` per queue, only the fields that changed, and never when
  nothing did — a thousand idle queues cost no write at all;
* ``oldestQueuedSeconds`` is rounded to whole seconds (it changes every poll otherwise), and
  when it is the only change (a backlog nothing takes: no pod could start, the queue is
  suspended) it is refreshed every :data:`AGE_ONLY_INTERVAL_SECONDS`: the figures that say
  how much work there is go out every 10 s, an age alone does not cost a write each time.
  (Alerts read the exact age from the ``jobqueue_queue_oldest_job_age_seconds`` metric.)

The current values come from the JobQueue status index (:mod:`.views`), i.e. from the
object itself, so an operator restart writes nothing that is already there.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Final

from jobqueue.stats import QueueStats
from jobqueue_operator.builders import status

#: Minimum seconds between two status writes of one queue that carry only backlog figures:
#: a busy queue's figures change every second (``oldestQueuedSeconds`` at least), and each
#: write also costs every JobQueue watcher an event; 10 s keeps a thousand busy queues at
#: 100 writes/s at most, fresh enough for ``kubectl get``.
STATUS_INTERVAL_SECONDS: Final = 10.0
#: Minimum seconds between two writes whose only change is ``oldestQueuedSeconds``.
AGE_ONLY_INTERVAL_SECONDS: Final = 60.0


def figures(stats: QueueStats, desired: int) -> dict[str, Any]:
    """The status fields that describe the queue now (not the last scale)."""
    return {
        "queued": stats.queued,
        "scheduled": stats.scheduled,
        "running": stats.running,
        "failed": stats.failed,
        "oldestQueuedSeconds": round(stats.oldest_queued_seconds),
        "desiredReplicas": desired,
        "paused": stats.paused,
        "rateLimited": stats.rate_limited,
    }


def status_patch(
    on_object: Mapping[str, Any] | None,
    wanted: Mapping[str, Any],
    *,
    last_write: float | None,
    now: float,
    interval: float = STATUS_INTERVAL_SECONDS,
) -> dict[str, Any] | None:
    """The merge patch to write now, or None (nothing changed, or too soon after the last one).

    A change of ``desiredReplicas``, ``lastScaleTime`` or ``paused`` is written at once; other changes
    wait until ``interval`` seconds have passed since ``last_write``.
    """
    patch = changes(on_object, wanted)
    return patch if patch and due(patch, last_write=last_write, now=now, interval=interval) else None


def changes(on_object: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``wanted`` that differ from the object's."""
    current = on_object or {}
    return {k: v for k, v in wanted.items() if current.get(k) != v}


def due(
    patch: Mapping[str, Any],
    *,
    last_write: float | None,
    now: float,
    interval: float = STATUS_INTERVAL_SECONDS,
) -> bool:
    """Whether ``patch`` may be written now (see :func:`status_patch`); a pause or resume is
    news, like a scale."""
    if "desiredReplicas" in patch or "lastScaleTime" in patch or "paused" in patch:
        return True
    if patch.keys() == {"oldestQueuedSeconds"}:
        interval = max(interval, AGE_ONLY_INTERVAL_SECONDS)
    return last_write is None or now - last_write >= interval


def last_scale(now: float, reason: str) -> dict[str, Any]:
    """The status fields recording a scale made at unix time ``now``."""
    when = status.timestamp(datetime.datetime.fromtimestamp(now, datetime.UTC))
    return {"lastScaleTime": when, "lastScaleReason": reason}


def scale_event(before: int, after: int, reason: str) -> tuple[str, str]:
    """(Event reason, message) of a change of replicas."""
    verb = "ScaledUp" if after > before else "ScaledDown"
    return verb, f"worker replicas {before} → {after}: {reason}"
