"""The only module of the operator that opens Redis connections.

The data plane (:mod:`jobqueue.settings`, :mod:`jobqueue.stats` and
:mod:`jobqueue.recovery`) defines *what* is read and written; this module decides *how* the
operator does it without hurting itself:

* **One client per Redis URL**, shared by every queue on it (a connection pool each).
* **Threads of its own, and a dead server costs only its own queues.** redis-py is
  synchronous; its calls run in thread pools of this module, never kopf's executor or the
  loop. A server that answered its last call (*proven*) is called in the main pool; one
  that never answered yet or failed since (*on probation*) only in a pool of its own, so
  a dozen dead or hanging URLs of some JobQueues never delay the servers of the others.
  Each server has at most :data:`CALLS_PER_SERVER` calls in flight (more wait, costing no
  thread), a call gives up after :attr:`RedisHub.deadline` whatever the socket does
  (a slow DNS answer is not covered by socket timeouts), and its thread stays counted
  against its server until it really returns.
* **A circuit breaker.** After a failure, calls to that server fail at once (with the
  same message) for :data:`RETRY_AFTER_SECONDS`: a thousand queues on one dead Redis cost
  one timeout, not a thousand.
* **Messages that reveal nothing.** Status conditions and Events, which every JobQueue
  author reads, say only that the server (``redis://host:port/db``, never a credential,
  :func:`jobqueue.redaction.redact`) did not answer; what went wrong (refused, timed out,
  wrong password) goes to the operator's log, so the operator cannot serve as a port
  scanner for URLs someone put in a JobQueue.

Settings ownership: a queue's settings are replaced or removed only by the JobQueue that
published them (``namespace``/``jobqueue`` in the settings), so two JobQueues declaring the
same queue name in one Redis are reported instead of overwriting each other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

import pydantic
import redis

from jobqueue import _redis, failures, keys, payload, recovery, stats
from jobqueue import client as producer
from jobqueue import settings as qsettings
from jobqueue.redaction import check, redact, scrub
from jobqueue_operator import errors
from jobqueue_operator.builders import redisacl

logger = logging.getLogger(__name__)

#: How long a Redis that just failed is not tried again (calls fail fast meanwhile).
RETRY_AFTER_SECONDS: Final = 5.0
#: Threads for proven servers: enough for many healthy servers at once.
THREADS: Final = 8
#: Threads for servers on probation (new, or failed since their last answer): they wait
#: for each other, never for the healthy ones.
PROBATION_THREADS: Final = 8
#: Calls one server may have in flight (in a thread) at once.
CALLS_PER_SERVER: Final = 2
#: A call's deadline in socket timeouts (a connect and a few round trips).
DEADLINE_TIMEOUTS: Final = 3.0

T = TypeVar("T")
#: The operator's consumer name in the failure stream's group (stable across restarts, so a
#: restarted operator reads what its predecessor read but did not acknowledge).
CONSUMER: Final = "jobqueue-operator"
Owner = tuple[str, str]


def check_url(url: str) -> None:
    """Raise :class:`~jobqueue_operator.errors.RedisConfigError` if ``url`` is not a Redis URL.
    The message quotes nothing of the URL but its redacted form."""
    problem = None
    try:
        check(url)
        parts = urllib.parse.urlsplit(url.strip())
        if _redis.is_sentinel(url):
            _redis.parse_sentinel(url)
        elif parts.scheme not in ("redis", "rediss", "unix"):
            problem = (
                "the scheme must be redis://, rediss://, unix://, redis+sentinel:// or rediss+sentinel://"
            )
        elif parts.scheme != "unix" and not parts.hostname:
            problem = "no host"
        elif parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
            problem = "the path must be a database number"
    except ValueError as e:  # (check's messages quote nothing of the URL)
        problem = str(e)
    if problem:
        raise errors.RedisConfigError("InvalidRedisURL", f"invalid Redis URL {redact(url)!r}: {problem}")


def _owner(settings: qsettings.QueueSettings) -> Owner | None:
    if settings.namespace is None or settings.jobqueue is None:
        return None
    return settings.namespace, settings.jobqueue


@dataclass
class _Server:
    """One Redis URL as the hub knows it."""

    client: redis.Redis
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CALLS_PER_SERVER))
    #: its last call succeeded: its calls run in the main pool
    proven: bool = False
    #: (monotonic time until which calls fail at once, the message they fail with)
    broken: tuple[float, str] | None = None


class RedisHub:
    """Connections to every Redis the operator uses."""

    def __init__(self, *, timeout: float, retry_after: float = RETRY_AFTER_SECONDS) -> None:
        self._timeout = timeout
        self._retry_after = retry_after
        #: a call's deadline, whatever its socket does
        self.deadline = timeout * DEADLINE_TIMEOUTS
        self._servers: dict[str, _Server] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="redis")
        self._probation = concurrent.futures.ThreadPoolExecutor(
            max_workers=PROBATION_THREADS, thread_name_prefix="redis-probation"
        )

    def _server(self, url: str) -> _Server:
        server = self._servers.get(url)
        if server is None:
            check_url(url)
            client = _redis.connect(
                url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                health_check_interval=30,
            )
            server = self._servers[url] = _Server(client)
        return server

    def client(self, url: str) -> redis.Redis:
        return self._server(url).client

    def proven(self, url: str) -> bool:
        """Whether the server at ``url`` answered its last call (a new or failing one did not)."""
        server = self._servers.get(url)
        return server is not None and server.proven

    async def run(self, url: str, fn: Callable[[redis.Redis], T]) -> T:
        """Run ``fn(connection)`` in a Redis thread; Redis failures become RedisUnavailable."""
        server = self._server(url)
        if server.broken and time.monotonic() < server.broken[0]:
            raise errors.RedisUnavailable(server.broken[1])
        loop = asyncio.get_running_loop()
        await server.slots.acquire()
        try:
            if server.broken and time.monotonic() < server.broken[0]:  # failed while we waited
                raise errors.RedisUnavailable(server.broken[1])
            pool = self._pool if server.proven else self._probation
            future = pool.submit(fn, server.client)
        except BaseException:
            server.slots.release()
            raise
        # the slot is the thread's, held until the call really returns (not when we give up)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(server.slots.release))
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), self.deadline)
        except (redis.RedisError, OSError, TimeoutError) as e:
            self._failed(url, server, e)
            raise errors.RedisUnavailable(server.broken[1] if server.broken else str(e)) from None
        server.proven, server.broken = True, None
        return result

    def _failed(self, url: str, server: _Server, error: BaseException) -> None:
        shown = redact(url)
        if server.broken is None:  # news: the operator's log says what (its readers are admins)
            detail = scrub(f"{type(error).__name__}: {error}", url) if str(error) else type(error).__name__
            logger.warning("Redis %s did not answer: %s", shown, detail)
        text = (
            f"Redis {shown} did not answer: no connection, no reply within {self._timeout:g}s, or "
            "these credentials were not accepted (the operator's log has the details)"
        )
        server.proven = False
        server.broken = (time.monotonic() + self._retry_after, text)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._probation.shutdown(wait=False, cancel_futures=True)
        for server in self._servers.values():
            server.client.close()
        self._servers.clear()

    # ---- queue settings

    async def publish(
        self, url: str, settings: qsettings.QueueSettings, *, replace: Owner | None = None
    ) -> None:
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
            pipe.get(qsettings.SETTINGS_KEY_PREFIX + queue_name)
            if job_id is not None:
                pipe.hmget(keys.job_key(job_id), ["status", "origin"])
            raw, *job = pipe.execute()
            status = None
            if job and job[0][0] is not None and job[0][1] == queue_name.encode():
                status = job[0][0].decode()
            found = _parse(raw)
            return RecurringState(
                published=raw is not None, job_status=status, owner=_owner(found) if found else None
            )

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

    async def poll(
        self,
        url: str,
        queue_names: Sequence[str],
        pods: Mapping[str, Collection[str]] | None = None,
        *,
        reuse: stats.Reuse | None = None,
    ) -> Poll:
        """Every figure of every queue in ``queue_names`` (one round trip), plus the
        ``last_heartbeat`` of the live workers of ``pods`` (queue -> pod names; one more
        round trip, only when asked): the evidence that a vanished pod's workers are dead.
        ``reuse``: see :func:`jobqueue.stats.snapshot` (one mapping per URL, one poll at a time)."""

        def read(conn: redis.Redis) -> Poll:
            started = time.perf_counter()
            figures = stats.snapshot(conn, queue_names, reuse=reuse)
            wanted = [
                w.name
                for queue, names in (pods or {}).items()
                if queue in figures
                for w in figures[queue].workers
                if w.pod in names
            ]
            beats: dict[str, str | None] = {}
            if wanted:
                pipe = conn.pipeline(transaction=False)
                for name in wanted:
                    pipe.hget(keys.worker_key(name), "last_heartbeat")
                beats = {
                    name: None if raw is None else _text(raw)
                    for name, raw in zip(wanted, pipe.execute(), strict=True)
                }
            return Poll(figures, beats, time.perf_counter() - started)

        return await self.run(url, read)

    # ---- jobs that failed for good

    async def exhausted(self, url: str, group: str) -> list[failures.Exhausted]:
        """The next failures of this Redis for consumer group ``group`` (unacknowledged first)."""
        return await self.run(url, lambda conn: failures.read(conn, group=group, consumer=CONSUMER))

    async def ack_exhausted(self, url: str, group: str, entry_ids: Sequence[str]) -> None:
        await self.run(url, lambda conn: failures.ack(conn, group, entry_ids))

    async def enqueue_notice(
        self, url: str, queue_name: str, function: str, failure: failures.Exhausted
    ) -> producer.EnqueueResult:
        """``function(notice)`` on ``queue_name``, under the failure's own job id (idempotent)."""
        return await self.run(
            url,
            lambda conn: producer.enqueue(
                queue_name, function, failure.notice(), job_id=failure.notification_job_id, connection=conn
            ),
        )

    async def recover_pod(
        self, url: str, queue_name: str, pod: str, *, reason: str
    ) -> recovery.RecoveryReport:
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

    # ---- namespace isolation (jobqueue_operator.builders.redisacl)

    async def ensure_tenant(self, admin_url: str, namespace: str, password: str) -> int:
        """Give ``namespace`` its own database of the default Redis (the one it has, or the
        lowest empty one never given to anyone) and (re)set its ACL user with ``password``.
        Returns the database number. Raises RedisConfigError when this Redis cannot isolate
        namespaces (what to change is in the message), RedisUnavailable."""
        own = redisacl.database_of(admin_url)

        def ensure(conn: redis.Redis) -> int:
            try:
                flags = (conn.acl_getuser("default") or {}).get("flags") or []
                if isinstance(flags, list) and "on" in flags and "nopass" in flags:
                    raise errors.RedisConfigError(
                        "IsolationImpossible",
                        (
                            "the default Redis lets anyone in without a password (its 'default' user has "
                            "nopass), so per-namespace credentials would protect nothing: set requirepass "
                            "or disable that user, or run the operator with redis.isolation=none"
                        ),
                    )
                count = int(str(conn.config_get("databases").get("databases") or 16))
                busy = [
                    int(db[2:]) for db in conn.info("keyspace") if db.startswith("db") and db[2:].isdigit()
                ]
                database = int(
                    conn.eval(_ALLOCATE, 1, redisacl.DATABASES_KEY, namespace, count, 0, own, *busy)
                )
                if database < 0:
                    raise errors.RedisConfigError(
                        "IsolationImpossible",
                        (
                            f"the default Redis has no empty database left for namespace {namespace} (it "
                            f"has {count}; database 0 and the operator's own are never given out): raise "
                            "its 'databases' setting"
                        ),
                    )
                conn.execute_command(
                    "ACL",
                    "SETUSER",
                    redisacl.user_name(namespace),  # type: ignore[no-untyped-call]
                    *redisacl.rules(database, password),
                )
                return database
            except redis.ResponseError as e:  # NOPERM, unknown command: a server that cannot do it
                raise errors.RedisConfigError(
                    "IsolationImpossible",
                    (
                        "the default Redis refused to set up this namespace's own user and database "
                        f"({scrub(str(e), admin_url)}): it needs Redis 7 or later, and the operator's user "
                        "needs ACL SETUSER, CONFIG GET, INFO and EVAL"
                    ),
                ) from None

        return await self.run(admin_url, ensure)

    async def tenant_database(self, admin_url: str, namespace: str) -> int | None:
        """The database ``namespace`` was given (None: none yet)."""

        def read(conn: redis.Redis) -> int | None:
            raw = conn.hget(redisacl.DATABASES_KEY, namespace)
            return None if raw is None else int(raw)

        return await self.run(admin_url, read)

    async def drop_tenant_user(self, admin_url: str, namespace: str) -> None:
        """Delete ``namespace``'s ACL user (its open connections are closed). Its database and
        what is in it stay, for the day the namespace uses the default Redis again."""
        await self.run(admin_url, lambda conn: conn.acl_deluser(redisacl.user_name(namespace)))


#: Give a namespace a database: the one it has, else the lowest one that is neither taken
#: nor in ARGV[3..] (database 0, the operator's, and every non-empty one). Atomic, so two
#: operators sharing a Redis never hand out one database twice.
_ALLOCATE: Final = """
local have = redis.call('HGET', KEYS[1], ARGV[1])
if have then return tonumber(have) end
local taken = {}
for i = 3, #ARGV do taken[tonumber(ARGV[i])] = true end
local given = redis.call('HGETALL', KEYS[1])
for i = 2, #given, 2 do taken[tonumber(given[i])] = true end
for db = 1, tonumber(ARGV[2]) - 1 do
  if not taken[db] then
    redis.call('HSET', KEYS[1], ARGV[1], db)
    return db
  end
end
return -1
"""


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
    #: (namespace, JobQueue) that published the settings (None: unknown or not a JobQueue)
    owner: Owner | None = None


def _parse(raw: bytes | str | None) -> qsettings.QueueSettings | None:
    if raw is None:
        return None
    try:
        return qsettings.QueueSettings.model_validate(json.loads(raw))
    except (ValueError, pydantic.ValidationError):
        return None


def _load(conn: redis.Redis, queue_name: str) -> qsettings.QueueSettings | None:
    return _parse(conn.get(qsettings.SETTINGS_KEY_PREFIX + queue_name))
