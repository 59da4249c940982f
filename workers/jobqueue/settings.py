"""The effective settings of one queue, as the operator publishes them in Redis.

The ``JobQueue`` resource is the single source of truth. The operator turns it into a
:class:`QueueSettings` and publishes it under ``jobqueue:settings:<queue>``; producers
(:func:`jobqueue.enqueue`) and workers read it from there, so an application needs only the
queue's name and the Redis URL.

:class:`JobOptions` is also the schema of ``JobQueue.spec.jobDefaults`` and
``RecurringJob.spec.jobOptions``: the operator generates the CRDs from these models, so the
field names, ranges and descriptions below are the API users write in YAML (camelCase).
Every field of :class:`JobOptions` is optional; :func:`resolve` layers per-job overrides on
the queue's defaults on the built-in defaults.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Final, Literal

import redis
from pydantic import BaseModel, ConfigDict, Field

from jobqueue.errors import JobQueueError

SETTINGS_KEY_PREFIX: Final = "jobqueue:settings:"
#: Environment of the operator's pods: their JobQueue (with ``POD_NAMESPACE``, from the
#: downward API). A worker takes jobs only from a queue whose settings name that JobQueue.
OWNER_NAME_ENV: Final = "JOBQUEUE_NAME"
OWNER_NAMESPACE_ENV: Final = "POD_NAMESPACE"
#: SET of every queue name whose settings are published (lets the operator find orphans).
SETTINGS_INDEX_KEY: Final = "jobqueue:settings"

# Built-in defaults, used when neither the queue nor the job says otherwise.
#: BullMQ's default: one attempt, no retry (attempts counts the first try).
DEFAULT_ATTEMPTS: Final = 1
#: RQ's default job timeout (Queue.DEFAULT_TIMEOUT).
DEFAULT_TIMEOUT_SECONDS: Final = 180
#: Finished jobs stay readable for an hour (the seed keeps most for 1-24 h).
DEFAULT_KEEP_COMPLETED_SECONDS: Final = 3600
#: Failed jobs stay a week for inspection and manual retry (RQ keeps a year, which mostly
#: fills Redis with jobs nobody looks at).
DEFAULT_KEEP_FAILED_SECONDS: Final = 7 * 24 * 3600
#: Longest retention a job may ask for (ten years); workers clamp longer ones (RQ's own
#: result_ttl/failure_ttl have no bound, and Redis refuses an EXPIRE beyond its range).
MAX_KEEP_SECONDS: Final = 10 * 365 * 86400


class UnknownQueueError(JobQueueError, LookupError):
    """No settings are published for this queue: no JobQueue declares it (or it is gone)."""

    def __init__(self, queue_name: str) -> None:
        super().__init__(
            f"queue {queue_name!r} is not declared: no JobQueue publishes it in this Redis "
            f"(check `kubectl get jobqueues -A` and the queue's spec.queueName)"
        )
        self.queue_name = queue_name


class ForeignQueueError(UnknownQueueError):
    """The queue's settings were published by another JobQueue than the caller's own: its jobs
    are not the caller's to take. (Names no other JobQueue: it may be another tenant's.)"""

    def __init__(self, queue_name: str, owner: tuple[str, str]) -> None:
        JobQueueError.__init__(
            self,
            f"queue {queue_name!r} belongs to another JobQueue than {owner[0]}/{owner[1]} (this "
            f"pod's): it takes none of its jobs (check that JobQueue's spec.queueName and conditions)",
        )
        self.queue_name = queue_name
        self.owner = owner


def pod_owner() -> tuple[str, str] | None:
    """(namespace, JobQueue) of the operator's pod this process runs in; None outside one."""
    namespace, name = os.environ.get(OWNER_NAMESPACE_ENV), os.environ.get(OWNER_NAME_ENV)
    return (namespace, name) if namespace and name else None


class _Model(BaseModel):
    # camelCase on the wire (CRD YAML, published JSON), snake_case in Python
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class Backoff(_Model):
    """Delay between attempts. ``exponential``: d, 2d, 4d, …; ``fixed``: d, d, d, …"""

    type: Literal["exponential", "fixed"] = Field(
        default="exponential", description="exponential (d, 2d, 4d, ...) or fixed (d, d, d, ...)"
    )
    delay_seconds: Annotated[
        float,
        Field(
            alias="delaySeconds",
            ge=0,
            le=86400,
            description="d: the delay before the first retry, in seconds (fractions allowed)",
        ),
    ] = 1.0
    max_delay_seconds: Annotated[
        float | None,
        Field(
            alias="maxDelaySeconds",
            ge=0,
            le=7 * 86400,
            description="upper bound of any single delay (exponential growth stops here)",
        ),
    ] = None
    jitter: Annotated[
        float,
        Field(ge=0, le=1, description="0..1: each delay is drawn uniformly from [(1-jitter)*delay, delay]"),
    ] = 0.0

    def delay_for_retry(self, retry: int, rand: float = 1.0) -> float:
        """Seconds to wait before retry number ``retry`` (1 = the first retry).

        ``rand`` in [0, 1] drives the jitter; 1.0 gives the undithered delay.
        """
        if retry < 1:
            raise ValueError("retry counts from 1")
        # (the exponent is capped: a job record may ask for thousands of attempts, and 2**1000
        # seconds is no longer a float)
        delay = self.delay_seconds * (2 ** min(retry - 1, 64) if self.type == "exponential" else 1)
        if self.max_delay_seconds is not None:
            delay = min(delay, self.max_delay_seconds)
        return delay * (1 - self.jitter * (1 - rand))


class Retention(_Model):
    """How long an ended job stays readable (``keepCompleted``, ``keepFailed``)."""

    age_seconds: Annotated[int, Field(alias="ageSeconds", ge=0, le=MAX_KEEP_SECONDS)]


class CompletedRetention(Retention):
    age_seconds: Annotated[
        int,
        Field(
            alias="ageSeconds",
            ge=0,
            le=MAX_KEEP_SECONDS,
            description="seconds a succeeded job and its result stay readable; 0 removes them at once",
        ),
    ]


class FailedRetention(Retention):
    age_seconds: Annotated[
        int,
        Field(
            alias="ageSeconds",
            ge=0,
            le=MAX_KEEP_SECONDS,
            description="seconds a failed job stays readable and retryable; 0 removes it at once",
        ),
    ]


class JobOptions(_Model):
    """Options of a job; unset fields inherit (job -> queue jobDefaults -> built-in)."""

    attempts: Annotated[
        int | None,
        Field(ge=1, le=100, description="total tries including the first (BullMQ semantics); 1 = no retry"),
    ] = None
    backoff: Annotated[Backoff | None, Field(description="delay between attempts")] = None
    timeout_seconds: Annotated[
        int | None,
        Field(
            alias="timeoutSeconds",
            ge=1,
            le=7 * 86400,
            description="hard limit on one attempt's run time; the attempt fails when it is exceeded",
        ),
    ] = None
    keep_completed: Annotated[
        CompletedRetention | None,
        Field(alias="keepCompleted", description="how long a succeeded job and its result stay readable"),
    ] = None
    keep_failed: Annotated[
        FailedRetention | None,
        Field(
            alias="keepFailed", description="how long a failed job stays readable (for inspection and retry)"
        ),
    ] = None


class RateLimit(_Model):
    """At most ``jobs`` jobs of the queue start in any ``perSeconds`` window, over every worker
    (a sliding window kept in Redis by the claim script: exact across pods)."""

    jobs: Annotated[int, Field(ge=1, le=100000, description="most jobs started in any window")]
    per_seconds: Annotated[
        float,
        Field(
            alias="perSeconds", ge=0.01, le=86400, description="the window, in seconds (fractions allowed)"
        ),
    ]


class KeyRateLimit(RateLimit):
    """At most ``jobs`` jobs with the same rateKey start in any ``perSeconds`` window (each key
    its own window)."""

    jobs: Annotated[int, Field(ge=1, le=100000, description="most jobs of one rateKey started in any window")]
    per_seconds: Annotated[
        float,
        Field(
            alias="perSeconds",
            ge=0.01,
            le=86400,
            description="each key's window, in seconds (fractions allowed)",
        ),
    ]


class EffectiveJobOptions(_Model):
    """Fully resolved options of one job: nothing left to inherit."""

    attempts: int
    backoff: Backoff
    timeout_seconds: int = Field(alias="timeoutSeconds")
    keep_completed_seconds: int = Field(alias="keepCompletedSeconds")
    keep_failed_seconds: int = Field(alias="keepFailedSeconds")


def resolve(*layers: JobOptions | None) -> EffectiveJobOptions:
    """Merge option layers, later ones winning field by field, over the built-in defaults."""
    attempts: int = DEFAULT_ATTEMPTS
    backoff = Backoff()
    timeout = DEFAULT_TIMEOUT_SECONDS
    keep_completed = DEFAULT_KEEP_COMPLETED_SECONDS
    keep_failed = DEFAULT_KEEP_FAILED_SECONDS
    for layer in layers:
        if layer is None:
            continue
        if layer.attempts is not None:
            attempts = layer.attempts
        if layer.backoff is not None:
            backoff = layer.backoff
        if layer.timeout_seconds is not None:
            timeout = layer.timeout_seconds
        if layer.keep_completed is not None:
            keep_completed = layer.keep_completed.age_seconds
        if layer.keep_failed is not None:
            keep_failed = layer.keep_failed.age_seconds
    return EffectiveJobOptions(
        attempts=attempts,
        backoff=backoff,
        timeout_seconds=timeout,
        keep_completed_seconds=keep_completed,
        keep_failed_seconds=keep_failed,
    )


class QueueSettings(_Model):
    """What the operator publishes for one queue (from its JobQueue)."""

    queue_name: str = Field(alias="queueName")
    namespace: str | None = None
    jobqueue: str | None = Field(default=None, description="name of the JobQueue object")
    priority: int = Field(default=3, ge=1, le=5)
    concurrency: int | None = Field(
        default=None,
        ge=1,
        description="most jobs of the queue running at once over all workers (the claim script "
        "enforces it); None: no queue-wide limit",
    )
    rate_limit: RateLimit | None = Field(
        default=None,
        alias="rateLimit",
        description="most jobs started per window over all workers (the claim script enforces it)",
    )
    key_rate_limit: KeyRateLimit | None = Field(
        default=None,
        alias="keyRateLimit",
        description="most jobs of one rateKey started per window (each key its own window)",
    )
    imports: tuple[str, ...] = ()
    job_defaults: JobOptions = Field(default_factory=JobOptions, alias="jobDefaults")
    suspend: bool = False
    generation: int | None = Field(default=None, description="metadata.generation it was built from")

    def effective(self, overrides: JobOptions | None = None) -> EffectiveJobOptions:
        return resolve(self.job_defaults, overrides)


def _key(queue_name: str) -> str:
    return SETTINGS_KEY_PREFIX + queue_name


def publish(conn: redis.Redis, settings: QueueSettings) -> None:
    """Publish (or replace) a queue's settings; readers see the new version at once."""
    body = settings.model_dump_json(by_alias=True, exclude_none=True)
    pipe = conn.pipeline(transaction=True)
    pipe.set(_key(settings.queue_name), body)
    pipe.sadd(SETTINGS_INDEX_KEY, settings.queue_name)
    pipe.execute()


def unpublish(conn: redis.Redis, queue_name: str) -> None:
    """Withdraw a queue's settings (its JobQueue was deleted). Jobs already queued stay."""
    pipe = conn.pipeline(transaction=True)
    pipe.delete(_key(queue_name))
    pipe.srem(SETTINGS_INDEX_KEY, queue_name)
    pipe.execute()


def published_queue_names(conn: redis.Redis) -> set[str]:
    # (replace: a name written by hand may not be UTF-8; it then matches no JobQueue)
    members = conn.smembers(SETTINGS_INDEX_KEY)
    return {m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m) for m in members}


def load(conn: redis.Redis, queue_name: str, *, owner: tuple[str, str] | None = None) -> QueueSettings:
    """The queue's published settings. ``owner`` (namespace, JobQueue): raise
    :class:`ForeignQueueError` unless that JobQueue published them."""
    raw = conn.get(_key(queue_name))
    if raw is None:
        raise UnknownQueueError(queue_name)
    found = QueueSettings.model_validate(json.loads(raw))
    if owner is not None and (found.namespace, found.jobqueue) != owner:
        raise ForeignQueueError(queue_name, owner)
    return found
