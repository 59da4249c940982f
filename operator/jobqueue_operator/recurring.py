"""RecurringJobs: each one's CronJob, and a status that says whether its ticks work.

**Reconcile** (:meth:`RecurringJobs.reconcile`, level-based and idempotent like the JobQueue
one): read the spec, find the target JobQueue in the same namespace, apply the CronJob
built by :func:`jobqueue_operator.builders.cronjob.build` (server-side apply, owner
reference, no finalizer: deleting the RecurringJob garbage-collects the CronJob and its
Jobs), and check the queue's Redis. The CronJob depends on the JobQueue too (worker image,
RQ queue name, Redis URL), so a JobQueue change re-reconciles the RecurringJobs that target
it (:meth:`RecurringJobs.jobqueue_changed`).

**What is reported rather than refused.** The API server refuses every malformed spec (the
CRD's CEL rules). What it cannot know is reported in the ``Ready`` condition, with an Event
when it appears and when it is fixed:

* ``QueueMissing`` — no JobQueue ``spec.queue`` in the namespace (a cross-object reference;
  the RecurringJob may simply have been applied before its queue). No CronJob is created;
  an existing one is suspended until the queue is back, because without the queue its pod
  cannot be built and every tick would fail.
* ``UnknownTimeZone`` — ``spec.timeZone`` has the shape of an IANA name but the time zone
  database does not know it. The CronJob keeps its last valid spec (Kubernetes would refuse
  the zone too).
* ``ScheduleNeverFires`` — a schedule like ``0 0 30 2 *``: valid cron, no date.
* ``CronJobRejected`` — the API server refused the CronJob anyway (e.g. its time zone
  database differs from the operator's); the message is the API server's.
* ``NameConflict`` — a CronJob of that name exists and is not this RecurringJob's (our
  labels and its controller reference): it is never applied, suspended or taken over;
  retried, as it may be deleted meanwhile.
* ``QueueNameConflict`` — the target JobQueue's queue name is published by another JobQueue
  (the JobQueue says so too, and gets no workers).
* ``RedisUnreachable`` / ``QueueNotPublished`` — ticks would fail: the queue's Redis does not
  answer (the ``RedisReachable`` condition says why), or its settings are not published there.
* ``InvalidSpec`` — the object does not match the operator's model (CRD older than the operator).

**Status** is rendered from the facts gathered here by the pure
:mod:`jobqueue_operator.builders.recurringstatus`, kept per object in memory and written by
server-side apply only when it differs from what is on the object (a restart starts from the
object's own status, so it writes nothing when nothing changed). Its inputs change on three
paths: the reconcile, the watch of the CronJobs (``lastScheduleTime`` of a new tick), and
:meth:`RecurringJobs.run`, one task that re-reads every RecurringJob's last job from Redis and
moves ``nextScheduleTime`` on (the job's outcome changes in Redis without any Kubernetes event).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import pydantic

from jobqueue.redaction import redact
from jobqueue_operator import errors, k8s, metrics, models, redisaddresses, redisq, statuskeeper
from jobqueue_operator.builders import cronjob, deployment, names
from jobqueue_operator.builders.recurringstatus import (
    FAILED,
    CronJobSummary,
    Facts,
    RedisFacts,
    last_job_id,
    operator_fields,
    render,
)
from jobqueue_operator.builders.status import REDIS_REACHABLE
from jobqueue_operator.errors import Outcome
from jobqueue_operator.index import Key
from jobqueue_operator.statuskeeper import Emit, utcnow

logger = logging.getLogger(__name__)

#: How often the last job's outcome is re-read and nextScheduleTime moved on. Job outcomes
#: are minutes to hours apart; 10 s keeps ``kubectl get rj`` current at one small Redis
#: read per RecurringJob.
REFRESH_SECONDS: Final = 10.0


def object_ref(body: Mapping[str, Any]) -> dict[str, Any]:
    """The minimal body an Event needs to point at a RecurringJob."""
    return statuskeeper.object_ref(body, models.RECURRINGJOB_KIND)


class _Missing:
    """The target JobQueue was not looked up yet (:meth:`RecurringJobs.reconcile`)."""


LOOK_UP: Final = _Missing()


@dataclass
class _Entry:
    uid: str
    ref: dict[str, Any]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    body: dict[str, Any] | None = None
    facts: Facts | None = None
    #: what the last reconcile used of the target JobQueue (a JobQueue event that changes none
    #: of it changes nothing here)
    target_key: tuple[Any, ...] | None = None
    #: the target queue as the last reconcile found it (None: missing or not used)
    target: cronjob.QueueTarget | None = None
    #: (namespace, spec.queue): the JobQueue whose changes concern this RecurringJob
    queue: tuple[str, str] | None = None
    #: the operator-owned status known to be on the object
    written: dict[str, Any] | None = None


def target_key(jobqueue: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    """The parts of a JobQueue a RecurringJob's CronJob and checks depend on: its identity and
    spec, and the two status fields that say its settings were (re)published or its Redis was
    lost or found — not the replicas and backlog figures that change every few seconds."""
    if jobqueue is None or (jobqueue.get("metadata") or {}).get("deletionTimestamp"):
        return None
    status = jobqueue.get("status") or {}
    conditions = status.get("conditions") or []
    redis = next((c.get("status") for c in conditions if c.get("type") == REDIS_REACHABLE), None)
    return (
        (jobqueue.get("metadata") or {}).get("uid"),
        repr(jobqueue.get("spec")),
        status.get("observedGeneration"),
        redis,
    )


class RecurringJobs:
    def __init__(
        self,
        *,
        kube: k8s.KubeApi,
        hub: redisq.RedisHub,
        addresses: redisaddresses.RedisAddresses,
        emit: Emit,
        defaults: deployment.WorkerDefaults,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], datetime.datetime] = utcnow,
    ) -> None:
        self._kube = kube
        self._hub = hub
        self._addresses = addresses
        self._emit = emit
        self._defaults = defaults
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._entries: dict[Key, _Entry] = {}
        #: (namespace, JobQueue) -> the RecurringJobs targeting it: the JobQueue watch's filter
        #: runs on every JobQueue event and must not scan every RecurringJob
        self._by_queue: dict[Key, set[Key]] = {}

    def _entry(self, body: Mapping[str, Any]) -> _Entry:
        meta = body["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        entry = self._entries.get(key)
        if entry is None or entry.uid != meta.get("uid"):  # new, or deleted and created again
            if entry is not None:
                self._target_of(key, entry, None)
            entry = self._entries[key] = _Entry(uid=str(meta.get("uid")), ref=object_ref(body))
        return entry

    # ---- reconcile

    async def reconcile(
        self, body: Mapping[str, Any], jobqueue: Mapping[str, Any] | _Missing | None = LOOK_UP
    ) -> Outcome:
        """Bring RecurringJob ``body``'s CronJob and status in line with its spec (and its
        JobQueue: ``jobqueue`` is that object when the caller has it, None if it is gone)."""
        started = time.perf_counter()
        entry = self._entry(body)
        try:
            async with entry.lock:
                entry.body = dict(body)
                if entry.written is None:
                    entry.written = operator_fields(body.get("status"))
                outcome = await self._reconcile(entry, body, jobqueue)
                await self._sync(entry)
        except Exception:
            metrics.RECONCILE_TOTAL.labels(models.RECURRINGJOB_KIND, "error").inc()
            raise
        metrics.RECONCILE_TOTAL.labels(
            models.RECURRINGJOB_KIND, "error" if outcome.permanent_error else "ok"
        ).inc()
        metrics.RECONCILE_SECONDS.labels(models.RECURRINGJOB_KIND).observe(time.perf_counter() - started)
        return outcome

    async def _reconcile(
        self, entry: _Entry, body: Mapping[str, Any], jobqueue: Mapping[str, Any] | _Missing | None
    ) -> Outcome:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        generation = meta.get("generation")
        cron_name = cronjob.cronjob_name(name)
        raw_spec = body.get("spec") or {}
        try:
            spec = models.RecurringJobSpec.model_validate(raw_spec)
        except pydantic.ValidationError as e:
            text = f"spec does not match the operator's RecurringJob model (is the CRD up to date?): {e}"
            entry.facts = Facts(
                generation,
                cron_name,
                str(raw_spec.get("schedule")),
                str(raw_spec.get("timeZone")),
                bool(raw_spec.get("suspend")),
                problem=("InvalidSpec", text),
            )
            return Outcome(permanent_error=text)
        facts = Facts(generation, cron_name, spec.schedule, spec.time_zone, spec.suspend)
        self._target_of((namespace, name), entry, (namespace, spec.queue))

        if isinstance(jobqueue, _Missing):
            jobqueue = await self._kube.get_jobqueue(namespace, spec.queue)
        entry.target_key = target_key(jobqueue)
        target = self._target(namespace, spec.queue, jobqueue)
        problem: tuple[str, str] | None = None
        if not cronjob.known_time_zone(spec.time_zone):
            problem = (
                "UnknownTimeZone",
                f"time zone {spec.time_zone!r} is not in the IANA time zone database; the CronJob "
                "keeps its last valid spec (if any)",
            )
        elif isinstance(target, str):
            problem = ("QueueMissing", target)

        outcome = Outcome()
        live = None
        if problem is None:
            assert isinstance(target, cronjob.QueueTarget)
            facts = replace(facts, queue_name=target.queue_name)
            desired = cronjob.build(
                namespace=namespace,
                name=name,
                uid=meta["uid"],
                spec=spec,
                queue=target,
                defaults=self._defaults,
            )
            try:
                live = await self._apply(body, desired)
            except k8s.ApiError as e:
                if not k8s.is_invalid(e):
                    raise
                problem = ("CronJobRejected", f"the API server refused CronJob {cron_name}: {k8s.message(e)}")
                outcome = Outcome(permanent_error=problem[1])
            if live is None and problem is None:
                problem = (
                    "NameConflict",
                    names.name_conflict("CronJob", namespace, cron_name, f"RecurringJob {name}"),
                )
                outcome = Outcome(retry_error=problem[1])
        else:
            live, problem = await self._hold(namespace, cron_name, meta["uid"], problem)

        facts = replace(facts, problem=problem, cronjob=None if live is None else CronJobSummary.of(live))
        entry.target = target if isinstance(target, cronjob.QueueTarget) and problem is None else None
        if entry.target is not None:
            facts = replace(facts, redis=await self._check_redis(namespace, entry.target, facts, fresh=True))
        entry.facts = facts
        return outcome

    def _target(
        self, namespace: str, queue: str, jobqueue: Mapping[str, Any] | None
    ) -> cronjob.QueueTarget | str:
        """The target queue, or why there is none."""
        if jobqueue is None:
            return f"JobQueue {queue!r} does not exist in namespace {namespace}"
        if (jobqueue.get("metadata") or {}).get("deletionTimestamp"):
            return f"JobQueue {queue!r} is being deleted"
        try:
            spec = models.JobQueueSpec.model_validate(jobqueue.get("spec") or {})
        except pydantic.ValidationError as e:
            return f"JobQueue {queue!r} cannot be read: {e}"
        return cronjob.target(namespace=namespace, name=queue, spec=spec)

    async def _hold(
        self,
        namespace: str,
        cron_name: str,
        uid: str,
        problem: tuple[str, str],
    ) -> tuple[dict[str, Any] | None, tuple[str, str]]:
        """No CronJob can be built: the live one (None: none of ours) and the problem to report.
        Without its queue every tick would fail, so the CronJob is suspended until it is back."""
        live = await self._kube.get_cronjob(namespace, cron_name)
        if live is None or not self._ours(live, uid):
            return None, problem  # someone else's CronJob: not ours to suspend, nor to report on
        if problem[0] == "QueueMissing":
            if not (live.get("spec") or {}).get("suspend"):
                live = await self._kube.suspend_cronjob(
                    namespace, cron_name, field_manager=names.OPERATOR_MANAGER
                )
            problem = (problem[0], f"{problem[1]}; CronJob {cron_name} is suspended until it exists")
        return live, problem

    @staticmethod
    def _ours(cron: Mapping[str, Any], uid: str) -> bool:
        return names.owned_by_us(
            cron, kind=models.RECURRINGJOB_KIND, component=cronjob.COMPONENT, owner_uid=uid
        )

    async def _apply(self, body: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
        """Apply the CronJob; None if its name is taken by a CronJob not this RecurringJob's."""
        meta = desired["metadata"]
        before = await self._kube.get_cronjob(meta["namespace"], meta["name"])
        if before is not None and not self._ours(before, body["metadata"]["uid"]):
            return None
        live = await self._kube.apply(desired, field_manager=names.OPERATOR_MANAGER)
        ref = object_ref(body)
        if before is None:
            spec = desired["spec"]
            await self._emit(
                ref,
                type="Normal",
                reason="CronJobCreated",
                message=f"created CronJob {meta['name']} (schedule {spec['schedule']!r}, {spec['timeZone']})",
            )
            logger.info(
                "RecurringJob %s/%s: created CronJob %s",
                meta["namespace"],
                body["metadata"]["name"],
                meta["name"],
            )
        elif live["metadata"].get("generation") != before["metadata"].get("generation"):
            await self._emit(
                ref,
                type="Normal",
                reason="CronJobUpdated",
                message=f"applied generation {body['metadata'].get('generation')} of the "
                f"RecurringJob to CronJob {meta['name']}",
            )
            logger.info(
                "RecurringJob %s/%s: updated CronJob %s",
                meta["namespace"],
                body["metadata"]["name"],
                meta["name"],
            )
        return live

    async def _check_redis(
        self, namespace: str, target: cronjob.QueueTarget, facts: Facts, *, fresh: bool
    ) -> RedisFacts:
        """The queue's Redis: reachable, settings published, the latest tick's job status.
        ``fresh`` re-reads the URL's Secret (a reconcile); the refresher takes a cached one."""
        job_id = last_job_id(facts, namespace)
        try:
            url = await self._addresses.url(namespace, target.spec.redis, fresh=fresh)
            state = await self._hub.recurring_state(url, target.queue_name, job_id)
        except errors.RedisConfigError as e:
            return RedisFacts.unreachable(e.reason, e.message)
        except errors.RedisUnavailable as e:
            return RedisFacts.unreachable("RedisUnavailable", str(e))
        owned = state.owner is None or state.owner == (namespace, target.name)
        return RedisFacts(
            True,
            "Reachable",
            f"Redis {redact(url)} answered",
            state.published,
            state.job_status,
            job_id,
            owned=owned,
        )

    # ---- status

    async def _sync(self, entry: _Entry) -> None:
        """Write the status if it changed; Events for condition changes and failed jobs."""
        assert entry.facts is not None
        assert entry.written is not None
        meta = entry.ref["metadata"]
        before = entry.written
        desired = render(entry.facts, meta["namespace"], before.get("conditions"), self._clock())
        if desired == before or not await statuskeeper.write_status(
            self._kube, self._emit, entry.ref, before.get("conditions"), desired
        ):
            return
        entry.written = desired
        job_id = desired.get("lastJobId")
        was = (before.get("lastJobStatus"), before.get("lastJobId"))
        if desired.get("lastJobStatus") == FAILED and was != (FAILED, job_id):
            await self._emit(
                entry.ref,
                type="Warning",
                reason="JobFailed",
                message=f"job {job_id} of the tick at {desired.get('lastScheduleTime')} failed "
                f"(jobqueue status {desired.get('queueName')} {job_id})",
            )

    # ---- the CronJob watch

    def cronjob_matters(self, event_type: str | None, body: Mapping[str, Any]) -> bool:
        """Cheap test for the watch filter: a deletion, or a CronJob status the status lacks."""
        if event_type == "DELETED":
            return True
        meta = body.get("metadata") or {}
        owner = cronjob.recurringjob_of(meta.get("labels"))
        entry = self._entries.get((str(meta.get("namespace")), str(owner)))
        facts = entry.facts if entry is not None else None
        return facts is not None and facts.cronjob != CronJobSummary.of(body)

    async def cronjob_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A CronJob of ours was added, changed (a new tick) or deleted."""
        meta = body.get("metadata") or {}
        name = cronjob.recurringjob_of(meta.get("labels"))
        if name is None:
            return
        key: Key = (str(meta.get("namespace")), name)
        entry = self._entries.get(key)
        if event_type == "DELETED":
            await self._cronjob_deleted(key, body)
            return
        if entry is None or entry.facts is None:
            return  # not reconciled in this process yet: the reconcile reads the CronJob itself
        owners = {ref.get("uid") for ref in meta.get("ownerReferences") or []}
        if entry.uid not in owners:
            return
        async with entry.lock:
            summary = CronJobSummary.of(body)
            facts = entry.facts
            if facts.cronjob == summary:
                return
            facts = replace(facts, cronjob=summary)
            known = facts.redis.job_id if facts.redis else None
            if entry.target is not None and last_job_id(facts, key[0]) != known:
                # a new tick: its job's status now, not at the next refresh
                redis = await self._check_redis(key[0], entry.target, facts, fresh=False)
                facts = replace(facts, redis=redis)
            entry.facts = facts
            await self._sync(entry)

    async def _cronjob_deleted(self, key: Key, body: Mapping[str, Any]) -> None:
        recurringjob = await self._kube.get_recurringjob(*key)
        if recurringjob is None or not names.recreates(recurringjob, body):
            return
        logger.info("RecurringJob %s/%s: CronJob deleted by someone; recreating it", *key)
        await self.reconcile(recurringjob)

    # ---- the JobQueue watch

    def _targeting(self, jobqueue: Mapping[str, Any], deleted: bool) -> list[_Entry]:
        """The RecurringJobs targeting ``jobqueue`` whose CronJob or checks it changes (its
        status updates, the autoscaler's every few seconds, change nothing here)."""
        meta = jobqueue.get("metadata") or {}
        key: Key = (str(meta.get("namespace")), str(meta.get("name")))
        wanted = target_key(None if deleted else jobqueue)
        entries = (self._entries.get(k) for k in self._by_queue.get(key, ()))
        return [e for e in entries if e is not None and e.body is not None and e.target_key != wanted]

    def jobqueue_matters(self, jobqueue: Mapping[str, Any], *, deleted: bool) -> bool:
        """Cheap test for the watch filter: does this JobQueue event concern a RecurringJob?"""
        return bool(self._targeting(jobqueue, deleted))

    async def jobqueue_changed(self, jobqueue: Mapping[str, Any], *, deleted: bool) -> None:
        """JobQueue ``jobqueue`` was added, changed or deleted: reconcile the RecurringJobs
        that target it. RecurringJobs not reconciled in this process yet are left to their
        own create/resume handler."""
        for entry in self._targeting(jobqueue, deleted):
            assert entry.body is not None
            try:
                await self.reconcile(entry.body, None if deleted else jobqueue)
            except k8s.ApiError as e:  # the next JobQueue change or the RecurringJob's handler repairs
                meta = entry.ref["metadata"]
                logger.warning(
                    "RecurringJob %s/%s not reconciled after its JobQueue changed: %s",
                    meta["namespace"],
                    meta["name"],
                    k8s.message(e),
                )

    # ---- deletion

    def forget(self, namespace: str, name: str) -> None:
        """RecurringJob ``namespace/name`` was deleted (its CronJob is garbage-collected)."""
        entry = self._entries.pop((namespace, name), None)
        if entry is not None:
            self._target_of((namespace, name), entry, None)

    def _target_of(self, key: Key, entry: _Entry, queue: Key | None) -> None:
        """Record that RecurringJob ``key`` targets JobQueue ``queue`` (None: nothing any more)."""
        if entry.queue is not None and entry.queue != queue:
            self._by_queue.get(entry.queue, set()).discard(key)
            if not self._by_queue.get(entry.queue, True):
                del self._by_queue[entry.queue]
        entry.queue = queue
        if queue is not None:
            self._by_queue.setdefault(queue, set()).add(key)

    # ---- the refresher

    async def run(self) -> None:
        """Forever: every :data:`REFRESH_SECONDS`, re-read each RecurringJob's last job and move
        its nextScheduleTime on (writing only what changed)."""
        while True:
            await asyncio.sleep(self._refresh_seconds)
            await self.refresh_all()

    async def refresh_all(self) -> None:
        for key, entry in list(self._entries.items()):
            try:
                problem = entry.facts.problem if entry.facts is not None else None
                if problem is not None and problem[0] == "NameConflict" and entry.body is not None:
                    # someone else's CronJob had the name (its deletion is no event of ours):
                    # try again, whichever path found the conflict
                    await self.reconcile(entry.body)
                    continue
                await self._refresh(entry)
            except Exception:  # one object's trouble must not stop the others' refreshes
                logger.exception("RecurringJob %s/%s: status refresh failed", *key)

    async def _refresh(self, entry: _Entry) -> None:
        async with entry.lock:
            facts = entry.facts
            if facts is None:
                return
            if entry.target is not None:
                namespace = entry.ref["metadata"]["namespace"]
                entry.facts = replace(
                    facts, redis=await self._check_redis(namespace, entry.target, facts, fresh=False)
                )
            await self._sync(entry)
