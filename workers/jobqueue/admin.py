"""Operating queues: pause and resume, a queue's jobs by state, the overview of every queue.

The producer API (:mod:`jobqueue.client`) works one job at a time; these are what an
operator's console needs — ``jobqueue pause`` / ``resume``, and the admin HTTP API with its
web UI (:mod:`jobqueue.api`), which goes through these functions and the client's, never
through Redis keys of its own: this package is the one owner of the Redis layout.

**Pause** is BullMQ's ``queue.pause()``: producers can still enqueue, workers take nothing
new (the claim script checks ``jobqueue:paused``; running jobs finish), and the operator's
autoscaler holds the queue's workers at ``minReplicas``, saying so in the JobQueue's status.
It is the imperative switch for an incident ("stop sending e-mails now"); ``spec.suspend``
on the JobQueue stays the declarative one (it also scales the workers to zero). Pausing a
paused queue keeps the first pause's time and author; the state lives in Redis beside the
jobs, so it survives operator and worker restarts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, get_args

import redis

from jobqueue import _lua, client, keys, payload, settings, stats
from jobqueue._redis import Script

_BULK = Script(_lua.BULK)

JobState = Literal["queued", "scheduled", "started", "finished", "failed", "canceled"]
#: The states a queue's jobs can be listed by (RQ's names: started = running).
STATES: Final[tuple[str, ...]] = get_args(JobState)
#: States ``retry_jobs`` / ``remove_jobs`` take (a running job is cancelled, not removed).
RETRY_STATES: Final = ("failed", "canceled")
REMOVE_STATES: Final = ("queued", "scheduled", "finished", "failed", "canceled")
#: Jobs per BULK script call: one call holds Redis for a few milliseconds at most, so workers
#: and producers keep going while thousands of jobs are retried or removed.
BULK_BATCH: Final = 500
#: Most jobs one page lists: a page is read in two round trips, whatever its size, but each
#: job is a hash to decode.
MAX_PAGE: Final = 500


@dataclass(frozen=True)
class PauseState:
    queue: str
    paused: bool
    since: datetime | None = None  # when it was paused
    by: str | None = None  # who paused it, as they said (the API records the authenticated user)


@dataclass(frozen=True)
class JobPage:
    queue: str
    state: str
    total: int  # jobs in that state now
    offset: int
    limit: int
    jobs: list[client.JobInfo]


@dataclass(frozen=True)
class BulkResult:
    """What a bulk retry or remove did (or, with ``dry_run``, would do)."""

    queue: str
    state: str
    action: str  # "retry" or "remove"
    dry_run: bool
    matched: int  # jobs in the state (and matching the filters) when the command started
    done: int  # retried / removed (dry run: that would be, now)
    skipped: int  # matched, but changed state before their batch reached them (a worker took them …)
    ids: list[str]  # the jobs done, in order


@dataclass(frozen=True)
class QueueOverview:
    queue: str
    settings: settings.QueueSettings | None  # None: published settings that cannot be read
    stats: stats.QueueStats
    pause: PauseState


def _state(queue: str, raw: bytes | str | None) -> PauseState:
    if raw is None:
        return PauseState(queue, False)
    try:
        doc = json.loads(raw)
        at = datetime.fromtimestamp(float(doc["at"]), UTC)
        by = doc.get("by")
    except (ValueError, TypeError, KeyError):  # written by hand: still paused
        return PauseState(queue, True)
    return PauseState(queue, True, at, by if isinstance(by, str) else None)


def pause(queue: str, *, by: str | None = None, connection: redis.Redis | None = None) -> PauseState:
    """Pause a declared queue (UnknownQueueError otherwise); returns its pause state."""
    conn = client._connection(connection)
    settings.load(conn, queue)
    conn.hsetnx(keys.PAUSED, queue, json.dumps({"at": time.time(), "by": by}))
    return pause_state(queue, connection=conn)


def resume(queue: str, *, connection: redis.Redis | None = None) -> bool:
    """Resume a paused queue; False if it was not paused. A queue no JobQueue declares any
    more can still be resumed (its pause stays in Redis otherwise), else UnknownQueueError."""
    conn = client._connection(connection)
    if conn.hdel(keys.PAUSED, queue):
        return True
    settings.load(conn, queue)
    return False


def pause_state(queue: str, *, connection: redis.Redis | None = None) -> PauseState:
    conn = client._connection(connection)
    return _state(queue, conn.hget(keys.PAUSED, queue))


def _page(offset: object, limit: object) -> tuple[int, int]:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an integer >= 0, got {offset!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}")
    return offset, limit


def _ended_registry(queue: str, state: str) -> str:
    return {"finished": keys.finished, "failed": keys.failed, "canceled": keys.canceled}[state](queue)


def list_jobs(
    queue: str,
    state: str,
    *,
    offset: int = 0,
    limit: int = 50,
    connection: redis.Redis | None = None,
) -> JobPage:
    """One page of a declared queue's jobs in ``state``.

    Order: ``queued`` by priority level (1 first), then first in first out — the order
    workers take them in, near enough; ``scheduled`` by due time; ``started`` by claim;
    ``finished``, ``failed`` and ``canceled`` newest first. ValueError for a bad state, offset or limit.
    """
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    offset, limit = _page(offset, limit)
    conn = client._connection(connection)
    settings.load(conn, queue)
    stop = offset + limit - 1
    if state == "queued":
        lists = [keys.level_key(queue, level) for level in keys.PRIORITY_LEVELS]
        pipe = conn.pipeline(transaction=False)
        for key in lists:
            pipe.llen(key)
        lengths = pipe.execute()
        total = sum(lengths)
        pipe = conn.pipeline(transaction=False)
        start = 0
        for key, length in zip(lists, lengths, strict=True):
            lo, hi = max(offset - start, 0), min(stop - start, length - 1)
            if lo <= hi:
                pipe.lrange(key, lo, hi)
            start += length
        ids = [client.id_text(m) for chunk in pipe.execute() for m in chunk]
    elif state in ("scheduled", "started"):
        key = keys.scheduled(queue) if state == "scheduled" else keys.wip(queue)
        pipe = conn.pipeline(transaction=False)
        pipe.zcard(key)
        pipe.zrange(key, offset, stop)
        total, members = pipe.execute()
        # rq:wip members are "<id>:<execution>"
        ids = [
            client.id_text(m) if state == "scheduled" else client.id_text(m).rsplit(":", 1)[0]
            for m in members
        ]
    else:
        key = _ended_registry(queue, state)
        now = time.time()  # registry scores are expiry times: lower ones are gone (RQ's rule)
        pipe = conn.pipeline(transaction=False)
        pipe.zcount(key, now, "+inf")
        pipe.zrevrangebyscore(key, "+inf", now, start=offset, num=limit)
        total, members = pipe.execute()
        ids = [client.id_text(m) for m in members]
    return JobPage(queue, state, int(total), offset, limit, client.get_jobs(queue, ids, connection=conn))


def overview(
    queues: Sequence[str] | None = None, *, connection: redis.Redis | None = None
) -> list[QueueOverview]:
    """Every declared queue (or those named) with its settings and stats, sorted by name."""
    conn = client._connection(connection)
    names = sorted(settings.published_queue_names(conn) if queues is None else set(queues))
    pipe = conn.pipeline(transaction=False)
    for name in names:
        pipe.get(settings.SETTINGS_KEY_PREFIX + name)
    pipe.hgetall(keys.PAUSED)
    *published, pauses = pipe.execute()
    snap = stats.snapshot(conn, names)
    out = []
    for name, raw in zip(names, published, strict=True):
        qs = None
        if raw is not None:
            try:
                qs = settings.QueueSettings.model_validate_json(raw)
            except ValueError:
                qs = None
        out.append(QueueOverview(name, qs, snap[name], _state(name, pauses.get(name.encode()))))
    return out


def _state_ids(conn: redis.Redis, queue: str, state: str) -> list[bytes]:
    """Every job id of ``queue`` in ``state`` now, in list order (see :func:`list_jobs`)."""
    pipe = conn.pipeline(transaction=False)
    if state == "queued":
        for level in keys.PRIORITY_LEVELS:
            pipe.lrange(keys.level_key(queue, level), 0, -1)
    elif state == "scheduled":
        pipe.zrange(keys.scheduled(queue), 0, -1)
    else:
        pipe.zrevrangebyscore(_ended_registry(queue, state), "+inf", time.time())
    seen: set[bytes] = set()
    out = []
    for chunk in pipe.execute():
        for job_id in chunk:
            if job_id not in seen:  # (an id listed twice is handled once)
                seen.add(job_id)
                out.append(job_id)
    return out


def _functions(conn: redis.Redis, ids: list[bytes]) -> list[str | None]:
    """The function name of each job (None: gone, or a payload that cannot be read)."""
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(keys.JOB.encode() + job_id, "data")
    names: list[str | None] = []
    for data in pipe.execute(raise_on_error=False):
        try:
            names.append(payload.decode(data)[0] if isinstance(data, bytes) else None)
        except payload.PayloadError:
            names.append(None)
    return names


def _bulk(
    action: str,
    allowed: tuple[str, ...],
    queue: str,
    state: str,
    *,
    older_than: float | None,
    function: str | None,
    dry_run: bool,
    connection: redis.Redis | None,
) -> BulkResult:
    if state not in allowed:
        raise ValueError(
            f"{action} takes state {' or '.join(allowed)}, got {state!r}"
            + (" (a running job is cancelled instead)" if state == "started" else "")
        )
    if older_than is not None and (
        isinstance(older_than, bool) or not isinstance(older_than, int | float) or not older_than >= 0
    ):
        raise ValueError(f"older_than must be a number of seconds >= 0, got {older_than!r}")
    conn = client._connection(connection)
    settings.load(conn, queue)
    now = time.time()
    ids = _state_ids(conn, queue, state)
    if function is not None:
        kept: list[bytes] = []
        for start in range(0, len(ids), BULK_BATCH):
            chunk = ids[start : start + BULK_BATCH]
            kept += [i for i, fn in zip(chunk, _functions(conn, chunk), strict=True) if fn == function]
        ids = kept
    cutoff = "" if older_than is None else repr(now - older_than)
    done: list[str] = []
    skipped = young = 0
    for start in range(0, len(ids), BULK_BATCH):
        at = time.time()
        acted, changed, too_young = _BULK(
            conn,
            "count" if dry_run else action,
            queue,
            state,
            repr(at),
            payload.utcformat(at),
            cutoff,
            *ids[start : start + BULK_BATCH],
        )
        done += [client.id_text(i) for i in acted]
        skipped += int(changed)
        young += int(too_young)  # (not a match: entered the state after the cut-off)
    return BulkResult(queue, state, action, dry_run, len(ids) - young, len(done), skipped, done)


def retry_jobs(
    queue: str,
    state: str = "failed",
    *,
    older_than: float | None = None,
    function: str | None = None,
    dry_run: bool = False,
    connection: redis.Redis | None = None,
) -> BulkResult:
    """Retry every job of a declared queue in ``state`` (failed), each with a fresh set of
    attempts, as :func:`jobqueue.retry` does for one; only those that failed at least
    ``older_than`` seconds ago, only those of ``function`` (dotted name), when given.

    Safe while workers run: the ids are listed first, then handled in batches of
    :data:`BULK_BATCH`, each one script call that re-checks every job (a job retried or removed
    meanwhile is skipped and counted). ``dry_run``: count, change nothing."""
    return _bulk(
        "retry",
        RETRY_STATES,
        queue,
        state,
        older_than=older_than,
        function=function,
        dry_run=dry_run,
        connection=connection,
    )


def remove_jobs(
    queue: str,
    state: str,
    *,
    older_than: float | None = None,
    function: str | None = None,
    dry_run: bool = False,
    connection: redis.Redis | None = None,
) -> BulkResult:
    """Delete every job of a declared queue in ``state`` (queued, scheduled, finished or
    failed: a purge), with the same filters, batching and re-checks as :func:`retry_jobs`.
    ``older_than`` counts from when the job entered the state: queued (or due), created
    (scheduled), ended (finished, failed). Jobs waiting on a removed one (RQ's depends_on)
    fail, as with :func:`jobqueue.remove`."""
    return _bulk(
        "remove",
        REMOVE_STATES,
        queue,
        state,
        older_than=older_than,
        function=function,
        dry_run=dry_run,
        connection=connection,
    )
