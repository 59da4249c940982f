"""Jobs that failed for good → an Event on their JobQueue, a metric, and the queue's own
failure notification (``spec.failureNotification``): a job on another queue, a webhook, or both.

One task, like the autoscaler, not a handler per object. Every second it reads the failure
stream of each Redis in use (:mod:`jobqueue.failures`, through :mod:`.redisq`) as the
operator's consumer group, handles the entries (several at once: a slow webhook must not
hold up the rest) and only then acknowledges them, so an operator that dies mid-way handles
them again after its restart — at least once. A notification job's id is derived from the
failure, so it is enqueued once however often the failure is handled; a webhook may see a
notice twice after such a restart. Failures of notification jobs themselves are not notified
(a notification queue notifying itself would never stop).

Events are rate-limited and aggregated per JobQueue (:mod:`.notices`): the first failure at
once, then at most one Event per window for all the others.

The operator's consumer group is named after the namespaces it serves, so two operators that
serve different namespaces on one Redis each see every failure and handle their own.
Entries of queues this operator does not serve are acknowledged and left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Final

from jobqueue.failures import Exhausted
from jobqueue_operator import (
    errors,
    index,
    metrics,
    models,
    notices,
    redisaddresses,
    redisq,
    statuskeeper,
    webhooks,
)

logger = logging.getLogger(__name__)

#: Entries handled at once (webhook calls and notification enqueues in flight).
CONCURRENCY: Final = 16
#: Seconds after start before the first read: kopf's indexes fill from their first listing,
#: and a failure of a queue not indexed yet would be taken for another operator's.
START_DELAY_SECONDS: Final = 3.0
FAILED_REASON: Final = "FailureNotificationFailed"


def group_name(namespaces: Sequence[str]) -> str:
    """The consumer group of an operator serving ``namespaces`` (empty: every namespace)."""
    return "jobqueue-operator:" + (",".join(sorted(namespaces)) or "*")


class FailureNotifier:
    def __init__(
        self,
        *,
        hub: redisq.RedisHub,
        addresses: redisaddresses.RedisAddresses,
        emit: statuskeeper.Emit,
        queues: Callable[[], Iterable[index.QueueRef]],
        group: str,
        interval: float = 1.0,
        hooks: webhooks.Webhooks | None = None,
        start_delay: float = START_DELAY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hub, self._addresses, self._emit, self._queues = hub, addresses, emit, queues
        self._group, self._interval, self._start_delay, self._clock = group, interval, start_delay, clock
        self._hooks = hooks or webhooks.Webhooks()
        self._events = notices.Throttle()
        self._problems = notices.Throttle()
        self._refs: dict[index.Key, index.QueueRef] = {}
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="failure-notifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._hooks.close()

    async def run(self) -> None:
        await asyncio.sleep(self._start_delay)
        logger.info("failure notifier started: consumer group %r", self._group)
        while True:
            started = self._clock()
            try:
                await self.cycle()
            except Exception:
                logger.exception("failure notifier pass failed; the next one runs as usual")
            await asyncio.sleep(max(0.0, self._interval - (self._clock() - started)))

    async def cycle(self) -> None:
        self._refs = {ref.key: ref for ref in self._queues() if not ref.deleting}
        for url, group in (await self._addresses.by_url(self._refs.values())).items():
            try:
                entries = await self._hub.exhausted(url, self._group)
            except errors.RedisUnavailable:
                continue  # the autoscaler reports unreachable Redis servers; read again next pass
            if entries:
                by_queue = {ref.queue_name: ref for ref in group}
                await asyncio.gather(*(self._handle(by_queue.get(e.queue), e) for e in entries))
                await self._hub.ack_exhausted(url, self._group, [e.entry_id for e in entries])
        now = self._clock()
        for throttle, reason in ((self._events, notices.REASON), (self._problems, FAILED_REASON)):
            for key, message in throttle.due(now):
                ref = self._refs.get(key)  # type: ignore[call-overload]
                if ref is not None:
                    await self._event(ref, reason, message)

    async def _handle(self, ref: index.QueueRef | None, failure: Exhausted) -> None:
        if ref is None:
            return  # a queue of another operator, or of no JobQueue
        metrics.JOBS_EXHAUSTED.labels(*ref.key, ref.queue_name).inc()
        message = self._events.add(ref.key, failure, self._clock())
        if message is not None:
            await self._event(ref, notices.REASON, message)
        wanted = ref.failure_notification
        if wanted is None or failure.is_notification:
            return
        async with self._slots:
            if wanted.job is not None:
                await self._deliver(ref, failure, "job", self._enqueue(ref, wanted.job, failure))
            if wanted.webhook is not None:
                await self._deliver(ref, failure, "webhook", self._post(ref, wanted.webhook, failure))

    async def _enqueue(self, ref: index.QueueRef, job: models.NotificationJob, failure: Exhausted) -> None:
        target = self._refs.get((ref.namespace, job.queue))
        if target is None:
            raise errors.RedisConfigError(
                "NoSuchQueue",
                f"spec.failureNotification.job.queue: no JobQueue {job.queue!r} in namespace {ref.namespace}",
            )
        url = await self._addresses.url(target.namespace, target.redis_spec)
        await self._hub.enqueue_notice(url, target.queue_name, job.function, failure)

    async def _post(self, ref: index.QueueRef, hook: models.Webhook, failure: Exhausted) -> None:
        url = await self._addresses.secret_value(
            ref.namespace, hook.url_secret_ref, "spec.failureNotification.webhook.urlSecretRef"
        )
        await self._hooks.post(url, failure.notice())

    async def _deliver(
        self, ref: index.QueueRef, failure: Exhausted, channel: str, delivery: Coroutine[Any, Any, None]
    ) -> None:
        try:
            await delivery
        except Exception as exc:  # a missing Secret or queue, Redis down, the webhook refusing, a bug
            text = str(exc)
            logger.warning(
                "JobQueue %s/%s: %s notification of job %s failed: %s",
                *ref.key,
                channel,
                failure.job_id,
                text,
            )
            metrics.FAILURE_NOTIFICATIONS.labels(*ref.key, ref.queue_name, channel, "failed").inc()
            if self._problems.add(ref.key, failure, self._clock()) is not None:
                await self._event(
                    ref,
                    FAILED_REASON,
                    f"{channel} notification of job {failure.job_id} not delivered: {text}",
                )
            return
        metrics.FAILURE_NOTIFICATIONS.labels(*ref.key, ref.queue_name, channel, "sent").inc()

    async def _event(self, ref: index.QueueRef, reason: str, message: str) -> None:
        body = {"metadata": {"name": ref.name, "namespace": ref.namespace, "uid": ref.uid}}
        await self._emit(statuskeeper.object_ref(body), type="Warning", reason=reason, message=message)
