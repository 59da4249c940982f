"""Cost of jobqueue.stats.snapshot() for 1,000 queues — what the autoscaler pays every second.

    .venv/bin/python benchmarks/bench_worker_snapshot.py [--queues 1000] [--rounds 30]

Two datasets, each in a fresh Redis: every queue busy (jobs queued on several priority
levels, delayed, running under leases, finished and failed, 1–3 worker records each: the
pessimistic case), and 15 % busy / 85 % idle (closer to a real fleet). For each, per round
of ``snapshot(conn, all_queues)``:

* **Redis time**: microseconds Redis spent in the EVALSHA calls (``INFO commandstats``), the
  figure the goal is about (<= 50 ms for 1,000 queues), median over the rounds;
* **Redis CPU**: CPU seconds redis-server used meanwhile (``INFO cpu``: commands and network
  I/O), which, unlike elapsed Redis time, does not grow when a shared machine deschedules
  redis-server;
* client wall time (one network round trip + parsing), p50 and p95.

Baseline in the same run: reading the figures the way rq-exporter does, with RQ's own API and
``cleanup=False`` (per queue: ``Queue.count``, five registry counts, ``Worker.all``). Its
commandstats time leaves out the per-command network handling that dominates it, so compare
Redis CPU.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from jobqueue import JobSpec, enqueue_many, payload
from jobqueue.stats import snapshot
from worker_benchlib import emit, median, pct, publish, redis_server


def _usec(conn: Any) -> int:
    return sum(v["usec"] for k, v in conn.info("commandstats").items() if k.startswith("cmdstat_"))


def _cpu(conn: Any) -> float:
    """Seconds of CPU the redis-server process used so far (commands *and* network I/O)."""
    info = conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def fill(conn: Any, names: list[str], busy_fraction: float) -> None:
    """Each queue gets jobs in every state and 1-3 worker records; with busy_fraction < 1 the
    others are declared but idle (no jobs, one idle worker) — the common case at scale."""
    rnd = random.Random(7)
    now = time.time()
    for i, q in enumerate(names):
        publish(conn, q)
        if rnd.random() >= busy_fraction:
            key = f"rq:worker:pod-{i}.idle"
            conn.hset(
                key,
                mapping={"state": "idle", "hostname": f"pod-{i}", "jq_busy": 0, "jq_slots": 4, "queues": q},
            )
            conn.sadd(f"rq:workers:{q}", key)
            continue
        specs = [
            JobSpec("worker_jobs.noop", priority=rnd.choice([1, 3, 3, 5])) for _ in range(rnd.randint(0, 8))
        ]
        specs += [
            JobSpec("worker_jobs.noop", delay=rnd.choice([0.001, 60, 600])) for _ in range(rnd.randint(0, 3))
        ]
        if specs:
            enqueue_many(q, specs, connection=conn)
        pipe = conn.pipeline(transaction=False)
        for w in range(1 + i % 3):
            key = f"rq:worker:pod-{i}-{w}.abc"
            busy = rnd.random() < 0.5
            pipe.hset(
                key,
                mapping={
                    "state": "busy" if busy else "idle",
                    "hostname": f"pod-{i}-{w}",
                    "current_job": "job-x" if busy else "",
                    "jq_busy": int(busy),
                    "jq_slots": 4,
                    "queues": q,
                    "last_heartbeat": payload.utcformat(now),
                },
            )
            pipe.sadd(f"rq:workers:{q}", key)
            pipe.sadd("rq:workers", key)
        for k in range(rnd.randint(0, 4)):
            pipe.zadd(f"rq:wip:{q}", {f"run-{i}-{k}:x.1": now + 15})
            pipe.zadd(f"rq:finished:{q}", {f"done-{i}-{k}": now + 3600})
        pipe.zadd(f"rq:failed:{q}", {f"bad-{i}": now + 86400})
        pipe.hset("jobqueue:activity", q, repr(now - rnd.random() * 100))
        pipe.execute()


def _evalsha(conn: Any) -> tuple[int, int]:
    st = conn.info("commandstats").get("cmdstat_evalsha", {"usec": 0, "calls": 0})
    return int(st["usec"]), int(st["calls"])


def ours(conn: Any, names: list[str], rounds: int) -> dict[str, Any]:
    """Per round: Redis time of the EVALSHA calls (commandstats) and Redis CPU (INFO cpu).

    The median over rounds is the figure: on a shared machine a round where redis-server was
    descheduled shows up as Redis *time* although it cost no more CPU."""
    snapshot(conn, names)  # load the script
    walls, times, cpus, calls = [], [], [], 0
    for _ in range(rounds):
        usec0, calls0 = _evalsha(conn)
        cpu0 = _cpu(conn)
        t0 = time.perf_counter()
        snap = snapshot(conn, names)
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append((_cpu(conn) - cpu0) * 1000)
        usec1, calls1 = _evalsha(conn)
        times.append((usec1 - usec0) / 1000)
        calls = calls1 - calls0
        time.sleep(0.05)
    assert len(snap) == len(names)
    return {
        "queues": len(names),
        "rounds": rounds,
        "redis_ms_per_snapshot": median(times),
        "redis_ms_p95": pct(times, 0.95),
        "redis_cpu_ms_per_snapshot": median(cpus),
        "evalsha_calls_per_snapshot": calls,
        "network_round_trips_per_snapshot": 1,
        "wall_ms_p50": median(walls),
        "wall_ms_p95": pct(walls, 0.95),
        "jobs_queued_total": sum(s.queued for s in snap.values()),
        "workers_total": sum(len(s.workers) for s in snap.values()),
    }


def rq_api(conn: Any, names: list[str]) -> dict[str, Any]:
    from rq import Queue
    from rq.serializers import JSONSerializer
    from rq.worker import Worker

    conn.config_resetstat()
    before = _usec(conn)
    cpu0 = _cpu(conn)
    t0 = time.perf_counter()
    for q in names:
        queue = Queue(q, connection=conn, serializer=JSONSerializer)
        _ = queue.count
        for reg in (
            queue.started_job_registry,
            queue.finished_job_registry,
            queue.failed_job_registry,
            queue.scheduled_job_registry,
            queue.deferred_job_registry,
        ):
            reg.get_job_count(cleanup=False)
        Worker.all(queue=queue)
    wall = time.perf_counter() - t0
    return {
        "queues": len(names),
        "redis_ms_per_snapshot": round((_usec(conn) - before) / 1000, 2),
        "redis_cpu_ms_per_snapshot": round((_cpu(conn) - cpu0) * 1000, 2),
        "network_round_trips_per_snapshot": None,
        "wall_ms_p50": round(wall * 1000, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queues", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=30)
    a = ap.parse_args()
    names = [f"ns{i % 20}.queue-{i}" for i in range(a.queues)]
    results: dict[str, Any] = {}
    for label, busy in (("all_busy", 1.0), ("15pct_busy", 0.15)):
        with redis_server() as (_, conn):
            fill(conn, names, busy)
            print(
                f"{label}: {a.queues} queues ({conn.dbsize()} keys, used_memory "
                f"{conn.info('memory')['used_memory_human']})"
            )
            results[f"jobqueue_snapshot_{label}"] = ours(conn, names, a.rounds)
            results[f"rq_api_cleanup_false_{label}"] = rq_api(conn, names)
    print("per snapshot (median of rounds; Redis CPU includes network I/O):")
    print(f"{'':<36} {'Redis time':>11} {'Redis CPU':>10} {'wall p50':>9} {'wall p95':>9}  round trips")
    for name, r in results.items():
        trips = r["network_round_trips_per_snapshot"] or "1 per command (~9 per queue)"
        print(
            f"{name:<36} {r['redis_ms_per_snapshot']:>8} ms {r['redis_cpu_ms_per_snapshot']:>7} ms "
            f"{r['wall_ms_p50']:>6} ms {r.get('wall_ms_p95', '-'):>6} ms  {trips}"
        )
    o, b = results["jobqueue_snapshot_all_busy"], results["rq_api_cleanup_false_all_busy"]
    ratio_cpu = round(b["redis_cpu_ms_per_snapshot"] / o["redis_cpu_ms_per_snapshot"], 1)
    ratio_wall = round(b["wall_ms_p50"] / o["wall_ms_p50"], 1)
    print(
        f"all queues busy: RQ's API costs Redis {ratio_cpu}x the CPU and takes {ratio_wall}x the wall time "
        f"(it reads fewer figures: no priority levels, oldest age, due jobs or lost leases)"
    )
    budget = 50 * a.queues / 1000
    goal = o["redis_ms_per_snapshot"] <= budget
    print(
        f"goal (<= 50 ms of Redis time per 1,000 queues, all busy, median: {budget:.0f} ms for {a.queues}): "
        f"{'met' if goal else 'NOT met'}"
        f" ({o['redis_ms_per_snapshot']} ms; Redis CPU {o['redis_cpu_ms_per_snapshot']} ms)"
    )
    emit(
        {
            "benchmark": "worker_snapshot",
            "results": results,
            "ratio_redis_cpu_rq_api_vs_ours": ratio_cpu,
            "ratio_wall_rq_api_vs_ours": ratio_wall,
            "goal_met": goal,
        }
    )


if __name__ == "__main__":
    main()
