"""The only module of the operator that opens Redis connections.

The data plane (:mod:`jobqueue.settings`, :mod:`jobqueue.stats` and
:mod:`jobqueue.recovery`) defines *what* is read and written; this module decides *how* the
operator does it without hurting itself:

* **One client per Redis URL**, shared by every queue on it (a connection pool each).
* **A dedicated thread pool.** redis-py is synchronous; its calls run in a few threads of
  their own, so a hanging Redis can occupy them but never kopf's executor or the loop.
* **Short timeouts and a circuit breaker.** After a failure, calls to that Redis fail at
  once (with the last error) for :data:`RETRY_AFTER_SECONDS`: a thousand queues on one dead
  Redis cost one timeout, not a thousand.
* **Redacted errors.** Messages name ``redis://host:port/db``, never the password, because
  they end up in conditions, Events and logs.

Settings ownership: a queue's settings are replaced or removed only by the JobQueue that
published them (``namespace``/``jobqueue`` in the settings), so two JobQueues declaring the
same queue name in one Redis are reported instead of overwriting each other.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, TypeVar

import pydantic
import redis

from jobqueue import _redis, keys, payload, recovery, stats
from jobqueue import settings as qsettings
from jobqueue_operator import errors

#: How long a Redis that just failed is not tried again (calls fail fast meanwhile).
RETRY_AFTER_SECONDS: Final = 5.0
#: Threads for Redis calls: enough for a few slow Redis servers at once; a whole pool
#: stuck on one dead server is what the circuit breaker prevents.
THREADS: Final = 4

T = TypeVar("T")
Owner = tuple[str, str]


def redact(url: str) -> str:
    """``url`` without user name and password (nor query: it may hold a Sentinel password)."""
    if _redis.is_sentinel(url):
        scheme, _, rest = url.strip().partition("://")
        return f"{scheme}://{rest.rpartition('@')[2].partition('?')[0].partition('#')[0]}"
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<malformed URL>"


def check_url(url: str) -> None:
    """Raise :class:`~jobqueue_operator.errors.RedisConfigError` if ``url`` is not a Redis URL."""
    problem = None
    try:
        parts = urllib.parse.urlsplit(url)
        if _redis.is_sentinel(url):
            _redis.parse_sentinel(url)
        elif parts.scheme not in ("redis", "rediss", "unix"):
            problem = "the scheme must be redis://, rediss://, unix://, redis+sentinel:// or rediss+sentinel://"
        elif parts.scheme != "unix" and not parts.hostname:
            problem = "no host"
        elif parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
            problem = "the path must be a database number"
        else:
            _ = parts.port  # raises on a non-numeric port
    except ValueError as e:
        problem = str(e)
    if problem:
        raise errors.RedisConfigError("InvalidRedisURL", f"invalid Redis URL {redact(url)!r}: {problem}")


def _owner(settings: qsettings.QueueSettings) -> Owner | None:
    if settings.namespace is None or settings.jobqueue is None:
        return None
    return settings.namespace, settings.jobqueue


class RedisHub:
    """Connections to every Redis the operator uses."""

    def __init__(self, *, timeout: float, retry_after: float = RETRY_AFTER_SECONDS) -> None:
        self._timeout = timeout
        self._retry_after = retry_after
        self._clients: dict[str, redis.Redis] = {}
        self._broken: dict[str, tuple[float, str]] = {}
        self._pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="redis")

    def client(self, url: str) -> redis.Redis:
        conn = self._clients.get(url)
        if conn is None:
            check_url(url)
            conn = _redis.connect(url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout,
                                  health_check_interval=30)
            self._clients[url] = conn
        return conn

    async def run(self, url: str, fn: Callable[[redis.Redis], T]) -> T:
        """Run ``fn(connection)`` in the Redis threads; Redis failures become RedisUnavailable."""
        conn = self.client(url)
        broken = self._broken.get(url)
        if broken and time.monotonic() < broken[0]:
            raise errors.RedisUnavailable(broken[1])
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._pool, fn, conn)
        except (redis.RedisError, OSError) as e:
            text = f"Redis {redact(url)} unavailable: {type(e).__name__}: {e}"
            self._broken[url] = (time.monotonic() + self._retry_after, text)
            raise errors.RedisUnavailable(text) from None
        self._broken.pop(url, None)
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for conn in self._clients.values():
            conn.close()
        self._clients.clear()

    # ---- queue settings

    async def publish(self, url: str, settings: qsettings.QueueSettings, *,
                      replace: Owner | None = None) -> None:
        """Publish ``settings`` unless another JobQueue (other than ``replace``) owns the name."""
        mine = _owner(settings)

        def publish(conn: redis.Redis) -> None:
            existing = _load(conn, settings.queue_name)
            owner = _owner(existing) if existing else None
            if owner is not None and owner not in (mine, replace):
                raise errors.QueueNameTaken(settings.queue_name, owner)
            qsettings.publish(conn, settings)

        await self.run(url, publish)

    async def unpublish(self, url: str, queue_name: str, *, owner: Owner) -> bool:
        """Withdraw ``queue_name``'s settings if ``owner`` published them; True if removed."""

        def unpublish(conn: redis.Redis) -> bool:
            existing = _load(conn, queue_name)
            if existing is not None and _owner(existing) not in (owner, None):
                return False
            qsettings.unpublish(conn, queue_name)
            return existing is not None

        return await self.run(url, unpublish)

    # ---- recurring jobs

    async def recurring_state(self, url: str, queue_name: str, job_id: str | None) -> RecurringState:
        """Whether ``queue_name``'s settings are published (a tick's enqueue refuses an unknown
        queue) and the RQ status of job ``job_id`` in that queue; one round trip."""

        def read(conn: redis.Redis) -> RecurringState:
            pipe = conn.pipeline(transaction=False)
            pipe.exists(qsettings.SETTINGS_KEY_PREFIX + queue_name)
            if job_id is not None:
                pipe.hmget(keys.job_key(job_id), ["status", "origin"])
            published, *job = pipe.execute()
            status = None
            if job and job[0][0] is not None and job[0][1] == queue_name.encode():
                status = job[0][0].decode()
            return RecurringState(published=bool(published), job_status=status)

        return await self.run(url, read)

    async def published(self, url: str) -> dict[str, qsettings.QueueSettings | None]:
        """Every queue's published settings in this Redis (None where unreadable)."""

        def read(conn: redis.Redis) -> dict[str, qsettings.QueueSettings | None]:
            names = sorted(qsettings.published_queue_names(conn))
            pipe = conn.pipeline(transaction=False)
            for name in names:
                pipe.get(qsettings.SETTINGS_KEY_PREFIX + name)
            return {name: _parse(raw) for name, raw in zip(names, pipe.execute(), strict=True)}

        return await self.run(url, read)

    # ---- the autoscaler

    async def poll(self, url: str, queue_names: Sequence[str],
                   pods: Mapping[str, Collection[str]] | None = None, *,
                   reuse: stats.Reuse | None = None) -> Poll:
        """Every figure of every queue in ``queue_names`` (one round trip), plus the
        ``last_heartbeat`` of the live workers of ``pods`` (queue -> pod names; one more
        round trip, only when asked): the evidence that a vanished pod's workers are dead.
        ``reuse``: see :func:`jobqueue.stats.snapshot` (one mapping per URL, one poll at a time)."""

        def read(conn: redis.Redis) -> Poll:
            started = time.perf_counter()
            figures = stats.snapshot(conn, queue_names, reuse=reuse)
            wanted = [w.name for queue, names in (pods or {}).items() if queue in figures
                      for w in figures[queue].workers if w.pod in names]
            beats: dict[str, str | None] = {}
            if wanted:
                pipe = conn.pipeline(transaction=False)
                for name in wanted:
                    pipe.hget(keys.worker_key(name), "last_heartbeat")
                beats = {name: None if raw is None else _text(raw)
                         for name, raw in zip(wanted, pipe.execute(), strict=True)}
            return Poll(figures, beats, time.perf_counter() - started)

        return await self.run(url, read)

    async def recover_pod(self, url: str, queue_name: str, pod: str, *,
                          reason: str) -> recovery.RecoveryReport:
        """Re-queue or fail the jobs ``pod`` held on ``queue_name`` (its workers must be dead)."""
        return await self.run(url, lambda conn: recovery.recover_pod(conn, queue_name, pod, reason=reason))

    async def job_starts(self, url: str, job_ids: Iterable[str]) -> dict[str, float]:
        """Unix time each running job was started (jobs gone or without a time are left out)."""
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return {}

        def read(conn: redis.Redis) -> dict[str, float]:
            pipe = conn.pipeline(transaction=False)
            for job_id in ids:
                pipe.hget(keys.job_key(job_id), "started_at")
            out = {}
            for job_id, raw in zip(ids, pipe.execute(), strict=True):
                when = payload.utcparse(_text(raw)) if raw is not None else None
                if when is not None:
                    out[job_id] = when
            return out

        return await self.run(url, read)


@dataclass(frozen=True)
class Poll:
    """One read of a Redis for the autoscaler."""

    queues: dict[str, stats.QueueStats]
    #: worker name -> its record's ``last_heartbeat`` (only the workers asked about)
    heartbeats: dict[str, str | None]
    #: seconds the read took (round trips and Redis time)
    seconds: float


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


@dataclass(frozen=True)
class RecurringState:
    """What a RecurringJob's status needs from its queue's Redis."""

    #: the queue's settings are published (otherwise every tick's enqueue fails)
    published: bool
    #: RQ's status of the latest tick's job (queued, started, finished, failed, ...); None: not there
    job_status: str | None


def _parse(raw: bytes | str | None) -> qsettings.QueueSettings | None:
    if raw is None:
        return None
    try:
        return qsettings.QueueSettings.model_validate(json.loads(raw))
    except (ValueError, pydantic.ValidationError):
        return None


def _load(conn: redis.Redis, queue_name: str) -> qsettings.QueueSettings | None:
    return _parse(conn.get(qsettings.SETTINGS_KEY_PREFIX + queue_name))
