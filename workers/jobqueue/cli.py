"""The ``jobqueue`` command: the worker, and the seed's admin endpoints for people and cron.

``jobqueue worker`` is what every worker pod runs (docs/architecture.md, "The worker pod
contract"); ``jobqueue enqueue`` is what a RecurringJob's CronJob pod runs — it exits 0 when
the job id already exists, so a retried pod or a duplicated tick is harmless. The commands
that show things take ``-o table|wide|json|yaml`` like kubectl: ``table`` fits 80 columns,
``wide`` adds the rest, and both are plain text that reads the same in a terminal and a pipe.
Every command takes the Redis URL from ``--redis-url`` or ``JOBQUEUE_REDIS_URL``. A queue is
named as in Redis (``ei:update``), or, with ``-n NAMESPACE``, by its JobQueue (``-n prod
ei-update``), which :mod:`jobqueue.kube` resolves like kubectl would.

Exit codes (stable; scripts and the CronJob's podFailurePolicy rely on them): see ``ExitCode``.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import click
import redis
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from jobqueue import __version__, admin, client, kube, settings, stats
from jobqueue._redis import URL_ENV, connect
from jobqueue.errors import InvalidJobError, JobQueueError, UnknownJobError
from jobqueue.redaction import redact, scrub
from jobqueue.settings import UnknownQueueError


class ExitCode(enum.IntEnum):
    """What the ``jobqueue`` command's exit status means (documented in docs/jobs.md)."""

    OK = 0  #: done; a duplicate enqueue is success too
    FAILED = 1  #: the job failed (``wait``), or its state refuses the operation (retry a running job)
    USAGE = 2  #: bad flags, JSON, job options or Redis URL: running it again cannot help
    NOT_FOUND = 3  #: no such queue or job
    REDIS = 4  #: Redis unreachable or returned an error: worth retrying
    TIMEOUT = 124  #: ``wait --timeout`` ran out (the job is still pending or running), like timeout(1)


#: Overrides --metrics-port: on one machine local "pods" share the network (hack/podrunner.py).
METRICS_PORT_ENV = "JOBQUEUE_METRICS_PORT"
out = Console(soft_wrap=True)  # never break messages: logs and scripts read them
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def _fail(message: str, code: ExitCode) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    sys.exit(code)


def _client(url: str) -> redis.Redis:
    """A client for ``url``, or exit with a message that shows no credential of it (CronJob
    pods run this command: what it prints ends up in pod logs)."""
    try:
        return connect(url)
    except ValueError as exc:  # (redis-py's messages may quote a piece of the URL)
        _fail(scrub(f"invalid Redis URL {redact(url)}: {exc}", url) if url else str(exc), ExitCode.USAGE)


#: Where the CLI finds a Redis URL in a cluster (docs/jobs.md, "In the cluster"): a worker pod
#: has its namespace's (the operator's may be another database, under namespace isolation).
IN_CLUSTER_HINT = "kubectl exec -n NAMESPACE deploy/JOBQUEUE-worker -- jobqueue stats"


def _conn(ctx: click.Context) -> redis.Redis:
    url = ctx.obj["redis_url"] or os.environ.get(URL_ENV) or ""
    if not url:
        _fail(
            f"no Redis URL: pass --redis-url or set {URL_ENV} (worker pods have it set: {IN_CLUSTER_HINT})",
            ExitCode.USAGE,
        )
    conn = _client(url)
    try:
        conn.ping()
    except redis.RedisError as exc:
        _fail(scrub(f"cannot reach Redis at {redact(url)}: {exc}", url), ExitCode.REDIS)
    return conn


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (UnknownQueueError, UnknownJobError) as exc:
        _fail(str(exc), ExitCode.NOT_FOUND)
    except InvalidJobError as exc:
        _fail(str(exc), ExitCode.USAGE)
    except JobQueueError as exc:
        _fail(str(exc), ExitCode.FAILED)
    except redis.RedisError as exc:
        _fail(scrub(f"Redis error: {exc}"), ExitCode.REDIS)


def _queue(ctx: click.Context, conn: redis.Redis, name: str) -> str:
    """The RQ queue a QUEUE argument names: itself, or with ``-n`` the JobQueue's queue."""
    namespace = ctx.obj["namespace"]
    if not namespace:
        return name
    try:
        return kube.resolve(conn, namespace, name).queue
    except kube.NotResolved as exc:
        _fail(str(exc), ExitCode.NOT_FOUND)
    except redis.RedisError as exc:
        _fail(scrub(f"Redis error: {exc}"), ExitCode.REDIS)


OUTPUT_FORMATS = ("table", "wide", "json", "yaml")


def output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``-o table|wide|json|yaml`` (kubectl's flag), and ``--json``, kept as ``-o json``."""
    fn = click.option("--json", "as_json", is_flag=True, hidden=True, help="Same as -o json.")(fn)
    return click.option(
        "-o",
        "--output",
        type=click.Choice(OUTPUT_FORMATS),
        default="table",
        show_default=True,
        help="table fits 80 columns; wide shows every column; json and yaml for scripts.",
    )(fn)


def _chosen(output: str, as_json: bool) -> str:
    return "json" if as_json else output


def _json(value: Any) -> str:
    """JSON of a value from a job record, which may nest deeper than the encoder goes."""
    try:
        return json.dumps(value, default=str)
    except (RecursionError, ValueError) as exc:
        return json.dumps(f"<cannot be shown: {type(exc).__name__}>")


def _print_data(data: Any, output: str) -> None:
    try:
        text = json.dumps(data, indent=2, default=str)
    except RecursionError:  # (a job's arguments or result: shown as text instead)
        data = {k: json.loads(_json(v)) for k, v in data.items()}
        text = json.dumps(data, indent=2, default=str)
    if output == "json":
        click.echo(text)
    else:
        click.echo(yaml.safe_dump(json.loads(text), sort_keys=False).rstrip())


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """kubectl's layout: left-aligned columns three spaces apart, never wrapped or cut, so
    it reads the same at any terminal width and through ``grep``, ``awk`` or a file."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        click.echo("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


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


_log_level = click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="jobqueue", message="%(prog)s %(version)s")
@click.option("--redis-url", envvar=URL_ENV, show_envvar=True, help="Redis holding the queues.")
@click.option(
    "-n",
    "--namespace",
    help="Name queues by their JobQueue in this namespace (`-n prod ei-update`), resolved through "
    "the kubeconfig like kubectl ($KUBECONFIG, ~/.kube/config, or the pod's service account), else "
    "the settings in Redis, else taken as a queue name; `stats` shows only this namespace.",
)
@click.pass_context
def main(ctx: click.Context, redis_url: str | None, namespace: str | None) -> None:
    """Run workers, enqueue jobs and inspect queues of jobqueue-operator."""
    ctx.obj = {"redis_url": redis_url, "namespace": namespace}
    # A job record may hold text no terminal encoding can print (lone surrogates from JSON
    # escapes): print those as \\udxxxx escapes rather than die on them.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")


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
@_log_level
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
        _fail(f"no Redis URL: pass --redis-url or set {URL_ENV}", ExitCode.USAGE)
    _client(url).close()  # a malformed URL is refused here, with its credentials hidden
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
            _fail(f"{METRICS_PORT_ENV}={port_env!r} is not a port number", ExitCode.USAGE)
        metrics_port = int(port_env)
    try:
        if metrics_port:
            try:
                metrics_mod.serve(metrics_port)
            except OSError as exc:
                _fail(f"cannot serve metrics on port {metrics_port}: {exc}", ExitCode.FAILED)
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
            _fail(str(exc), ExitCode.FAILED)
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
@click.option("--rate-key", help="What the queue's keyRateLimit counts it against (a tenant, an API host).")
@click.option(
    "--depends-on",
    "depends_on",
    multiple=True,
    metavar="ID",
    help="Run only after job ID has finished (repeat for several; RQ's depends_on). docs/flows.md",
)
@click.option(
    "--allow-failure", is_flag=True, help="With --depends-on: run once they have ended, even if one failed."
)
@output_options
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
    rate_key: str | None,
    depends_on: tuple[str, ...],
    allow_failure: bool,
    output: str,
    as_json: bool,
) -> None:
    """Add one job to QUEUE (FUNCTION is the job's dotted name)."""
    if allow_failure and not depends_on:
        _fail(
            "--allow-failure needs --depends-on (it says what to do when a dependency fails)", ExitCode.USAGE
        )
    args = _json_arg(args_json, "--args-json", list)
    kwargs = _json_arg(kwargs_json, "--kwargs-json", dict)
    options = _json_arg(options_json, "--options-json", dict)
    conn = _conn(ctx)
    queue = _queue(ctx, conn, queue)
    res = _call(
        lambda: client.enqueue(
            queue,
            function,
            *args,
            kwargs=kwargs,
            job_id=job_id,
            delay=delay,
            priority=priority,
            rate_key=rate_key,
            depends_on=depends_on,
            allow_failure=allow_failure,
            connection=conn,
            **options,
        )
    )
    if _chosen(output, as_json) in ("json", "yaml"):
        _print_data(res.__dict__, _chosen(output, as_json))
    elif res.duplicate:
        out.print(
            f"duplicate: job [bold]{escape(res.id)}[/] already exists in {escape(queue)} "
            f"(status {escape(res.status)}); nothing was added",
            highlight=False,
        )
    else:
        out.print(
            f"enqueued job [bold]{escape(res.id)}[/] into {escape(queue)} (status {res.status})",
            highlight=False,
        )


# --------------------------------------------------------------------------------------
# job status, wait, retry, remove


def _job_rows(info: client.JobInfo, wide: bool) -> list[tuple[str, str]]:
    def shown(value: Any, limit: int) -> str:
        text = _json(value)
        return text if wide or len(text) <= limit else text[: limit - 1] + "…"

    rows: list[tuple[str, str]] = [
        ("id", info.id),
        ("queue", info.queue),
        ("function", info.function),
        ("args", shown(info.args, 60)),
        ("kwargs", shown(info.kwargs, 60)),
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
        rows.append(("result", shown(info.result, 60)))
    return rows


@main.command()
@click.argument("queue")
@click.argument("job_id")
@output_options
@click.option("--trace", is_flag=True, help="Also print the last failure's traceback.")
@click.pass_context
def status(
    ctx: click.Context, /, *, queue: str, job_id: str, output: str, as_json: bool, trace: bool
) -> None:
    """Show one job (the seed's getJobStatus)."""
    conn = _conn(ctx)
    queue = _queue(ctx, conn, queue)
    info = _call(lambda: client.get_job(queue, job_id, connection=conn))
    output = _chosen(output, as_json)
    if output in ("json", "yaml"):
        _print_data(info.to_dict(), output)
        return
    rows = _job_rows(info, wide=output == "wide")
    width = max(len(k) for k, _ in rows) + 1
    for key, value in rows:  # like `kubectl describe`: one "key: value" per line
        click.echo(f"{key + ':':<{width}} {value}")
    if trace and info.stacktrace:
        click.echo(info.stacktrace.rstrip())


@main.command()
@click.argument("queue")
@click.argument("job_id")
@click.option("--timeout", type=click.FloatRange(min=0), help="Give up after this many seconds (exit 124).")
@click.pass_context
def wait(ctx: click.Context, queue: str, job_id: str, timeout: float | None) -> None:
    """Wait for a job to finish, with a progress bar; exit 0 if it succeeded, 1 if it failed."""
    conn = _conn(ctx)
    queue = _queue(ctx, conn, queue)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task(escape(f"{job_id} queued"), total=100)

        def update(info: client.JobInfo) -> None:
            bar.update(
                task,
                completed=100 if info.status == "finished" else info.progress,
                description=escape(f"{job_id} {info.status} (attempt {info.attempts_made}/{info.attempts})"),
            )

        try:
            info = _call(
                lambda: client.wait(queue, job_id, timeout=timeout, connection=conn, on_update=update)
            )
        except TimeoutError as exc:
            bar.stop()
            _fail(str(exc), ExitCode.TIMEOUT)
    if info.status == "finished":
        out.print(
            f"job {job_id} finished" + (f": {_json(info.result)[:500]}" if info.result is not None else ""),
            highlight=False,
            markup=False,  # (records may hold anything: never read them as markup)
        )
        return
    _fail(f"job {job_id} {info.status}: {info.failed_reason or 'no reason recorded'}", ExitCode.FAILED)


def _duration(value: str | None) -> float | None:
    """Seconds of ``--older-than``: a number of seconds, or 90s, 15m, 2h, 7d, 1h30m."""
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return float(value)
    except ValueError:
        pass
    total, number = 0.0, ""
    for ch in value.strip():
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number:
            total += float(number) * units[ch]
            number = ""
        else:
            number = "x"
            break
    if number or not value.strip():
        raise click.BadParameter(
            f"{value!r} is not a duration (seconds, or e.g. 90s, 15m, 2h, 7d, 1h30m)",
            param_hint="--older-than",
        )
    return total


def bulk_options(states: Sequence[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--state`` and its filters, for the commands that take one job id or a whole state."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(
            [
                click.option(
                    "--state",
                    type=click.Choice(states),
                    help="Every job in this state instead of one JOB_ID (batches of "
                    f"{admin.BULK_BATCH}, each atomic; safe while workers run).",
                ),
                click.option(
                    "--older-than",
                    help="With --state: only jobs that entered it at least this long "
                    "ago (seconds, or 90s, 15m, 2h, 7d).",
                ),
                click.option(
                    "--function",
                    "function_name",
                    metavar="DOTTED.NAME",
                    help="With --state: only jobs of this function.",
                ),
                click.option("--dry-run", is_flag=True, help="With --state: count and list, change nothing."),
            ]
        ):
            fn = option(fn)
        return output_options(fn)

    return wrap


def _bulk_run(
    ctx: click.Context,
    queue: str,
    job_id: str | None,
    *,
    state: str | None,
    older_than: str | None,
    function_name: str | None,
    dry_run: bool,
    output: str,
    bulk: Callable[..., admin.BulkResult],
) -> bool:
    """Run the ``--state`` form of a command; False: the one-job form applies."""
    if job_id is not None and state is not None:
        raise click.UsageError("give either JOB_ID or --state, not both")
    if state is None:
        if job_id is None:
            raise click.UsageError("give a JOB_ID, or --state for every job in a state")
        if older_than or function_name or dry_run:
            raise click.UsageError("--older-than, --function and --dry-run go with --state")
        return False
    seconds = _duration(older_than)
    conn = _conn(ctx)
    res = _call(
        lambda: _usage(
            lambda: bulk(
                queue, state, older_than=seconds, function=function_name, dry_run=dry_run, connection=conn
            )
        )
    )
    if output in ("json", "yaml"):
        _print_data(res.__dict__, output)
        return True
    verb = {"retry": "retried", "remove": "removed"}[res.action]
    if res.dry_run:
        line = f"dry run: would {res.action} {res.done} {res.state} job(s) of {queue}; nothing changed"
    else:
        line = f"{verb} {res.done} {res.state} job(s) of {queue}"
    if res.skipped:
        line += f" ({res.skipped} left alone: they changed state meanwhile)"
    out.print(line, highlight=False, markup=False)
    if output == "wide" or res.dry_run:
        for job in res.ids:
            click.echo(job)
    return True


def _usage(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except ValueError as exc:
        if isinstance(exc, JobQueueError):
            raise
        _fail(str(exc), ExitCode.USAGE)


@main.command()
@click.argument("queue")
@click.argument("job_id", required=False)
@bulk_options(admin.RETRY_STATES)
@click.pass_context
def retry(
    ctx: click.Context,
    /,
    *,
    queue: str,
    job_id: str | None,
    state: str | None,
    older_than: str | None,
    function_name: str | None,
    dry_run: bool,
    output: str,
    as_json: bool,
) -> None:
    """Put a failed job (or, with --state failed, every failed job) back in its queue with
    fresh attempts."""
    if _bulk_run(
        ctx,
        queue,
        job_id,
        state=state,
        older_than=older_than,
        function_name=function_name,
        dry_run=dry_run,
        output=_chosen(output, as_json),
        bulk=admin.retry_jobs,
    ):
        return
    assert job_id is not None
    conn = _conn(ctx)
    queue = _queue(ctx, conn, queue)
    info = _call(lambda: client.retry(queue, job_id, connection=conn))
    out.print(
        f"job {job_id} is {info.status} again ({info.attempts} attempt(s))", highlight=False, markup=False
    )


@main.command()
@click.argument("queue")
@click.argument("job_id", required=False)
@bulk_options(admin.REMOVE_STATES)
@click.pass_context
def remove(
    ctx: click.Context,
    /,
    *,
    queue: str,
    job_id: str | None,
    state: str | None,
    older_than: str | None,
    function_name: str | None,
    dry_run: bool,
    output: str,
    as_json: bool,
) -> None:
    """Delete a job that is not running (or, with --state, every job in that state: a purge)."""
    if _bulk_run(
        ctx,
        queue,
        job_id,
        state=state,
        older_than=older_than,
        function_name=function_name,
        dry_run=dry_run,
        output=_chosen(output, as_json),
        bulk=admin.remove_jobs,
    ):
        return
    assert job_id is not None
    conn = _conn(ctx)
    queue = _queue(ctx, conn, queue)
    before = _call(lambda: client.remove(queue, job_id, connection=conn))
    out.print(f"removed job {job_id} (it was {before})", highlight=False, markup=False)


@main.command()
@click.argument("queue")
@click.argument("job_id")
@click.option(
    "--wait", "wait_end", is_flag=True, help="Wait until the job has ended (exit 0 once it is canceled)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=30,
    show_default=True,
    help="With --wait: give up after this many seconds (exit 124).",
)
@click.option("--by", help="Who cancels it (recorded in the job's reason); default: $USER.")
@click.pass_context
def cancel(
    ctx: click.Context, /, *, queue: str, job_id: str, wait_end: bool, timeout: float, by: str | None
) -> None:
    """Cancel a job: a pending one never starts; a running one is stopped (process and async
    mode within a second; thread mode: the job is asked, and abandoned at its timeout). It
    ends canceled and is never retried."""
    conn = _conn(ctx)
    res = _call(lambda: client.cancel(queue, job_id, by=by or os.environ.get("USER"), connection=conn))
    if not res.stopping:
        out.print(f"canceled job {job_id} (it was {res.previous_status})", highlight=False, markup=False)
        return
    out.print(
        f"job {job_id} is running on {res.worker or 'a worker'}: asked it to stop",
        highlight=False,
        markup=False,
    )
    if wait_end:
        try:
            info = _call(lambda: client.wait(queue, job_id, timeout=timeout, connection=conn))
        except TimeoutError as exc:
            _fail(str(exc), ExitCode.TIMEOUT)
        out.print(
            f"job {job_id} {info.status}" + (f": {info.failed_reason}" if info.failed_reason else ""),
            highlight=False,
            markup=False,
        )
        if info.status != "canceled":
            sys.exit(ExitCode.FAILED)


@main.command()
@click.argument("queue")
@click.option(
    "--state",
    type=click.Choice(admin.STATES),
    required=True,
    help="queued (by priority, oldest first), scheduled (by due time), started (running), "
    "finished, failed or canceled (newest first).",
)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True, help="Jobs to skip.")
@click.option(
    "--limit", type=click.IntRange(1, admin.MAX_PAGE), default=50, show_default=True, help="Jobs to show."
)
@output_options
@click.pass_context
def jobs(
    ctx: click.Context, /, *, queue: str, state: str, offset: int, limit: int, output: str, as_json: bool
) -> None:
    """List a page of QUEUE's jobs in one state (-o json for scripts: total, offset, jobs)."""
    conn = _conn(ctx)
    page = _call(lambda: admin.list_jobs(queue, state, offset=offset, limit=limit, connection=conn))
    output = _chosen(output, as_json)
    if output in ("json", "yaml"):
        data = {k: v for k, v in page.__dict__.items() if k != "jobs"}
        data["jobs"] = [j.to_dict() for j in page.jobs]
        _print_data(data, output)
        return
    now = time.time()

    def when(info: client.JobInfo) -> str:
        ended = state in ("finished", "failed", "canceled", "started")
        at = (info.finished_at or info.started_at) if ended else info.ready_at
        if at is None:
            return "-"
        return _age(abs(now - at.timestamp())) + (" ago" if at.timestamp() <= now else " ahead")

    headers = ["ID", "FUNCTION", "PRIO", "ATTEMPTS", "SINCE"]
    rows = [
        [j.id, j.function, str(j.priority), f"{j.attempts_made}/{j.attempts}", when(j)] for j in page.jobs
    ]
    if output == "wide" or state in ("failed", "canceled"):
        headers.append("REASON")
        for row, j in zip(rows, page.jobs, strict=True):
            reason = j.failed_reason or "-"
            row.append(reason if output == "wide" or len(reason) <= 60 else reason[:59] + "…")
    if rows:
        _print_table(headers, rows)
    shown = f"{offset + 1}-{offset + len(rows)}" if rows else "none"
    click.echo(f"{state}: {page.total} job(s) in {queue}; showing {shown}", err=True)


# --------------------------------------------------------------------------------------
# pause, resume


@main.command()
@click.argument("queue")
@click.option("--by", help="Who pauses it (recorded, shown by `stats`); default: $USER.")
@click.pass_context
def pause(ctx: click.Context, queue: str, by: str | None) -> None:
    """Pause QUEUE: producers can still enqueue, workers take nothing new (running jobs
    finish), the autoscaler holds its workers at minReplicas. Undo with `jobqueue resume`."""
    conn = _conn(ctx)
    queue = _queue(ctx, conn, queue)
    state = _call(lambda: admin.pause(queue, by=by or os.environ.get("USER"), connection=conn))
    out.print(f"queue {queue} is paused (since {_when(state.since)}, by {state.by or '-'})", highlight=False)


@main.command()
@click.argument("queue")
@click.pass_context
def resume(ctx: click.Context, queue: str) -> None:
    """Resume a paused QUEUE: workers take its jobs again within about a second."""
    conn = _conn(ctx)
    queue = _queue(ctx, conn, queue)
    was = _call(lambda: admin.resume(queue, connection=conn))
    out.print(f"queue {queue} {'resumed' if was else 'was not paused'}", highlight=False)


# --------------------------------------------------------------------------------------
# the admin API and web UI

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (pods: 0.0.0.0).")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    envvar="JOBQUEUE_API_PORT",
    show_envvar=True,
)
@click.option(
    "--auth",
    "auth_mode",
    type=click.Choice(["kubernetes", "none"]),
    default="kubernetes",
    show_default=True,
    help="kubernetes: bearer tokens checked with TokenReview and SubjectAccessReview ($KUBECONFIG or "
    "in-cluster); none: everyone may do everything (loopback addresses only).",
)
@_log_level
@click.pass_context
def api(ctx: click.Context, host: str, port: int, auth_mode: str, log_level: str) -> None:
    """Serve the admin HTTP API (/api/v1, OpenAPI at /docs) and the jobs web UI (/)."""
    # imported here: the worker, which every pod runs, never loads the web stack
    import uvicorn  # noqa: PLC0415

    from jobqueue.api import app as api_app  # noqa: PLC0415
    from jobqueue.api import auth  # noqa: PLC0415

    if auth_mode == "none" and host not in LOOPBACK:
        _fail(
            f"--auth none serves everything to anyone: only on a loopback address, not {host!r}",
            ExitCode.USAGE,
        )
    conn = _conn(ctx)
    authorizer = auth.NoAuth() if auth_mode == "none" else auth.KubernetesAuthorizer()
    application = api_app.create_app(connection=conn, authorizer=authorizer)
    uvicorn.run(application, host=host, port=port, log_level=log_level.lower())


# --------------------------------------------------------------------------------------
# stats


def _stats_dict(s: stats.QueueStats, owner: settings.QueueSettings | None) -> dict[str, Any]:
    d = dict(s.__dict__)
    d["workers"] = [w.__dict__ for w in s.workers]
    d["namespace"], d["jobqueue"] = (owner.namespace, owner.jobqueue) if owner else (None, None)
    return d


def _stats_row(s: stats.QueueStats, owner: settings.QueueSettings | None, now: float) -> dict[str, str]:
    """Every column of ``stats -o wide``, in order; ``TABLE_COLUMNS`` are the 80-column few.
    A queue no JobQueue declares (published by hand, or by an operator too old to say) has
    NAMESPACE ``-`` and its queue name as JOBQUEUE: the name to give the commands without ``-n``."""
    if owner is not None and owner.namespace and owner.jobqueue:
        namespace, name = owner.namespace, owner.jobqueue
    else:
        namespace, name = "-", s.queue
    return {
        "NAMESPACE": namespace,
        "JOBQUEUE": name + (" (paused)" if s.paused else "") + (" (rate-limited)" if s.rate_limited else ""),
        "QUEUE": s.queue,
        "QUEUED": str(s.queued),
        "BY PRIORITY 1-5": "/".join(str(s.queued_by_priority[p]) for p in sorted(s.queued_by_priority)),
        "SCHEDULED": str(s.scheduled),
        "DUE": str(s.scheduled_due),
        "RUNNING": str(s.running),
        "LOST": str(s.lost),
        "FAILED": str(s.failed),
        "FINISHED": str(s.finished),
        "WORKERS": str(len(s.workers)),
        "SLOTS BUSY": f"{sum(w.busy_slots for w in s.workers)}/{sum(w.slots for w in s.workers)}",
        "OLDEST": _age(s.oldest_queued_seconds) if s.queued else "-",
        "LAST ACTIVITY": "-" if s.last_activity_at is None else f"{_age(now - s.last_activity_at)} ago",
    }


TABLE_COLUMNS = ("NAMESPACE", "JOBQUEUE", "QUEUED", "RUNNING", "FAILED", "WORKERS", "OLDEST")


def _owners(conn: redis.Redis, names: Sequence[str]) -> dict[str, settings.QueueSettings | None]:
    """Each queue's published settings (its namespace and JobQueue), None where withdrawn."""
    found: dict[str, settings.QueueSettings | None] = {}
    for q in names:
        try:
            found[q] = settings.load(conn, q)
        except settings.UnknownQueueError:
            found[q] = None
    return found


@main.command("stats")
@click.argument("queues", nargs=-1)
@output_options
@click.option("--workers", "show_workers", is_flag=True, help="Also list every worker.")
@click.pass_context
def stats_cmd(
    ctx: click.Context, /, *, queues: tuple[str, ...], output: str, as_json: bool, show_workers: bool
) -> None:
    """Show queue statistics (all declared queues if none is named; with -n, that namespace's)."""
    conn = _conn(ctx)
    namespace = ctx.obj["namespace"]
    names = [_queue(ctx, conn, q) for q in queues] or sorted(
        _call(lambda: settings.published_queue_names(conn))
    )
    owners = _call(lambda: _owners(conn, names))
    for q in names if queues else ():
        if owners[q] is None:
            _fail(str(settings.UnknownQueueError(q)), ExitCode.NOT_FOUND)
    if namespace and not queues:
        names = [q for q in names if (owner := owners[q]) is not None and owner.namespace == namespace]
    snap = _call(lambda: stats.snapshot(conn, names))
    output = _chosen(output, as_json)
    if output in ("json", "yaml"):
        _print_data({q: _stats_dict(s, owners[q]) for q, s in snap.items()}, output)
        return
    if not names:
        click.echo(
            f"no queues of namespace {namespace} are declared in this Redis"
            if namespace
            else "no queues are declared in this Redis"
        )
        return
    now = time.time()
    rows = {q: _stats_row(snap[q], owners[q], now) for q in names}
    columns = list(rows[names[0]]) if output == "wide" else list(TABLE_COLUMNS)
    if namespace:  # like kubectl -n: the namespace goes without saying
        columns.remove("NAMESPACE")
    _print_table(columns, [[rows[q][c] for c in columns] for q in names])
    if show_workers:
        click.echo()
        _print_table(
            ["QUEUE", "WORKER", "POD", "STATE", "SLOTS BUSY", "CURRENT JOB"],
            [
                [q, w.name, w.pod, w.state, f"{w.busy_slots}/{w.slots}", w.current_job or "-"]
                for q in names
                for w in snap[q].workers
            ],
        )


if __name__ == "__main__":  # `python -m jobqueue.cli`, same as the `jobqueue` console script
    main()
