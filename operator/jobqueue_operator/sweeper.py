"""The settings sweep: every queue's settings published where they belong, and nothing else.

Handlers keep Redis current while the operator runs, but cannot cover what happened while
it was down, nor a Redis that was unreachable when the change came. So one task (started
at operator startup, one per process — not a kopf timer per JobQueue, which would cost a
task and a finalizer per object: kopf guards every timer with one) walks every Redis in use every
``JOBQUEUE_RESYNC_SECONDS``:

* a queue whose settings are missing or older than its JobQueue's generation is
  reconciled again (this is how a queue recovers from a Redis outage or a Secret that
  appeared late, without anyone touching the JobQueue);
* a queue whose Redis answers again gets ``RedisReachable=True`` back (and the reverse);
* settings published by a JobQueue that no longer exists (deleted while the operator was
  down), or under a queue name or Redis it no longer uses, are withdrawn;
* every namespace's Secret of the default Redis URL is re-read and repaired
  (:meth:`~jobqueue_operator.defaultredis.DefaultRedisSecrets.sweep`).

Two safety rules: only settings of namespaces this operator serves are ever touched
(several operators may share a Redis), and a JobQueue missing from the in-memory index is
confirmed absent by a GET before its settings are removed (the index may still be
filling at startup).

Cost per pass: one Secret read per distinct Secret (cached), two Redis round trips per
Redis, and API calls only for queues that are actually out of line.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from jobqueue.redaction import redact
from jobqueue.settings import QueueSettings
from jobqueue_operator import errors, index, k8s, metrics, redisaddresses, redisq, settings
from jobqueue_operator.builders import status
from jobqueue_operator.reconcile import Reconciler

logger = logging.getLogger(__name__)

#: Seconds after startup before the first pass: lets kopf's resume handlers go first.
FIRST_PASS_DELAY: Final = 5.0


@dataclass
class Report:
    """What one pass did (for logs and tests)."""

    republished: int = 0
    withdrawn: int = 0
    unreachable: int = 0


class Sweeper:
    def __init__(
        self,
        *,
        reconciler: Reconciler,
        kube: k8s.KubeApi,
        hub: redisq.RedisHub,
        addresses: redisaddresses.RedisAddresses,
        config: settings.Settings,
        queues: Callable[[], Iterable[index.QueueRef]],
    ) -> None:
        self._reconciler = reconciler
        self._kube = kube
        self._hub = hub
        self._addresses = addresses
        self._config = config
        self._queues = queues
        #: monotonic time of the last completed pass (for the liveness probe)
        self.last_pass: float | None = None

    async def run(self, *, first_delay: float = FIRST_PASS_DELAY) -> None:
        """Sweep forever (cancel the task to stop); a failed pass is logged and retried next period."""
        await asyncio.sleep(first_delay)
        while True:
            started = time.perf_counter()
            try:
                report = await self.sweep()
            except Exception:
                metrics.RECONCILE_TOTAL.labels(metrics.KIND_SWEEP, "error").inc()
                logger.exception("settings sweep failed; retrying in %.0fs", self._config.resync_seconds)
            else:
                metrics.RECONCILE_TOTAL.labels(metrics.KIND_SWEEP, "ok").inc()
                if report.republished or report.withdrawn:
                    logger.info("settings sweep: %s", report)
            metrics.RECONCILE_SECONDS.labels(metrics.KIND_SWEEP).observe(time.perf_counter() - started)
            self.last_pass = time.monotonic()
            await asyncio.sleep(self._config.resync_seconds)

    async def sweep(self) -> Report:
        report = Report()
        await self._reconciler.secrets.sweep()
        by_url: dict[str, list[index.QueueRef]] = collections.defaultdict(list)
        if self._config.redis_url:
            by_url[self._config.redis_url] = []
        keeper = self._reconciler.keeper
        for ref in list(self._queues()):
            if ref.deleting:
                continue
            try:
                url = await self._addresses.url(ref.namespace, ref.redis_spec)
            except errors.RedisConfigError as e:
                await keeper.publication_seen(ref.key, status.Publication.unreachable(e.reason, e.message))
                continue
            by_url[url].append(ref)
        for url, refs in by_url.items():
            try:
                found = await self._hub.published(url)
            except errors.RedisUnavailable as e:
                report.unreachable += len(refs)
                lost = status.Publication.unreachable("RedisUnavailable", str(e))
                for ref in refs:
                    await keeper.publication_seen(ref.key, lost)
                continue
            await self._check_declared(refs, found, report)
            await self._withdraw_orphans(url, refs, found, report)
        return report

    async def _check_declared(
        self, refs: list[index.QueueRef], found: dict[str, QueueSettings | None], report: Report
    ) -> None:
        keeper = self._reconciler.keeper
        for ref in refs:
            current = found.get(ref.queue_name)
            if (
                current is not None
                and current.generation == ref.generation
                and (current.namespace, current.jobqueue) == ref.key
            ):
                known = keeper.known(ref.key)
                if known is not None and known.publication is not None and not known.publication.published:
                    back = status.Publication.ok(ref.queue_name, ref.generation)
                    await keeper.publication_seen(ref.key, back)
                continue
            body = await self._kube.get_jobqueue(ref.namespace, ref.name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                continue
            report.republished += 1
            await self._reconciler.reconcile(body)

    async def _withdraw_orphans(
        self, url: str, refs: list[index.QueueRef], found: dict[str, QueueSettings | None], report: Report
    ) -> None:
        declared = {ref.queue_name: ref.key for ref in refs}
        for queue, published in found.items():
            if published is None or published.namespace is None or published.jobqueue is None:
                continue  # not published by a JobQueue: not ours to remove
            owner = (published.namespace, published.jobqueue)
            if not self._config.serves(owner[0]) or declared.get(queue) == owner:
                continue
            if await self._still_declared_here(owner, queue, url):
                continue
            if await self._hub.unpublish(url, queue, owner=owner):
                report.withdrawn += 1
                metrics.ORPHANED_SETTINGS_REMOVED.inc()
                logger.info(
                    "withdrew settings of queue %r from %s: JobQueue %s/%s no longer declares it",
                    queue,
                    redact(url),
                    *owner,
                )

    async def _still_declared_here(self, owner: index.Key, queue: str, url: str) -> bool:
        body = await self._kube.get_jobqueue(*owner)
        if body is None:
            return False
        ref = index.queue_ref(body)  # (read once: it validates the spec, and logs an unreadable one)
        if not index.ref_declares(ref, queue):
            return False
        if ref is None:
            return True  # unreadable spec: do not guess, keep its settings
        try:
            return await self._addresses.url(ref.namespace, ref.redis_spec) == url
        except errors.RedisConfigError:
            return True  # cannot tell where it lives now: keep
