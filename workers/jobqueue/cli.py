"""The ``jobqueue`` command: the worker, and the seed's admin endpoints for people and cron.

``jobqueue worker`` is what every worker pod runs (docs/architecture.md, "The worker pod
contract"); ``jobqueue enqueue`` is what a RecurringJob's CronJob pod runs — it exits 0 when
the job id already exists, so a retried pod or a duplicated tick is harmless. The other
commands print readable tables (``--json`` for scripts). Every command takes the Redis URL
from ``--redis-url`` or ``JOBQUEUE_REDIS_URL``.

Exit codes: 0 success (a duplicate enqueue included), 1 a failed job or an error the message
explains (unknown queue or job, Redis unreachable), 2 bad usage or bad JSON, 124 ``wait``
timed out.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import click
import redis
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jobqueue import client, settings, stats
from jobqueue._redis import URL_ENV, connect
from jobqueue.errors import JobQueueError

#: Overrides --metrics-port: on one machine local "pods" share the network (hack/podrunner.py).
METRICS_PORT_ENV = "JOBQUEUE_METRICS_PORT"
out = Console(soft_wrap=True)  # never break messages: logs and scripts read them
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(code)


def _conn(ctx: click.Context) -> redis.Redis:
    try:
        conn = connect(ctx.obj["redis_url"])
        conn.ping()
    except ValueError as exc:
        _fail(str(exc), 2)
    except redis.RedisError as exc:
        _fail(f"cannot reach Redis at {ctx.obj['redis_url'] or os.environ.get(URL_ENV)}: {exc}")
    return conn


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except JobQueueError as exc:
        _fail(str(exc))
    except redis.RedisError as exc:
        _fail(f"Redis error: {exc}")


def _json_arg(value: str, name: str, kind: type) -> Any:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=name) from None
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"must be a JSON {'array' if kind is list else 'object'}", param_hint=name)
    return parsed


def _when(ts: float | datetime | None) -> str:
    if ts is None:
        return "-"
    dt = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: float) -> str:
    if seconds < 1:
        return "0s" if seconds <= 0 else f"{seconds:.1f}s"
    units = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
    parts = []
    rest = int(seconds)
    for name, size in units:
        if rest >= size:
            parts.append(f"{rest // size}{name}")
            rest %= size
    return "".join(parts[:2])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redis-url", envvar=URL_ENV, show_envvar=True, help="Redis holding the queues.")
@click.pass_context
def main(ctx: click.Context, redis_url: str | None) -> None:
    """Run workers, enqueue jobs and inspect queues of jobqueue-operator."""
    ctx.obj = {"redis_url": redis_url}


# --------------------------------------------------------------------------------------
# worker


@main.command()
@click.option("--queue", "-q", required=True, help="RQ queue name (the JobQueue's spec.queueName).")
@click.option(
    "--import",
    "imports",
    multiple=True,
    required=True,
    metavar="MODULE",
    help="Module whose @job functions this worker may run (repeat for several).",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 10000),
    default=1,
    show_default=True,
    help="Jobs this worker runs at once.",
)
@click.option(
    "--mode",
    type=click.Choice(["process", "thread", "async"]),
    default="process",
    show_default=True,
    help="process: pre-forked processes (CPU-bound); thread / async: I/O-bound functions.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=9100,
    show_default=True,
    help="Port of /metrics; 0 disables it. $JOBQUEUE_METRICS_PORT, when set, wins (the dev pod "
    "runner gives each local pod its own port that way).",
)
@click.option("--burst", is_flag=True, help="Exit once nothing is queued, scheduled or running.")
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=5),
    default=None,
    envvar="JOBQUEUE_LEASE_SECONDS",
    help="How long a claimed job stays this worker's without a heartbeat; then any live worker "
    "re-queues it (attempts left) or fails it.  [default: 15]",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.pass_context
def worker(
    ctx: click.Context,
    /,
    *,
    queue: str,
    imports: tuple[str, ...],
    concurrency: int,
    mode: str,
    metrics_port: int,
    burst: bool,
    lease_seconds: float | None,
    log_level: str,
) -> None:
    """Run jobs of one queue (the command of every worker pod)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    url = ctx.obj["redis_url"] or os.environ.get(URL_ENV)
    if not url:
        _fail(f"no Redis URL: pass --redis-url or set {URL_ENV}", 2)
    # prometheus_client picks its storage when first imported: set the multiprocess
    # directory before anything imports it (jobqueue.metrics does).
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="jobqueue-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    from jobqueue import metrics as metrics_mod  # noqa: PLC0415
    from jobqueue import worker as worker_mod  # noqa: PLC0415

    wm = metrics_mod.WorkerMetrics(queue)
    port_env = os.environ.get(METRICS_PORT_ENV, "")
    if port_env:
        if not port_env.isdigit() or int(port_env) > 65535:
            _fail(f"{METRICS_PORT_ENV}={port_env!r} is not a port number", 2)
        metrics_port = int(port_env)
    try:
        if metrics_port:
            try:
                metrics_mod.serve(metrics_port)
            except OSError as exc:
                _fail(f"cannot serve metrics on port {metrics_port}: {exc}")
        config = worker_mod.WorkerConfig(
            queue=queue,
            imports=imports,
            concurrency=concurrency,
            mode=mode,  # type: ignore[arg-type]  # click.Choice checked it
            burst=burst,
            lease_seconds=lease_seconds or worker_mod.LEASE_SECONDS,
        )
        try:
            code = worker_mod.run_worker(url, config, wm)
        except JobQueueError as exc:
            _fail(str(exc))
    finally:
        if own_dir:
            metrics_mod.cleanup_multiprocess(own_dir)
    sys.exit(code)


# --------------------------------------------------------------------------------------
# enqueue


@main.command()
@click.argument("queue")
@click.argument("function")
@click.option("--args-json", default="[]", show_default=True, help="Positional arguments, a JSON array.")
@click.option("--kwargs-json", default="{}", show_default=True, help="Keyword arguments, a JSON object.")
@click.option(
    "--options-json",
    default="{}",
    show_default=True,
    help='Job options over the queue defaults, e.g. \'{"attempts": 5, "timeoutSeconds": 60}\'.',
)
@click.option("--job-id", help="Idempotency key: a job with this id is added at most once.")
@click.option("--delay", type=click.FloatRange(min=0), help="Seconds before the job may run.")
@click.option("--priority", type=click.IntRange(1, 5), help="1 (most important) .. 5; default 3.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def enqueue(
    ctx: click.Context,
    /,
    *,
    queue: str,
    function: str,
    args_json: str,
    kwargs_json: str,
    options_json: str,
    job_id: str | None,
    delay: float | None,
    priority: int | None,
    as_json: bool,
) -> None:
    """Add one job to QUEUE (FUNCTION is the job's dotted name)."""
    args = _json_arg(args_json, "--args-json", list)
    kwargs = _json_arg(kwargs_json, "--kwargs-json", dict)
    options = _json_arg(options_json, "--options-json", dict)
    conn = _conn(ctx)
    res = _call(
        lambda: client.enqueue(
            queue,
            function,
            *args,
            kwargs=kwargs,
            job_id=job_id,
            delay=delay,
            priority=priority,
            connection=conn,
            **options,
        )
    )
    if as_json:
        out.print_json(json.dumps(res.__dict__))
    elif res.duplicate:
        out.print(
            f"duplicate: job [bold]{res.id}[/] already exists in {queue} (status {res.status}); "
            f"nothing was added",
            highlight=False,
        )
    else:
        out.print(f"enqueued job [bold]{res.id}[/] into {queue} (status {res.status})", highlight=False)


# --------------------------------------------------------------------------------------
# job status, wait, retry, remove


def _job_table(info: client.JobInfo) -> Table:
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    rows: list[tuple[str, str]] = [
        ("id", info.id),
        ("queue", info.queue),
        ("function", info.function),
        ("args", json.dumps(info.args)[:300]),
        ("kwargs", json.dumps(info.kwargs)[:300]),
        ("status", info.status),
        ("progress", f"{info.progress:g}%"),
        ("priority", str(info.priority)),
        ("attempts", f"{info.attempts_made} of {info.attempts}"),
        ("created", _when(info.created_at)),
        ("scheduled for" if info.status == "scheduled" else "runnable since", _when(info.ready_at)),
        ("started", _when(info.started_at)),
        ("finished", _when(info.finished_at)),
        ("worker", f"{info.worker or '-'} (pod {info.pod or '-'})"),
    ]
    if info.failed_reason:
        rows.append(("failed reason", info.failed_reason))
    if info.result is not None:
        rows.append(("result", json.dumps(info.result)[:500]))
    for k, v in rows:
        t.add_row(k, v)
    return t


@main.command()
@click.argument("queue")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--trace", is_flag=True, help="Also print the last failure's traceback.")
@click.pass_context
def status(ctx: click.Context, queue: str, job_id: str, as_json: bool, trace: bool) -> None:
    """Show one job (the seed's getJobStatus)."""
    conn = _conn(ctx)
    info = _call(lambda: client.get_job(queue, job_id, connection=conn))
    if as_json:
        out.print_json(json.dumps(info.to_dict(), default=str))
        return
    out.print(_job_table(info))
    if trace and info.stacktrace:
        out.print(info.stacktrace, highlight=False, markup=False)


@main.command()
@click.argument("queue")
@click.argument("job_id")
@click.option("--timeout", type=click.FloatRange(min=0), help="Give up after this many seconds (exit 124).")
@click.pass_context
def wait(ctx: click.Context, queue: str, job_id: str, timeout: float | None) -> None:
    """Wait for a job to finish, with a progress bar; exit 0 if it succeeded, 1 if it failed."""
    conn = _conn(ctx)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task(f"{job_id} queued", total=100)

        def update(info: client.JobInfo) -> None:
            bar.update(
                task,
                completed=100 if info.status == "finished" else info.progress,
                description=f"{job_id} {info.status} (attempt {info.attempts_made}/{info.attempts})",
            )

        try:
            info = _call(
                lambda: client.wait(queue, job_id, timeout=timeout, connection=conn, on_update=update)
            )
        except TimeoutError as exc:
            bar.stop()
            _fail(str(exc), 124)
    if info.status == "finished":
        out.print(
            f"job {job_id} finished"
            + (f": {json.dumps(info.result)[:500]}" if info.result is not None else ""),
            highlight=False,
        )
        return
    _fail(f"job {job_id} {info.status}: {info.failed_reason or 'no reason recorded'}")


@main.command()
@click.argument("queue")
@click.argument("job_id")
@click.pass_context
def retry(ctx: click.Context, queue: str, job_id: str) -> None:
    """Put a failed job back in its queue with fresh attempts."""
    conn = _conn(ctx)
    info = _call(lambda: client.retry(queue, job_id, connection=conn))
    out.print(f"job {job_id} is {info.status} again ({info.attempts} attempt(s))", highlight=False)


@main.command()
@click.argument("queue")
@click.argument("job_id")
@click.pass_context
def remove(ctx: click.Context, queue: str, job_id: str) -> None:
    """Delete a job that is not running."""
    conn = _conn(ctx)
    before = _call(lambda: client.remove(queue, job_id, connection=conn))
    out.print(f"removed job {job_id} (it was {before})", highlight=False)


# --------------------------------------------------------------------------------------
# stats


def _stats_dict(s: stats.QueueStats) -> dict[str, Any]:
    d = dict(s.__dict__)
    d["workers"] = [w.__dict__ for w in s.workers]
    return d


@main.command("stats")
@click.argument("queues", nargs=-1)
@click.option("--json", "as_json", is_flag=True)
@click.option("--workers", "show_workers", is_flag=True, help="Also list every worker.")
@click.pass_context
def stats_cmd(ctx: click.Context, queues: tuple[str, ...], as_json: bool, show_workers: bool) -> None:
    """Show queue statistics (all declared queues if none is named)."""
    conn = _conn(ctx)
    names = list(queues) or sorted(_call(lambda: settings.published_queue_names(conn)))
    for q in queues:
        _call(lambda q=q: settings.load(conn, q))  # type: ignore[misc]
    snap = _call(lambda: stats.snapshot(conn, names))
    if as_json:
        out.print_json(json.dumps({q: _stats_dict(s) for q, s in snap.items()}))
        return
    if not names:
        out.print("no queues are declared in this Redis")
        return
    now = time.time()
    t = Table(title="queues")
    for col in (
        "QUEUE",
        "QUEUED",
        "BY PRIORITY 1-5",
        "SCHEDULED",
        "DUE",
        "RUNNING",
        "FAILED",
        "FINISHED",
        "OLDEST",
        "WORKERS",
        "LAST ACTIVITY",
    ):
        t.add_column(col, justify="left" if col in ("QUEUE", "BY PRIORITY 1-5", "LAST ACTIVITY") else "right")
    for q in names:
        s = snap[q]
        busy = sum(w.busy_slots for w in s.workers)
        total = sum(w.slots for w in s.workers)
        idle = "-" if s.last_activity_at is None else f"{_age(now - s.last_activity_at)} ago"
        t.add_row(
            q,
            str(s.queued),
            "/".join(str(s.queued_by_priority[lvl]) for lvl in sorted(s.queued_by_priority)),
            str(s.scheduled),
            str(s.scheduled_due),
            str(s.running) + (f" ({s.lost} lost)" if s.lost else ""),
            str(s.failed),
            str(s.finished),
            _age(s.oldest_queued_seconds) if s.queued else "-",
            f"{len(s.workers)} ({busy}/{total} busy)",
            idle,
        )
    out.print(t)
    if show_workers:
        w = Table(title="workers")
        for col in ("QUEUE", "WORKER", "POD", "STATE", "SLOTS BUSY", "CURRENT JOB"):
            w.add_column(col)
        for q in names:
            for wi in snap[q].workers:
                w.add_row(q, wi.name, wi.pod, wi.state, f"{wi.busy_slots}/{wi.slots}", wi.current_job or "-")
        out.print(w)


if __name__ == "__main__":  # `python -m jobqueue.cli`, same as the `jobqueue` console script
    main()
