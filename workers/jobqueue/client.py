"""The producer API: enqueue (one or many), job status, retry, remove, queue stats, wait.

These are the seed's admin endpoints (``addJob``, ``getJobStatus``, ``getQueueStats``, retry,
remove) as Python functions; ``jobqueue.cli`` puts a command line on top of them.

A producer names only the queue and the function: the queue's declared defaults (attempts,
backoff, timeout, retention) are read from the settings the operator publishes
(:func:`jobqueue.settings.load`) and resolved with the job's own overrides *at enqueue time*,
then stored in the job hash. A job keeps the options it was enqueued with even if its
JobQueue changes later.

Idempotency: a job id that already exists in Redis (in any state, until its retention ends)
is never added again; the call returns the existing job's status with ``duplicate=True``.
The check and the insert are one Lua script per batch, so two producers racing on the same
id cannot both win, in single and bulk enqueue alike.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
import re
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pydantic
import redis

from jobqueue import _lua, keys, patterns, payload, registry, settings, stats
from jobqueue._redis import Script, clean, connect, text
from jobqueue.errors import InvalidJobError, JobStateError, UnknownJobError

_ENQUEUE = Script(_lua.ENQUEUE)
_RETRY = Script(_lua.RETRY)
_REMOVE = Script(_lua.REMOVE)
_CANCEL = Script(_lua.CANCEL)

#: RQ's rule for job ids (rq/job.py), so RQ tools can fetch every job we create; ':' in
#: particular would break the ``<id>:<execution>`` members of ``rq:wip``.
JOB_ID_PATTERN: Final = re.compile(patterns.JOB_ID)
#: Jobs per enqueue script call: big enough to amortise the round trip, small enough that
#: one call blocks Redis for only a few milliseconds.
BULK_CHUNK: Final = 500
TERMINAL_STATUSES: Final = frozenset({"finished", "failed", "stopped", "canceled"})
#: Children of one flow (and jobs of one enqueue_many call that has dependencies): such a
#: call is one script call, all or nothing, so it is capped like a bulk chunk's few ms.
MAX_FLOW_CHILDREN: Final = 1000
#: Ids one job may depend on.
MAX_DEPENDENCIES: Final = MAX_FLOW_CHILDREN

Function = str | Callable[..., Any]


@dataclass(frozen=True)
class JobSpec:
    """One job of a bulk enqueue (:func:`enqueue_many`); the fields mean what they mean for
    :func:`enqueue`. ``options`` are JobOptions fields (``attempts``, ``backoff``,
    ``timeout_seconds``, ``keep_completed``, ``keep_failed``; camelCase works too)."""

    function: Function
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    delay: float | timedelta | None = None
    priority: int | None = None
    options: Mapping[str, Any] | settings.JobOptions | None = None
    #: the key spec.keyRateLimit counts per (a tenant, an API host); None: no key
    rate_key: str | None = None
    #: ids of jobs (of any queue) this one waits for (RQ's ``depends_on``): it stays
    #: ``deferred`` until all have finished, and fails if one fails or is canceled ...
    depends_on: Sequence[str] = ()
    #: ... unless this is True (RQ's ``Dependency(allow_failure=True)``): then it runs once
    #: they have all ended, however they ended
    allow_failure: bool = False


@dataclass(frozen=True)
class FlowResult:
    """What :func:`enqueue_flow` added: the parent and its children, in the order given."""

    parent: EnqueueResult
    children: list[EnqueueResult]


@dataclass(frozen=True)
class EnqueueResult:
    id: str
    queue: str
    duplicate: bool  # True: a job with this id already existed and was left untouched
    status: str  # the new job's status, or the existing job's status for a duplicate


@dataclass(frozen=True)
class JobInfo:
    """What ``getJobStatus`` returned in the seed, from RQ's job hash and our fields."""

    id: str
    queue: str
    function: str
    args: list[Any]
    kwargs: dict[str, Any]
    status: str  # RQ's: queued, scheduled, started, finished, failed (+ RQ's others)
    priority: int
    progress: float
    attempts_made: int
    attempts: int
    failed_reason: str | None
    stacktrace: str | None
    result: Any
    created_at: datetime | None
    ready_at: datetime | None  # queued since, or due at (scheduled)
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    pod: str | None
    timeout_seconds: int | None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            out[k] = v.isoformat() if isinstance(v, datetime) else v
        return out


# --------------------------------------------------------------------------------------
# enqueue


def _connection(connection: redis.Redis | None) -> redis.Redis:
    if connection is None:
        return connect()
    if connection.connection_pool.connection_kwargs.get("decode_responses"):
        # payloads and results are bytes (zlib, JSON); decoding them as text corrupts them
        raise ValueError("jobqueue needs a Redis client created without decode_responses=True")
    return connection


def _function_name(function: Function) -> str:
    if callable(function):
        return registry.registered_name(function)
    if not isinstance(function, str) or not registry.is_valid_name(function):
        raise InvalidJobError(
            f"function must be a @job function or its dotted name (module.function), got {function!r}"
        )
    return function


def _options(raw: Mapping[str, Any] | settings.JobOptions | None) -> settings.JobOptions | None:
    if raw is None or isinstance(raw, settings.JobOptions):
        return raw
    data = dict(raw)
    # Python conveniences: keep_completed=3600, backoff=2 (a bare number is a fixed delay,
    # as in BullMQ), timeout=30.
    for name in ("keep_completed", "keepCompleted", "keep_failed", "keepFailed"):
        if isinstance(data.get(name), int | float):
            data[name] = {"ageSeconds": int(data[name])}
    if isinstance(data.get("backoff"), int | float):
        data["backoff"] = {"type": "fixed", "delaySeconds": data["backoff"]}
    if "timeout" in data:
        data["timeout_seconds"] = data.pop("timeout")
    try:
        return settings.JobOptions.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidJobError(f"invalid job options: {problems}") from None


def _retry_intervals(eff: settings.EffectiveJobOptions) -> str:
    # What RQ would use if *it* retried the job (its abandoned-job clean-up,
    # ``StartedJobRegistry.cleanup``, reads ``retry_intervals``):
    # whole seconds, one per retry.
    return json.dumps([max(0, math.ceil(eff.backoff.delay_for_retry(i))) for i in range(1, eff.attempts)])


class _Builder:
    """Turns JobSpecs into the ENQUEUE script's arguments (fast: bulk enqueue runs this per job).

    Fields every job of a call shares (created time, queue, the resolved options) travel
    once per script call; per job only its id, level, time, payload and description do —
    with redis-py, packing arguments is most of a bulk enqueue's client time."""

    def __init__(self, queue_settings: settings.QueueSettings) -> None:
        self.queue = queue_settings.queue_name
        self.qs = queue_settings
        self.now = time.time()
        self.now_iso = payload.utcformat(self.now)
        self.created = repr(self.now)
        self._sets: dict[tuple[settings.JobOptions | None, str | None], int] = {}
        self.sets: list[list[Any]] = []
        self._names: dict[str, str] = {}  # function name given -> checked (a batch names a few)

    def option_set(self, overrides: settings.JobOptions | None, rate_key: str | None = None) -> int:
        """Index (1-based) of the hash fields of the resolved options (and rate key), shared by jobs."""
        idx = self._sets.get((overrides, rate_key))
        if idx is None:
            eff = self.qs.effective(overrides)
            self.sets.append([
                "timeout", eff.timeout_seconds, "result_ttl", eff.keep_completed_seconds,
                "failure_ttl", eff.keep_failed_seconds, "retries_left", eff.attempts - 1,
                "retry_intervals", _retry_intervals(eff), keys.F_ATTEMPTS, eff.attempts, keys.F_MADE, 0,
                keys.F_BACKOFF, eff.backoff.model_dump_json(by_alias=True, exclude_none=True),
                *((keys.F_RATE_KEY, rate_key) if rate_key is not None else ()),
            ])  # fmt: skip
            idx = self._sets[(overrides, rate_key)] = len(self.sets)
        return idx

    def build(self, spec: JobSpec) -> tuple[str, str, list[Any]]:
        fn = self._names.get(spec.function) if isinstance(spec.function, str) else None
        if fn is None:
            fn = _function_name(spec.function)
            if isinstance(spec.function, str):
                self._names[fn] = fn
        job_id = spec.job_id if spec.job_id is not None else uuid.uuid4().hex
        if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
            raise InvalidJobError(
                f"job id {job_id!r} must be 1-200 characters of A-Z a-z 0-9 _ - (RQ's rule; ':' is reserved)"
            )
        level = keys.DEFAULT_PRIORITY if spec.priority is None else spec.priority
        if isinstance(level, bool) or not isinstance(level, int) or level not in keys.PRIORITY_LEVELS:
            raise InvalidJobError(
                f"priority must be an integer 1 (most important) .. 5, got {spec.priority!r}"
            )
        delay = spec.delay.total_seconds() if isinstance(spec.delay, timedelta) else (spec.delay or 0.0)
        if not isinstance(delay, int | float) or math.isnan(delay) or delay < 0:
            raise InvalidJobError(f"delay must be a number of seconds >= 0, got {spec.delay!r}")
        kwargs = spec.kwargs if isinstance(spec.kwargs, dict) else dict(spec.kwargs)
        if kwargs and not all(isinstance(k, str) for k in kwargs):
            raise InvalidJobError(f"keyword argument names of {fn} must be strings")
        try:
            data, description = payload.encode_call(fn, spec.args, kwargs)
        except (TypeError, ValueError) as exc:
            raise InvalidJobError(f"arguments of {fn} must be JSON values (no pickling): {exc}") from None
        rate_key = spec.rate_key
        if rate_key is not None and not (isinstance(rate_key, str) and 1 <= len(rate_key) <= 200):
            raise InvalidJobError(f"rate_key must be a string of 1-200 characters, got {spec.rate_key!r}")
        deps = _dependencies(job_id, spec.depends_on) if spec.depends_on else ()
        if deps and delay > 0:
            raise InvalidJobError(
                "a job with depends_on cannot have a delay too (it runs when its dependencies end)"
            )
        kind = "d" if deps else "s" if delay > 0 else "q"
        ready = repr(self.now + delay) if delay > 0 else self.created
        return (
            job_id,
            kind,
            [
                job_id,
                kind,
                level,
                ready,
                self.option_set(_options(spec.options), rate_key),
                data,
                description,
                *(("1" if spec.allow_failure else "", len(deps), *deps) if deps else ()),
            ],
        )

    def option_sets(self) -> list[Any]:
        flat: list[Any] = [len(self.sets)]
        for fields in self.sets:
            flat += [len(fields) // 2, *fields]
        return flat


def _dependencies(job_id: str, depends_on: Sequence[str]) -> list[str]:
    """The ids a job waits for, checked (an id, not the job itself, at most MAX_DEPENDENCIES),
    each once, in the order given."""
    if isinstance(depends_on, str):  # (a bare id: one dependency, as RQ takes it)
        depends_on = [depends_on]
    deps = list(dict.fromkeys(depends_on))
    if len(deps) > MAX_DEPENDENCIES:
        raise InvalidJobError(
            f"depends_on holds {len(deps)} ids; a job may depend on at most {MAX_DEPENDENCIES}"
        )
    for dep in deps:
        if not isinstance(dep, str) or not JOB_ID_PATTERN.match(dep):
            raise InvalidJobError(
                f"depends_on: {dep!r} is not a job id (1-200 characters of A-Z a-z 0-9 _ -)"
            )
        if dep == job_id:
            raise InvalidJobError(f"job {job_id!r} cannot depend on itself")
    return deps


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle among ``graph`` (job id -> the ids it depends on), as the ids along
    it with the first repeated at the end (``[a, b, a]``: a waits for b, b for a); None if
    there is none. Ids that are not keys of ``graph`` have no dependencies here."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done (no cycle through it)
    for root in graph:
        if root in state:
            continue
        path: list[str] = [root]
        state[root] = 1
        stack: list[Iterator[str]] = [iter(graph[root])]
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            elif dep not in state:
                state[dep] = 1
                path.append(dep)
                stack.append(iter(graph.get(dep, ())))
    return None


def _check_links(built: list[tuple[str, str, list[Any]]]) -> bool:
    """True if some job of the call has dependencies (then the call must be one script call:
    at most MAX_FLOW_CHILDREN + 1 jobs, and no cycle among them)."""
    graph = {job_id: argv[9:] for job_id, kind, argv in built if kind == "d"}
    if not graph:
        return False
    if len(built) > MAX_FLOW_CHILDREN + 1:
        raise InvalidJobError(
            f"{len(built)} jobs with dependencies in one call; at most {MAX_FLOW_CHILDREN + 1} (one flow's parent "
            f"and {MAX_FLOW_CHILDREN} children) are added atomically — split them into several flows"
        )
    cycle = find_cycle(graph)
    if cycle:
        raise InvalidJobError(
            f"dependency cycle: {' -> '.join(cycle)} (each waits for the next; none could run)"
        )
    return True


def _run_enqueue(
    conn: redis.Redis, builder: _Builder, built: list[tuple[str, str, list[Any]]]
) -> list[EnqueueResult]:
    queue_name = builder.queue
    out: list[EnqueueResult] = []
    calls: list[tuple[Any, ...]] = []
    linked = _check_links(built)
    size = len(built) if linked else BULK_CHUNK  # (dependencies: all or nothing)
    chunks = [built[i : i + size] for i in range(0, len(built), size)]
    sets = builder.option_sets()
    for chunk in chunks:
        flat: list[Any] = [
            queue_name,
            builder.now_iso,
            builder.created,
            len(chunk),
            "1" if linked else "",
            *sets,
        ]
        for _, _, argv in chunk:
            flat.extend(argv)
        calls.append(tuple(flat))
    try:
        replies = (
            _ENQUEUE.many(conn, calls) if len(calls) > 1 else [_ENQUEUE(conn, *calls[0])] if calls else []
        )
    except redis.ResponseError as exc:
        if not str(exc).startswith("UNKNOWNDEP "):
            raise
        _, job_id, dep = str(exc).split()[:3]
        raise InvalidJobError(
            f"job {job_id!r} depends on {dep!r}, which is no job (never enqueued, or its record expired "
            "after keepCompleted/keepFailed); nothing was enqueued"
        ) from None
    for chunk, reply in zip(chunks, replies, strict=True):
        # (the script lists only the jobs not simply added: by 1-based index in the chunk)
        noted = dict(zip(reply[::2], reply[1::2], strict=True))
        for j, (job_id, kind, _) in enumerate(chunk, 1):
            note = noted.get(j)
            if note is None:
                status = "scheduled" if kind == "s" else "queued"
                out.append(EnqueueResult(job_id, queue_name, False, status))
            elif isinstance(note, list):  # a deferred job, settled at once
                out.append(EnqueueResult(job_id, queue_name, False, text(note[0])))
            else:
                out.append(EnqueueResult(job_id, queue_name, True, text(note)))
    return out


def enqueue(
    queue: str,
    function: Function,
    *args: Any,
    kwargs: Mapping[str, Any] | None = None,
    job_id: str | None = None,
    delay: float | timedelta | None = None,
    priority: int | None = None,
    rate_key: str | None = None,
    depends_on: Sequence[str] = (),
    allow_failure: bool = False,
    connection: redis.Redis | None = None,
    **options: Any,
) -> EnqueueResult:
    """Add one job to ``queue``.

    ``function`` is a ``@job`` function or its dotted name; ``args``/``kwargs`` must be JSON
    values. ``delay`` (seconds) makes it a delayed job; ``priority`` 1 (most important) .. 5
    picks its level (default 3); ``rate_key`` names what the queue's ``keyRateLimit`` counts
    this job against (a tenant, an API host); ``depends_on`` lists ids of jobs it waits for
    (RQ's field: it runs once they all finished, fails if one fails or is canceled, runs anyway
    with ``allow_failure=True``; docs/flows.md); ``options`` override the queue's job defaults
    (``attempts=5``, ``backoff={"type": "fixed", "delaySeconds": 2}``, ``timeout_seconds=30``,
    ``keep_completed=3600``, ``keep_failed=86400``). Raises UnknownQueueError when no JobQueue
    publishes ``queue``, InvalidJobError for anything malformed.
    """
    conn = _connection(connection)
    builder = _Builder(settings.load(conn, queue))
    spec = JobSpec(function, args, kwargs or {}, job_id, delay, priority, options or None, rate_key)
    spec = dataclasses.replace(spec, depends_on=depends_on, allow_failure=allow_failure)
    return _run_enqueue(conn, builder, [builder.build(spec)])[0]


def enqueue_many(
    queue: str, jobs: Iterable[JobSpec], *, connection: redis.Redis | None = None
) -> list[EnqueueResult]:
    """Add many jobs in a few round trips (duplicate ids are detected per job, as in
    :func:`enqueue`, also between jobs of the same batch). All jobs are validated before any
    is added, so an InvalidJobError adds nothing."""
    conn = _connection(connection)
    builder = _Builder(settings.load(conn, queue))
    return _run_enqueue(conn, builder, _build_all(builder, jobs, "job"))


def _build_all(builder: _Builder, specs: Iterable[JobSpec], what: str) -> list[tuple[str, str, list[Any]]]:
    """Every spec checked and built before anything is sent (an error names the spec)."""
    built = []
    for n, spec in enumerate(specs):
        try:
            built.append(builder.build(spec))
        except InvalidJobError as exc:
            raise InvalidJobError(f"{what} #{n}: {exc}") from None
    return built


def enqueue_flow(
    queue: str, parent: JobSpec, children: Sequence[JobSpec], *, connection: redis.Redis | None = None
) -> FlowResult:
    """Add a parent job and the children it waits for, atomically (one script call: all of
    them or, on any error, none), BullMQ FlowProducer's shape on RQ's ``depends_on``.

    The children run as ordinary jobs; the parent stays ``deferred`` until every child has
    finished, then runs and reads their results with ``current_job().dependency_results()``.
    A child that fails for good (or is canceled, or removed) fails the parent ("not run: its
    dependency … failed"), unless ``parent.allow_failure`` is set: then the parent runs once
    all have ended and ``current_job().dependencies()`` says how each ended. The parent's own
    ``depends_on`` ids (existing jobs) are waited for too. At most MAX_FLOW_CHILDREN children."""
    if not children:
        raise InvalidJobError("a flow needs at least one child (for a single job use enqueue)")
    if len(children) > MAX_FLOW_CHILDREN:
        raise InvalidJobError(f"a flow has at most {MAX_FLOW_CHILDREN} children, got {len(children)}")
    conn = _connection(connection)
    builder = _Builder(settings.load(conn, queue))
    built = _build_all(builder, children, "child")
    ids = [job_id for job_id, _, _ in built]
    if len(set(ids)) < len(ids):
        raise InvalidJobError("the children of a flow need distinct job ids")
    try:
        top = builder.build(
            dataclasses.replace(parent, depends_on=[*ids, *_dependencies("", parent.depends_on)])
        )
    except InvalidJobError as exc:
        raise InvalidJobError(f"parent: {exc}") from None
    results = _run_enqueue(conn, builder, [*built, top])
    return FlowResult(results[-1], results[:-1])


def dependencies(job_id: str, *, connection: redis.Redis | None = None) -> dict[str, JobInfo | None]:
    """The jobs ``job_id`` depends on (RQ's ``dependency_ids``, any queue), by id, in order;
    None for one whose record is gone (its retention ended). One round trip after the job's."""
    conn = _connection(connection)
    raw = conn.hget(keys.JOB.encode() + _id_bytes("", job_id), "dependency_ids")
    try:
        ids = [str(x) for x in json.loads(raw)] if raw else []
    except ValueError:
        ids = []
    pipe = conn.pipeline(transaction=False)
    for dep in ids:
        pipe.hgetall(keys.JOB + dep)
        pipe.xrevrange(keys.RESULTS + dep, "+", "-", count=1)
    replies = pipe.execute(raise_on_error=False)
    out: dict[str, JobInfo | None] = {}
    for dep, rec, latest in zip(ids, replies[::2], replies[1::2], strict=True):
        ok = isinstance(rec, dict) and rec
        results = [] if isinstance(latest, redis.ResponseError) else latest
        out[dep] = _job_info(text(rec.get(b"origin")), dep, rec, results) if ok else None
    return out


# --------------------------------------------------------------------------------------
# status, retry, remove, stats


def _float(raw: Mapping[bytes, bytes], name: str) -> float | None:
    """A finite number field; None when missing or not one (a record may hold anything)."""
    v = raw.get(name.encode())
    if not v:
        return None
    try:
        f = float(v)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _int(raw: Mapping[bytes, bytes], name: str) -> int | None:
    f = _float(raw, name)
    return None if f is None or abs(f) > 1e15 else int(f)


def _dt(value: float | None) -> datetime | None:
    try:
        return None if value is None else datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):  # a time no calendar has
        return None


def _job_info(queue: str, job_id: str, raw: Mapping[bytes, bytes], latest: list[Any]) -> JobInfo:
    """Everything a job record says, shown as it is: a record written by hand or by another
    tool may hold anything, and a reader must still show it (a worker fails such a job with
    the reason; this is how people read that reason)."""

    def s(name: str) -> str:
        return clean(text(raw.get(name.encode())))

    try:
        fn, args, kwargs = payload.decode(raw.get(b"data", b""))
    except payload.PayloadError as exc:
        fn, args, kwargs = f"<undecodable payload: {exc}>", [], {}
    fn = clean(fn)
    status = s("status") or "unknown"
    result: Any = None
    if latest:
        fields = {text(k): v for k, v in latest[0][1].items()}
        rv = fields.get("return_value")
        if rv is not None and text(fields.get("type")) == "1":
            try:
                result = json.loads(base64.b64decode(rv))
            except (ValueError, RecursionError):
                result = "<undecodable result>"
    exc_info = s("exc_info")
    if exc_info and raw.get(b"exc_info", b"")[:1] == b"x":  # RQ compresses it
        with contextlib.suppress(zlib.error):
            exc_info = clean(zlib.decompress(raw[b"exc_info"]).decode("utf-8", "replace"))
    reason = s(keys.F_REASON) or (exc_info.strip().splitlines()[-1] if exc_info.strip() else "")
    made = max(_int(raw, keys.F_MADE) or 0, 0)
    attempts = _int(raw, keys.F_ATTEMPTS)
    if attempts is None:
        attempts = made + max(_int(raw, "retries_left") or 0, 0) + (0 if made else 1)
    progress = _float(raw, keys.F_PROGRESS) or 0.0
    timeout = _int(raw, "timeout")
    level = _int(raw, keys.F_PRIORITY)
    return JobInfo(
        id=clean(job_id),
        queue=queue,
        function=fn,
        args=args,
        kwargs=kwargs,
        status=status,
        priority=level if level in keys.PRIORITY_LEVELS else keys.DEFAULT_PRIORITY,
        progress=int(progress) if progress.is_integer() else progress,
        attempts_made=made,
        attempts=attempts,
        failed_reason=(reason or None) if status != "finished" else None,
        stacktrace=exc_info or None,
        result=result,
        created_at=_dt(_float(raw, keys.F_CREATED) or payload.utcparse(s("created_at"))),
        ready_at=_dt(_float(raw, keys.F_READY) or payload.utcparse(s("enqueued_at"))),
        started_at=_dt(_float(raw, keys.F_STARTED) or payload.utcparse(s("started_at"))),
        finished_at=_dt(_float(raw, keys.F_ENDED) or payload.utcparse(s("ended_at")))
        if status in TERMINAL_STATUSES
        else None,
        worker=s("worker_name") or None,
        pod=s(keys.F_POD) or None,
        timeout_seconds=timeout,
    )


def _id_bytes(queue: str, job_id: str) -> bytes:
    """The id's exact bytes. Any id a record can have is accepted, so a poison record can be
    read and removed: an argument that is not UTF-8 reaches Python surrogate-escaped (how
    ``sys.argv`` decodes), and is encoded back the same way."""
    try:
        return job_id.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise UnknownJobError(queue, job_id, "not a valid job id") from None


def get_job(queue: str, job_id: str, *, connection: redis.Redis | None = None) -> JobInfo:
    """Status of one job (the seed's ``getJobStatus``); UnknownJobError if it is not there."""
    conn = _connection(connection)
    ((raw, info),) = _fetch(conn, queue, [job_id])
    if info is None:
        if isinstance(raw, redis.ResponseError):  # (a key of another type under a job's name)
            raise UnknownJobError(queue, job_id, f"its key is not a job record: {raw}")
        if not raw:
            raise UnknownJobError(queue, job_id)
        raise UnknownJobError(queue, job_id, f"that id belongs to queue {clean(text(raw.get(b'origin')))!r}")
    return info


def id_text(raw: bytes) -> str:
    """A job id read from Redis as text that :func:`get_job` maps back to the same bytes (an
    id that is not UTF-8 stays surrogate-escaped; :class:`JobInfo` shows it escaped)."""
    return raw.decode("utf-8", "surrogateescape")


def _fetch(
    conn: redis.Redis, queue: str, job_ids: Sequence[str]
) -> list[tuple[Mapping[bytes, bytes] | redis.ResponseError, JobInfo | None]]:
    """Each job's raw hash (or the error reading it) and its JobInfo (None: gone, not a hash,
    or a job of another queue); one round trip. Any id a record can have is read."""
    pipe = conn.pipeline(transaction=False)
    for job_id in job_ids:
        key = _id_bytes(queue, job_id)
        pipe.hgetall(keys.JOB.encode() + key)
        pipe.xrevrange(keys.RESULTS.encode() + key, "+", "-", count=1)
    replies = pipe.execute(raise_on_error=False)
    out: list[tuple[Mapping[bytes, bytes] | redis.ResponseError, JobInfo | None]] = []
    for job_id, raw, latest in zip(job_ids, replies[::2], replies[1::2], strict=True):
        if isinstance(raw, redis.ResponseError):
            out.append((raw, None))
            continue
        # (a record without origin is shown: it names no other queue)
        ours = bool(raw) and text(raw.get(b"origin")) in (queue, "")
        results = [] if isinstance(latest, redis.ResponseError) else latest
        out.append((raw, _job_info(queue, job_id, raw, results) if ours else None))
    return out


def get_jobs(queue: str, job_ids: Sequence[str], *, connection: redis.Redis | None = None) -> list[JobInfo]:
    """The jobs of ``queue`` among ``job_ids``, in that order, in one round trip; ids that are
    gone (or belong to another queue) are left out."""
    conn = _connection(connection)
    return [info for _, info in _fetch(conn, queue, job_ids) if info is not None]


def _admin(script: Script, conn: redis.Redis, queue: str, job_id: str, *args: Any) -> str:
    before = text(script(conn, queue, _id_bytes(queue, job_id), *args))
    if before == "missing":
        raise UnknownJobError(queue, job_id)
    if before.startswith("origin:"):
        raise UnknownJobError(queue, job_id, f"that id belongs to queue {clean(before[7:])!r}")
    return before


def retry(queue: str, job_id: str, *, connection: redis.Redis | None = None) -> JobInfo:
    """Put a failed job back in its queue with a fresh set of attempts (the seed's retry)."""
    conn = _connection(connection)
    now = time.time()
    before = _admin(_RETRY, conn, queue, job_id, repr(now), payload.utcformat(now))
    if before not in ("failed", "stopped", "canceled"):
        raise JobStateError(
            queue, job_id, before, f"job {job_id!r} is {before}; only failed jobs can be retried"
        )
    return get_job(queue, job_id, connection=conn)


def remove(queue: str, job_id: str, *, connection: redis.Redis | None = None) -> str:
    """Delete a job that is not running, from wherever it is; returns its status before."""
    conn = _connection(connection)
    now = time.time()
    before = _admin(_REMOVE, conn, queue, job_id, repr(now), payload.utcformat(now))
    if before == "started":
        raise JobStateError(
            queue, job_id, before, f"job {job_id!r} is running; it can be removed once it finished or failed"
        )
    return before


@dataclass(frozen=True)
class Cancelled:
    """What :func:`cancel` did."""

    id: str
    queue: str
    previous_status: str  # queued, scheduled, deferred: canceled now; started: being stopped
    stopping: bool  # True: it was running; its worker stops it (see :func:`cancel`)
    worker: str | None  # the worker running it


def cancel(
    queue: str, job_id: str, *, by: str | None = None, connection: redis.Redis | None = None
) -> Cancelled:
    """Cancel a job from anywhere; it ends ``canceled`` (RQ's status) and is never retried.

    A queued, scheduled or deferred job is canceled at once and never starts. A running one is
    stopped by the worker running it, told through Redis at once: process mode kills the
    job's process and async mode cancels its task, both within a second; thread mode cannot
    stop a thread, so it sets a flag the job reads as ``current_job().cancel_requested`` and, if
    the job does not end, abandons it at its timeout. A job that ends by itself before the
    stop reaches it keeps that outcome if it succeeded (finished), and ends canceled if it
    failed. :func:`wait` returns when it has ended. JobStateError if it had ended already."""
    conn = _connection(connection)
    reply = [
        text(x)
        for x in _CANCEL(
            conn, queue, _id_bytes(queue, job_id), repr(time.time()), payload.utcformat(time.time()), by or ""
        )
    ]
    if reply[0] == "missing":
        raise UnknownJobError(queue, job_id)
    if reply[0] == "origin":
        raise UnknownJobError(queue, job_id, f"that id belongs to queue {clean(reply[1])!r}")
    before, worker = reply
    if before in TERMINAL_STATUSES:
        raise JobStateError(queue, job_id, before, f"job {job_id!r} is {before} already; nothing to cancel")
    return Cancelled(job_id, queue, before, before == "started", worker or None)


def queue_stats(queue: str, *, connection: redis.Redis | None = None) -> stats.QueueStats:
    """The seed's ``getQueueStats`` for one declared queue (UnknownQueueError otherwise)."""
    conn = _connection(connection)
    settings.load(conn, queue)
    return stats.snapshot(conn, [queue])[queue]


#: ``wait`` wakes on the job's results stream; it re-reads the job at least this often anyway
#: (seconds), a safety net for an end that writes no entry (a hash edited by hand) or a stream
#: deleted with its job (keepCompleted 0) — never the way a normal end is noticed.
WAIT_RECHECK_SECONDS: Final = 5.0
#: With ``on_update`` (a progress bar) the job is re-read this often too: progress writes no entry.
WAIT_UPDATE_SECONDS: Final = 0.5


def wait(
    queue: str,
    job_id: str,
    *,
    timeout: float | None = None,
    connection: redis.Redis | None = None,
    on_update: Callable[[JobInfo], None] | None = None,
) -> JobInfo:
    """Block until the job has ended — finished, failed or canceled — and return it
    (``timeout`` seconds passed first: TimeoutError).

    No polling: every end of an attempt appends an entry to the job's results stream
    (``rq:results:<id>``, RQ's), in the same script that records it; this blocks on that stream
    (``XREAD BLOCK``) from its last entry, so it returns within a round trip of the end. An
    attempt that failed and will be retried wakes it too; it reads the job and waits on."""
    conn = _connection(connection)
    deadline = None if timeout is None else time.monotonic() + timeout
    stream = keys.RESULTS.encode() + _id_bytes(queue, job_id)
    step = WAIT_UPDATE_SECONDS if on_update is not None else WAIT_RECHECK_SECONDS
    socket_timeout = conn.connection_pool.connection_kwargs.get("socket_timeout")
    if socket_timeout:  # (a block longer than the client's socket timeout would fail)
        step = max(0.01, min(step, float(socket_timeout) - 0.1))
    while True:
        # the last entry first, then the job: an end between the two shows in the job
        last = conn.xrevrange(stream, "+", "-", count=1)
        info = get_job(queue, job_id, connection=conn)
        if on_update is not None:
            on_update(info)
        if info.done:
            return info
        block = step
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"job {job_id!r} is still {info.status} after {timeout} s")
            block = min(block, left)
        since = text(last[0][0]) if last else "0-0"
        conn.xread({stream: since}, count=1, block=max(1, int(block * 1000)))
