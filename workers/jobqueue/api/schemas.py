"""The API's JSON documents (camelCase on the wire), built from the library's own types.

These pydantic models are the OpenAPI schema too: ``docs/openapi.json`` is generated from
them (``make generate``), never written by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from jobqueue import admin, client, patterns, settings

#: RQ's job id rule, for path and body validation.
JOB_ID: Final = patterns.JOB_ID


class _Doc(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Worker(_Doc):
    name: str
    pod: str
    state: str = Field(description="busy or idle")
    current_job: str | None
    busy_slots: int
    slots: int


class Counts(_Doc):
    queued: int = Field(description="waiting, every priority level (BullMQ: waiting)")
    scheduled: int = Field(description="delayed or waiting for a retry (BullMQ: delayed)")
    scheduled_due: int = Field(description="scheduled and already due")
    running: int = Field(description="held by workers (BullMQ: active)")
    lost: int = Field(description="part of running whose worker stopped renewing its lease")
    failed: int
    finished: int = Field(description="finished and still kept (BullMQ: completed)")


class Queue(_Doc):
    """The seed's getQueueStats, and what a console shows about a queue."""

    queue: str
    namespace: str | None = Field(description="namespace of the JobQueue declaring it")
    jobqueue: str | None = Field(description="name of that JobQueue")
    priority: int | None
    concurrency: int | None
    paused: bool
    paused_since: datetime | None
    paused_by: str | None
    counts: Counts
    queued_by_priority: dict[str, int] = Field(description="queued jobs per level '1' (most important) … '5'")
    oldest_queued_seconds: float
    last_activity_at: datetime | None
    worker_count: int
    active_jobs_count: int
    workers: list[Worker]

    @classmethod
    def of(cls, row: admin.QueueOverview) -> Queue:
        s, qs = row.stats, row.settings
        return cls(
            queue=row.queue,
            namespace=qs.namespace if qs else None,
            jobqueue=qs.jobqueue if qs else None,
            priority=qs.priority if qs else None,
            concurrency=qs.concurrency if qs else None,
            paused=row.pause.paused,
            paused_since=row.pause.since,
            paused_by=row.pause.by,
            counts=Counts(
                queued=s.queued,
                scheduled=s.scheduled,
                scheduled_due=s.scheduled_due,
                running=s.running,
                lost=s.lost,
                failed=s.failed,
                finished=s.finished,
            ),
            queued_by_priority={str(k): v for k, v in s.queued_by_priority.items()},
            oldest_queued_seconds=s.oldest_queued_seconds,
            last_activity_at=None
            if s.last_activity_at is None
            else datetime.fromtimestamp(s.last_activity_at, UTC),
            worker_count=len(s.workers),
            active_jobs_count=s.running,
            workers=[
                Worker(
                    name=w.name,
                    pod=w.pod,
                    state=w.state,
                    current_job=w.current_job,
                    busy_slots=w.busy_slots,
                    slots=w.slots,
                )
                for w in s.workers
            ],
        )


class QueueList(_Doc):
    queues: list[Queue]


class JobData(_Doc):
    args: list[Any]
    kwargs: dict[str, Any]


class Job(_Doc):
    """The seed's getJobStatus, and more."""

    id: str
    queue: str
    name: str = Field(description="the @job function's dotted name")
    data: JobData
    state: str = Field(description="queued, scheduled, started, finished, failed (RQ's names)")
    progress: float
    priority: int
    attempts: int = Field(description="attempts made")
    max_attempts: int
    failed_reason: str | None
    stacktrace: str | None
    result: Any
    created_at: datetime | None
    ready_at: datetime | None = Field(description="queued since, or due at (scheduled)")
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    pod: str | None
    timeout_seconds: int | None

    @classmethod
    def of(cls, info: client.JobInfo) -> Job:
        return cls(
            id=info.id,
            queue=info.queue,
            name=info.function,
            data=JobData(args=info.args, kwargs=info.kwargs),
            state=info.status,
            progress=info.progress,
            priority=info.priority,
            attempts=info.attempts_made,
            max_attempts=info.attempts,
            failed_reason=info.failed_reason,
            stacktrace=info.stacktrace,
            result=info.result,
            created_at=info.created_at,
            ready_at=info.ready_at,
            started_at=info.started_at,
            finished_at=info.finished_at,
            worker=info.worker,
            pod=info.pod,
            timeout_seconds=info.timeout_seconds,
        )


class JobPage(_Doc):
    queue: str
    state: str
    total: int = Field(description="jobs in that state now")
    offset: int
    limit: int
    jobs: list[Job]


class Removed(_Doc):
    id: str
    queue: str
    removed: bool = True
    previous_state: str


class BulkRequest(_Doc):
    state: str = Field(description="retry: failed; remove: queued, scheduled, finished or failed")
    older_than_seconds: Annotated[
        float | None, Field(ge=0, description="only jobs that entered the state at least this long ago")
    ] = None
    function: Annotated[str | None, Field(max_length=300, description="only jobs of this function")] = None
    dry_run: bool = Field(default=False, description="count and list, change nothing")


class BulkResult(_Doc):
    queue: str
    state: str
    action: str
    dry_run: bool
    matched: int = Field(description="jobs in the state (and matching the filters) when the call started")
    done: int = Field(description="retried / removed (dry run: that would be)")
    skipped: int = Field(description="matched, but changed state before their batch reached them")
    ids: list[str]

    @classmethod
    def of(cls, res: admin.BulkResult) -> BulkResult:
        return cls.model_validate(res.__dict__)


class Cancelled(_Doc):
    id: str
    queue: str
    previous_state: str
    stopping: bool = Field(description="true: it was running; its worker stops it, then it ends canceled")
    worker: str | None


class PauseState(_Doc):
    queue: str
    paused: bool
    paused_since: datetime | None = None
    paused_by: str | None = None
    was_paused: bool | None = Field(default=None, description="resume only: whether it was paused")

    @classmethod
    def of(cls, state: admin.PauseState, was_paused: bool | None = None) -> PauseState:
        return cls(
            queue=state.queue,
            paused=state.paused,
            paused_since=state.since,
            paused_by=state.by,
            was_paused=was_paused,
        )


class EnqueueRequest(_Doc):
    function: str = Field(
        min_length=1,
        max_length=300,
        description="dotted name of a @job function the queue's workers allow-list",
    )
    args: list[Any] = Field(default_factory=list, description="positional arguments (JSON values)")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments (JSON values)")
    job_id: Annotated[str | None, Field(pattern=JOB_ID, description="idempotency key")] = None
    delay_seconds: Annotated[float | None, Field(ge=0, le=366 * 86400)] = None
    priority: Annotated[int | None, Field(ge=1, le=5, description="1 (most important) … 5; default 3")] = None
    options: settings.JobOptions | None = Field(
        default=None, description="overrides of the queue's jobDefaults (attempts, backoff, timeoutSeconds)"
    )
    rate_key: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=200,
            description="what the queue's keyRateLimit counts this job against (a tenant, an API host)",
        ),
    ] = None
    depends_on: list[Annotated[str, Field(pattern=JOB_ID)]] = Field(
        default_factory=list,
        max_length=client.MAX_DEPENDENCIES,
        description="ids of jobs (any queue) to wait for: it runs once all finished, fails if one fails "
        "(RQ's depends_on; docs/flows.md)",
    )
    allow_failure: bool = Field(default=False, description="with depends_on: run once they ended, however")


class Enqueued(_Doc):
    id: str
    queue: str
    duplicate: bool = Field(description="a job with this id already existed and was left untouched")
    state: str


class Problem(_Doc):
    detail: Any = Field(description="what is wrong, for a person (FastAPI's validation errors: a list)")


class Health(_Doc):
    status: str
