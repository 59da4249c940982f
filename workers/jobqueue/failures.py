"""Jobs that failed for good, as a stream: what the operator turns into Events, a metric and
failure notifications (the seed's ``notifyAdmins`` once ``attemptsMade >= attempts``).

Every script that fails a job with no attempt left (the worker's outcome, a lost job's
lease running out, the operator's recovery of a vanished pod) adds one entry to
``jobqueue:exhausted`` in the same atomic step, with the job's payload — so no failure is
missed, even when ``keepFailed: 0`` deletes the job at once. The stream is capped at about
:data:`STREAM_LIMIT` entries: a reader that stays away loses the oldest, Redis never fills.

Readers use a consumer group (:func:`read`, :func:`ack`): what was read but not acknowledged
— the reader crashed meanwhile — is read again first, so each failure is handled at least
once. Operators watching different namespaces on one Redis use different groups, each seeing
every entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import redis

from jobqueue import keys, payload
from jobqueue._redis import text

STREAM: Final = keys.EXHAUSTED
#: Entries the stream keeps (the ``MAXLEN ~`` of the scripts that write it).
STREAM_LIMIT: Final = 10_000
#: Job ids of failure notifications start with this; a failed notification job is not
#: notified again (a notification queue notifying itself would never stop).
NOTIFICATION_PREFIX: Final = "jq-exhausted-"


@dataclass(frozen=True)
class Exhausted:
    """One job that failed for good."""

    entry_id: str  # the stream entry's id
    queue: str
    job_id: str
    function: str
    args: list[Any]
    kwargs: dict[str, Any]
    error: str
    attempts: int  # attempts made
    max_attempts: int
    at: datetime  # when it failed (from the entry id)

    def notice(self) -> dict[str, Any]:
        """The seed's admin notification (``notifyAdmins``): what a notification job receives
        as its one argument and a webhook as its JSON body."""
        return {
            "type": "JOB_FAILED",
            "severity": "HIGH",
            "title": f"Job Failed: {self.function}",
            "message": f"Job {self.job_id} in queue {self.queue} failed after {self.attempts} attempts",
            "details": {
                "job_id": self.job_id,
                "queue": self.queue,
                "name": self.function,
                "error": self.error,
                "attempts": self.attempts,
                "max_attempts": self.max_attempts,
                "data": {"args": self.args, "kwargs": self.kwargs},
                "failed_at": self.at.isoformat(),
            },
        }

    @property
    def notification_job_id(self) -> str:
        """The id of this failure's notification job: the same for every reader and every
        re-read, so a failure is notified once however often it is handled."""
        digest = hashlib.sha256(f"{self.queue}|{self.job_id}|{self.entry_id}".encode()).hexdigest()[:24]
        return NOTIFICATION_PREFIX + digest

    @property
    def is_notification(self) -> bool:
        return self.job_id.startswith(NOTIFICATION_PREFIX)


def _int(raw: object) -> int:
    try:
        return int(text(raw))
    except ValueError:
        return 0


def _entry(entry_id: str, fields: dict[bytes, bytes]) -> Exhausted:
    try:
        function, args, kwargs = payload.decode(fields.get(b"data", b""))
    except payload.PayloadError as exc:
        function, args, kwargs = f"<undecodable payload: {exc}>", [], {}
    millis = int(entry_id.split("-", 1)[0])
    return Exhausted(
        entry_id=entry_id,
        queue=text(fields.get(b"queue")),
        job_id=text(fields.get(b"id")),
        function=function,
        args=args,
        kwargs=kwargs,
        error=text(fields.get(b"reason")),
        attempts=_int(fields.get(b"made")),
        max_attempts=_int(fields.get(b"attempts")),
        at=datetime.fromtimestamp(millis / 1000, UTC),
    )


def read(conn: redis.Redis, *, group: str, consumer: str, count: int = 500) -> list[Exhausted]:
    """The next entries for ``group``: first those read before but not acknowledged, then new
    ones. A new group starts at the stream's end (failures before it existed are not news)."""
    try:
        conn.xgroup_create(STREAM, group, id="$", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    for start in ("0", ">"):
        reply: Any = conn.xreadgroup(group, consumer, {STREAM: start}, count=count)
        rows: list[tuple[str, dict[bytes, bytes]]] = [
            (text(i), f) for _, found in reply or [] for i, f in found
        ]
        # (a pending entry the cap trimmed away comes back without fields: nothing to handle)
        ack(conn, group, [i for i, f in rows if not f])
        if rows:
            return [_entry(i, f) for i, f in rows if f]
    return []


def ack(conn: redis.Redis, group: str, entry_ids: Sequence[str]) -> None:
    if entry_ids:
        conn.xack(STREAM, group, *entry_ids)
