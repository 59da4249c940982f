"""The settings a JobQueue publishes in its Redis for producers and workers.

:class:`jobqueue.settings.QueueSettings` is the data plane's model; this builds it from
the JobQueue, so ``enqueue(queue, fn)`` applies exactly the defaults the platform team
declared. ``namespace`` and ``jobqueue`` record the owner: the operator only ever removes
or replaces settings its own JobQueue published (two JobQueues may not share a queue name
in one Redis), and the settings sweep recognises orphans by them.
"""

from __future__ import annotations

from jobqueue.settings import JobOptions, QueueSettings
from jobqueue_operator import models


def queue_settings(
    *, namespace: str, name: str, generation: int | None, spec: models.JobQueueSpec
) -> QueueSettings:
    return QueueSettings(
        queue_name=spec.effective_queue_name(namespace, name),
        namespace=namespace,
        jobqueue=name,
        priority=spec.priority,
        concurrency=spec.concurrency,
        rate_limit=spec.rate_limit,
        key_rate_limit=spec.key_rate_limit,
        imports=tuple(spec.worker.imports),
        job_defaults=spec.job_defaults or JobOptions(),
        suspend=spec.suspend,
        generation=generation,
    )


def owner(settings: QueueSettings) -> tuple[str, str] | None:
    """The (namespace, JobQueue) that published ``settings``; None if not published by a JobQueue."""
    if settings.namespace is None or settings.jobqueue is None:
        return None
    return settings.namespace, settings.jobqueue
