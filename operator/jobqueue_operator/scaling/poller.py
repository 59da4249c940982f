"""The autoscaler: one task that scales every queue's workers, every second.

Started once at operator startup (:mod:`jobqueue_operator.handlers`), not as a kopf timer
per JobQueue: a thousand 1 s timers cost a quarter of a core, two thousand tasks and a
finalizer on every object (kopf.md §1.6, §8.1); one loop over an in-memory index costs
almost nothing. Each pass:

1. **reads** every queue of a Redis server in one round trip (:func:`jobqueue.stats.snapshot`,
   in the Redis threads of :class:`~jobqueue_operator.redisq.RedisHub`), all servers at
   once; a server that does not answer within the pass is skipped, not waited for;
2. **decides** with the pure :mod:`.policy`, from replicas read from kopf's in-memory index of
   worker Deployments (never a GET per queue), then shares the optional worker budget
   (:mod:`.plans`);
3. **writes** replicas through the Deployment's scale subresource, as field manager
   ``jobqueue-autoscaler``, only when they change. Before lowering them it marks the pods
   with ``controller.kubernetes.io/pod-deletion-cost`` (idle cheapest, busy dearest by job
   age) and scales in on a later pass, once the pod watch shows the annotations in place —
   the ReplicaSet reads them from its own watch cache, so writing both in one go would race;
4. **reports**: status figures (throttled, :mod:`.reporting`), an Event per scale, metrics;
5. **recovers lost jobs**: pods that vanished are watched until Redis proves their workers
   dead (:mod:`.lost`), then their jobs are re-queued or failed.

Safety rules: a queue missing from the index is never scaled (the index fills gradually
after a start), nor a Deployment without this JobQueue's controller reference; a queue
whose Redis cannot be read keeps its replicas and gets
``RedisReachable=False``; every queue's writes are isolated (one failing queue never stops
the others); any exception is logged and the loop carries on; Kubernetes calls are bounded
by two semaphores (scale writes are never queued behind status writes).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from jobqueue import stats as stats_module
from jobqueue.redaction import redact
from jobqueue.stats import QueueStats
from jobqueue_operator import errors, index, k8s, metrics, models, redisaddresses, redisq
from jobqueue_operator.builders import names, status
from jobqueue_operator.scaling import lost, plans, policy, reporting, views
from jobqueue_operator.statuskeeper import Emit, StatusKeeper

logger = logging.getLogger(__name__)

#: Scale and pod-annotation calls in flight at once (the critical path of a pass).
SCALE_CONCURRENCY: Final = 8
#: Status and Event calls in flight at once (background; never delay a scale).
REPORT_CONCURRENCY: Final = 4
#: How long a replica count we wrote outranks the Deployment index (its watch event may lag).
PENDING_WRITE_SECONDS: Final = 5.0
#: Right after a start (or a leader takeover) kopf's indexes fill within a fraction of a
#: second: until a pass has found a queue to decide on, passes come this often (for at most
#: WARMUP_SECONDS), so the first decisions do not wait a whole interval for the next pass.
WARMUP_INTERVAL: Final = 0.1
WARMUP_SECONDS: Final = 5.0
#: Passes a scale-in may wait for its pod-deletion-cost annotations to show in the pod watch;
#: after that it goes ahead (the costs are best effort; busy workers still drain on SIGTERM).
MAX_COST_WAITS: Final = 3
#: How long a pass waits for reads when no server of it has answered before.
PROBATION_WAIT_SECONDS: Final = 0.1

Key = index.Key


@dataclass
class _Queue:
    """What the poller remembers about one JobQueue between passes."""

    ref: index.QueueRef
    series: metrics.QueueSeries
    memory: policy.Memory = field(default_factory=policy.Memory)
    #: replicas we wrote and when (monotonic), until the Deployment index shows them
    pending: tuple[int, float] | None = None
    cost_waits: int = 0
    #: status fields this process wrote (the index may lag behind them)
    sent: dict[str, Any] = field(default_factory=dict)
    last_scale: dict[str, Any] = field(default_factory=dict)
    last_status_write: float | None = None
    status_task: asyncio.Task[None] | None = None
    #: what the metrics and status were last computed from; an unchanged queue skips both
    seen: tuple[Any, ...] | None = None
    #: status changes held back by the write interval (to write once it has passed)
    held_back: bool = False
    spec: policy.ScalingSpec | None = None
    #: (stats, Deployment view, ref) of a pass that found the queue at rest (see ``_at_rest``):
    #: while the next passes see these very objects again, they skip the queue outright
    rest: tuple[QueueStats, views.DeploymentView, index.QueueRef] | None = None


def _all(idx: Mapping[Key, Collection[Any]], key: Key) -> Collection[Any]:
    """The values under ``key`` of a kopf index (``Mapping.get`` would raise and catch a
    KeyError for every queue without pods, every pass)."""
    return idx[key] if key in idx else ()  # noqa: SIM401 (see above)


@dataclass
class _Step:
    """One queue in one pass: what was read, what was decided."""

    q: _Queue
    url: str
    deployment: views.DeploymentView
    current: int
    #: None: nothing new learnt this pass (its Redis is still being read)
    decision: policy.Decision | None = None
    stats: QueueStats | None = None
    busy_pods: int = 0


@dataclass
class _Read:
    started: float
    result: redisq.Poll | Exception


class Autoscaler:
    """The poller; :meth:`start` it once, :meth:`stop` it at cleanup."""

    def __init__(
        self,
        *,
        kube: k8s.KubeApi,
        hub: redisq.RedisHub,
        addresses: redisaddresses.RedisAddresses,
        keeper: StatusKeeper,
        emit: Emit,
        queues: Callable[[], Iterable[index.QueueRef]],
        deployments: Mapping[Key, Collection[views.DeploymentView]],
        pods: Mapping[Key, Collection[views.PodView]],
        statuses: Mapping[Key, Collection[Mapping[str, Any]]],
        interval: float,
        budget: int | None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        acting: Callable[[], bool] = lambda: True,
        owns: Callable[[Key], bool] = lambda _key: True,
    ) -> None:
        self._kube = kube
        self._hub = hub
        self._addresses = addresses
        self._keeper = keeper
        self._emit = emit
        self._queues = queues
        self._deployments = deployments
        self._pods = pods
        self._statuses = statuses
        self._interval = interval
        self._budget = budget
        self._clock = clock
        self._monotonic = monotonic
        #: False once this replica may no longer act (its leader Lease not renewed in time):
        #: checked before every pass and every scale or recovery, so a leader that wakes up
        #: from a freeze writes nothing before it notices it was replaced
        self._acting = acting
        #: whether this replica scales that queue now (its shard's Lease held: :mod:`.sharding`);
        #: checked when choosing the queues of a pass and again before each scale or recovery
        self._owns = owns
        self._state: dict[Key, _Queue] = {}
        self._lost = lost.LostPods()
        self._reads: dict[str, asyncio.Task[_Read]] = {}
        #: per Redis URL, what the snapshot may reuse from the last read (jobqueue.stats.Reuse)
        self._reuse: dict[str, stats_module.Reuse] = {}
        self._redis_down: dict[str, str] = {}
        self._marked: dict[Key, status.Publication | None] = {}
        self._scale_slots = asyncio.Semaphore(SCALE_CONCURRENCY)
        self._report_slots = asyncio.Semaphore(REPORT_CONCURRENCY)
        self._background: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        #: monotonic time the last pass ended (for the liveness probe)
        self.last_pass: float | None = None

    # ---- lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="autoscaler")

    def halt(self) -> list[asyncio.Task[Any]]:
        """Cancel the loop and everything it started, at once (no await: a leader that lost
        its Lease must stop writing now); the tasks, for :meth:`stop` to wait for."""
        tasks = [t for t in (self._task, *self._reads.values(), *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        return tasks

    async def stop(self) -> None:
        tasks = self.halt()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def run(self) -> None:
        """Pass after pass, one every ``interval`` seconds, until cancelled."""
        logger.info(
            "autoscaler started: a pass every %.1fs, worker budget %s",
            self._interval,
            "unlimited" if self._budget is None else self._budget,
        )
        warm_until = self._monotonic() + WARMUP_SECONDS
        while True:
            started = self._monotonic()
            try:
                await self.cycle()
            except Exception:
                logger.exception("autoscaler pass failed; the next one runs as usual")
            elapsed = self._monotonic() - started
            metrics.AUTOSCALER_CYCLE_SECONDS.observe(elapsed)
            self.last_pass = self._monotonic()
            if self._state or self.last_pass >= warm_until:
                warm_until = 0.0  # (warm: a queue was decided on, or the warm-up is over)
            interval = WARMUP_INTERVAL if warm_until else self._interval
            await asyncio.sleep(max(0.0, interval - elapsed))

    # ---- one pass

    async def cycle(self) -> None:
        if not self._acting():
            return
        now, mono = self._clock(), self._monotonic()
        refs = {ref.key: ref for ref in self._queues() if not ref.deleting and self._owns(ref.key)}
        self._forget_gone(refs)
        by_url = await self._urls(refs.values())
        for key, ref in refs.items():
            pods = _all(self._pods, key)
            if pods or self._lost.knows(key):  # (nothing to look at for a queue without pods)
                self._lost.look(
                    key,
                    ref.queue_name,
                    (lost.PodSighting(p.name, p.terminating, p.finished) for p in pods),
                    mono,
                )
        reads = await self._read_all(by_url)
        self._suspect_unseen_pods(by_url, reads, mono)

        steps: dict[str, _Step] = {}
        resting: list[plans.Wish] = []
        for url, group in by_url.items():
            read = reads.get(url)
            polled = None if read is None or isinstance(read.result, Exception) else read.result.queues
            for ref in group:
                deployment = self._one(self._deployments, ref.key)
                if deployment is None or deployment.controller_uid != ref.uid:
                    # not created yet, not in the index yet, or not this JobQueue's (labels
                    # alone can be copied): nothing to scale
                    continue
                if polled is not None and self._still_at_rest(ref, deployment, polled):
                    if self._budget is not None:  # a queue at rest keeps its pods, and they count
                        resting.append(plans.Wish(str(ref.key), ref.priority, deployment.replicas, None, 0))
                    continue
                q = self._queue(ref)
                step = _Step(q, url, deployment, self._current(q, deployment, mono))
                step.decision, step.stats, step.busy_pods = self._decide(q, read, step.current, now)
                steps[str(ref.key)] = step
        wishes = [
            plans.Wish(k, step.q.ref.priority, step.current, step.decision, step.busy_pods)
            for k, step in steps.items()
        ]
        wishes += resting
        for k, decision in plans.targets(self._budget, wishes).items():
            if k in steps:
                steps[k].decision = decision
        changes = [step for step in steps.values() if self._settle(step, mono)]
        await asyncio.gather(*(self._apply(step, now, mono) for step in changes))
        await self._recover_lost(by_url, reads, mono)
        for pod in self._lost.expire(mono):
            logger.warning(
                "pod %s/%s still has live workers %.0fs after it went away; leaving its "
                "jobs to the workers' lease reaping",
                pod[0],
                pod[2],
                lost.GIVE_UP_SECONDS,
            )

    def _still_at_rest(
        self, ref: index.QueueRef, deployment: views.DeploymentView, polled: Mapping[str, QueueStats]
    ) -> bool:
        """Whether this pass sees exactly what the pass that found the queue at rest saw."""
        q = self._state.get(ref.key)
        rest = None if q is None else q.rest
        return (
            rest is not None
            and rest[0] is polled.get(ref.queue_name)
            and rest[1] is deployment
            and rest[2] is ref
            and ref.key not in self._pods
        )

    def _at_rest(self, q: _Queue, step: _Step) -> bool:
        """Nothing to do, and nothing that time alone could change: no work, no pods (so no
        pod events to follow), replicas where an idle queue stays for good, no scale-down
        delay counting, no status write waiting. The decision of the same inputs would be
        the same at any later time, so while the inputs stay the same objects (the stats
        are reused by the snapshot, the views by kopf's indexes) the queue is skipped."""
        stats, decision, spec = step.stats, step.decision, q.spec
        if stats is None or decision is None or spec is None or q.held_back or q.pending is not None:
            return False
        resting = 0 if spec.suspend else policy.clamp(0, spec.min_replicas, spec.max_replicas)
        return (
            stats.queued == 0
            and stats.scheduled_due == 0
            and stats.running == 0
            and decision.replicas == step.current == resting
            and decision.memory.lower_since is None
            and q.ref.key not in self._pods
        )

    @staticmethod
    def _one(idx: Mapping[Key, Collection[Any]], key: Key) -> Any:
        for value in _all(idx, key):
            return value
        return None

    def _queue(self, ref: index.QueueRef) -> _Queue:
        q = self._state.get(ref.key)
        if q is None or q.ref.uid != ref.uid or q.ref.queue_name != ref.queue_name:
            if q is not None:
                q.series.forget()
            q = self._state[ref.key] = _Queue(ref, metrics.QueueSeries.of(*ref.key, ref.queue_name))
        if q.spec is None or q.ref is not ref:
            q.ref, q.spec = ref, plans.spec_of(ref)
        return q

    def _forget_gone(self, refs: Mapping[Key, index.QueueRef]) -> None:
        for key in [k for k in self._state if k not in refs]:
            self._state.pop(key).series.forget()
            self._lost.forget(key)
            self._marked.pop(key, None)

    async def _urls(self, refs: Iterable[index.QueueRef]) -> dict[str, list[index.QueueRef]]:
        """Queues by Redis URL; one whose Redis cannot be addressed keeps its replicas."""
        return await self._addresses.by_url(refs)

    def _current(self, q: _Queue, deployment: views.DeploymentView, mono: float) -> int:
        if q.pending is not None:
            replicas, when = q.pending
            if deployment.replicas == replicas or mono - when >= PENDING_WRITE_SECONDS:
                q.pending = None
            else:
                return replicas
        return deployment.replicas

    def _decide(
        self, q: _Queue, read: _Read | None, current: int, now: float
    ) -> tuple[policy.Decision | None, QueueStats | None, int]:
        spec = q.spec or plans.spec_of(q.ref)
        if read is None:
            return None, None, 0
        if isinstance(read.result, Exception):
            return policy.decide(spec, policy.Observation(queued=None), current, q.memory, now), None, 0
        stats = read.result.queues.get(q.ref.queue_name)
        if stats is None:
            return None, None, 0
        obs = plans.observation(stats, _all(self._pods, q.ref.key))
        return policy.decide(spec, obs, current, q.memory, now), stats, obs.busy_pods

    # ---- Redis

    async def _read_all(self, by_url: Mapping[str, list[index.QueueRef]]) -> dict[str, _Read]:
        """This pass's read of every Redis. Only servers that answered their last call are
        waited for, and no longer than the pass interval; a new or failing one's read is
        taken when it is done, in this pass or a later one (its queues are simply not decided
        meanwhile): a dead URL of one JobQueue never holds up the scaling of the others."""
        watched = self._lost.watched()
        for url, group in by_url.items():
            if url in self._reads:
                continue
            queues = {ref.key: ref.queue_name for ref in group}
            pods: dict[str, set[str]] = collections.defaultdict(set)
            for pod, queue in watched.items():
                if pod[:2] in queues:
                    pods[queue].add(pod[2])
            self._reads[url] = asyncio.create_task(
                self._read(url, sorted(set(queues.values())), pods, self._reuse.setdefault(url, {}))
            )
        proven = [task for url, task in self._reads.items() if self._hub.proven(url)]
        if proven:
            await asyncio.wait(proven, timeout=self._interval)
        elif self._reads:  # (nothing proven yet, e.g. the first pass: a moment for quick answers)
            await asyncio.wait(self._reads.values(), timeout=min(self._interval, PROBATION_WAIT_SECONDS))
        out: dict[str, _Read] = {}
        for url, task in list(self._reads.items()):
            if task.done():
                del self._reads[url]
                out[url] = task.result()
        for url, read in out.items():
            self._reachability(url, by_url.get(url, []), read.result)
        return out

    async def _read(
        self, url: str, queue_names: list[str], pods: Mapping[str, set[str]], reuse: stats_module.Reuse
    ) -> _Read:
        started = self._monotonic()
        label = redact(url)
        try:
            poll = await self._hub.poll(url, queue_names, pods, reuse=reuse)
        except Exception as e:  # RedisUnavailable, or a bug: either way this Redis is unknown now
            metrics.POLL_ERRORS.labels(label).inc()
            metrics.REDIS_UP.labels(label).set(0)
            if not isinstance(e, errors.RedisUnavailable):
                logger.exception("reading Redis %s failed", label)
            return _Read(started, e)
        metrics.POLL_DURATION_SECONDS.labels(label).observe(poll.seconds)
        metrics.REDIS_UP.labels(label).set(1)
        return _Read(started, poll)

    def _reachability(self, url: str, refs: list[index.QueueRef], result: object) -> None:
        """Flip RedisReachable as soon as a Redis stops (or starts again) answering the poller.

        The settings sweep does the same every ``JOBQUEUE_RESYNC_SECONDS``; the poller reads
        every second, so it reports first. On recovery a queue gets its condition back only
        if its settings are still published there (a Redis restarted empty is the sweep's
        job: it republishes them). The status writes run in the background: a thousand
        queues on one Redis must not hold up the scaling of the others."""
        if isinstance(result, errors.RedisUnavailable):
            if url not in self._redis_down:
                logger.warning(
                    "Redis %s unreachable: holding the replicas of %d queue(s): %s",
                    redact(url),
                    len(refs),
                    result,
                )
            self._redis_down[url] = str(result)
            lost_pub = status.Publication.unreachable("RedisUnavailable", str(result))
            fresh = [ref for ref in refs if ref.key not in self._marked]
            for ref in fresh:  # (a reconcile meanwhile would fail to publish, and say so, too)
                known = self._keeper.known(ref.key)
                self._marked[ref.key] = known.publication if known else None
            if fresh:
                self._spawn(self._publications([(ref.key, lost_pub) for ref in fresh]))
            return
        if isinstance(result, Exception) or url not in self._redis_down:
            return
        del self._redis_down[url]
        logger.info("Redis %s reachable again", redact(url))
        marked = {ref.key: (ref, self._marked.pop(ref.key, None)) for ref in refs}
        self._spawn(self._restore(url, list(marked.values())))

    async def _restore(
        self, url: str, marked: list[tuple[index.QueueRef, status.Publication | None]]
    ) -> None:
        try:
            published = await self._hub.published(url)
        except errors.RedisUnavailable:
            return
        back = []
        for ref, before in marked:
            found = published.get(ref.queue_name)
            if (
                before is not None
                and before.published
                and found is not None
                and found.generation == ref.generation
            ):
                back.append((ref.key, before))
        await self._publications(back)

    async def _publications(self, changes: list[tuple[Key, status.Publication]]) -> None:
        for key, publication in changes:
            async with self._report_slots:
                try:
                    await self._keeper.publication_seen(key, publication)
                except k8s.ApiError as e:
                    metrics.AUTOSCALER_API_ERRORS.labels("status").inc()
                    logger.warning("JobQueue %s/%s: RedisReachable not updated: %s", *key, k8s.message(e))

    # ---- writes

    def _settle(self, step: _Step, mono: float) -> bool:
        """Book a pass that changes nothing (most of them, for most queues) without a task;
        True if the decision changes the replicas (then :meth:`_apply` carries it out)."""
        q, decision, stats = step.q, step.decision, step.stats
        if decision is None:
            return False
        if decision.replicas != step.current:
            return True
        q.memory, q.cost_waits = decision.memory, 0
        if stats is not None:
            try:
                self._account(q, stats, decision.replicas, mono)
            except Exception:
                logger.exception("reporting JobQueue %s/%s failed this pass", *q.ref.key)
        q.rest = (stats, step.deployment, q.ref) if stats is not None and self._at_rest(q, step) else None
        return False

    async def _apply(self, step: _Step, now: float, mono: float) -> None:
        """Carry out a change of replicas; every failure stays within this queue."""
        q, decision, stats = step.q, step.decision, step.stats
        assert decision is not None
        q.rest = None
        try:
            if (
                decision.replicas > step.current or await self._costs_in_place(step, now)
            ) and await self._scale(step, decision, now, mono):
                q.memory = decision.memory  # otherwise the same decision comes again next pass
            if stats is not None:
                self._account(q, stats, decision.replicas, mono)
        except Exception:
            logger.exception("autoscaling JobQueue %s/%s failed this pass", *q.ref.key)

    async def _costs_in_place(self, step: _Step, now: float) -> bool:
        """Before a scale-in: are idle pods the cheapest to delete? If not, mark them and wait."""
        q, stats = step.q, step.stats
        prefix = f"{step.deployment.name}-"  # its ReplicaSets' pods only, not look-alikes
        pods = [
            p
            for p in plans.live_pods(_all(self._pods, q.ref.key))
            if p.replica_set is not None and p.replica_set.startswith(prefix)
        ]
        if stats is None or not pods:
            return True
        busy_jobs = [w.current_job for ws in plans.busy_workers(stats).values() for w in ws if w.current_job]
        starts = await self._hub.job_starts(step.url, busy_jobs) if busy_jobs else {}
        wanted = policy.deletion_costs(plans.pod_states(pods, stats, starts), now)
        patches = policy.cost_patches(wanted, {p.name: p.deletion_cost for p in pods})
        if not patches:
            q.cost_waits = 0
            return True
        if q.cost_waits >= MAX_COST_WAITS:
            logger.warning(
                "JobQueue %s/%s: pod-deletion-cost annotations not visible after %d passes; "
                "scaling in anyway",
                *q.ref.key,
                q.cost_waits,
            )
            q.cost_waits = 0
            return True
        q.cost_waits += 1
        await asyncio.gather(*(self._annotate(q.ref.namespace, pod, cost) for pod, cost in patches.items()))
        return False

    async def _annotate(self, namespace: str, pod: str, cost: int) -> None:
        async with self._scale_slots:
            try:
                await self._kube.annotate_pod(
                    namespace,
                    pod,
                    {views.DELETION_COST_ANNOTATION: str(cost)},
                    field_manager=names.AUTOSCALER_MANAGER,
                )
            except k8s.ApiError as e:
                if not k8s.is_not_found(e):
                    metrics.AUTOSCALER_API_ERRORS.labels("annotate").inc()
                    logger.warning("pod %s/%s: deletion cost not set: %s", namespace, pod, k8s.message(e))

    async def _scale(self, step: _Step, decision: policy.Decision, now: float, mono: float) -> bool:
        q, current, deployment = step.q, step.current, step.deployment.name
        namespace, name = q.ref.key
        async with self._scale_slots:
            if not self._acting() or not self._owns(q.ref.key):
                return False
            try:
                await self._kube.scale_deployment(
                    namespace, deployment, decision.replicas, field_manager=names.AUTOSCALER_MANAGER
                )
            except k8s.ApiError as e:
                if not k8s.is_not_found(e):
                    metrics.AUTOSCALER_API_ERRORS.labels("scale").inc()
                    logger.warning(
                        "JobQueue %s/%s: scaling %s to %d failed: %s",
                        namespace,
                        name,
                        deployment,
                        decision.replicas,
                        k8s.message(e),
                    )
                return False
        q.pending = (decision.replicas, mono)
        q.cost_waits = 0
        direction = "up" if decision.replicas > current else "down"
        q.series.scaled(direction, decision.cause)
        q.last_scale = reporting.last_scale(now, decision.reason)
        logger.info(
            "JobQueue %s/%s: %d → %d replicas: %s",
            namespace,
            name,
            current,
            decision.replicas,
            decision.reason,
        )
        reason, message = reporting.scale_event(current, decision.replicas, decision.reason)
        self._spawn(self._event(q.ref, "Normal", reason, message))
        return True

    def _account(self, q: _Queue, stats: QueueStats, desired: int, mono: float) -> None:
        """Metrics and status of one queue, skipped outright when nothing changed since the
        last pass (the common case) and no status change is waiting for its turn."""
        busy = stats.busy_workers
        seen = (
            stats.queued,
            stats.scheduled,
            stats.running,
            stats.failed,
            round(stats.oldest_queued_seconds),
            busy,
            len(stats.workers),
            desired,
            q.last_scale.get("lastScaleTime"),
        )
        if seen == q.seen and not q.held_back:
            return
        if seen != q.seen:
            self._observe(q, stats, desired)
        q.seen = seen
        self._report(q, stats, desired, mono)

    def _observe(self, q: _Queue, stats: QueueStats, desired: int) -> None:
        s = q.series
        s.jobs["queued"].set(stats.queued)
        s.jobs["scheduled"].set(stats.scheduled)
        s.jobs["running"].set(stats.running)
        s.jobs["failed"].set(stats.failed)
        s.oldest.set(stats.oldest_queued_seconds)
        busy = stats.busy_workers
        s.workers["busy"].set(busy)
        s.workers["idle"].set(len(stats.workers) - busy)
        s.desired.set(desired)

    def _report(self, q: _Queue, stats: QueueStats, desired: int, mono: float) -> None:
        if q.status_task is not None and not q.status_task.done():
            return  # the previous write is still on its way; this one would race it
        wanted = {**reporting.figures(stats, desired), **q.last_scale}
        on_object = {**(self._one(self._statuses, q.ref.key) or {}), **q.sent}
        patch = reporting.changes(on_object, wanted)
        q.held_back = bool(patch) and not reporting.due(patch, last_write=q.last_status_write, now=mono)
        if not patch or q.held_back:
            return
        q.last_status_write = mono
        q.status_task = self._spawn(self._write_status(q, patch))

    async def _write_status(self, q: _Queue, patch: dict[str, Any]) -> None:
        async with self._report_slots:
            try:
                await self._kube.merge_status(
                    models.JOBQUEUE_KIND, *q.ref.key, patch, field_manager=names.AUTOSCALER_MANAGER
                )
            except k8s.ApiError as e:
                if not k8s.is_not_found(e):
                    metrics.AUTOSCALER_API_ERRORS.labels("status").inc()
                    logger.warning("JobQueue %s/%s: status not written: %s", *q.ref.key, k8s.message(e))
                    # the next pass reports again, although nothing changed (the skips of an
                    # unchanged or resting queue would leave the status stale for good)
                    q.seen = q.rest = None
                return
        q.sent.update(patch)

    async def _event(self, ref: index.QueueRef, type_: str, reason: str, message: str) -> None:
        obj = {
            "apiVersion": models.API_VERSION,
            "kind": models.JOBQUEUE_KIND,
            "metadata": {"name": ref.name, "namespace": ref.namespace, "uid": ref.uid},
        }
        async with self._report_slots:
            await self._emit(obj, type=type_, reason=reason, message=message)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a status write or an Event in the background; its failure is logged, never raised."""

        async def guarded() -> None:
            try:
                await coro
            except Exception:
                logger.exception("autoscaler background call failed")

        task = asyncio.create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ---- lost jobs

    def _suspect_unseen_pods(
        self, by_url: Mapping[str, list[index.QueueRef]], reads: Mapping[str, _Read], mono: float
    ) -> None:
        """Worker records naming a pod the pod index does not show: a pod that died before the
        index had it, or while the operator was down. Its heartbeats decide (:mod:`.lost`)."""
        for url, group in by_url.items():
            read = reads.get(url)
            if read is None or isinstance(read.result, Exception):
                continue
            for ref in group:
                stats = read.result.queues.get(ref.queue_name)
                if stats is None or not stats.workers:
                    continue
                shown = {p.name for p in _all(self._pods, ref.key)}
                for worker in stats.workers:
                    if worker.pod and worker.pod not in shown:
                        self._lost.suspect((*ref.key, worker.pod), ref.queue_name, mono)

    async def _recover_lost(
        self, by_url: Mapping[str, list[index.QueueRef]], reads: Mapping[str, _Read], mono: float
    ) -> None:
        watched = self._lost.watched()
        if not watched:
            return
        url_of = {ref.key: url for url, group in by_url.items() for ref in group}
        for pod, queue in watched.items():
            read = reads.get(url_of.get(pod[:2], ""))
            if read is None:
                continue
            if isinstance(read.result, Exception):
                self._lost.observe(pod, None, read.started)
                continue
            stats = read.result.queues.get(queue)
            if stats is None:
                continue
            workers = [w.name for w in stats.workers if w.pod == pod[2]]
            if any(w not in read.result.heartbeats for w in workers):
                continue  # this read did not look at the pod (it started before the pod went)
            if self._lost.observe(pod, {w: read.result.heartbeats[w] for w in workers}, read.started):
                await self._recover(url_of[pod[:2]], pod, queue)

    async def _recover(self, url: str, pod: lost.PodKey, queue: str) -> None:
        namespace, jobqueue, pod_name = pod
        how = self._lost.how(pod)
        reason = (
            f"lost: worker pod {pod_name} {how} while running this job (its workers stopped heart-beating)"
        )
        if not self._acting() or not self._owns((namespace, jobqueue)):
            return
        try:
            report = await self._hub.recover_pod(url, queue, pod_name, reason=reason)
        except errors.RedisUnavailable as e:
            logger.warning("pod %s/%s: lost jobs not recovered yet: %s", namespace, pod_name, e)
            return
        self._lost.done(pod)
        q = self._state.get((namespace, jobqueue))
        if q is not None:
            if report.requeued:
                q.series.recovered("requeued", len(report.requeued))
            if report.failed:
                q.series.recovered("failed", len(report.failed))
        if not report.jobs:
            return
        message = (
            f"worker pod {pod_name} {how} while running {report.jobs} job(s): "
            f"{len(report.requeued)} re-queued, {len(report.failed)} failed (no attempt left)"
        )
        logger.warning(
            "JobQueue %s/%s: %s: %s",
            namespace,
            jobqueue,
            message,
            ", ".join([*report.requeued, *report.failed]),
        )
        if q is not None:
            self._spawn(self._event(q.ref, "Warning", "LostJobsRecovered", message))
