"""Scale-out over several Redis servers: 1, 2 and 4 redis-servers each holding some of the queues.

    .venv/bin/python benchmarks/bench_redis_scaleout.py [--noop-jobs 12000] [--io-jobs 3000]
                                                       [--poll-queues 400]

``spec.redis`` lets each JobQueue live on its own Redis. Here the same work runs against 1, 2
and 4 servers, one after the other in the same run:

* **throughput**: 4 queues, each drained by its own ``jobqueue worker --burst`` process (thread
  mode), queue *i* on server *i mod k*. Two kinds of jobs: no-op (``--concurrency 1``: Redis
  round trips are all there is) and 50 ms sleeps (``--concurrency 50``). Aggregate jobs/s =
  all jobs / (first start → last end, from the job hashes; the median of ``--repeat``
  drains), and the ratio to one server;
* **where the time goes**: each server's CPU (``INFO cpu``) and commands (``INFO stats``)
  during the drain → Redis CPU and commands per job; the whole machine's CPU (``/proc/stat``).
  A Redis server is single-threaded: *its* ceiling is one core, so the jobs/s one server can
  carry is jobs/s ÷ its share of a core;
* **the operator's poll**: ``--poll-queues`` queues (a few jobs each) spread over the servers,
  read by the operator's own Redis module (``RedisHub.poll``, what the autoscaler does every
  second), all servers at once: per-server read time and Redis CPU per poll.

On this 2-core machine the worker processes and the Redis servers share two cores, so the
aggregate cannot grow past what two cores do; the machine-CPU column says when that is the
limit. Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from jobqueue import JobSpec, enqueue_many
from jobqueue_operator import redisq
from worker_benchlib import devenv, emit, env, jobqueue_worker_cmd, publish, span

SERVERS = (1, 2, 4)
QUEUES = 4
KINDS = {"noop": ("worker_jobs.noop", [], 1), "sleep50ms": ("worker_jobs.io_sleep", [0.05], 50)}


@dataclass
class Usage:
    cpu: float
    commands: int


def usage(conn: redis.Redis) -> Usage:
    cpu, stats = conn.info("cpu"), conn.info("stats")
    return Usage(
        float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), int(stats["total_commands_processed"])
    )


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


@contextlib.contextmanager
def servers(k: int) -> Iterator[list[tuple[str, redis.Redis]]]:
    started = [devenv.RedisServer().start() for _ in range(k)]
    try:
        yield [(s.url, redis.Redis.from_url(s.url)) for s in started]
    finally:
        for s in started:
            s.stop()


def drain(k: int, kind: str, jobs_per_queue: int) -> dict[str, Any]:
    func, args, concurrency = KINDS[kind]
    with servers(k) as conns:
        placement = {f"q{i}": conns[i % k] for i in range(QUEUES)}
        ids: dict[str, list[str]] = {}
        for queue, (_, conn) in placement.items():
            publish(conn, queue)
            ids[queue] = [
                r.id
                for r in enqueue_many(queue, [JobSpec(func, list(args))] * jobs_per_queue, connection=conn)
            ]
        before = [usage(c) for _, c in conns]
        busy0, total0 = machine_busy()
        procs = [
            subprocess.Popen(
                jobqueue_worker_cmd(q, mode="thread", concurrency=concurrency),
                env=env(url, pod=f"bench-{q}"),
                stdout=subprocess.DEVNULL,
            )
            for q, (url, _) in placement.items()
        ]
        for p in procs:
            assert p.wait(600) == 0
        busy1, total1 = machine_busy()
        after = [usage(c) for _, c in conns]
        rows = []
        for queue, (_, conn) in placement.items():
            pipe = conn.pipeline(transaction=False)
            for i in ids[queue]:
                pipe.hmget(f"rq:job:{i}", "status", "jq_start", "jq_end")
            rows += pipe.execute()
    assert all(r[0] == b"finished" for r in rows), "not every job finished"
    jobs = len(rows)
    seconds = span([(float(s), float(e)) for _, s, e in rows])
    per_server = []
    for n, (a, b) in enumerate(zip(before, after, strict=True)):
        served = sum(len(ids[q]) for q in placement if placement[q] is conns[n])
        cpu = b.cpu - a.cpu
        per_server.append(
            {
                "jobs": served,
                "redis_cpu_s": round(cpu, 2),
                "core_share": round(cpu / seconds, 2),
                "commands_per_job": round((b.commands - a.commands) / served, 1),
                "redis_cpu_us_per_job": round(cpu / served * 1e6, 1),
                "jobs_per_s_per_redis_core": round(served / cpu) if cpu else None,
            }
        )
    return {
        "servers": k,
        "kind": kind,
        "jobs": jobs,
        "seconds": round(seconds, 2),
        "jobs_per_s": round(jobs / seconds, 1),
        "machine_cpu_busy": round((busy1 - busy0) / (total1 - total0), 3),
        "per_server": per_server,
    }


def poll_cost(k: int, queues: int, polls: int = 30) -> dict[str, Any]:
    """``queues`` queues (5 jobs each) spread over ``k`` servers, polled ``polls`` times the way
    the autoscaler does (all servers at once, one round trip each)."""
    with servers(k) as conns:
        names: dict[str, list[str]] = {url: [] for url, _ in conns}
        for i in range(queues):
            url, conn = conns[i % k]
            queue = f"poll-{i:04d}"
            publish(conn, queue)
            enqueue_many(queue, [JobSpec("worker_jobs.noop", [])] * 5, connection=conn)
            names[url].append(queue)

        async def run() -> dict[str, list[float]]:
            hub = redisq.RedisHub(timeout=5)
            seconds: dict[str, list[float]] = {url: [] for url in names}
            try:
                for _ in range(polls):
                    results = await asyncio.gather(*(hub.poll(url, qs) for url, qs in names.items()))
                    for url, poll in zip(names, results, strict=True):
                        assert len(poll.queues) == len(names[url])
                        seconds[url].append(poll.seconds)
            finally:
                hub.close()
            return seconds

        before = [usage(c) for _, c in conns]
        started = time.perf_counter()
        seconds = asyncio.run(run())
        wall = (time.perf_counter() - started) / polls
        after = [usage(c) for _, c in conns]
    per_server = [
        {
            "queues": len(names[url]),
            "read_ms_median": round(sorted(seconds[url])[polls // 2] * 1000, 2),
            "redis_cpu_ms_per_poll": round((b.cpu - a.cpu) / polls * 1000, 2),
        }
        for (url, _), a, b in zip(conns, before, after, strict=True)
    ]
    return {"servers": k, "queues": queues, "pass_ms": round(wall * 1000, 2), "per_server": per_server}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--noop-jobs", type=int, default=12000, help="no-op jobs per queue")
    ap.add_argument("--io-jobs", type=int, default=3000, help="50 ms jobs per queue")
    ap.add_argument("--poll-queues", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3, help="drains per configuration (the median is used)")
    a = ap.parse_args()
    result: dict[str, Any] = {
        "benchmark": "bench_redis_scaleout",
        "queues": QUEUES,
        "throughput": {},
        "poll": [],
    }
    for kind, per_queue in (("noop", a.noop_jobs), ("sleep50ms", a.io_jobs)):
        runs = []
        for k in SERVERS:
            tries = sorted(
                (drain(k, kind, per_queue) for _ in range(a.repeat)), key=lambda r: r["jobs_per_s"]
            )
            median = tries[len(tries) // 2]
            median["jobs_per_s_all_tries"] = [t["jobs_per_s"] for t in tries]
            runs.append(median)
        base = runs[0]["jobs_per_s"]
        print(f"{kind}: {QUEUES} queues, one worker process each ({per_queue:,} jobs per queue)")
        print(
            f"  {'servers':>7} {'jobs/s':>8} {'ratio':>6} {'machine CPU':>11}  per server: core share, "
            "Redis µs/job, commands/job, jobs/s per Redis core"
        )
        for r in runs:
            r["ratio_to_one_server"] = round(r["jobs_per_s"] / base, 2)
            servers_text = "; ".join(
                f"{s['core_share']} {s['redis_cpu_us_per_job']} {s['commands_per_job']} "
                f"{s['jobs_per_s_per_redis_core']}"
                for s in r["per_server"]
            )
            print(
                f"  {r['servers']:>7} {r['jobs_per_s']:>8} {r['ratio_to_one_server']:>6} "
                f"{r['machine_cpu_busy'] * 100:>10.0f}%  {servers_text}"
            )
        result["throughput"][kind] = runs
    for k in SERVERS:
        p = poll_cost(k, a.poll_queues)
        result["poll"].append(p)
        print(
            f"poll of {a.poll_queues} queues over {k} server(s): pass {p['pass_ms']} ms; per server "
            + "; ".join(
                f"{s['queues']} queues {s['read_ms_median']} ms read, "
                f"{s['redis_cpu_ms_per_poll']} ms Redis CPU"
                for s in p["per_server"]
            )
        )
    noop = {r["servers"]: r["ratio_to_one_server"] for r in result["throughput"]["noop"]}
    result["goal_met"] = noop.get(2, 0) >= 1.8 and noop.get(4, 0) >= 3.2
    emit(result)


if __name__ == "__main__":
    main()
