"""Shared plumbing of the worker benchmarks: a private Redis, worker processes, figures.

Every benchmark starts its own redis-server (hack/devenv.py's RedisServer, no persistence)
so ``python benchmarks/<bench>.py`` is self-contained, runs the contenders one after the
other against the same server, prints a human-readable table and, last, one JSON line.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
for p in (ROOT / "hack", ROOT / "workers", BENCH):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import redis  # noqa: E402

import devenv  # noqa: E402
from jobqueue import JobSpec, enqueue_many, payload, settings  # noqa: E402


@contextmanager
def redis_server() -> Iterator[tuple[str, redis.Redis]]:
    server = devenv.RedisServer().start()
    try:
        yield server.url, redis.Redis.from_url(server.url)
    finally:
        server.stop()


def env(url: str, pod: str = "bench-pod") -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        JOBQUEUE_REDIS_URL=url,
        BENCH_REDIS_URL=url,
        POD_NAME=pod,
        PYTHONPATH=os.pathsep.join([str(BENCH), str(ROOT / "workers"), e.get("PYTHONPATH", "")]),
    )
    e.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return e


def publish(conn: redis.Redis, queue: str, **defaults: Any) -> None:
    settings.publish(
        conn,
        settings.QueueSettings.model_validate(
            {"queueName": queue, "jobDefaults": defaults, "imports": ["worker_jobs"]}
        ),
    )


def jobqueue_worker_cmd(queue: str, *, mode: str, concurrency: int, burst: bool = True) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "jobqueue.cli",
        "worker",
        "--queue",
        queue,
        "--import",
        "worker_jobs",
        "--mode",
        mode,
        "--concurrency",
        str(concurrency),
        "--metrics-port",
        "0",
        "--log-level",
        "WARNING",
    ]
    return [*cmd, "--burst"] if burst else cmd


def run(cmd: Sequence[str], url: str, pod: str = "bench-pod") -> float:
    """Run a command to completion; returns its wall time."""
    t0 = time.perf_counter()
    subprocess.run(list(cmd), env=env(url, pod), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def drain(
    url: str,
    conn: redis.Redis,
    *,
    queue: str,
    func: str,
    args: Sequence[Any],
    n: int,
    jobqueue_mode: str | None = None,
    concurrency: int = 1,
    rq_worker_class: str = "",
) -> dict[str, Any]:
    """Fill ``queue`` with n calls of ``func`` and drain it with one worker in burst mode:
    ``jobqueue worker --mode jobqueue_mode``, or ``rq worker -w rq_worker_class`` (JSON
    serializer, WARNING logs, like ours). Returns throughput figures read from the job hashes
    and a check of RQ's registries afterwards."""
    conn.flushdb()
    if jobqueue_mode:
        publish(conn, queue)
        jobs = [JobSpec(func, list(args)) for _ in range(n)]
        ids = [r.id for r in enqueue_many(queue, jobs, connection=conn)]
        wall = run(jobqueue_worker_cmd(queue, mode=jobqueue_mode, concurrency=concurrency), url)
        fields = ("jq_start", "jq_end")
    else:
        from rq import Queue
        from rq.serializers import JSONSerializer

        q = Queue(queue, connection=conn, serializer=JSONSerializer)
        ids = [j.id for j in q.enqueue_many([Queue.prepare_data(func, tuple(args)) for _ in range(n)])]
        wall = run(
            [
                sys.executable,
                "-m",
                "rq.cli",
                "worker",
                "--burst",
                "-w",
                rq_worker_class,
                "-S",
                "rq.serializers.JSONSerializer",
                "--url",
                url,
                "--logging_level",
                "WARNING",
                queue,
            ],
            url,
        )
        fields = ("started_at", "ended_at")
    pipe = conn.pipeline(transaction=False)
    for i in ids:
        pipe.hmget(f"rq:job:{i}", "status", *fields)
    rows = pipe.execute()

    def ts(raw: bytes) -> float:
        text = raw.decode()
        return float(text) if jobqueue_mode else payload.utcparse(text) or 0.0

    busy = span([(ts(start), ts(end)) for _, start, end in rows])
    checks = {
        "all_finished": all(r[0] == b"finished" for r in rows),
        "finished_registry": conn.zcard(f"rq:finished:{queue}") == n,
        "queue_empty": conn.llen(f"rq:queue:{queue}") == 0,
        "wip_empty": conn.zcard(f"rq:wip:{queue}") == 0,
        "failed_empty": conn.zcard(f"rq:failed:{queue}") == 0,
    }
    checks["ok"] = all(checks.values())
    return {
        "jobs": n,
        "finished": sum(1 for r in rows if r[0] == b"finished"),
        "wall_s": round(wall, 2),
        "busy_s": round(busy, 3),
        "jobs_per_s": round(n / busy, 1),
        "registries": checks,
    }


def span(rows: list[tuple[float, float]]) -> float:
    """Seconds from the first job's start to the last job's end."""
    return max(e for _, e in rows) - min(s for s, _ in rows)


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank), rounded to ms; None for no values (JSON has no NaN)."""
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def emit(summary: dict[str, Any]) -> None:
    """The machine-readable result: always the last line of a benchmark's output."""
    print(json.dumps(summary, sort_keys=True), flush=True)
