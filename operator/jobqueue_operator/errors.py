"""The operator's exceptions, one tree::

    * JobQueueOperatorError
      + SettingsError          a JOBQUEUE_* variable is invalid (the operator does not start)
      + RedisConfigError       a queue's Redis cannot even be addressed: no URL configured,
      |                        Secret or key missing, URL malformed (``reason`` says which)
      + RedisUnavailable       the queue's Redis did not answer (connection, timeout, auth)
      + QueueNameTaken         another JobQueue already publishes this RQ queue name there
      + RedisSecretConflict    the name of the namespace's default-Redis Secret is taken by a
                               Secret the operator did not make (it is left alone)

The reconcilers answer with an :class:`Outcome`. Handlers translate both at the boundary:
Redis problems become the ``RedisReachable`` condition of the queue (never a handler failure:
the Deployment is still applied and the operator keeps serving every other queue);
Kubernetes API errors and outcomes become ``kopf.TemporaryError`` or ``kopf.PermanentError``.
"""

from __future__ import annotations

from dataclasses import dataclass


class JobQueueOperatorError(Exception):
    """Base of every error this package raises on purpose."""


class SettingsError(JobQueueOperatorError):
    """An operator setting (environment variable) is invalid."""


class RedisConfigError(JobQueueOperatorError):
    """The queue's Redis URL cannot be determined; ``reason`` is the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class RedisUnavailable(JobQueueOperatorError):
    """The queue's Redis could not be used; the message never contains the URL's password."""


class QueueNameTaken(JobQueueOperatorError):
    """The queue name is published by another JobQueue (``owner``: its namespace and name)."""

    def __init__(self, queue_name: str, owner: tuple[str, str]) -> None:
        # (the message names no JobQueue: the owner may be another tenant's)
        super().__init__(f"queue {queue_name!r} is already declared by another JobQueue")
        self.queue_name = queue_name
        self.owner = owner


class RedisSecretConflict(JobQueueOperatorError):
    """Secret ``name`` in ``namespace`` exists but is not the operator's: it is never overwritten."""

    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(
            f"Secret {namespace}/{name} exists but was not made by jobqueue-operator; the operator "
            f"keeps its default Redis URL for the pods under that name and will not overwrite it: "
            f"rename or delete that Secret, or give the JobQueue spec.redis"
        )
        self.namespace = namespace
        self.name = name


@dataclass(frozen=True)
class Outcome:
    """What a reconciler tells its kopf handler: a permanent failure (retrying the same spec
    is useless), or one to retry later although nothing in the spec changes; neither: done.
    (The JobQueue and the RecurringJob reconcilers both answer with it.)"""

    permanent_error: str | None = None
    retry_error: str | None = None
