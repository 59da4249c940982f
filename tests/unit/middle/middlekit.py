"""The middle tier's fakes: the Kubernetes API and the Redis servers, in memory.

The components under test (the reconcilers, the autoscaler, the status keeper, the
default-Redis Secrets, the settings sweep, the Redis addressing) are the real ones; only
their two outside boundaries are replaced:

* :class:`FakeKube` implements :class:`jobqueue_operator.k8s.KubeApi`: objects in a dict,
  server-side apply reduced to what the operator relies on (a new object gets a uid and
  generation 1, a changed spec a new generation, ``spec.replicas`` belongs to the field
  managers that applied or scaled it and falls back to Kubernetes' default of 1 when none
  is left), 404 for what is not there, and errors injected per verb and kind
  (:meth:`FakeKube.fail`). It records every call and every Event.
* :class:`Indexes` plays kopf's watch: the autoscaler's in-memory indexes, built from the
  fake's objects by the operator's own projections, and refreshed only when a test says so
  (:meth:`Indexes.refresh`) — a watch that lags is the normal case the autoscaler handles.
* :class:`FakeHub` is the real :class:`~jobqueue_operator.redisq.RedisHub` with its two
  ways into a server replaced: ``run`` calls the function in this thread against a small
  in-memory store (so publishing, ownership of queue names and the RecurringJob reads run
  the production code), and ``poll`` (a Lua script in production) returns the
  :class:`~jobqueue.stats.QueueStats` and heartbeats a test sets, as ``recover_pod`` (a
  Lua script too) returns the jobs a test says a pod held. A URL in ``down`` does not answer.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import datetime
import itertools
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import redis
from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from jobqueue import recovery, stats
from jobqueue.redaction import redact
from jobqueue_operator import (
    defaultredis,
    errors,
    index,
    models,
    reconcile,
    recurring,
    redisaddresses,
    redisq,
    settings,
    sweeper,
)
from jobqueue_operator.builders import deployment, names
from jobqueue_operator.scaling import poller, views
from jobqueue_operator.statuskeeper import StatusKeeper

T = TypeVar("T")
ObjKey = tuple[str, str, str]  # kind, namespace, name

NAMESPACE = "team"
REDIS_URL = "redis://redis.test:6379/0"
#: the wall clock of the fake clocks at t=0 (any fixed instant: nothing here reads the real time)
EPOCH = datetime.datetime(2026, 1, 5, 12, 0, tzinfo=datetime.UTC)


def api_error(code: int, message: str = "") -> ApiError:
    """The error lightkube raises for an API answer with HTTP status ``code``."""
    reasons = {403: "Forbidden", 404: "NotFound", 409: "Conflict", 422: "Invalid"}
    return ApiError(
        status=Status(
            code=code,
            reason=reasons.get(code),
            status="Failure",
            message=message or f"{reasons.get(code, 'Error')} (injected)",
        )
    )


@dataclass(frozen=True)
class Call:
    """One call the fake API received (``error``: the HTTP code it failed with)."""

    verb: str
    kind: str
    namespace: str
    name: str
    body: Any = None
    manager: str | None = None
    error: int | None = None


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str
    kind: str
    name: str


class FakeKube:
    """An in-memory Kubernetes API (:class:`jobqueue_operator.k8s.KubeApi`)."""

    def __init__(self) -> None:
        self.objects: dict[ObjKey, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.events: list[Event] = []
        self._failures: dict[tuple[str, str], list[ApiError]] = defaultdict(list)
        self._uids = itertools.count(1)
        self._versions = itertools.count(1)
        #: the field managers owning spec.replicas, per Deployment
        self._replica_owners: dict[ObjKey, set[str]] = defaultdict(set)
        #: (kind, namespace, name, field manager) -> the status fields it applied last
        self._status_fields: dict[tuple[str, str, str, str], set[str]] = {}

    # ---- test controls

    def fail(self, verb: str, kind: str, error: ApiError, *, times: int = 1) -> None:
        """Make the next ``times`` calls ``verb`` (get, apply, delete, suspend, scale, annotate,
        apply_status, merge_status) on ``kind`` fail with ``error``."""
        self._failures[verb, kind].extend([error] * times)

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Store an object as someone else (kubectl) would create it; returns the live object."""
        meta = body["metadata"]
        live = copy.deepcopy(dict(body))
        live["metadata"] = {
            **live["metadata"],
            "uid": f"uid-{next(self._uids)}",
            "generation": 1,
            "resourceVersion": str(next(self._versions)),
        }
        self.objects[body["kind"], meta["namespace"], meta["name"]] = live
        return copy.deepcopy(live)

    def jobqueue(self, name: str, namespace: str = NAMESPACE, **spec: Any) -> dict[str, Any]:
        """Create (or change the spec of) a JobQueue; returns the live object. ``worker``
        defaults to a minimal valid one (as in tests/integration/opkit.py)."""
        spec.setdefault("worker", {"image": "registry.invalid/glec-jobs:1", "imports": ["glec.jobs"]})
        return self._user_object(models.JOBQUEUE_KIND, name, namespace, spec)

    def recurringjob(self, name: str, namespace: str = NAMESPACE, **spec: Any) -> dict[str, Any]:
        """Create (or change the spec of) a RecurringJob; queue, schedule and function default
        to a valid daily job (as in tests/integration/recurring/rjkit.py)."""
        spec.setdefault("queue", "analytics")
        spec.setdefault("schedule", "0 0 * * *")
        spec.setdefault("function", "glec_jobs.daily_aggregate")
        return self._user_object(models.RECURRINGJOB_KIND, name, namespace, spec)

    def _user_object(self, kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
        """``kubectl apply`` of one of our kinds: created, or a new generation if its spec changed."""
        existing = self.objects.get((kind, namespace, name))
        if existing is None:
            return self.create(
                {
                    "apiVersion": models.API_VERSION,
                    "kind": kind,
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": spec,
                }
            )
        if existing["spec"] != spec:
            existing["spec"] = copy.deepcopy(spec)
            existing["metadata"]["generation"] += 1
            existing["metadata"]["resourceVersion"] = str(next(self._versions))
        return copy.deepcopy(existing)

    def url_secret(self, url: str, name: str = "jobqueue-redis", key: str = "url") -> dict[str, Any]:
        """A user's Secret holding a Redis URL (what ``spec.redis.urlSecretRef`` names)."""
        return self.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "data": {key: base64.b64encode(url.encode()).decode()},
            }
        )

    def get(self, kind: str, name: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        live = self.objects.get((kind, namespace, name))
        return None if live is None else copy.deepcopy(live)

    def remove(self, kind: str, name: str, namespace: str = NAMESPACE) -> None:
        """Delete an object as someone else would."""
        del self.objects[kind, namespace, name]

    def writes(self, verb: str, kind: str | None = None) -> list[Call]:
        """The successful calls ``verb`` (on ``kind``)."""
        return [
            c for c in self.calls if c.verb == verb and (kind is None or c.kind == kind) and c.error is None
        ]

    def reasons(self, name: str | None = None) -> list[tuple[str, str]]:
        """(type, reason) of the Events recorded (about ``name``), oldest first."""
        return [(e.type, e.reason) for e in self.events if name is None or e.name == name]

    def condition(self, kind: str, name: str, type_: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        live = self.objects[kind, namespace, name]
        for cond in (live.get("status") or {}).get("conditions") or []:
            if cond["type"] == type_:
                return dict(cond)
        raise AssertionError(f"{kind} {namespace}/{name} has no condition {type_}: {live.get('status')}")

    # ---- the Emit of the components

    async def emit(self, obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        self.events.append(Event(type, reason, message, obj["kind"], obj["metadata"]["name"]))

    # ---- plumbing

    def _call(
        self, verb: str, kind: str, namespace: str, name: str, *, body: Any = None, manager: str | None = None
    ) -> None:
        pending = self._failures.get((verb, kind))
        if pending:
            error = pending.pop(0)
            self.calls.append(
                Call(verb, kind, namespace, name, copy.deepcopy(body), manager, int(error.status.code or 0))
            )
            raise error
        self.calls.append(Call(verb, kind, namespace, name, copy.deepcopy(body), manager))

    def _live(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """The object a patch just called for (:meth:`_call`); 404 (and the call recorded as
        failed) if there is none."""
        live = self.objects.get((kind, namespace, name))
        if live is None:
            self.calls[-1] = dataclasses.replace(self.calls[-1], error=404)
            raise api_error(404, f'{kind.lower()}s "{name}" not found')
        return live

    def _touch(self, live: dict[str, Any], spec_before: Any) -> None:
        live["metadata"]["resourceVersion"] = str(next(self._versions))
        if live.get("spec") != spec_before:
            live["metadata"]["generation"] += 1

    def _read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._call("get", kind, namespace, name)
        return self.get(kind, name, namespace)

    # ---- k8s.KubeApi

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read("Deployment", namespace, name)

    async def get_cronjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read("CronJob", namespace, name)

    async def get_jobqueue(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(models.JOBQUEUE_KIND, namespace, name)

    async def get_recurringjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(models.RECURRINGJOB_KIND, namespace, name)

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read("Secret", namespace, name)

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        secret = self._read("Secret", namespace, name)
        if secret is None:
            return None
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}

    async def apply(self, body: Mapping[str, Any], *, field_manager: str) -> dict[str, Any]:
        kind, meta = body["kind"], body["metadata"]
        key: ObjKey = (kind, meta["namespace"], meta["name"])
        self._call("apply", kind, meta["namespace"], meta["name"], body=body, manager=field_manager)
        live = self.objects.get(key)
        if live is None:
            self.create(body)
            live = self.objects[key]
            if kind == "Deployment":
                self._apply_replicas(key, live, body, field_manager, None)
            return copy.deepcopy(live)
        wanted = meta.get("resourceVersion")
        if wanted and wanted != live["metadata"]["resourceVersion"]:  # a precondition, as the server's
            raise api_error(409, "the object has been modified")
        unchanged = copy.deepcopy(live)
        spec_before = copy.deepcopy(live.get("spec"))
        for part in ("labels", "annotations", "ownerReferences"):
            if part in meta:
                live["metadata"][part] = copy.deepcopy(meta[part])
        for part in ("data", "type"):
            if part in body:
                live[part] = copy.deepcopy(body[part])
        if kind == "Deployment":
            self._apply_replicas(key, live, body, field_manager, spec_before)
        elif "spec" in body:
            live["spec"] = copy.deepcopy(body["spec"])
        if live != unchanged:  # (an apply that changes nothing writes nothing)
            self._touch(live, spec_before)
        return copy.deepcopy(live)

    def _apply_replicas(
        self, key: ObjKey, live: dict[str, Any], body: Mapping[str, Any], manager: str, spec_before: Any
    ) -> None:
        """Server-side apply of a Deployment as far as replicas go: the body's other spec
        fields are the applier's; ``spec.replicas`` stays while any manager owns it."""
        owners = self._replica_owners[key]
        replicas = (spec_before or {}).get("replicas")
        if "replicas" in body.get("spec", {}):
            owners.add(manager)
            replicas = body["spec"]["replicas"]
        else:
            owners.discard(manager)
        rest = {k: v for k, v in body.get("spec", {}).items() if k != "replicas"}
        if manager == names.OPERATOR_MANAGER or spec_before is None:  # (the whole-object applier)
            live["spec"] = copy.deepcopy(rest)
        live["spec"]["replicas"] = replicas if owners else 1  # nobody owns it: Kubernetes' default
        live["metadata"]["managedFields"] = [
            {"manager": m, "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
            for m in sorted(owners)
        ]

    async def delete_deployment(self, namespace: str, name: str) -> None:
        self._call("delete", "Deployment", namespace, name)
        self.objects.pop(("Deployment", namespace, name), None)

    async def delete_secret(self, namespace: str, name: str) -> None:
        self._call("delete", "Secret", namespace, name)
        self.objects.pop(("Secret", namespace, name), None)

    async def suspend_cronjob(self, namespace: str, name: str, *, field_manager: str) -> dict[str, Any]:
        self._call("suspend", "CronJob", namespace, name, manager=field_manager)
        live = self._live("CronJob", namespace, name)
        before = copy.deepcopy(live["spec"])
        live["spec"]["suspend"] = True
        self._touch(live, before)
        return copy.deepcopy(live)

    async def scale_deployment(self, namespace: str, name: str, replicas: int, *, field_manager: str) -> None:
        self._call("scale", "Deployment", namespace, name, body=replicas, manager=field_manager)
        live = self._live("Deployment", namespace, name)
        before = copy.deepcopy(live["spec"])
        live["spec"]["replicas"] = replicas
        # an update that sets a field takes it from its other owners (the server may record
        # no owner at all after a scale through the subresource; either way not the operator)
        owners = self._replica_owners["Deployment", namespace, name]
        owners.clear()
        owners.add(field_manager)
        live["metadata"]["managedFields"] = [
            {"manager": field_manager, "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
        ]
        self._touch(live, before)

    def status_written(self, kind: str, namespace: str, name: str) -> None:
        """A controller wrote the object's status: a new resourceVersion, nothing else."""
        live = self._live(kind, namespace, name)
        self._touch(live, live.get("spec"))

    async def annotate_pod(
        self, namespace: str, name: str, annotations: Mapping[str, str], *, field_manager: str
    ) -> None:
        self._call("annotate", "Pod", namespace, name, body=dict(annotations), manager=field_manager)
        live = self._live("Pod", namespace, name)
        live["metadata"].setdefault("annotations", {}).update(annotations)
        self._touch(live, live.get("spec"))

    async def apply_status(
        self, kind: str, namespace: str, name: str, status: Mapping[str, Any], *, field_manager: str
    ) -> None:
        self._call("apply_status", kind, namespace, name, body=status, manager=field_manager)
        live = self._live(kind, namespace, name)
        # server-side apply: the status fields this manager applied before and leaves out now go
        applied = self._status_fields.setdefault((kind, namespace, name, field_manager), set())
        kept = {k: v for k, v in (live.get("status") or {}).items() if k not in applied - status.keys()}
        live["status"] = {**kept, **copy.deepcopy(dict(status))}
        applied.clear()
        applied.update(status.keys())
        self._touch(live, live.get("spec"))

    async def merge_status(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], *, field_manager: str
    ) -> None:
        self._call("merge_status", kind, namespace, name, body=patch, manager=field_manager)
        live = self._live(kind, namespace, name)
        merged = {**(live.get("status") or {}), **copy.deepcopy(dict(patch))}
        live["status"] = {k: v for k, v in merged.items() if v is not None}
        self._touch(live, live.get("spec"))

    # ---- helpers for the worker side that Kubernetes would run

    def pod(
        self, jobqueue: str, name: str, *, namespace: str = NAMESPACE, cost: int | None = None
    ) -> dict[str, Any]:
        """A running worker pod of ``jobqueue``'s Deployment (a ReplicaSet's, as Kubernetes makes them)."""
        deployment = names.deployment_name(jobqueue)
        annotations = {} if cost is None else {views.DELETION_COST_ANNOTATION: str(cost)}
        return self.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": names.worker_labels(jobqueue),
                    "annotations": annotations,
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "ReplicaSet",
                            "controller": True,
                            "name": f"{deployment}-5d9c8",
                            "uid": "rs-uid",
                        }
                    ],
                },
                "status": {"phase": "Running"},
            }
        )


class Indexes:
    """kopf's in-memory indexes of JobQueues, worker Deployments, pods and JobQueue status,
    as the autoscaler reads them; :meth:`refresh` is the watch catching up with the API."""

    def __init__(self, kube: FakeKube) -> None:
        self._kube = kube
        self._refs = index.QueueRefs()
        self.queues: list[index.QueueRef] = []
        self.deployments: dict[index.Key, list[views.DeploymentView]] = {}
        self.pods: dict[index.Key, list[views.PodView]] = {}
        self.statuses: dict[index.Key, list[dict[str, Any]]] = {}
        self.refresh()

    def refresh(self) -> None:
        queues: list[index.QueueRef] = []
        deployments: dict[index.Key, list[views.DeploymentView]] = defaultdict(list)
        pods: dict[index.Key, list[views.PodView]] = defaultdict(list)
        statuses: dict[index.Key, list[dict[str, Any]]] = defaultdict(list)
        for (kind, _, _), body in self._kube.objects.items():
            if kind == models.JOBQUEUE_KIND:
                ref = self._refs.of(body)
                if ref is not None:
                    queues.append(ref)
                _add(statuses, views.status_entry(body))
            elif kind == "Deployment":
                _add(deployments, views.deployment_entry(body))
            elif kind == "Pod":
                _add(pods, views.pod_entry(body))
        self.queues[:] = queues
        _replace(self.deployments, deployments)
        _replace(self.pods, pods)
        _replace(self.statuses, statuses)

    def refs(self) -> Iterable[index.QueueRef]:
        return list(self.queues)


def _replace(idx: dict[index.Key, list[T]], new: Mapping[index.Key, list[T]]) -> None:
    """In place: the autoscaler holds the index objects themselves, as it holds kopf's."""
    idx.clear()
    idx.update(new)


def _add(idx: dict[index.Key, list[Any]], entry: Mapping[index.Key, Any] | None) -> None:
    for key, value in (entry or {}).items():
        idx[key].append(value)


# --------------------------------------------------------------------------------------
# Redis


class FakeRedis:
    """The few Redis commands the operator's hub functions use (strings, sets, hashes), in a dict."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    @staticmethod
    def _bytes(value: Any) -> bytes:
        return value if isinstance(value, bytes) else str(value).encode()

    def get(self, key: str) -> bytes | None:
        value = self.data.get(key)
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: Any) -> bool:
        self.data[key] = self._bytes(value)
        return True

    def delete(self, *keys: str) -> int:
        return sum(self.data.pop(k, None) is not None for k in keys)

    def sadd(self, key: str, *members: Any) -> int:
        bucket = self.data.setdefault(key, set())
        before = len(bucket)
        bucket.update(self._bytes(m) for m in members)
        return len(bucket) - before

    def srem(self, key: str, *members: Any) -> int:
        bucket = self.data.get(key, set())
        before = len(bucket)
        bucket.difference_update(self._bytes(m) for m in members)
        return before - len(bucket)

    def smembers(self, key: str) -> frozenset[bytes]:
        return frozenset(self.data.get(key, ()))

    def hset(self, key: str, mapping: Mapping[str, Any]) -> int:
        self.data.setdefault(key, {}).update({k: self._bytes(v) for k, v in mapping.items()})
        return len(mapping)

    def hget(self, key: str, name: str) -> bytes | None:
        return cast(bytes | None, self.data.get(key, {}).get(name))

    def hmget(self, key: str, names: Sequence[str]) -> list[bytes | None]:
        return [self.hget(key, n) for n in names]

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)


class FakePipeline:
    def __init__(self, conn: FakeRedis) -> None:
        self._conn = conn
        self._queued: list[Callable[[], Any]] = []

    def __getattr__(self, command: str) -> Callable[..., FakePipeline]:
        def queue(*args: Any, **kwargs: Any) -> FakePipeline:
            self._queued.append(lambda: getattr(self._conn, command)(*args, **kwargs))
            return self

        return queue

    def execute(self) -> list[Any]:
        out = [fn() for fn in self._queued]
        self._queued.clear()
        return out


def queue_stats(
    queue: str,
    *,
    queued: int = 0,
    running: int = 0,
    workers: Sequence[stats.WorkerInfo] = (),
    paused: bool = False,
    last_activity_at: float | None = None,
) -> stats.QueueStats:
    return stats.QueueStats(
        queue=queue,
        queued=queued,
        scheduled=0,
        scheduled_due=0,
        running=running,
        lost=0,
        failed=0,
        finished=0,
        oldest_queued_seconds=0.0,
        last_activity_at=last_activity_at,
        workers=list(workers),
        paused=paused,
    )


def worker(pod: str, job: str | None = None) -> stats.WorkerInfo:
    """An RQ worker on ``pod``, busy with ``job`` (idle without one)."""
    return stats.WorkerInfo(
        name=f"w-{pod}",
        pod=pod,
        state="busy" if job else "idle",
        current_job=job,
        busy_slots=1 if job else 0,
        slots=1,
    )


class FakeHub(redisq.RedisHub):
    """The operator's Redis hub over in-memory servers (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__(timeout=1.0)
        self.servers: dict[str, FakeRedis] = defaultdict(FakeRedis)
        #: URLs that do not answer now
        self.down: set[str] = set()
        #: per URL, the figures ``poll`` returns (queues not in it: empty, as the real snapshot)
        self.stats: dict[str, dict[str, stats.QueueStats]] = defaultdict(dict)
        #: per URL, worker name -> its record's last_heartbeat (a worker not in it: no record)
        self.heartbeats: dict[str, dict[str, str]] = defaultdict(dict)
        #: per pod, the jobs ``recover_pod`` finds it held (re-queued); the calls made
        self.held: dict[str, list[str]] = {}
        self.recovered: list[tuple[str, str, str]] = []
        self.polls = 0
        self._answered: set[str] = set()

    def proven(self, url: str) -> bool:
        return url in self._answered

    async def run(self, url: str, fn: Callable[[redis.Redis], T]) -> T:
        redisq.check_url(url)
        await asyncio.sleep(0)  # (a real call gives the loop a turn too)
        if url in self.down:
            self._answered.discard(url)
            raise errors.RedisUnavailable(f"Redis {redact(url)} did not answer: no connection (fake)")
        self._answered.add(url)
        return fn(cast(redis.Redis, self.servers[url]))

    async def poll(
        self,
        url: str,
        queue_names: Sequence[str],
        pods: Mapping[str, Collection[str]] | None = None,
        *,
        reuse: stats.Reuse | None = None,
    ) -> redisq.Poll:
        def read(_: redis.Redis) -> redisq.Poll:
            self.polls += 1
            figures = {q: self.stats[url].get(q) or queue_stats(q) for q in queue_names}
            # (as the real poll: the heartbeats of the workers of the pods asked about)
            wanted = [
                w.name
                for queue, names_ in (pods or {}).items()
                if queue in figures
                for w in figures[queue].workers
                if w.pod in names_
            ]
            return redisq.Poll(figures, {w: self.heartbeats[url].get(w) for w in wanted}, 0.0)

        return await self.run(url, read)

    async def recover_pod(
        self, url: str, queue_name: str, pod: str, *, reason: str
    ) -> recovery.RecoveryReport:
        def recover(_: redis.Redis) -> recovery.RecoveryReport:
            self.recovered.append((queue_name, pod, reason))
            return recovery.RecoveryReport(
                queue=queue_name, pod=pod, requeued=self.held.pop(pod, []), failed=[], workers_removed=[]
            )

        return await self.run(url, recover)

    async def job_starts(self, url: str, job_ids: Iterable[str]) -> dict[str, float]:
        return {}


@dataclass
class Clock:
    """The fake clocks the components accept: ``wall()`` (unix seconds), ``mono()``,
    ``utc()`` (a datetime); :meth:`tick` moves all three."""

    t: float = 0.0
    start: float = field(default=EPOCH.timestamp())

    def wall(self) -> float:
        return self.start + self.t

    def mono(self) -> float:
        return self.t

    def utc(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.start + self.t, datetime.UTC)

    def tick(self, seconds: float) -> None:
        self.t += seconds


async def settle() -> None:
    """Let every task the components started in the background (status writes, Events) finish."""
    me = asyncio.current_task()
    for _ in range(100):
        others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not others:
            return
        await asyncio.wait(others, timeout=0)
        await asyncio.sleep(0)
    raise AssertionError(f"background tasks still running: {others}")


@dataclass
class Operator:
    """The operator's components wired as handlers.startup wires them, over the fakes (the
    settings sweep too: it is how a queue recovers from a Redis restarted empty)."""

    kube: FakeKube
    hub: FakeHub
    clock: Clock
    indexes: Indexes
    addresses: redisaddresses.RedisAddresses
    keeper: StatusKeeper
    secrets: defaultredis.DefaultRedisSecrets
    reconciler: reconcile.Reconciler
    autoscaler: poller.Autoscaler
    recurring: recurring.RecurringJobs
    sweeper: sweeper.Sweeper

    @classmethod
    def make(
        cls,
        *,
        default_url: str | None = REDIS_URL,
        budget: int | None = None,
        kube: FakeKube | None = None,
        hub: FakeHub | None = None,
        owns: Callable[[tuple[str, str]], bool] = lambda _key: True,
    ) -> Operator:
        """A new operator process; ``kube``/``hub``: the cluster and Redis of an earlier one
        (a restart)."""
        kube, hub, clock = kube or FakeKube(), hub or FakeHub(), Clock()
        indexes = Indexes(kube)
        # ttl=0: every Secret read goes to the (fake) API; the cache is RedisAddresses' own business
        addresses = redisaddresses.RedisAddresses(kube, default_url, ttl=0.0)
        keeper = StatusKeeper(kube, kube.emit, clock=clock.utc)
        secrets = defaultredis.DefaultRedisSecrets(kube, default_url, queues=indexes.refs)
        defaults = deployment.WorkerDefaults(default_redis=default_url is not None)
        reconciler = reconcile.Reconciler(
            kube=kube,
            hub=hub,
            addresses=addresses,
            keeper=keeper,
            defaults=defaults,
            emit=kube.emit,
            secrets=secrets,
        )
        autoscaler = poller.Autoscaler(
            kube=kube,
            hub=hub,
            addresses=addresses,
            keeper=keeper,
            emit=kube.emit,
            queues=indexes.refs,
            deployments=indexes.deployments,
            pods=indexes.pods,
            statuses=indexes.statuses,
            interval=1.0,
            budget=budget,
            clock=clock.wall,
            monotonic=clock.mono,
            owns=owns,
        )
        jobs = recurring.RecurringJobs(
            kube=kube, hub=hub, addresses=addresses, emit=kube.emit, defaults=defaults, clock=clock.utc
        )
        sweep = sweeper.Sweeper(
            reconciler=reconciler,
            kube=kube,
            hub=hub,
            addresses=addresses,
            config=settings.Settings(namespaces=(NAMESPACE,), redis_url=default_url),
            queues=indexes.refs,
        )
        return cls(kube, hub, clock, indexes, addresses, keeper, secrets, reconciler, autoscaler, jobs, sweep)

    async def reconcile(self, name: str, namespace: str = NAMESPACE) -> reconcile.Outcome:
        """What kopf does on a JobQueue's create/update: reconcile the object as it is now,
        then the watches catch up."""
        return await self._reconciled(name, namespace, known=None)

    async def resume(self, name: str, namespace: str = NAMESPACE) -> reconcile.Outcome:
        """What kopf does for each JobQueue when the operator starts (``handlers.resume_jobqueue``):
        the reconcile, given the worker Deployment as the index shows it."""
        seen = self.indexes.deployments.get((namespace, name), [])
        return await self._reconciled(name, namespace, known=seen[0] if seen else None)

    async def _reconciled(
        self, name: str, namespace: str, known: views.DeploymentView | None
    ) -> reconcile.Outcome:
        body = self.kube.get(models.JOBQUEUE_KIND, name, namespace)
        assert body is not None
        outcome = await self.reconciler.reconcile(body, known=known)
        await settle()
        self.indexes.refresh()
        return outcome

    async def cycle(self, *, after: float = 1.0) -> None:
        """One autoscaler pass ``after`` seconds on, and what it started in the background."""
        self.clock.tick(after)
        await self.autoscaler.cycle()
        await settle()
