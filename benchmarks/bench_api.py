"""What the admin API (`jobqueue api`) costs over the library it goes through.

    .venv/bin/python benchmarks/bench_api.py [--requests 300] [--jobs 2000]

The seed's eleven queues are published in a fresh Redis with ``--jobs`` jobs spread over
them (queued on several levels, delayed, failed). Then, with one client and the server on
loopback (``--auth none``: this measures HTTP, validation and JSON, not the Kubernetes
reviews, which are cached for 10 s anyway):

* ``GET /api/v1/queues`` — every queue with counts and workers (what the web UI polls every 2 s);
* ``GET /api/v1/queues/ei:update/jobs?state=queued&limit=50`` — one page of jobs;

each against its baseline in the same run: the same call to the library in-process
(``admin.overview()``, ``admin.list_jobs(...)``). Figures: p50 and p95 latency in ms, and the
ratio API / library at p50.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import yaml

from jobqueue import JobSpec, admin, enqueue_many, settings
from worker_benchlib import ROOT, emit, env, median, pct, redis_server


def seed_queues() -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((ROOT / "manifests" / "samples" / "jobqueues.yaml").read_text())
    return [d["spec"] for d in docs]


def fill(conn: Any, jobs: int) -> list[str]:
    names = []
    for spec in seed_queues():
        q = spec["queueName"]
        names.append(q)
        settings.publish(
            conn,
            settings.QueueSettings.model_validate(
                {
                    "queueName": q,
                    "namespace": "glec",
                    "jobqueue": q.replace(":", "-"),
                    "priority": spec["priority"],
                    "concurrency": spec["concurrency"],
                    "imports": ["glec_jobs"],
                    "jobDefaults": spec["jobDefaults"],
                }
            ),
        )
    per = jobs // len(names)
    for q in names:
        enqueue_many(
            q,
            [
                JobSpec("glec_jobs.noop", (i,), priority=1 + i % 5, delay=600 if i % 7 == 0 else None)
                for i in range(per)
            ],
            connection=conn,
        )
        for i in range(per // 20):  # some failed jobs, as the failed registry holds them
            conn.zadd(f"rq:failed:{q}", {f"gone-{q}-{i}": time.time() + 3600})
    return names


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return reply.read()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=2000)
    args = ap.parse_args()
    with redis_server() as (url, conn):
        fill(conn, args.jobs)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jobqueue.cli",
                "api",
                "--auth",
                "none",
                "--port",
                str(port),
                "--log-level",
                "WARNING",
            ],
            env=env(url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while not _up(base):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("jobqueue api did not start")
                time.sleep(0.1)
            results: dict[str, Any] = {}
            cases = {
                "all_queues": (lambda: get(f"{base}/api/v1/queues"), lambda: admin.overview(connection=conn)),
                "jobs_page": (
                    lambda: get(f"{base}/api/v1/queues/ei:update/jobs?state=queued&limit=50"),
                    lambda: admin.list_jobs("ei:update", "queued", limit=50, connection=conn),
                ),
            }
            for name, (api_call, library_call) in cases.items():
                timed(api_call, 20)  # warm-up: connections, scripts loaded
                timed(library_call, 20)
                api_ms, lib_ms = timed(api_call, args.requests), timed(library_call, args.requests)
                api_p50, lib_p50 = median(api_ms), median(lib_ms)
                ratio = round(api_p50 / lib_p50, 2) if api_p50 and lib_p50 else None
                print(
                    f"{name:10} API p50 {api_p50} ms, p95 {pct(api_ms, 0.95)} ms | library p50 "
                    f"{lib_p50} ms, p95 {pct(lib_ms, 0.95)} ms | API / library at p50: {ratio}x"
                )
                results[name] = {
                    "api_p50_ms": api_p50,
                    "api_p95_ms": pct(api_ms, 0.95),
                    "library_p50_ms": lib_p50,
                    "library_p95_ms": pct(lib_ms, 0.95),
                    "ratio_p50": ratio,
                }
        finally:
            proc.terminate()
            proc.wait(10)
    emit(
        {
            "benchmark": "api",
            "queues": len(seed_queues()),
            "jobs": args.jobs,
            "requests": args.requests,
            "cpus": os.cpu_count(),
            **results,
        }
    )


def _up(base: str) -> bool:
    try:
        return get(f"{base}/healthz") == b'{"status":"ok"}'
    except OSError:
        return False


if __name__ == "__main__":
    main()
