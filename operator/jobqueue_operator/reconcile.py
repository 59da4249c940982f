"""One JobQueue's reconcile: publish its settings, apply its worker Deployment, report status.

Level-based and idempotent: :meth:`Reconciler.reconcile` computes everything from the
object as it is now, so kopf may call it on create, update and resume (and the Deployment
watch and the settings sweep may call it again) without harm. The settings are published
first (milliseconds), then the Deployment is applied.

**A queue belongs to one JobQueue.** If another JobQueue already publishes the queue name
in that Redis, this one gets no workers: no Deployment is created, and one it had (it was
renamed onto the taken name) is deleted, so its image never takes the other queue's jobs
(``Ready=False``, ``QueueNameConflict``; the message names the other JobQueue only when it
is in the same namespace). The workers check it too: they refuse settings published by any
other JobQueue than their own (``JOBQUEUE_NAME``/``POD_NAMESPACE``).

**Other Redis problems never fail the reconcile.** An unreachable Redis or a missing
Secret become the ``RedisReachable``/``Ready`` conditions; the Deployment is applied
anyway (its workers wait for their settings), and the settings sweep
(:mod:`jobqueue_operator.sweeper`) publishes as soon as the Redis answers. Only Kubernetes
API errors propagate (the handler turns them into kopf retries).

**Never someone else's Deployment.** A Deployment of the worker Deployment's name that lacks
our labels or this JobQueue's controller reference is left alone (``Ready=False``,
``NameConflict``, retried: it may be deleted meanwhile).

**The default Redis URL reaches the pods through a Secret.** For a queue without
``spec.redis`` the namespace's Secret of the operator's default URL
(:mod:`jobqueue_operator.defaultredis`) is applied first, and the Deployment references it
and carries its revision. If that Secret cannot be written (its name is taken by someone
else's Secret, or RBAC forbids it) the Deployment is left as it is, ``Ready`` says why
(``RedisSecretConflict``, ``RedisSecretFailed``) and the reconcile is retried. A queue that
moves to ``spec.redis`` leaves the Secret's owners after its Deployment stops using it.

**Replicas and the first apply.** The operator's apply body never contains
``spec.replicas`` (the autoscaler owns them). Omitting it at creation would create the
Deployment with Kubernetes' default of 1 replica — a pod nobody asked for, immediately
scaled away. So creation is a hand-over in two applies:

1. the operator applies the Deployment *with* ``replicas: minReplicas`` (creating it);
2. the autoscaler's field manager applies just ``spec.replicas`` (same value: both own it),
   while the status is written (the status needs nothing from it); the reconcile ends, and
   fails if the claim did, when both are done.

The operator's share ends by itself: its next apply (any spec change) has no
``spec.replicas`` and releases the field, which stays, owned by ``jobqueue-autoscaler``;
and the autoscaler's first scale (an update through the scale subresource) takes the
field over anyway. The operator never *sets* replicas again. If the hand-over was
interrupted, the next reconcile sees that the operator alone owns ``spec.replicas`` and
repeats step 2 with the live value before applying — otherwise that apply would reset the
Deployment to 1 replica. Step 2 is conditional on the Deployment being as read (its
``resourceVersion``): the autoscaler may scale between the read and the claim, and a claim
of the value read would undo that scale (a new leader's first reconciles race its
autoscaler's first pass exactly so). On a conflict the Deployment is read again and the
claim, if still needed, made with the value then live (the Deployment controller's status
writes conflict too); after a few conflicts in a row kopf retries the reconcile.
A ``spec.replicas`` nobody owns needs no claim: an apply without the field leaves it alone
(after a scale through the subresource the API server often records no owner at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import pydantic

from jobqueue_operator import defaultredis, errors, index, k8s, metrics, models, redisaddresses, redisq
from jobqueue_operator.builders import deployment, names, published, redissecret, status
from jobqueue_operator.errors import Outcome
from jobqueue_operator.scaling import views
from jobqueue_operator.statuskeeper import Emit, StatusKeeper, object_ref

logger = logging.getLogger(__name__)

#: Reconciles in flight at once. kopf starts one per JobQueue event with no limit, so an
#: operator restarting with a thousand queues would hold a thousand API responses at once
#: (RSS doubled in the footprint benchmark) and hit the API server with a thousand requests;
#: beyond a few dozen concurrent requests a 2-core API server gets no faster anyway.
CONCURRENT_RECONCILES: Final = 32
#: Claims of spec.replicas tried against a Deployment that keeps changing (its status) before
#: the conflict is left to kopf's retry (30 s away). A new Deployment's status is written
#: several times in its first second (ReplicaSet, pods, ready): four tries in 55 ms all lost
#: to it on a busy CI machine.
CLAIM_ATTEMPTS: Final = 8
#: Seconds the pause before each further claim grows by (about 1 s over all the tries): long
#: enough to outlast that burst.
CLAIM_PAUSE: Final = 0.05
#: Ready reasons of a Deployment held back because the default-Redis Secret could not be
#: written, or its name is someone else's Deployment's: retried (the cause is outside the
#: JobQueue's spec), unlike a refused Deployment.
SECRET_PROBLEMS: Final = frozenset({"RedisSecretConflict", "RedisSecretFailed", "NameConflict"})


@contextlib.asynccontextmanager
async def _settled(claims: list[asyncio.Task[Any]]) -> AsyncIterator[None]:
    """The block's replicas claims (started in it, still under way) are awaited after it: a
    claim's failure is the reconcile's (kopf retries). If the block fails, they are cancelled:
    the retry finishes an interrupted hand-over (see above)."""
    try:
        yield
    except BaseException:
        for claim in claims:
            claim.cancel()
        raise
    for claim in claims:
        await claim


def _ours(current: Mapping[str, Any], uid: str) -> bool:
    """A live worker Deployment is ours: our labels and this JobQueue's controller reference."""
    return names.owned_by_us(
        current, kind=models.JOBQUEUE_KIND, component=names.WORKER_COMPONENT, owner_uid=uid
    )


def _reconciled_before(body: Mapping[str, Any], known: views.DeploymentView | None) -> bool:
    """Whether ``known`` (a worker Deployment as the index shows it) is this JobQueue's, with
    its summary and applied digest, and the JobQueue's status says its generation was
    reconciled: then what the Deployment was applied from can stand in for reading it."""
    return (
        known is not None
        and known.summary is not None
        and known.applied is not None
        and known.controller_uid == body["metadata"].get("uid")
        and (body.get("status") or {}).get("observedGeneration") == body["metadata"].get("generation")
    )


def conflict_message(namespace: str, queue: str, owner: index.Key) -> str:
    """Why a JobQueue gets no workers: its queue name is taken. The owner is named only when
    it is in the same namespace (another namespace is another tenant: not even its name)."""
    who = (
        f"JobQueue {owner[1]} of this namespace"
        if owner[0] == namespace
        else "a JobQueue of another namespace"
    )
    return (
        f"queue name {queue!r} is already declared by {who} in this Redis; this JobQueue gets no "
        "workers until it declares a queue name of its own (spec.queueName)"
    )


class Reconciler:
    def __init__(
        self,
        *,
        kube: k8s.KubeApi,
        hub: redisq.RedisHub,
        addresses: redisaddresses.RedisAddresses,
        keeper: StatusKeeper,
        defaults: deployment.WorkerDefaults,
        emit: Emit,
        secrets: defaultredis.DefaultRedisSecrets,
    ) -> None:
        self._kube = kube
        self._hub = hub
        self._addresses = addresses
        self._keeper = keeper
        self._secrets = secrets
        self._defaults = defaults
        self._emit = emit
        self._locks: dict[index.Key, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(CONCURRENT_RECONCILES)
        self._queues: dict[index.Key, str] = {}

    @property
    def keeper(self) -> StatusKeeper:
        return self._keeper

    @property
    def secrets(self) -> defaultredis.DefaultRedisSecrets:
        return self._secrets

    def _lock(self, key: index.Key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def reconcile(self, body: Mapping[str, Any], known: views.DeploymentView | None = None) -> Outcome:
        """Bring JobQueue ``body``'s settings, Deployment and status in line with its spec.

        ``known``: on a resume (kopf's handler after a restart), the worker Deployment as the
        index shows it. If it is this JobQueue's, was applied from exactly the body this
        reconcile would apply, and the status says this generation was reconciled, the
        Deployment is neither read nor applied again (its summary comes from the index); the
        settings and the status are handled as always. A restart thus costs no Deployment
        request per unchanged queue. Changes others made to such a Deployment while the
        operator was down stay, as they do while it runs (a spec change re-applies it)."""
        meta = body["metadata"]
        key: index.Key = (meta["namespace"], meta["name"])
        started = time.perf_counter()
        try:
            async with self._lock(key), self._slots:
                outcome = await self._reconcile(body, key, known)
        except Exception:
            metrics.RECONCILE_TOTAL.labels(metrics.KIND_JOBQUEUE, "error").inc()
            raise
        result = "error" if outcome.permanent_error else "ok"
        metrics.RECONCILE_TOTAL.labels(metrics.KIND_JOBQUEUE, result).inc()
        metrics.RECONCILE_SECONDS.labels(metrics.KIND_JOBQUEUE).observe(time.perf_counter() - started)
        return outcome

    async def _reconcile(
        self, body: Mapping[str, Any], key: index.Key, known: views.DeploymentView | None
    ) -> Outcome:
        namespace, name = key
        generation = body["metadata"].get("generation")
        try:
            spec = models.JobQueueSpec.model_validate(body.get("spec") or {})
        except pydantic.ValidationError as e:
            # The CRD validates first, so this means the installed CRD is older than the operator.
            text = f"spec does not match the operator's JobQueue model (is the CRD up to date?): {e}"
            await self._keeper.reconciled(
                body,
                status.Inputs(
                    generation=generation,
                    queue_name=models.default_queue_name(namespace, name),
                    suspend=False,
                    publication=None,
                    deployment=None,
                    apply_error=("InvalidSpec", text),
                ),
            )
            return Outcome(permanent_error=text)

        queue = spec.effective_queue_name(namespace, name)
        settings = published.queue_settings(namespace=namespace, name=name, generation=generation, spec=spec)
        previous_queue = (body.get("status") or {}).get("queueName")
        if not _reconciled_before(body, known):
            known = None
        # The live Deployment is read while the Secret and the settings are written (its
        # owner must be checked before any write, and the read costs no time this way). The
        # default Redis's Secret comes first: with namespace isolation it also sets up the
        # namespace's database, where the settings are published.
        reading = asyncio.create_task(self._read_deployment(namespace, name, known))
        try:
            revision, apply_error = await self._default_secret(body, spec)
            publication = await self._publish(namespace, name, spec, settings, previous_queue)
            current = await reading
        except BaseException:
            reading.cancel()
            raise
        summary, created = None, False
        claims: list[asyncio.Task[Any]] = []  # a creation's replicas claim, under way
        # News for users: the settings of a generation not reconciled before are published. A
        # new JobQueue's one Event, DeploymentCreated, says so too: one Event per creation, not
        # two (each is a request, in a burst of creations beside the applies it describes).
        fresh = (body.get("status") or {}).get("observedGeneration") != generation
        news = publication.message if publication.published and fresh else None
        async with _settled(claims):
            if publication.reachable and not publication.published:  # another JobQueue's queue
                await self._stop_workers(
                    body, current if known is None else await self._read_deployment(namespace, name)
                )
            elif (
                apply_error is None
                and known is not None
                and known.applied == self._digest(body, spec, queue, revision)
            ):
                summary = known.summary  # applied from this very body: nothing to read or write
            elif apply_error is None:
                if known is not None:  # not read above, and needed now
                    current = await self._read_deployment(namespace, name)
                summary, apply_error = await self._apply_deployment(
                    body, spec, queue, revision, current, news=news, claims=claims
                )
                created = current is None and summary is not None
            if news and not created:  # (DeploymentCreated told it)
                await self._emit(object_ref(body), type="Normal", reason="SettingsPublished", message=news)
            self._queues[key] = queue
            await self._keeper.reconciled(
                body,
                status.Inputs(
                    generation=generation,
                    queue_name=queue,
                    suspend=spec.suspend,
                    publication=publication,
                    deployment=summary,
                    apply_error=apply_error,
                ),
            )
        if apply_error and apply_error[0] in SECRET_PROBLEMS:
            return Outcome(retry_error=apply_error[1])
        return Outcome(permanent_error=apply_error[1] if apply_error else None)

    async def _read_deployment(
        self, namespace: str, name: str, known: views.DeploymentView | None = None
    ) -> dict[str, Any] | None:
        """The live worker Deployment of JobQueue ``name``; not read (None) when ``known``."""
        if known is not None:
            return None
        return await self._kube.get_deployment(namespace, names.deployment_name(name))

    def _digest(
        self, body: Mapping[str, Any], spec: models.JobQueueSpec, queue: str, revision: int | None
    ) -> str:
        return str(
            self._desired(body, spec, queue, revision)["metadata"]["annotations"][names.APPLIED_ANNOTATION]
        )

    def _desired(
        self, body: Mapping[str, Any], spec: models.JobQueueSpec, queue: str, revision: int | None
    ) -> dict[str, Any]:
        meta = body["metadata"]
        return deployment.build(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            spec=spec,
            queue_name=queue,
            defaults=self._defaults,
            redis_revision=revision,
        )

    async def _publish(
        self, namespace: str, name: str, spec: models.JobQueueSpec, settings: Any, previous_queue: str | None
    ) -> status.Publication:
        queue = settings.queue_name
        try:
            url = await self._addresses.url(namespace, spec.redis, fresh=True)
            if previous_queue and previous_queue != queue:  # renamed: withdraw the old name
                await self._hub.unpublish(url, previous_queue, owner=(namespace, name))
            try:
                await self._hub.publish(url, settings)
            except errors.QueueNameTaken as taken:
                if await self._still_declares(taken.owner, queue):
                    return status.Publication.conflict(conflict_message(namespace, queue, taken.owner))
                await self._hub.publish(url, settings, replace=taken.owner)  # the other one is gone
        except errors.RedisConfigError as e:
            return status.Publication.unreachable(e.reason, e.message)
        except errors.RedisUnavailable as e:
            return status.Publication.unreachable("RedisUnavailable", str(e))
        except errors.QueueNameTaken as e:  # lost a race against yet another JobQueue
            return status.Publication.conflict(conflict_message(namespace, queue, e.owner))
        return status.Publication.ok(queue, settings.generation)

    async def _still_declares(self, owner: index.Key, queue: str) -> bool:
        """Whether JobQueue ``owner`` (which published ``queue``) still declares it. Unsure —
        a namespace this operator may not read, a spec it cannot read — counts as yes: the
        name stays taken (:func:`index.declares`)."""
        try:
            body = await self._kube.get_jobqueue(*owner)
        except k8s.ApiError as e:
            if k8s.is_forbidden(e):
                return True
            raise
        return index.declares(body, queue)

    async def _stop_workers(self, body: Mapping[str, Any], current: Mapping[str, Any] | None) -> None:
        """No workers for a queue another JobQueue owns: delete this JobQueue's Deployment
        (``current``, if there is one and it is really ours)."""
        meta = body["metadata"]
        namespace, dep_name = meta["namespace"], names.deployment_name(meta["name"])
        if current is None or not _ours(current, meta["uid"]):
            return
        await self._kube.delete_deployment(namespace, dep_name)
        await self._emit(
            object_ref(body),
            type="Warning",
            reason="WorkersStopped",
            message=f"deleted worker Deployment {dep_name}: its queue is another JobQueue's",
        )
        logger.warning(
            "JobQueue %s/%s: deleted Deployment %s, its queue name is another JobQueue's",
            namespace,
            meta["name"],
            dep_name,
        )

    async def _default_secret(
        self,
        body: Mapping[str, Any],
        spec: models.JobQueueSpec,
    ) -> tuple[int | None, tuple[str, str] | None]:
        """For a queue on the default Redis: its Secret's revision, or why the Secret could not
        be written as (reason, message)."""
        if spec.redis is None:
            meta = body["metadata"]
            namespace, owner = meta["namespace"], redissecret.Owner(meta["name"], meta["uid"])
            try:
                return await self._secrets.ensure(namespace, owner), None
            except errors.RedisSecretConflict as e:
                return None, ("RedisSecretConflict", str(e))
            except (errors.RedisConfigError, errors.RedisUnavailable) as e:
                return None, (
                    "RedisSecretFailed",
                    f"the operator could not set up this namespace's credentials for the default Redis: {e}",
                )
            except k8s.ApiError as e:
                if not (k8s.is_forbidden(e) or k8s.is_invalid(e)):
                    raise
                return None, (
                    "RedisSecretFailed",
                    f"the operator could not write Secret {namespace}/{redissecret.SECRET_NAME} "
                    f"(the default Redis URL of the pods): {k8s.message(e)}",
                )
        return None, None

    async def _apply_deployment(
        self,
        body: Mapping[str, Any],
        spec: models.JobQueueSpec,
        queue: str,
        revision: int | None,
        current: Mapping[str, Any] | None,
        *,
        news: str | None,
        claims: list[asyncio.Task[Any]],
    ) -> tuple[status.DeploymentSummary | None, tuple[str, str] | None]:
        """The Deployment's summary, or why it was not applied as (reason, message).
        ``current``: the live Deployment of that name (None: there is none); ``news``: what
        the Event of a creation adds (the settings published); ``claims``: gets the replicas
        claim of a creation, still under way (the caller awaits it)."""
        meta = body["metadata"]
        namespace, owner = meta["namespace"], redissecret.Owner(meta["name"], meta["uid"])
        if current is not None and not _ours(current, meta["uid"]):
            dep_name = names.deployment_name(meta["name"])
            return None, (
                "NameConflict",
                names.name_conflict("Deployment", namespace, dep_name, f"JobQueue {meta['name']}"),
            )
        try:
            summary = await self._ensure_deployment(
                body, spec, queue, revision, current, news=news, claims=claims
            )
        except k8s.ApiError as e:
            if not k8s.is_invalid(e):
                raise
            refusal = f"the API server refused the worker Deployment: {k8s.message(e)}"
            return None, ("DeploymentFailed", refusal)
        if spec.redis is not None:  # its pods no longer need the default Redis's Secret
            await self._secrets.release(namespace, owner)
        return summary, None

    async def _ensure_deployment(
        self,
        body: Mapping[str, Any],
        spec: models.JobQueueSpec,
        queue: str,
        redis_revision: int | None,
        current: Mapping[str, Any] | None,
        *,
        news: str | None,
        claims: list[asyncio.Task[Any]],
    ) -> status.DeploymentSummary:
        """Apply the worker Deployment (``current``: the live one, ours, or None; ``news``,
        ``claims``: see :meth:`_apply_deployment`)."""
        meta = body["metadata"]
        desired = self._desired(body, spec, queue, redis_revision)
        namespace, dep_name = meta["namespace"], desired["metadata"]["name"]
        op = names.OPERATOR_MANAGER
        if current is None:
            initial = 0 if spec.suspend else spec.scaling.min_replicas
            created = await self._kube.apply(deployment.with_replicas(desired, initial), field_manager=op)
            # The hand-over's second step runs beside the status write, which needs nothing
            # from it (the claim changes no value): the status follows its Deployment one
            # round trip sooner, and the reconcile holds its slot that much shorter.
            claims.append(asyncio.create_task(self._claim_replicas(created, initial)))
            await self._emit(
                object_ref(body),
                type="Normal",
                reason="DeploymentCreated",
                message=f"created worker Deployment {dep_name} with {initial} replicas"
                + (f"; {news}" if news else ""),
            )
            logger.info("JobQueue %s/%s: created Deployment %s", namespace, meta["name"], dep_name)
            return status.DeploymentSummary.of(created)
        if deployment.replicas_managers(current) == {op}:
            await self._claim_replicas(current, int((current.get("spec") or {}).get("replicas", 1)))
        live = await self._kube.apply(desired, field_manager=op)
        if live["metadata"].get("generation") != current["metadata"].get("generation"):
            await self._emit(
                object_ref(body),
                type="Normal",
                reason="DeploymentUpdated",
                message=f"applied generation {meta.get('generation')} to worker Deployment {dep_name}",
            )
            logger.info("JobQueue %s/%s: updated Deployment %s", namespace, meta["name"], dep_name)
        return status.DeploymentSummary.of(live)

    async def _claim_replicas(self, live: Mapping[str, Any], replicas: int) -> dict[str, Any]:
        """Make the autoscaler's field manager an owner of ``spec.replicas``, keeping the value
        of ``live`` — only if the Deployment is still ``live`` (see above). The Deployment
        controller's status writes change it too: on a conflict it is read again and, if the
        operator still owns the field alone, claimed with the value then live."""
        for attempt in range(CLAIM_ATTEMPTS - 1):
            try:
                return await self._kube.apply(
                    self._claim(live, replicas), field_manager=names.AUTOSCALER_MANAGER
                )
            except k8s.ApiError as e:
                if not k8s.is_conflict(e):
                    raise
            if attempt:
                await asyncio.sleep(CLAIM_PAUSE * attempt)
            meta = live["metadata"]
            fresh = await self._kube.get_deployment(meta["namespace"], meta["name"])
            if fresh is None or deployment.replicas_managers(fresh) != {names.OPERATOR_MANAGER}:
                return fresh if fresh is not None else dict(live)  # no claim needed now, or gone
            live, replicas = fresh, int((fresh.get("spec") or {}).get("replicas", 1))
        return await self._kube.apply(self._claim(live, replicas), field_manager=names.AUTOSCALER_MANAGER)

    @staticmethod
    def _claim(live: Mapping[str, Any], replicas: int) -> dict[str, Any]:
        meta = live["metadata"]
        return deployment.replicas_claim(
            namespace=meta["namespace"],
            name=meta["name"],
            replicas=replicas,
            resource_version=meta.get("resourceVersion"),
        )

    # ---- the worker Deployment watch

    async def deployment_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A worker Deployment was added, changed or deleted."""
        meta = body.get("metadata") or {}
        jobqueue = names.jobqueue_of(meta.get("labels"))
        if jobqueue is None:
            return
        key: index.Key = (meta["namespace"], jobqueue)
        if event_type == "DELETED":
            await self._deployment_deleted(key, body)
            return
        summary = status.DeploymentSummary.of(body)
        queue = (meta.get("annotations") or {}).get(names.QUEUE_ANNOTATION, "")
        metrics.observe_workers(key[0], key[1], queue, replicas=summary.replicas, ready=summary.ready)
        await self._keeper.deployment_seen(key, summary)

    async def _deployment_deleted(self, key: index.Key, body: Mapping[str, Any]) -> None:
        jobqueue = await self._kube.get_jobqueue(*key)
        if jobqueue is None or not names.recreates(jobqueue, body):
            return
        logger.info("JobQueue %s/%s: worker Deployment deleted by someone; recreating it", *key)
        await self.reconcile(jobqueue)

    # ---- deletion

    async def gone(self, body: Mapping[str, Any]) -> None:
        """JobQueue ``body`` was deleted: withdraw its settings (best effort; the sweep catches misses)."""
        meta = body["metadata"]
        key: index.Key = (meta["namespace"], meta["name"])
        self._keeper.forget(key)
        self._locks.pop(key, None)
        await self._secrets.owner_gone(key[0], redissecret.Owner(key[1], str(meta.get("uid", ""))))
        ref = index.queue_ref(body)
        queue = (body.get("status") or {}).get("queueName") or (ref.queue_name if ref else None)
        metrics.forget_queue(key[0], key[1], self._queues.pop(key, queue or ""))
        if ref is None or queue is None:
            return
        try:
            url = await self._addresses.url(key[0], ref.redis_spec)
            if await self._hub.unpublish(url, queue, owner=key):
                logger.info("JobQueue %s/%s deleted: settings of queue %r withdrawn", *key, queue)
        except (errors.RedisConfigError, errors.RedisUnavailable) as e:
            logger.warning(
                "JobQueue %s/%s deleted: settings of queue %r not withdrawn yet (%s); "
                "the settings sweep retries",
                *key,
                queue,
                e,
            )
