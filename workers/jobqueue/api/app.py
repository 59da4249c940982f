"""The admin HTTP API and the jobs web UI, one FastAPI application.

Why FastAPI: its routes are typed Python functions over pydantic models — the models this
package already uses — so request validation (a wrong type answers 422 naming the field)
and the OpenAPI document come from the code itself; it is Starlette underneath (ASGI,
static files) and served by uvicorn. Handlers are plain ``def``: they call the synchronous
library (redis-py) and FastAPI runs them in its thread pool.

Every handler goes through :mod:`jobqueue.client` and :mod:`jobqueue.admin`; none reads a
Redis key itself (``.importlinter`` forbids ``jobqueue.keys`` and ``jobqueue._lua`` here), so
the Redis layout keeps one owner. Errors are the library's, mapped once:
UnknownQueueError/UnknownJobError → 404, JobStateError → 409, InvalidJobError and bad
paging → 400, Redis unreachable → 503; authentication 401, authorization 403
(:mod:`jobqueue.api.auth`).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations at run time,
# and those name types local to the functions that define the routes.
import importlib.resources
from collections.abc import Callable
from typing import Annotated, Any, Final

import redis
from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from jobqueue import __version__, admin, client, settings
from jobqueue._redis import connect
from jobqueue.api import auth, schemas
from jobqueue.errors import InvalidJobError, JobStateError, UnknownJobError

PREFIX: Final = "/api/v1"
_bearer = HTTPBearer(auto_error=False, description="a Kubernetes bearer token (`kubectl create token …`)")
QueueName = Annotated[str, Path(min_length=1, max_length=200, description="RQ queue name, e.g. ei:update")]
JobId = Annotated[str, Path(pattern=schemas.JOB_ID, description="the job id")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.Problem, "description": why}
    for code, why in (
        (401, "no or invalid bearer token"),
        (403, "RBAC does not allow this on the queue's JobQueue"),
        (404, "no such queue or job"),
        (503, "Redis or the Kubernetes API is unreachable"),
    )
}


def create_app(
    *,
    redis_url: str | None = None,
    authorizer: auth.Authorizer | None = None,
    connection: redis.Redis | None = None,
) -> FastAPI:
    """The application; ``connection`` (tests) or ``redis_url`` / $JOBQUEUE_REDIS_URL."""
    api = _Api(
        connection if connection is not None else connect(redis_url),
        authorizer if authorizer is not None else auth.KubernetesAuthorizer(),
    )
    app = FastAPI(
        title="jobqueue admin API",
        version=__version__,
        summary="Queues, jobs, retry/remove, pause/resume and enqueue for jobqueue-operator.",
        description="Every request carries a Kubernetes bearer token; RBAC on the queue's JobQueue "
        "decides (docs/admin.md).",
        responses=_ERRORS,
    )
    app.add_exception_handler(auth.AuthError, _auth_problem)
    for error, code in (
        (settings.UnknownQueueError, 404),
        (UnknownJobError, 404),
        (JobStateError, 409),
        (InvalidJobError, 400),
        (ValueError, 400),
        (redis.RedisError, 503),
    ):
        app.add_exception_handler(error, _problem(code))
    _queue_routes(app, api)
    _job_routes(app, api)
    _probes_and_ui(app, api)
    return app


class _Api:
    """What every handler shares: the Redis connection, the authorizer."""

    def __init__(self, conn: redis.Redis, authz: auth.Authorizer) -> None:
        self.conn, self.authz = conn, authz

    def user(self, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> auth.User:
        return self.authz.authenticate(bearer.credentials if bearer else None)

    def check(self, who: auth.User, permission: auth.Permission, queue: str) -> None:
        """403 unless ``who`` has ``permission`` on the JobQueue that declares ``queue``
        (UnknownQueueError → 404 for a queue no JobQueue publishes)."""
        namespace, name = _owner(settings.load(self.conn, queue))
        if not self.authz.allowed(who, permission, namespace, name):
            where = f"JobQueue {namespace}/{name}" if name else "a queue no JobQueue declares (cluster-wide)"
            raise auth.AuthError(
                403,
                f"{who.name} may not {permission.describe()} ({auth.GROUP}) on "
                f"{where}, which holds queue {queue!r}; RBAC decides (docs/admin.md)",
            )


def _queue_routes(app: FastAPI, api: _Api) -> None:
    User = Annotated[auth.User, Depends(api.user)]

    @app.get(f"{PREFIX}/queues", tags=["queues"])
    def list_queues(who: User) -> schemas.QueueList:
        """Every declared queue the caller may read (`list jobqueues` in its namespace, or `get` on
        its JobQueue), with counts and workers."""
        rows = admin.overview(connection=api.conn)
        listable: dict[str, bool] = {}  # namespace -> may `list jobqueues` there (one review each)

        def readable(row: admin.QueueOverview) -> bool:
            namespace, name = _owner(row.settings)
            if namespace not in listable:
                listable[namespace] = api.authz.allowed(who, auth.LIST, namespace, "")
            return listable[namespace] or api.authz.allowed(who, auth.READ, namespace, name)

        return schemas.QueueList(queues=[schemas.Queue.of(row) for row in rows if readable(row)])

    @app.get(f"{PREFIX}/queues/{{queue}}", tags=["queues"])
    def get_queue(queue: QueueName, who: User) -> schemas.Queue:
        """One queue's stats (the seed's getQueueStats)."""
        api.check(who, auth.READ, queue)
        return schemas.Queue.of(admin.overview([queue], connection=api.conn)[0])

    @app.post(f"{PREFIX}/queues/{{queue}}/pause", tags=["queues"])
    def pause(queue: QueueName, who: User) -> schemas.PauseState:
        """Pause: producers may still enqueue, workers take nothing new (`update jobqueues/pause`)."""
        api.check(who, auth.PAUSE, queue)
        return schemas.PauseState.of(admin.pause(queue, by=who.name, connection=api.conn))

    @app.post(f"{PREFIX}/queues/{{queue}}/resume", tags=["queues"])
    def resume(queue: QueueName, who: User) -> schemas.PauseState:
        """Resume a paused queue (`update jobqueues/pause`)."""
        api.check(who, auth.PAUSE, queue)
        was = admin.resume(queue, connection=api.conn)
        return schemas.PauseState.of(admin.pause_state(queue, connection=api.conn), was_paused=was)


def _job_routes(app: FastAPI, api: _Api) -> None:
    User = Annotated[auth.User, Depends(api.user)]

    @app.get(f"{PREFIX}/queues/{{queue}}/jobs", tags=["jobs"])
    def list_jobs(
        queue: QueueName,
        who: User,
        state: Annotated[admin.JobState, Query(description="RQ's state names (started = running)")],
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=admin.MAX_PAGE)] = 50,
    ) -> schemas.JobPage:
        """A page of the queue's jobs in one state (queued: by priority level, then oldest first;
        finished and failed: newest first)."""
        api.check(who, auth.READ, queue)
        page = admin.list_jobs(queue, state, offset=offset, limit=limit, connection=api.conn)
        return schemas.JobPage(
            queue=queue,
            state=state,
            total=page.total,
            offset=offset,
            limit=limit,
            jobs=[schemas.Job.of(j) for j in page.jobs],
        )

    @app.post(
        f"{PREFIX}/queues/{{queue}}/jobs",
        tags=["jobs"],
        status_code=201,
        responses={
            200: {"model": schemas.Enqueued, "description": "duplicate id: nothing added"},
            400: {"model": schemas.Problem, "description": "the job cannot be enqueued"},
        },
    )
    def enqueue(
        queue: QueueName, body: schemas.EnqueueRequest, who: User, response: Response
    ) -> schemas.Enqueued:
        """Add a job (`create jobqueues/jobs`): 201, or 200 with duplicate=true if the id exists."""
        api.check(who, auth.ENQUEUE, queue)
        options = body.options.model_dump(by_alias=True, exclude_none=True) if body.options else {}
        res = client.enqueue(
            queue,
            body.function,
            *body.args,
            kwargs=body.kwargs,
            job_id=body.job_id,
            delay=body.delay_seconds,
            priority=body.priority,
            rate_key=body.rate_key,
            depends_on=body.depends_on,
            allow_failure=body.allow_failure,
            connection=api.conn,
            **options,
        )
        if res.duplicate:
            response.status_code = 200
        return schemas.Enqueued(id=res.id, queue=res.queue, duplicate=res.duplicate, state=res.status)

    @app.get(f"{PREFIX}/queues/{{queue}}/jobs/{{job_id}}", tags=["jobs"])
    def get_job(queue: QueueName, job_id: JobId, who: User) -> schemas.Job:
        """One job (the seed's getJobStatus): data, progress, state, attempts, failure, times."""
        api.check(who, auth.READ, queue)
        return schemas.Job.of(client.get_job(queue, job_id, connection=api.conn))

    @app.post(
        f"{PREFIX}/queues/{{queue}}/jobs/{{job_id}}/retry",
        tags=["jobs"],
        responses={409: {"model": schemas.Problem, "description": "the job is not failed"}},
    )
    def retry(queue: QueueName, job_id: JobId, who: User) -> schemas.Job:
        """Put a failed job back with a fresh set of attempts (`update jobqueues/jobs`)."""
        api.check(who, auth.MANAGE_JOBS, queue)
        return schemas.Job.of(client.retry(queue, job_id, connection=api.conn))

    @app.post(
        f"{PREFIX}/queues/{{queue}}/jobs/{{job_id}}/cancel",
        tags=["jobs"],
        responses={409: {"model": schemas.Problem, "description": "the job has ended already"}},
    )
    def cancel(queue: QueueName, job_id: JobId, who: User) -> schemas.Cancelled:
        """Cancel a job (`update jobqueues/jobs`): a pending one never starts, a running one is
        stopped by its worker; it ends canceled, never retried."""
        api.check(who, auth.MANAGE_JOBS, queue)
        res = client.cancel(queue, job_id, by=who.name, connection=api.conn)
        return schemas.Cancelled(
            id=job_id,
            queue=queue,
            previous_state=res.previous_status,
            stopping=res.stopping,
            worker=res.worker,
        )

    @app.delete(
        f"{PREFIX}/queues/{{queue}}/jobs/{{job_id}}",
        tags=["jobs"],
        responses={409: {"model": schemas.Problem, "description": "the job is running"}},
    )
    def remove(queue: QueueName, job_id: JobId, who: User) -> schemas.Removed:
        """Delete a job that is not running (`update jobqueues/jobs`)."""
        api.check(who, auth.MANAGE_JOBS, queue)
        before = client.remove(queue, job_id, connection=api.conn)
        return schemas.Removed(id=job_id, queue=queue, previous_state=before)

    @app.post(f"{PREFIX}/queues/{{queue}}/bulk/retry", tags=["jobs"])
    def retry_jobs(queue: QueueName, body: schemas.BulkRequest, who: User) -> schemas.BulkResult:
        """Retry every failed job (filters: age, function; `dryRun`), in atomic batches
        (`update jobqueues/jobs`)."""
        api.check(who, auth.MANAGE_JOBS, queue)
        return schemas.BulkResult.of(
            admin.retry_jobs(
                queue,
                body.state,
                older_than=body.older_than_seconds,
                function=body.function,
                dry_run=body.dry_run,
                connection=api.conn,
            )
        )

    @app.post(f"{PREFIX}/queues/{{queue}}/bulk/remove", tags=["jobs"])
    def remove_jobs(queue: QueueName, body: schemas.BulkRequest, who: User) -> schemas.BulkResult:
        """Delete every job in a state (a purge; filters: age, function; `dryRun`), in atomic
        batches (`update jobqueues/jobs`)."""
        api.check(who, auth.MANAGE_JOBS, queue)
        return schemas.BulkResult.of(
            admin.remove_jobs(
                queue,
                body.state,
                older_than=body.older_than_seconds,
                function=body.function,
                dry_run=body.dry_run,
                connection=api.conn,
            )
        )


def _probes_and_ui(app: FastAPI, api: _Api) -> None:
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> schemas.Health:
        return schemas.Health(status="ok")

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> schemas.Health:
        api.conn.ping()  # RedisError → 503
        return schemas.Health(status="ok")

    static = importlib.resources.files("jobqueue.api") / "static"

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(packages=[("jobqueue.api", "static")]), name="static")


def _auth_problem(_: Request, exc: Exception) -> JSONResponse:
    status = exc.status if isinstance(exc, auth.AuthError) else 500
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


def _owner(qs: settings.QueueSettings | None) -> tuple[str, str]:
    """(namespace, name) of the JobQueue that declares a queue ('' for hand-published ones,
    which need the cluster-wide permission)."""
    return (qs.namespace or "", qs.jobqueue or "") if qs is not None else ("", "")


def _problem(status: int) -> Callable[[Request, Exception], JSONResponse]:
    def handle(_: Request, exc: Exception) -> JSONResponse:
        detail = f"Redis unavailable: {type(exc).__name__}: {exc}" if status == 503 else str(exc)
        return JSONResponse({"detail": detail}, status_code=status)

    return handle
