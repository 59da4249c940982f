"""jobqueue's worker and client against BullMQ (Node.js, the seed's engine), side by side.

    .venv/bin/python benchmarks/bench_vs_bullmq.py [--noop-jobs 20000] [--c1-jobs 5000]
                                                   [--io-jobs 5000] [--bulk-jobs 20000]
                                                   [--only a,b,c,d,e]

Installs BullMQ from the npm registry into ``.cache/bullmq-<version>/`` (the versions are
pinned in BULLMQ below, the one place), starts one redis-server and runs, one after the
other, BullMQ and jobqueue on the same workloads:

(a) no-op jobs, one process, concurrency 1;
(b) no-op jobs, one process, concurrency 50 (ours in thread mode, and in async mode with
    an ``async def`` no-op);
(c) 50 ms I/O waits, concurrency 50 (ideal: 1,000 jobs/s; ours async and thread);
(d) bulk add of 20,000 jobs with explicit ids (``enqueue_many`` vs ``Queue.addBulk``);
(e) one pod's worth: ``--mode process --concurrency 4`` (a JobQueue's concurrencyPerPod 4)
    vs four BullMQ worker processes of concurrency 1, no-op jobs.

Each side of each workload runs ``--repeat`` times (3), the sides taking turns, and the run
of median throughput is reported (every run's figure is in the JSON). Queues are filled
before the workers start; a worker drains its queue and exits (ours
``--burst``; BullMQ's on its ``drained`` event, after ``close()`` waited for active jobs).
Throughput is jobs / (last job's end - first job's start), read back from Redis for both
sides (our ``jq_start``/``jq_end``; BullMQ's ``processedOn``/``finishedOn``), so process
start-up is excluded. Each side is verified afterwards: every job completed exactly once
(ours: status finished, one attempt made, one entry in its results stream, the workers'
success counts adding up to the jobs; BullMQ: ``finishedOn`` set, ``atm``/``ats`` 1, the
processors' own execution counts adding up to the jobs), nothing left waiting, active/wip
or failed. Redis commands per job are the ``INFO commandstats`` delta over the drain (the
calls inside Lua scripts counted, as Redis counts them), scripts per job the EVAL/EVALSHA
share of it (round trips that run a script), and Redis CPU per 1,000 jobs the delta of
``used_cpu_user + used_cpu_sys`` (the server process) over the same window.

``--only d`` (or ``--only b,d``) runs just those workloads, and judges just their goals
(a profile-and-measure loop on one workload; the figures the docs quote come from a full run).

The table comes first, one JSON line last with the ratios ours / BullMQ (throughput: > 1 is
ours faster; commands and CPU per job: < 1 is ours cheaper).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobqueue import JobSpec, enqueue_many
from jobqueue.client import get_jobs
from worker_benchlib import BENCH, ROOT, emit, env, jobqueue_worker_cmd, publish, redis_server

#: The one place the BullMQ side's versions are pinned (the newest on the npm registry when
#: this benchmark was written; BullMQ 6 loads ioredis, an optional peer dependency).
BULLMQ: dict[str, str] = {"bullmq": "6.7.6", "ioredis": "6.1.0"}
SIDE = BENCH / "bullmq_side.js"
IO_SECONDS = 0.05


def drained(
    n: int, executed: Any, wall: float, busy: float, *, cost: dict[str, Any], checks: dict[str, bool]
) -> dict[str, Any]:
    """One side's drain as reported: throughput over the busy span, cost, the checks."""
    return {
        "jobs": n,
        "executed": executed,
        "wall_s": round(wall, 2),
        "busy_s": round(busy, 3),
        "jobs_per_s": round(n / busy, 1),
        **cost,
        "checks": checks,
        "ok": all(checks.values()),
    }


def install_bullmq() -> Path:
    """node_modules holding the pinned BullMQ, installed by npm on first use."""
    where = ROOT / ".cache" / f"bullmq-{BULLMQ['bullmq']}-ioredis-{BULLMQ['ioredis']}"
    modules = where / "node_modules"
    if not (modules / "bullmq" / "package.json").exists() or not (modules / "ioredis").exists():
        npm = shutil.which("npm")
        if not npm:
            sys.exit("npm not found: install Node.js (hack/system-deps.sh installs nodejs and npm)")
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(where),
                "--no-audit",
                "--no-fund",
                "--no-save",
                *(f"{name}@{version}" for name, version in BULLMQ.items()),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    installed = json.loads((modules / "bullmq" / "package.json").read_text())["version"]
    if installed != BULLMQ["bullmq"]:
        sys.exit(f"{modules} holds bullmq {installed}, not the pinned {BULLMQ['bullmq']}: delete it")
    return modules


class Meter:
    """Redis commands and server CPU over a window (INFO deltas)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.start = self._read()

    def _read(self) -> tuple[int, int, float]:
        stats = self.conn.info("commandstats")
        calls = sum(int(v["calls"]) for v in stats.values())
        scripts = sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_eval", "cmdstat_evalsha"))
        cpu = self.conn.info("cpu")
        return calls, scripts, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def per_job(self, n: int, worker_cpu: float | None = None) -> dict[str, float]:
        """Per job over the window; ``worker_cpu``: the CPU seconds the draining process(es)
        used, start-up included (a worker's own side of the cost, Redis's being the other)."""
        calls, scripts, cpu = self._read()
        cost = {
            "redis_cmds_per_job": round((calls - self.start[0]) / n, 2),
            "scripts_per_job": round((scripts - self.start[1]) / n, 3),
            "redis_cpu_ms_per_1000": round((cpu - self.start[2]) * 1000 / n * 1000, 1),
        }
        if worker_cpu is not None:
            cost["worker_cpu_ms_per_1000"] = round(worker_cpu * 1000 / n * 1000, 1)
        return cost


def children_cpu() -> float:
    """CPU seconds (user + system) of the child processes this one has waited for so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def node(modules: Path, url: str, *args: str) -> list[dict[str, Any]]:
    """Run bullmq_side.js; several comma-separated runs of 'work' start at once."""
    e = env(url)
    e["NODE_PATH"] = str(modules)
    procs = [
        subprocess.Popen(["node", str(SIDE), *a.split()], env=e, stdout=subprocess.PIPE, text=True)
        for a in args
    ]
    outs = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"bullmq_side.js exited {p.returncode}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


def ids(n: int) -> list[str]:
    return [f"j{i}" for i in range(n)]


def bullmq_drain(
    modules: Path, url: str, conn: Any, *, n: int, kind: str, concurrency: int, processes: int = 1
) -> dict[str, Any]:
    conn.flushdb()
    q = "bench"
    node(modules, url, f"add {url} {q} {n} {kind} j")
    meter = Meter(conn)
    t0, cpu0 = time.perf_counter(), children_cpu()
    outs = node(modules, url, *[f"work {url} {q} {concurrency} {kind}"] * processes)
    wall = time.perf_counter() - t0
    cost = meter.per_job(n, children_cpu() - cpu0)
    pipe = conn.pipeline(transaction=False)
    for i in ids(n):
        pipe.hmget(f"bull:{q}:{i}", "processedOn", "finishedOn", "atm", "ats")
    rows = pipe.execute()
    done = [r for r in rows if r[1] is not None]
    executed = sum(o["executed"] for o in outs)
    checks = {
        "all_completed": len(done) == n and conn.zcard(f"bull:{q}:completed") == n,
        "one_attempt_each": all(r[2] == b"1" and r[3] in (b"1", None) for r in rows),
        "executed_once": executed == n,
        "nothing_left": conn.llen(f"bull:{q}:wait") == 0
        and conn.llen(f"bull:{q}:active") == 0
        and conn.zcard(f"bull:{q}:failed") == 0
        and conn.zcard(f"bull:{q}:prioritized") == 0,
    }
    busy = (max(int(r[1]) for r in done) - min(int(r[0]) for r in done)) / 1000 if done else float("inf")
    return drained(n, executed, wall, busy, cost=cost, checks=checks)


def ours_drain(
    url: str,
    conn: Any,
    *,
    n: int,
    func: str,
    args: list[Any],
    mode: str,
    concurrency: int,
    cmd: list[str] | None = None,
) -> dict[str, Any]:
    """Drain n jobs with ``jobqueue worker`` (or ``cmd``: bench_worker_floor.py's floors drain
    through the same scripts and are verified the same way)."""
    conn.flushdb()
    q = "bench"
    publish(conn, q)
    enqueue_many(q, [JobSpec(func, args, job_id=i) for i in ids(n)], connection=conn)
    meter = Meter(conn)
    t0, cpu0 = time.perf_counter(), children_cpu()
    subprocess.run(
        cmd or jobqueue_worker_cmd(q, mode=mode, concurrency=concurrency),
        env=env(url),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    cost = meter.per_job(n, children_cpu() - cpu0)
    pipe = conn.pipeline(transaction=False)
    for i in ids(n):
        pipe.hmget(f"rq:job:{i}", "status", "jq_start", "jq_end", "jq_made")
        pipe.xlen(f"rq:results:{i}")
    flat = pipe.execute()
    rows, results = flat[0::2], flat[1::2]
    executed = sum(int(conn.hget(k, "successful_job_count") or 0) for k in conn.scan_iter("rq:worker:*"))
    checks = {
        "all_completed": all(r[0] == b"finished" for r in rows) and conn.zcard(f"rq:finished:{q}") == n,
        "one_attempt_each": all(r[3] == b"1" for r in rows),
        "one_result_each": all(x == 1 for x in results),
        "executed_once": executed == n,
        "nothing_left": conn.llen(f"rq:queue:{q}") == 0
        and conn.zcard(f"rq:wip:{q}") == 0
        and conn.zcard(f"rq:failed:{q}") == 0,
    }
    busy = max(float(r[2]) for r in rows) - min(float(r[1]) for r in rows)
    return drained(n, executed, wall, busy, cost=cost, checks=checks)


def bullmq_bulk(modules: Path, url: str, conn: Any, n: int) -> dict[str, Any]:
    conn.flushdb()
    meter = Meter(conn)
    (out,) = node(modules, url, f"add {url} bench {n} noop j")
    cost = meter.per_job(n)
    ok = conn.llen("bull:bench:wait") == n and all(
        conn.exists(f"bull:bench:{i}") for i in ("j0", f"j{n - 1}")
    )
    return {
        "jobs": n,
        "seconds": round(out["seconds"], 3),
        "jobs_per_s": round(n / out["seconds"], 1),
        **cost,
        "checks": {"all_added": ok},
        "ok": ok,
    }


def ours_bulk(conn: Any, n: int) -> dict[str, Any]:
    conn.flushdb()
    publish(conn, "bench")
    specs = [JobSpec("worker_jobs.noop", [], {"i": k}, job_id=i) for k, i in enumerate(ids(n))]
    meter = Meter(conn)
    t0 = time.perf_counter()
    res = enqueue_many("bench", specs, connection=conn)
    dt = time.perf_counter() - t0
    cost = meter.per_job(n)
    # the records read back as a worker and `jobqueue status` read them (first and last job)
    first, last = get_jobs("bench", ["j0", f"j{n - 1}"], connection=conn)
    readable = (first.function, first.kwargs, first.status, last.kwargs) == (
        "worker_jobs.noop",
        {"i": 0},
        "queued",
        {"i": n - 1},
    )
    ok = conn.llen("rq:queue:bench") == n and not any(r.duplicate for r in res) and readable
    return {
        "jobs": n,
        "seconds": round(dt, 3),
        "jobs_per_s": round(n / dt, 1),
        **cost,
        "checks": {"all_added": ok},
        "ok": ok,
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median throughput, with every run's throughput and verification beside it
    (a shared 2-core machine makes single runs swing by a third)."""
    ranked = sorted(runs, key=lambda r: r["jobs_per_s"])
    mid = dict(ranked[len(ranked) // 2])
    mid["runs_jobs_per_s"] = [r["jobs_per_s"] for r in runs]
    mid["ok"] = all(r["ok"] for r in runs)
    if not mid["ok"]:
        mid["checks"] = [r["checks"] for r in runs]
    return mid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--noop-jobs", type=int, default=20000, help="jobs of (b) and (e)")
    ap.add_argument("--c1-jobs", type=int, default=5000, help="jobs of (a)")
    ap.add_argument("--io-jobs", type=int, default=5000, help="jobs of (c)")
    ap.add_argument("--bulk-jobs", type=int, default=20000, help="jobs of (d)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side of each workload (median kept)")
    ap.add_argument(
        "--only", default="a,b,c,d,e", help="comma-separated workloads to run (their letters; default: all)"
    )
    a = ap.parse_args()
    only = {w.strip() for w in a.only.split(",") if w.strip()}
    if not only or not only <= set("abcde"):
        ap.error(f"--only takes letters of the workloads a..e, comma-separated, got {a.only!r}")
    modules = install_bullmq()
    noop, sleep = "worker_jobs.noop", [IO_SECONDS]
    # workload -> side -> one run of it (a callable); ours in the modes that suit the workload
    plan: dict[str, dict[str, Callable[[str, Any], dict[str, Any]]]] = {
        "a_noop_c1": {
            "bullmq": lambda url, conn: bullmq_drain(
                modules, url, conn, n=a.c1_jobs, kind="noop", concurrency=1
            ),
            "thread": lambda url, conn: ours_drain(
                url, conn, n=a.c1_jobs, func=noop, args=[], mode="thread", concurrency=1
            ),
        },
        "b_noop_c50": {
            "bullmq": lambda url, conn: bullmq_drain(
                modules, url, conn, n=a.noop_jobs, kind="noop", concurrency=50
            ),
            "thread": lambda url, conn: ours_drain(
                url, conn, n=a.noop_jobs, func=noop, args=[], mode="thread", concurrency=50
            ),
            # (async mode runs a plain function on a thread of its own: its jobs are async def)
            "async": lambda url, conn: ours_drain(
                url, conn, n=a.noop_jobs, func="worker_jobs.aio_noop", args=[], mode="async", concurrency=50
            ),
        },
        "c_io50ms_c50": {
            "bullmq": lambda url, conn: bullmq_drain(
                modules, url, conn, n=a.io_jobs, kind="sleep50", concurrency=50
            ),
            "async": lambda url, conn: ours_drain(
                url, conn, n=a.io_jobs, func="worker_jobs.aio_sleep", args=sleep, mode="async", concurrency=50
            ),
            "thread": lambda url, conn: ours_drain(
                url, conn, n=a.io_jobs, func="worker_jobs.io_sleep", args=sleep, mode="thread", concurrency=50
            ),
        },
        "d_bulk_add": {
            "bullmq": lambda url, conn: bullmq_bulk(modules, url, conn, a.bulk_jobs),
            "client": lambda url, conn: ours_bulk(conn, a.bulk_jobs),
        },
        "e_pod_4_processes": {
            "bullmq": lambda url, conn: bullmq_drain(
                modules, url, conn, n=a.noop_jobs, kind="noop", concurrency=1, processes=4
            ),
            "process": lambda url, conn: ours_drain(
                url, conn, n=a.noop_jobs, func=noop, args=[], mode="process", concurrency=4
            ),
        },
    }
    plan = {w: sides for w, sides in plan.items() if w[0] in only}
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    with redis_server() as (url, conn):
        for workload, sides in plan.items():
            runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
            for _ in range(a.repeat):  # the sides take turns, so a slow minute hits all of them
                for side, run_once in sides.items():
                    runs[side].append(run_once(url, conn))
            rows[workload] = {side: median_run(r) for side, r in runs.items()}

    print(f"BullMQ {BULLMQ['bullmq']} (ioredis {BULLMQ['ioredis']}) vs jobqueue, one redis-server, same run")
    print(
        f"{'workload':<18} {'side':<8} {'jobs':>6} {'jobs/s':>9} {'x BullMQ':>8} {'cmds/job':>8} "
        f"{'scripts/job':>11} {'CPU ms/1k':>9}  check"
    )
    ratios: dict[str, dict[str, float]] = {}
    for w, sides in rows.items():
        base = sides["bullmq"]
        for side, r in sides.items():
            x = r["jobs_per_s"] / base["jobs_per_s"]
            if side != "bullmq":
                ratios[f"{w}.{side}"] = {
                    "throughput": round(x, 2),
                    "redis_cmds_per_job": round(r["redis_cmds_per_job"] / base["redis_cmds_per_job"], 2),
                    "redis_cpu_per_job": round(
                        r["redis_cpu_ms_per_1000"] / max(base["redis_cpu_ms_per_1000"], 1e-9), 2
                    ),
                }
            print(
                f"{w:<18} {side:<8} {r['jobs']:>6} {r['jobs_per_s']:>9} {x:>8.2f} "
                f"{r['redis_cmds_per_job']:>8} {r['scripts_per_job']:>11} {r['redis_cpu_ms_per_1000']:>9}  "
                f"{'ok' if r['ok'] else r['checks']}"
            )
    io_ideal = 50 / IO_SECONDS
    goals: dict[str, bool] = {}
    c_of_ideal = best_b = None
    if "c_io50ms_c50" in rows:
        c_of_ideal = round(
            max(rows["c_io50ms_c50"][m]["jobs_per_s"] for m in ("async", "thread")) / io_ideal, 3
        )
        goals["c_ge_0.97_ideal"] = c_of_ideal >= 0.97
        print(f"(c) best of ours: {c_of_ideal:.3f} of the ideal {io_ideal:.0f} jobs/s")
    if "b_noop_c50" in rows:
        best_b = max(("thread", "async"), key=lambda m: rows["b_noop_c50"][m]["jobs_per_s"])
        goals["b_ge_1.0x"] = ratios[f"b_noop_c50.{best_b}"]["throughput"] >= 1.0
        print(f"(b) best mode: {best_b}")
    for key, goal, least in (
        ("a_noop_c1.thread", "a_ge_1.5x", 1.5),
        ("d_bulk_add.client", "d_ge_1.5x", 1.5),
        ("e_pod_4_processes.process", "e_ge_1.0x", 1.0),
    ):
        if key in ratios:
            goals[goal] = ratios[key]["throughput"] >= least
    goals["cmds_per_job_le_bullmq"] = all(v["redis_cmds_per_job"] <= 1.0 for v in ratios.values())
    print("goals: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in sorted(goals.items())))
    ok = all(r["ok"] for sides in rows.values() for r in sides.values())
    print(f"verification (exactly once, nothing left): {'ok' if ok else 'FAILED'}")
    emit(
        {
            "benchmark": "vs_bullmq",
            "bullmq": BULLMQ,
            "results": rows,
            "ratios": ratios,
            "only": sorted(only),
            "c_of_ideal": c_of_ideal,
            "b_best_mode": best_b,
            "goals": goals,
            "verified": ok,
        }
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
