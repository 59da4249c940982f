"""kopf wiring: every ``@kopf`` decorator of the operator, each a few lines that delegate.

=============================  ==================================================================
handler                        what it does
=============================  ==================================================================
``startup`` / ``cleanup``      settings, clients, the settings sweep task (one per process)
``jobqueue_index``             the in-memory :class:`~jobqueue_operator.index.QueueRef` of every
                               JobQueue (read by the sweep and the autoscaler)
``reconcile_jobqueue``         create / update (spec) / resume → :meth:`Reconciler.reconcile`
``jobqueue_deleted``           DELETED watch event → settings withdrawn (no finalizer)
``worker_deployment_event``    worker Deployment changes → status; deleted → recreated
``sweep_health``               liveness probe detail: age of the last settings sweep
``worker_*_index``,            the autoscaler's in-memory views of worker Deployments, worker
``jobqueue_status_index``      pods and its own JobQueue status fields (:mod:`.scaling.views`)
``autoscaler_health``          liveness probe detail: age of the autoscaler's last pass
(startup)                      also starts the failure notifier (:mod:`.notifier`): jobs that
                               failed for good → Events, a metric, spec.failureNotification
``recurring_*``                RecurringJobs (:mod:`jobqueue_operator.recurring`): startup/cleanup
                               of its status refresher; create / update / resume → CronJob;
                               DELETED → forgotten; JobQueue and CronJob changes → reconcile/status
=============================  ==================================================================

No finalizer, no per-object timer or daemon: a JobQueue deletes immediately even while the
operator is down (garbage collection removes its Deployment; the sweep withdraws its
settings later). kopf's optional ``on.delete`` is not used because without a finalizer it
only fires when something else delays the deletion; the DELETED watch event always
arrives while the operator runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, cast

import kopf

from jobqueue_operator import (
    defaultredis,
    errors,
    index,
    k8s,
    models,
    notifier,
    reconcile,
    recurring,
    redisaddresses,
    redisq,
    statuskeeper,
    sweeper,
    tenancy,
)
from jobqueue_operator import settings as operator_settings
from jobqueue_operator.builders import cronjob, deployment, names
from jobqueue_operator.scaling import poller as scaling_poller
from jobqueue_operator.scaling import views as scaling_views

GROUP: Final = models.GROUP
VERSION: Final = models.VERSION
#: Seconds before kopf retries a reconcile that hit a Kubernetes API error (kopf's own
#: default would be 60 s).
RETRY_DELAY: Final = 5.0
#: Seconds before a JobQueue whose default-Redis Secret could not be written is tried again:
#: the cause (someone else's Secret under that name, RBAC) needs a person, not a quick retry.
SECRET_RETRY_DELAY: Final = 15.0
#: Events being posted at once (per emitter); the rest wait their turn in the background.
EVENT_CONCURRENCY: Final = 4

#: What kopf itself asks of the API for the handlers below (our own requests declare theirs in
#: :mod:`jobqueue_operator.k8s`): list and watch each kind a handler or index names; patch the
#: kinds with create/update/resume handlers (kopf keeps its last-handled spec in an annotation
#: on them); list and watch CRDs and namespaces (its discovery). No peering (``standalone``), no
#: Events of kopf's own (``posting.enabled = False``). A unit test checks this against kopf's
#: registry and, with k8s's declarations, against the chart's RBAC.
KOPF_NEEDS: Final = (
    k8s.Needs(GROUP, models.JOBQUEUE_PLURAL, ("list", "watch", "patch")),
    k8s.Needs(GROUP, models.RECURRINGJOB_PLURAL, ("list", "watch", "patch")),
    k8s.Needs("apps", "deployments", ("list", "watch")),
    k8s.Needs("", "pods", ("list", "watch")),
    k8s.Needs("batch", "cronjobs", ("list", "watch")),
    k8s.Needs("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"), scope="cluster"),
    k8s.Needs("", "namespaces", ("list", "watch"), scope="cluster"),
)


@dataclass
class Runtime:
    """Everything the handlers share, kept in kopf's memo."""

    config: operator_settings.Settings
    kube: k8s.Kube
    hub: redisq.RedisHub
    reconciler: reconcile.Reconciler
    sweeper: sweeper.Sweeper
    sweep_task: asyncio.Task[None]
    tenants: tenancy.Tenancy
    addresses: redisaddresses.RedisAddresses
    emit: statuskeeper.Emit
    #: None when JOBQUEUE_POLL_INTERVAL=0 (replicas left to someone else)
    autoscaler: scaling_poller.Autoscaler | None = None
    #: jobs that failed for good → Events, a metric, spec.failureNotification
    failures: notifier.FailureNotifier | None = None


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


def _raw(body: Mapping[str, Any]) -> dict[str, Any]:
    """The plain dict under a kopf body (its items are the raw JSON already). No deep copy:
    nothing below the handlers mutates a body, and copying every watch event of a thousand
    objects showed up as the operator's largest CPU cost."""
    return {key: body[key] for key in body}


def _emitter(kube: k8s.Kube) -> statuskeeper.Emit:
    """Events are posted through our client, not kopf.event(): kopf's posting queue is not
    reachable from tasks started at startup (the settings sweep). Each post runs in the
    background: an Event never delays a reconcile, and a lost one never fails it."""
    log = logging.getLogger("jobqueue_operator.events")
    pending: set[asyncio.Task[None]] = set()
    # A burst of reconciles posts a burst of Events; a few at a time keep them from crowding
    # out the applies and status writes they describe.
    slots = asyncio.Semaphore(EVENT_CONCURRENCY)

    async def post(obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        async with slots:
            try:
                await kube.post_event(obj, type=type_, reason=reason, message=message)
            except k8s.ApiError as e:
                log.warning("Event %s not recorded: %s", reason, k8s.message(e))

    async def emit(obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        task = asyncio.create_task(post(obj, type, reason, message))
        pending.add(task)
        task.add_done_callback(pending.discard)

    return emit


async def _settle(reconciling: Awaitable[errors.Outcome]) -> None:
    """A reconciler's answer in kopf's terms: API errors and problems worth another try later
    are temporary (retried with a delay), a spec that cannot work is permanent."""
    try:
        outcome = await reconciling
    except k8s.ApiError as e:
        raise kopf.TemporaryError(f"Kubernetes API error: {k8s.message(e)}", delay=RETRY_DELAY) from e
    if outcome.retry_error:
        raise kopf.TemporaryError(outcome.retry_error, delay=SECRET_RETRY_DELAY)
    if outcome.permanent_error:
        raise kopf.PermanentError(outcome.permanent_error)


def _refs(idx: kopf.Index[index.Key, index.QueueRef]) -> Iterator[index.QueueRef]:
    for store in idx.values():
        yield from store


def worker_defaults(config: operator_settings.Settings) -> deployment.WorkerDefaults:
    """What the operator's settings contribute to every worker and CronJob pod (never the
    default Redis URL itself: the pods read it from a Secret)."""
    return deployment.WorkerDefaults(
        default_redis=config.redis_url is not None,
        priority_class_prefix=config.priority_class_prefix,
        image_pull_policy=config.worker_image_pull_policy,
    )


#: The metadata kopf's diff base keeps (labels and annotations) or its storage keys look at
#: (ownerReferences; the name for its log messages).
_DIFFBASE_METADATA: Final = ("name", "namespace", "labels", "annotations", "ownerReferences")


class DiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base, built from the parts of a body it keeps. kopf's own
    ``build`` deep-copies the whole body — status and managedFields included, the largest
    parts of a JobQueue — and then throws away all but the spec, labels and annotations; it
    does so for every watch event, and in a burst of new JobQueues that copy was a tenth of
    kopf's own CPU. The essence is the same (a unit test compares them); a handler that
    watches a status or metadata field (none does) gets kopf's own build."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        extra = list(extra_fields or ())
        if any(_top(field) in ("metadata", "status") for field in extra):
            return super().build(body=body, extra_fields=extra)
        meta = body.get("metadata") or {}
        slim = {key: value for key, value in body.items() if key not in ("metadata", "status")}
        slim["metadata"] = {key: meta[key] for key in _DIFFBASE_METADATA if key in meta}
        return super().build(body=kopf.Body(cast(kopf.RawBody, slim)), extra_fields=extra)


def _top(field: kopf.FieldSpec) -> str:
    """The top-level key of a kopf field ("spec.x", ["spec", "x"])."""
    if isinstance(field, str):
        return field.split(".", 1)[0]
    return field[0] if field else ""


def tune(kopf_settings: kopf.OperatorSettings) -> None:
    """kopf settings: our own annotation prefix and finalizer name (never collide with another
    kopf operator), and a server-side selector so only worker Deployments are watched."""
    kopf_settings.persistence.finalizer = f"{GROUP}/finalizer"
    kopf_settings.persistence.diffbase_storage = DiffBase(prefix=GROUP, key="last-handled-configuration")
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    kopf_settings.watching.label_selectors["apps", "deployments"] = names.WORKER_SELECTOR
    kopf_settings.watching.label_selectors["v1", "pods"] = names.WORKER_SELECTOR
    kopf_settings.posting.enabled = False  # the operator records its own Events (see _emitter)
    # The initial listing in pages: a thousand JobQueues and their Deployments in one response
    # is a memory peak the process keeps (CPython rarely returns freed memory to the system).
    kopf_settings.watching.chunk_size = 200
    # Retry delay of unexpected handler errors (bugs); kopf's 60 s default hides them too long.
    kopf_settings.execution.default_backoff = 30


class Clients(NamedTuple):
    kube: k8s.Kube
    hub: redisq.RedisHub
    tenants: tenancy.Tenancy
    addresses: redisaddresses.RedisAddresses
    emit: statuskeeper.Emit


def _clients(config: operator_settings.Settings) -> Clients:
    """The clients every part of one kopf instance shares (the leader's full one, or a
    standby's autoscaler with shards): one Kubernetes client, one RedisHub, the tenancy and
    Redis addressing over them, one Event emitter."""
    kube = k8s.Kube.connect()
    hub = redisq.RedisHub(timeout=config.redis_timeout_seconds)
    tenants = tenancy.Tenancy(hub, config.redis_url, isolated=config.redis_isolation == "namespace")
    addresses = redisaddresses.RedisAddresses(
        kube, config.redis_url, tenants=tenants, allowed_hosts=config.redis_allowed_hosts
    )
    return Clients(kube, hub, tenants, addresses, _emitter(kube))


@kopf.on.startup()
async def startup(
    *,
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    jobqueue_index: kopf.Index[index.Key, index.QueueRef] | None = None,
    worker_deployment_index: kopf.Index[index.Key, scaling_views.DeploymentView] | None = None,
    worker_pod_index: kopf.Index[index.Key, scaling_views.PodView] | None = None,
    jobqueue_status_index: kopf.Index[index.Key, dict[str, Any]] | None = None,
    **_: Any,
) -> None:
    """The one place the operator's parts are made and wired: one Kubernetes client, one
    RedisHub, one RedisAddresses and one Event emitter, shared by every part (the RecurringJob
    startup below takes them from here)."""
    assert jobqueue_index is not None, "kopf passes every index to startup handlers"
    # read once, by __main__ (which refuses bad settings before kopf starts); a bare
    # `kopf run` of this module reads them here
    config: operator_settings.Settings = (
        getattr(memo, "config", None) or operator_settings.Settings.from_env()
    )
    tune(settings)
    kube, hub, tenants, addresses, emit = _clients(config)
    reconciler = reconcile.Reconciler(
        kube=kube,
        hub=hub,
        addresses=addresses,
        keeper=statuskeeper.StatusKeeper(kube, emit),
        emit=emit,
        defaults=worker_defaults(config),
        secrets=defaultredis.DefaultRedisSecrets(
            kube, config.redis_url, queues=lambda: _refs(jobqueue_index), tenants=tenants
        ),
    )
    sweep = sweeper.Sweeper(
        reconciler=reconciler,
        kube=kube,
        hub=hub,
        addresses=addresses,
        config=config,
        queues=lambda: _refs(jobqueue_index),
    )
    memo.runtime = Runtime(
        config=config,
        kube=kube,
        hub=hub,
        reconciler=reconciler,
        sweeper=sweep,
        sweep_task=asyncio.create_task(sweep.run(), name="settings-sweep"),
        tenants=tenants,
        addresses=addresses,
        emit=emit,
    )
    if config.poll_interval > 0:
        memo.runtime.autoscaler = _autoscaler(
            memo,
            config,
            kube=kube,
            hub=hub,
            addresses=addresses,
            keeper=reconciler.keeper,
            emit=emit,
            indexes=(jobqueue_index, worker_deployment_index, worker_pod_index, jobqueue_status_index),
        )
    memo.runtime.failures = notifier.FailureNotifier(
        hub=hub,
        addresses=addresses,
        emit=emit,
        queues=lambda: _refs(jobqueue_index),
        group=notifier.group_name(config.namespaces),
    )
    memo.runtime.failures.start()


def _autoscaler(
    memo: Any,
    config: operator_settings.Settings,
    *,
    kube: k8s.Kube,
    hub: redisq.RedisHub,
    addresses: redisaddresses.RedisAddresses,
    keeper: statuskeeper.StatusKeeper,
    emit: statuskeeper.Emit,
    indexes: tuple[Any, Any, Any, Any],
) -> scaling_poller.Autoscaler:
    """The autoscaler, started: over every queue, or over the queues of this replica's shards
    (``memo.owns``, set by :mod:`jobqueue_operator.__main__` when JOBQUEUE_SHARDS is on)."""
    queue_index, deployment_index, pod_index, status_index = indexes
    assert None not in indexes, "kopf passes every index to startup handlers"
    autoscaler = scaling_poller.Autoscaler(
        kube=kube,
        hub=hub,
        addresses=addresses,
        keeper=keeper,
        emit=emit,
        queues=lambda: _refs(queue_index),
        deployments=deployment_index,
        pods=pod_index,
        statuses=status_index,
        interval=config.poll_interval,
        budget=config.worker_budget,
        acting=getattr(memo, "acting", lambda: True),
        owns=getattr(memo, "owns", lambda _key: True),
    )
    autoscaler.start()
    return autoscaler


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime = _runtime(memo)
    if runtime.autoscaler is not None:
        await runtime.autoscaler.stop()
    if runtime.failures is not None:
        await runtime.failures.stop()
    runtime.sweep_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runtime.sweep_task
    await runtime.kube.close()
    runtime.hub.close()


#: One per process, like kopf's indexes themselves (index handlers run before any startup
#: handler could create it in the memo).
_QUEUE_REFS: Final = index.QueueRefs()


def stand_down(memo: Any) -> None:
    """Stop, at once, the loops that act on their own — the autoscaler (and lost-job
    recovery), the settings sweep, the RecurringJob refresher — when the leader Lease is lost
    (:mod:`jobqueue_operator.__main__`): another replica may take over any moment. kopf's
    cleanup handlers would stop them too, but only once its watches have stopped."""
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is not None:
        runtime.sweep_task.cancel()
        if runtime.autoscaler is not None:
            runtime.autoscaler.halt()
    recurring_runtime: RecurringRuntime | None = getattr(memo, "recurring", None)
    if recurring_runtime is not None:
        recurring_runtime.refresher.cancel()


#: What a replica that does not lead runs when the autoscaler is sharded (JOBQUEUE_SHARDS,
#: :mod:`jobqueue_operator.sharding`): the autoscaler's indexes and the autoscaler over its
#: own shards. Nothing here writes kopf's annotations: those belong to the leader's
#: handlers alone (two kopf instances handling one object would overwrite each other's).
SHARD_REGISTRY: Final = kopf.OperatorRegistry()


@kopf.on.login(registry=SHARD_REGISTRY, id="shard_login")
def shard_login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's own fallbacks, as its default registry has them (a new registry has none): the
    pod's service account, else the kubeconfig."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@dataclass
class ShardRuntime:
    kube: k8s.Kube
    hub: redisq.RedisHub
    autoscaler: scaling_poller.Autoscaler | None


@kopf.on.startup(registry=SHARD_REGISTRY, id="shard_startup")
async def shard_startup(
    *,
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    jobqueue_index: kopf.Index[index.Key, index.QueueRef] | None = None,
    worker_deployment_index: kopf.Index[index.Key, scaling_views.DeploymentView] | None = None,
    worker_pod_index: kopf.Index[index.Key, scaling_views.PodView] | None = None,
    jobqueue_status_index: kopf.Index[index.Key, dict[str, Any]] | None = None,
    **_: Any,
) -> None:
    config: operator_settings.Settings = memo.config
    tune(settings)
    kube, hub, _tenants, addresses, emit = _clients(config)
    memo.shard_runtime = ShardRuntime(kube, hub, None)
    if config.poll_interval > 0:
        memo.shard_runtime.autoscaler = _autoscaler(
            memo,
            config,
            kube=kube,
            hub=hub,
            addresses=addresses,
            keeper=statuskeeper.StatusKeeper(kube, emit),
            emit=emit,
            indexes=(jobqueue_index, worker_deployment_index, worker_pod_index, jobqueue_status_index),
        )


@kopf.on.cleanup(registry=SHARD_REGISTRY, id="shard_cleanup")
async def shard_cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: ShardRuntime = memo.shard_runtime
    if runtime.autoscaler is not None:
        await runtime.autoscaler.stop()
    await runtime.kube.close()
    runtime.hub.close()


@kopf.index(GROUP, VERSION, models.JOBQUEUE_PLURAL, registry=SHARD_REGISTRY)
@kopf.index(GROUP, VERSION, models.JOBQUEUE_PLURAL)
async def jobqueue_index(body: kopf.Body, **_: Any) -> dict[index.Key, index.QueueRef] | None:
    ref = _QUEUE_REFS.of(_raw(body))
    return None if ref is None else {ref.key: ref}


@kopf.on.create(GROUP, VERSION, models.JOBQUEUE_PLURAL)
@kopf.on.update(GROUP, VERSION, models.JOBQUEUE_PLURAL, field="spec")
async def reconcile_jobqueue(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _settle(_runtime(memo).reconciler.reconcile(_raw(body)))


@kopf.on.resume(GROUP, VERSION, models.JOBQUEUE_PLURAL)
async def resume_jobqueue(
    body: kopf.Body,
    memo: kopf.Memo,
    worker_deployment_index: kopf.Index[index.Key, scaling_views.DeploymentView] | None = None,
    **_: Any,
) -> None:
    # kopf runs this only once every index is filled: the Deployment's view is current
    key = (str(body["metadata"]["namespace"]), str(body["metadata"]["name"]))
    views = worker_deployment_index.get(key, ()) if worker_deployment_index is not None else ()
    known = next(iter(views), None)
    await _settle(_runtime(memo).reconciler.reconcile(_raw(body), known=known))


@kopf.on.event(GROUP, VERSION, models.JOBQUEUE_PLURAL, when=lambda event, **_: event.get("type") == "DELETED")
async def jobqueue_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _QUEUE_REFS.forget(str(body["metadata"].get("uid", "")))
    await _runtime(memo).reconciler.gone(_raw(body))


@kopf.on.event(
    "apps",
    "v1",
    "deployments",
    labels={names.MANAGED_BY_LABEL: names.MANAGED_BY, names.COMPONENT_LABEL: names.WORKER_COMPONENT},
)
async def worker_deployment_event(
    event: kopf.RawEvent, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    try:
        await _runtime(memo).reconciler.deployment_event(event["type"], event["object"])
    except k8s.ApiError as e:  # on.event handlers are not retried; the next event or the sweep repairs
        logger.warning("worker Deployment event not handled: %s", k8s.message(e))


@kopf.on.probe(id="sweep")
async def sweep_health(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    runtime: Runtime | None = getattr(memo, "runtime", None)
    last = runtime.sweeper.last_pass if runtime else None
    return {"lastSweepSecondsAgo": None if last is None else round(time.monotonic() - last, 1)}


# ---- the autoscaler (jobqueue_operator.scaling): in-memory views for its poller, and its probe

_WORKERS: Final = {names.MANAGED_BY_LABEL: names.MANAGED_BY, names.COMPONENT_LABEL: names.WORKER_COMPONENT}


@kopf.index("apps", "v1", "deployments", labels=_WORKERS, registry=SHARD_REGISTRY)
@kopf.index("apps", "v1", "deployments", labels=_WORKERS)
async def worker_deployment_index(
    body: kopf.Body, **_: Any
) -> dict[index.Key, scaling_views.DeploymentView] | None:
    return scaling_views.deployment_entry(body)


@kopf.index("v1", "pods", labels=_WORKERS, registry=SHARD_REGISTRY)
@kopf.index("v1", "pods", labels=_WORKERS)
async def worker_pod_index(body: kopf.Body, **_: Any) -> dict[index.Key, scaling_views.PodView] | None:
    return scaling_views.pod_entry(body)


@kopf.index(GROUP, VERSION, models.JOBQUEUE_PLURAL, registry=SHARD_REGISTRY)
@kopf.index(GROUP, VERSION, models.JOBQUEUE_PLURAL)
async def jobqueue_status_index(body: kopf.Body, **_: Any) -> dict[index.Key, dict[str, Any]] | None:
    return scaling_views.status_entry(body)


@kopf.on.probe(id="autoscaler")
async def autoscaler_health(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    runtime: Runtime | None = getattr(memo, "runtime", None)
    last = runtime.autoscaler.last_pass if runtime and runtime.autoscaler else None
    return {"lastPassSecondsAgo": None if last is None else round(time.monotonic() - last, 1)}


# ---- RecurringJobs (jobqueue_operator.recurring): each becomes a CronJob. The watch filters
# (``when``) keep the JobQueue and CronJob watches from running, and logging, a handler for
# events that change nothing here (JobQueue status updates, most of all).


@dataclass
class RecurringRuntime:
    jobs: recurring.RecurringJobs
    refresher: asyncio.Task[None]


def _recurring(memo: Any) -> recurring.RecurringJobs:
    runtime: RecurringRuntime = memo.recurring
    return runtime.jobs


@kopf.on.startup(id="recurring_startup")
async def recurring_startup(*, settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Runs after ``startup`` (kopf runs startup handlers in order) and shares its clients."""
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is None:
        raise kopf.TemporaryError("waiting for the operator's clients", delay=1)
    settings.watching.label_selectors["batch", "cronjobs"] = cronjob.CRONJOB_SELECTOR
    config = runtime.config
    jobs = recurring.RecurringJobs(
        kube=runtime.kube,
        hub=runtime.hub,
        addresses=runtime.addresses,
        emit=runtime.emit,
        defaults=worker_defaults(config),
    )
    memo.recurring = RecurringRuntime(jobs, asyncio.create_task(jobs.run(), name="recurringjob-refresher"))


@kopf.on.cleanup(id="recurring_cleanup")
async def recurring_cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: RecurringRuntime = memo.recurring
    runtime.refresher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runtime.refresher


@kopf.on.resume(GROUP, VERSION, models.RECURRINGJOB_PLURAL)
@kopf.on.create(GROUP, VERSION, models.RECURRINGJOB_PLURAL)
@kopf.on.update(GROUP, VERSION, models.RECURRINGJOB_PLURAL, field="spec")
async def reconcile_recurringjob(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _settle(_recurring(memo).reconcile(_raw(body)))


@kopf.on.event(
    GROUP, VERSION, models.RECURRINGJOB_PLURAL, when=lambda event, **_: event.get("type") == "DELETED"
)
async def recurring_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _recurring(memo).forget(body["metadata"]["namespace"], body["metadata"]["name"])


@kopf.on.event(
    GROUP,
    VERSION,
    models.JOBQUEUE_PLURAL,
    when=lambda event, memo, **_: _recurring(memo).jobqueue_matters(
        event["object"], deleted=event.get("type") == "DELETED"
    ),
)
async def recurring_jobqueue_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    await _recurring(memo).jobqueue_changed(event["object"], deleted=event.get("type") == "DELETED")


@kopf.on.event(
    "batch",
    "v1",
    "cronjobs",
    labels={names.MANAGED_BY_LABEL: names.MANAGED_BY, names.COMPONENT_LABEL: cronjob.COMPONENT},
    when=lambda event, memo, **_: _recurring(memo).cronjob_matters(event.get("type"), event["object"]),
)
async def recurring_cronjob_event(
    event: kopf.RawEvent, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    try:
        await _recurring(memo).cronjob_event(event.get("type"), event["object"])
    except k8s.ApiError as e:  # on.event handlers are not retried; the next event or refresh repairs
        logger.warning("CronJob event not handled: %s", k8s.message(e))
