"""Where one worker process's floor is at no-op jobs, concurrency 50, beside BullMQ (issue 14 b).

    .venv/bin/python benchmarks/bench_worker_floor.py [--jobs 20000] [--repeat 3]

One redis-server, same run, the contenders taking turns (median of ``--repeat`` runs each):

* ``bullmq``: BullMQ (Node.js, pinned in bench_vs_bullmq.py), one process, concurrency 50;
* ``protocol``: the Redis protocol alone: a ``Worker`` (the real SYNC calls, claims, acks,
  metrics, worker record) driven from one thread that runs each claimed no-op job inline as
  soon as its call returns: no executor threads, no event loop, no hand-offs. The most one
  Python process drains through our scripts; verified like a real worker's drain (each job
  finished once, one result, nothing left in wip);
* ``call``: the executor's own per-job work alone (``run_call``: the JobContext, two
  timestamps, the result's encoding, a Done), in a plain loop: no Redis, no threads;
* ``threads``: 50 job threads (``ThreadExecutor``) running no-op calls handed over as the
  coordinator hands them (``submit`` from the main thread, Done events back through the
  events queue, a new task per Done), no Redis;
* ``asyncio``: ``AsyncExecutor`` fed as the coordinator feeds it (``submit`` from another
  thread, Done events back), no Redis;
* ``worker-thread`` / ``worker-async``: the real ``jobqueue worker --burst`` at concurrency 50;
* ``split-thread`` / ``split-async``: the real worker again (``Worker.run()``) in a child that
  reads each of its threads' CPU time (``/proc/self/task/*/schedstat``) every 20 ms: the
  coordinator's, the job threads' (or the event loop's), the sync thread's, per job.

``--only`` picks sides (BullMQ always runs: the ratios need it); ``--baseline DIR`` adds
``base-thread`` / ``base-async``, the worker of another checkout's ``workers/`` directory,
for an A/B of a change in the same run.

Throughput of the Redis drains (bullmq, protocol, worker-*) is counted from the first job's
start to the last job's end read back from Redis, as bench_vs_bullmq.py counts it; the
Redis-free floors time their loop. For ``protocol`` the child also splits its own time per
job: preparing the SYNC call, the round trip (Redis running the script included), reading
the reply, running the jobs and recording their outcomes, metrics. Table first, JSON last.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import bench_vs_bullmq as vs
from worker_benchlib import emit, redis_server

Q = "bench"
SLOTS = 50
SPLIT_KEY = "bench:floor-split"


# ------------------------------------------------------------------ the floors (child process)


def _task(seq: int, fn: Any) -> Any:
    from jobqueue import executors

    return executors.Task(seq, f"j{seq}", fn, [], {}, Q, 1, 1)


def _allow() -> Any:
    from jobqueue.registry import Allowlist

    allow = Allowlist(("worker_jobs",))
    allow.import_modules()
    return allow


def floor_call(n: int) -> dict[str, Any]:
    from jobqueue import executors

    fn = _allow().lookup("worker_jobs.noop")
    events: executors.Events = queue.SimpleQueue()
    report = executors.ThreadExecutor(SLOTS, events, _allow())._report(0)
    t0 = time.perf_counter()
    for i in range(n):
        events.put(executors.run_call(_task(i, fn), report))
    return {"seconds": time.perf_counter() - t0}


def _handoff(ex: Any, events: Any, fn: Any, n: int) -> float:
    """Keep SLOTS tasks in the executor, one new one per Done, as the coordinator does."""
    from jobqueue import executors

    seq = done = 0
    t0 = time.perf_counter()
    while done < n:
        while seq - done < SLOTS and seq < n:
            seq += 1
            ex.submit(_task(seq, fn))
        ev = events.get()
        while True:
            if isinstance(ev, executors.Done):
                done += 1
            try:
                ev = events.get_nowait()
            except queue.Empty:
                break
    return time.perf_counter() - t0


def floor_executor(kind: str, function: str, n: int) -> dict[str, Any]:
    """``n`` no-op jobs handed to the worker's own executor ``kind`` ("ThreadExecutor",
    "AsyncExecutor") the way its coordinator hands them over; no Redis."""
    from jobqueue import executors

    events: executors.Events = queue.SimpleQueue()
    allow = _allow()
    ex = getattr(executors, kind)(SLOTS, events, allow)
    ex.start()
    seconds = _handoff(ex, events, allow.lookup(function), n)
    ex.stop(kill=False)
    return {"seconds": seconds}


def floor_protocol(url: str, mode: str) -> dict[str, Any]:
    """A real Worker's Redis side, its jobs run inline by the thread that made the call."""
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="jobqueue-floor-"))
    from jobqueue import executors, metrics, worker

    class Inline(executors.Executor):
        def start(self) -> None: ...

        def submit(self, task: executors.Task) -> bool:
            self.events.put(executors.run_call(task, self._report(task.seq)))
            return True

        def cancel(self, seq: int) -> None: ...

        def stop(self, *, kill: bool) -> None: ...

    cfg = worker.WorkerConfig(queue=Q, imports=("worker_jobs",), concurrency=SLOTS, mode=mode, burst=True)  # type: ignore[arg-type]
    w = worker.Worker(url, cfg, metrics.WorkerMetrics(Q))
    w.executor = Inline(SLOTS, w.events, w.allow)
    w.allow.import_modules()
    assert w._wait_for_settings()
    w._register(w.conn)
    split = dict.fromkeys(("prepare", "round_trip", "reply", "run_and_record", "metrics"), 0.0)
    t0 = time.perf_counter()
    while True:
        a = time.perf_counter()
        while w.buffer:
            w._dispatch()
            w._collect(0)
        b = time.perf_counter()
        w._flush_metrics()
        c = time.perf_counter()
        n = w._claim_count()
        if w._should_sync(n):
            call = w._prepare(n)
            d = time.perf_counter()
            w._call(call)
            e = time.perf_counter()
            w._settle(call)
            split["prepare"] += d - c
            split["round_trip"] += e - d
            split["reply"] += time.perf_counter() - e
        elif w._finished():
            break
        else:  # (the real worker's watcher wakes it once the queue signals; here: ask at once)
            w.queue_empty = False
        split["run_and_record"] += b - a
        split["metrics"] += c - b
    seconds = time.perf_counter() - t0
    w._unregister()
    out = {"seconds": seconds, "split_s": split, "calls": w.sync_count}
    w.conn.set(SPLIT_KEY, json.dumps(out))
    return out


def _thread_cpu() -> dict[int, float]:
    """CPU seconds of each thread of this process so far, by native thread id (schedstat's
    time on a CPU, in ns: /proc's utime ticks are too coarse for 50 threads' share)."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0]) / 1e9
        except OSError:  # (ended meanwhile)
            continue
    return out


def floor_worker_split(url: str, mode: str) -> dict[str, Any]:
    """The real worker run in this process, its CPU split by thread: read every 20 ms (threads
    end, and their last reading counts), named by what the thread is."""
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="jobqueue-floor-"))
    from jobqueue import metrics, worker

    cfg = worker.WorkerConfig(queue=Q, imports=("worker_jobs",), concurrency=SLOTS, mode=mode, burst=True)  # type: ignore[arg-type]
    w = worker.Worker(url, cfg, metrics.WorkerMetrics(Q))
    last: dict[int, float] = {}
    names: dict[int, str] = {}
    stop = threading.Event()

    def watch() -> None:
        while True:
            for t in threading.enumerate():
                if t.native_id is not None:
                    names.setdefault(t.native_id, t.name)
            last.update(_thread_cpu())
            if stop.wait(0.02):
                return

    before = _thread_cpu()
    t = threading.Thread(target=watch, name="bench-watch")
    t.start()
    w.run()
    stop.set()
    t.join()
    last.update(_thread_cpu())
    split: dict[str, float] = {}
    for tid, cpu in last.items():
        name = names.get(tid, "?")
        if name == "bench-watch":
            continue
        kind = "coordinator" if name == "bench" else name.split("_")[0]
        split[kind] = split.get(kind, 0.0) + cpu - before.get(tid, 0.0)
    out = {"seconds": 0.0, "split_s": split, "calls": w.sync_count}
    w.conn.set(SPLIT_KEY, json.dumps(out))
    return out


def child(kind: str, n: int, url: str) -> None:
    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "call": lambda: floor_call(n),
        "threads": lambda: floor_executor("ThreadExecutor", "worker_jobs.noop", n),
        "asyncio": lambda: floor_executor("AsyncExecutor", "worker_jobs.aio_noop", n),
        "protocol": lambda: floor_protocol(url, "thread"),
        "split-thread": lambda: floor_worker_split(url, "thread"),
        "split-async": lambda: floor_worker_split(url, "async"),
    }
    cpu = time.process_time()
    out = runs[kind]()
    out["cpu"] = time.process_time() - cpu
    print(json.dumps(out))


# ------------------------------------------------------------------ the run (parent)


def run_child(kind: str, n: int, url: str = "") -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--jobs", str(n), "--url", url],
        env=vs.env(url or "redis://unused"),
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    r: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    r["jobs_per_s"] = round(n / r["seconds"], 1)
    r["cpu_us_per_job"] = round(r["cpu"] / n * 1e6, 1)
    r["ok"] = True
    return r


def child_drain(url: str, conn: Any, n: int, kind: str = "protocol", mode: str = "thread") -> dict[str, Any]:
    """A child drains a filled queue, verified and counted as ours_drain does (its own split
    of the time comes back through Redis: ours_drain discards a drain's output)."""
    cmd = [sys.executable, __file__, "--child", kind, "--jobs", str(n), "--url", url]
    func = "worker_jobs.aio_noop" if mode == "async" else "worker_jobs.noop"
    r = vs.ours_drain(url, conn, n=n, func=func, args=[], mode=mode, concurrency=SLOTS, cmd=cmd)
    split = json.loads(conn.get(SPLIT_KEY))
    r["us_per_job"] = {k: round(v / n * 1e6, 2) for k, v in split["split_s"].items()}
    r["sync_calls"] = split["calls"]
    return r


def baseline_cmd(workers: str, mode: str) -> list[str]:
    """``jobqueue worker`` run from another checkout's workers/ (first on sys.path)."""
    cmd = vs.jobqueue_worker_cmd(Q, mode=mode, concurrency=SLOTS)
    start = f"import sys, runpy; sys.path.insert(0, {workers!r}); runpy.run_module('jobqueue.cli', run_name='__main__')"
    return [cmd[0], "-c", start, *cmd[3:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated sides to run besides bullmq (default: all)")
    ap.add_argument(
        "--baseline",
        default="",
        help="a checkout's workers/ directory: its jobqueue worker drains too (sides base-thread, "
        "base-async), for an A/B of a change in the same run",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--url", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.jobs, a.url)
        return
    n = a.jobs
    modules = vs.install_bullmq()
    sides: dict[str, Callable[[str, Any], dict[str, Any]]] = {
        "bullmq": lambda url, conn: vs.bullmq_drain(modules, url, conn, n=n, kind="noop", concurrency=SLOTS),
        "protocol": lambda url, conn: child_drain(url, conn, n),
        "call": lambda url, conn: run_child("call", n),
        "threads": lambda url, conn: run_child("threads", n),
        "asyncio": lambda url, conn: run_child("asyncio", n),
        "worker-thread": lambda url, conn: vs.ours_drain(
            url, conn, n=n, func="worker_jobs.noop", args=[], mode="thread", concurrency=SLOTS
        ),
        "worker-async": lambda url, conn: vs.ours_drain(
            url, conn, n=n, func="worker_jobs.aio_noop", args=[], mode="async", concurrency=SLOTS
        ),
        # the real worker again, in a child that reads its threads' CPU time (not counted as
        # a floor: the split says where a worker-* side's microseconds go)
        "split-thread": lambda url, conn: child_drain(url, conn, n, "split-thread", "thread"),
        "split-async": lambda url, conn: child_drain(url, conn, n, "split-async", "async"),
    }
    if a.baseline:
        for mode, func in (("thread", "worker_jobs.noop"), ("async", "worker_jobs.aio_noop")):
            sides[f"base-{mode}"] = lambda url, conn, mode=mode, func=func: vs.ours_drain(
                url, conn, n=n, func=func, args=[], mode=mode, concurrency=SLOTS,
                cmd=baseline_cmd(a.baseline, mode),
            )  # fmt: skip
    if a.only:
        keep = {"bullmq", *a.only.split(",")}
        sides = {s: f for s, f in sides.items() if s in keep}
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    with redis_server() as (url, conn):
        for _ in range(a.repeat):
            for side, once in sides.items():
                runs[side].append(once(url, conn))
    rows = {side: vs.median_run(r) for side, r in runs.items()}
    base = rows["bullmq"]["jobs_per_s"]
    print(f"no-op jobs, concurrency {SLOTS}, one process, {n} jobs, median of {a.repeat} (same run)")
    print(
        f"{'side':<14} {'jobs/s':>9} {'x BullMQ':>8} {'µs/job':>7} {'Redis CPU':>9} {'own CPU':>8} "
        f"{'calls/job':>9}  runs"
    )
    for side, r in rows.items():
        redis_us = r.get("redis_cpu_ms_per_1000", "-")
        own_us = r.get("worker_cpu_ms_per_1000", r.get("cpu_us_per_job", "-"))
        print(
            f"{side:<14} {r['jobs_per_s']:>9} {r['jobs_per_s'] / base:>8.2f} {1e6 / r['jobs_per_s']:>7.1f} "
            f"{redis_us:>9} {own_us:>8} {r.get('scripts_per_job', '-'):>9}  "
            f"{r['runs_jobs_per_s']}{'' if r['ok'] else '  CHECKS FAILED'}"
        )
    print(
        "(µs per job: wall = 1/throughput; Redis CPU = the server's; own CPU = the draining "
        "process's, start-up included for the Redis drains, the loop alone for the floors)"
    )
    split = rows["protocol"]["us_per_job"] if "protocol" in rows else {}
    if split:
        print("protocol floor, µs per job: " + ", ".join(f"{k} {v}" for k, v in split.items()))
    for side in ("split-thread", "split-async"):
        if side in rows:
            us = rows[side]["us_per_job"]
            print(f"{side}: CPU µs per job by thread: " + ", ".join(f"{k} {v}" for k, v in us.items()))
    ratios = {side: round(r["jobs_per_s"] / base, 2) for side, r in rows.items() if side != "bullmq"}
    of_floor = {
        f"{side}/protocol": round(r["jobs_per_s"] / rows["protocol"]["jobs_per_s"], 2)
        for side, r in rows.items()
        if "protocol" in rows and (side.startswith("worker-") or side.startswith("base-"))
    }
    if of_floor:
        print("real worker / protocol floor: " + ", ".join(f"{k} {v}" for k, v in of_floor.items()))
    ok = all(r["ok"] for r in rows.values())
    print(f"verification (exactly once, nothing left): {'ok' if ok else 'FAILED'}")
    emit(
        {
            "benchmark": "worker_floor",
            "jobs": n,
            "median_jobs_per_s": {s: r["jobs_per_s"] for s, r in rows.items()},
            "runs_jobs_per_s": {s: r["runs_jobs_per_s"] for s, r in rows.items()},
            "x_bullmq": ratios,
            "of_protocol_floor": of_floor,
            "protocol_us_per_job": split,
            "protocol_sync_calls": rows["protocol"]["sync_calls"] if "protocol" in rows else None,
            "worker_cpu_us_per_job_by_thread": {
                s: rows[s]["us_per_job"] for s in ("split-thread", "split-async") if s in rows
            },
            "spread": {
                s: round(statistics.pstdev(r["runs_jobs_per_s"]) / r["jobs_per_s"], 2)
                for s, r in rows.items()
            },
            "verified": ok,
        }
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
