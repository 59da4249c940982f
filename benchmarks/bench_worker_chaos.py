"""Zero lost jobs while worker processes are SIGKILLed at random, against RQ under the same chaos.

    .venv/bin/python benchmarks/bench_worker_chaos.py [--jobs 5000] [--delayed 200] [--pods 3]
                                                      [--concurrency 2] [--kill-every 1.0] [--seed 1]

Three "pods" (process groups) run ``jobqueue worker --mode process --concurrency 2``. The
queue gets 5,000 jobs (5–50 ms of work each) plus 200 delayed jobs due 2–20 s later.
About every second one of these happens, at random:

* a job process of a random pod is SIGKILLed (the worker must fail that attempt and retry);
* a whole pod is SIGKILLed (coordinator and children, as on OOM or node loss) and replaced
  by a new pod; for half of these the "operator" calls ``recover_pod`` at once, for the
  other half nobody does and the live workers' lease reaping must recover the jobs.

It runs until every job is finished or failed (attempts: 5), then checks that **no job is
lost**: each one ends ``finished``, or ``failed`` with all its attempts used. A job whose
function *completed* more than once (its result was lost with its pod, so it ran again) is
counted as a duplicate — at-least-once delivery — and reported. Delayed jobs' lateness
(first start − due time) is reported too: no scheduler lock exists, so killing pods must
not delay them.

Baseline in the same run: plain RQ (three ``rq worker --with-scheduler`` forking workers,
``Retry(max=4)``) under the same kind of chaos for the same time budget (at least 60 s),
with the same job mix scaled to --rq-jobs; jobs still not finished/failed when the budget
ends are what RQ lost or left stuck (RQ re-queues abandoned jobs only after minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from jobqueue import JobSpec, enqueue_many, payload
from jobqueue.recovery import recover_pod
from worker_benchlib import emit, env, jobqueue_worker_cmd, median, pct, publish, redis_server

QUEUE = "chaos"


def _procs() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) of every process."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(d.name)] = (int(fields[1]), int(fields[2]))
    return out


class Pod:
    def __init__(self, url: str, name: str, cmd: list[str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            cmd,
            env=env(url, name),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def job_processes(self, *, ours: bool) -> list[int]:
        leader = self.proc.pid
        members = [(pid, ppid) for pid, (ppid, pgid) in _procs().items() if pgid == leader and pid != leader]
        # ours: job processes are children of the forkserver (not of the coordinator);
        # RQ: the work horse (and the scheduler) are children of the worker itself.
        if ours:
            return [pid for pid, ppid in members if ppid != leader]
        return [pid for pid, _ in members]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        self.kill()


def _statuses(conn: Any, ids: list[str]) -> list[tuple[bytes | None, bytes | None, bytes | None]]:
    pipe = conn.pipeline(transaction=False)
    for i in ids:
        pipe.hmget(f"rq:job:{i}", "status", "jq_made", "jq_attempts")
    return pipe.execute()


def chaos(
    url: str,
    conn: Any,
    *,
    ours: bool,
    pods: int,
    concurrency: int,
    kill_every: float,
    rnd: random.Random,
    ids: list[str],
    budget: float | None,
) -> dict[str, Any]:
    def make(k: int) -> Pod:
        if ours:
            return Pod(
                url,
                f"pod-{k}",
                jobqueue_worker_cmd(QUEUE, mode="process", concurrency=concurrency, burst=False),
            )
        return Pod(
            url,
            f"rqpod-{k}",
            [
                sys.executable,
                "-m",
                "rq.cli",
                "worker",
                "--with-scheduler",
                "-S",
                "rq.serializers.JSONSerializer",
                "--url",
                url,
                "--logging_level",
                "ERROR",
                QUEUE,
            ],
        )

    running = [make(k) for k in range(pods)]
    next_pod = pods
    kills: Counter[str] = Counter()
    recovered_by_operator = 0
    t0 = time.monotonic()
    done_at = None
    terminal = (b"finished", b"failed")
    while True:
        time.sleep(rnd.uniform(0.5, 1.5) * kill_every)
        left = sum(1 for s in _statuses(conn, ids) if s[0] not in terminal)
        elapsed = time.monotonic() - t0
        if left == 0:
            done_at = elapsed
            break
        if budget is not None and elapsed >= budget:
            break
        if budget is None and elapsed > 600:
            break
        pod = rnd.choice(running)
        if rnd.random() < 0.5:
            victims = pod.job_processes(ours=ours)
            if victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rnd.choice(victims), signal.SIGKILL)
                kills["job_process"] += 1
            continue
        pod.kill()
        running.remove(pod)
        if ours and rnd.random() < 0.5:
            recovered_by_operator += recover_pod(
                conn, QUEUE, pod.name, reason=f"pod {pod.name} was killed"
            ).jobs
            kills["pod_then_operator_recovery"] += 1
        else:
            kills["pod_no_operator"] += 1
        running.append(make(next_pod))
        next_pod += 1
    for pod in running:
        pod.stop()
    return {
        "elapsed_s": round(time.monotonic() - t0, 1),
        "all_done_at_s": None if done_at is None else round(done_at, 1),
        "kills": dict(kills),
        "jobs_recovered_by_operator_calls": recovered_by_operator,
    }


def verdict(conn: Any, ids: list[str], delayed: dict[str, float]) -> dict[str, Any]:
    rows = _statuses(conn, ids)
    by_status: Counter[str] = Counter()
    failed_early = lost = 0
    for status, made, attempts in rows:
        s = status.decode() if status else "missing"
        by_status[s] += 1
        if s == "failed" and made and attempts and int(made) < int(attempts):
            failed_early += 1
        if s not in ("finished", "failed"):
            lost += 1
    completions = Counter(x.decode() for x in conn.lrange("bench:executions", 0, -1))
    first_start: dict[str, float] = {}
    for line in conn.lrange("bench:starts", 0, -1):
        tag, ts = line.decode().split()
        first_start[tag] = min(float(ts), first_start.get(tag, float("inf")))
    lateness = [first_start[t] - due for t, due in delayed.items() if t in first_start]
    # when a delayed job became runnable (RQ's enqueued_at: set when it leaves rq:scheduled);
    # its start also waits for the jobs queued before it. A retry moves enqueued_at later,
    # so this errs on the late side.
    pipe = conn.pipeline(transaction=False)
    for t in delayed:
        pipe.hmget(f"rq:job:{t}", "enqueued_at", "status")
    promoted = [
        payload.utcparse(e.decode()) - due
        for (e, st), due in zip(pipe.execute(), delayed.values(), strict=True)
        if e and st != b"scheduled" and payload.utcparse(e.decode())
    ]
    return {
        "jobs": len(ids),
        "by_status": dict(by_status),
        "lost_or_stuck": lost,
        "failed_before_using_all_attempts": failed_early,
        "finished_without_completion_record": sum(
            1 for i, r in zip(ids, rows, strict=True) if r[0] == b"finished" and completions[i] == 0
        ),
        "duplicates_jobs_completed_more_than_once": sum(1 for c in completions.values() if c > 1),
        "duplicate_extra_completions": sum(c - 1 for c in completions.values() if c > 1),
        "delayed_promotion_lateness_s": {
            "n": len(promoted),
            "p50": median(promoted),
            "p99": pct(promoted, 0.99),
            "max": round(max(promoted), 3) if promoted else None,
            "still_scheduled": len(delayed) - len(promoted),
        },
        "delayed_start_lateness_s": {
            "n": len(lateness),
            "min": round(min(lateness), 3) if lateness else None,
            "p50": median(lateness),
            "p99": pct(lateness, 0.99),
            "max": round(max(lateness), 3) if lateness else None,
        },
    }


def run_ours(url: str, conn: Any, a: argparse.Namespace) -> dict[str, Any]:
    rnd = random.Random(a.seed)
    conn.flushdb()
    publish(conn, QUEUE, attempts=5, backoff={"type": "fixed", "delaySeconds": 0.1}, timeoutSeconds=30)
    specs = [
        JobSpec("worker_jobs.record", [f"job-{i}", rnd.uniform(0.005, 0.05)], job_id=f"job-{i}")
        for i in range(a.jobs)
    ]
    now = time.time()
    delays = {f"delayed-{i}": rnd.uniform(2, 20) for i in range(a.delayed)}
    specs += [JobSpec("worker_jobs.record", [t, 0.005], job_id=t, delay=d) for t, d in delays.items()]
    enqueue_many(QUEUE, specs, connection=conn)
    ids = [s.job_id for s in specs if s.job_id]
    run = chaos(
        url,
        conn,
        ours=True,
        pods=a.pods,
        concurrency=a.concurrency,
        kill_every=a.kill_every,
        rnd=rnd,
        ids=ids,
        budget=None,
    )
    return {
        **run,
        **verdict(conn, ids, {t: now + d for t, d in delays.items()}),
        "wip_left": conn.zcard(f"rq:wip:{QUEUE}"),
    }


def run_rq(url: str, conn: Any, a: argparse.Namespace, budget: float) -> dict[str, Any]:
    from datetime import timedelta

    from rq import Queue, Retry
    from rq.serializers import JSONSerializer

    rnd = random.Random(a.seed)
    conn.flushdb()
    q = Queue(QUEUE, connection=conn, serializer=JSONSerializer)
    datas = [
        Queue.prepare_data(
            "worker_rqjobs.record",
            (f"job-{i}", rnd.uniform(0.005, 0.05)),
            job_id=f"job-{i}",
            retry=Retry(max=4),
        )
        for i in range(a.rq_jobs)
    ]
    q.enqueue_many(datas)
    now = time.time()
    delays = {f"delayed-{i}": rnd.uniform(2, 20) for i in range(a.delayed // 4)}
    for t, d in delays.items():
        q.enqueue_in(timedelta(seconds=d), "worker_rqjobs.record", t, 0.005, job_id=t, retry=Retry(max=4))
    ids = [f"job-{i}" for i in range(a.rq_jobs)] + list(delays)
    run = chaos(
        url,
        conn,
        ours=False,
        pods=a.pods,
        concurrency=1,
        kill_every=a.kill_every,
        rnd=rnd,
        ids=ids,
        budget=budget,
    )
    # RQ's scheduler truncates delays to whole seconds: lateness is measured from the same due time
    return {**run, **verdict(conn, ids, {t: now + d for t, d in delays.items()})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--delayed", type=int, default=200)
    ap.add_argument("--pods", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--kill-every", type=float, default=1.0)
    ap.add_argument("--rq-jobs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    with redis_server() as (url, conn):
        ours = run_ours(url, conn, a)
        budget = max(60.0, ours["elapsed_s"])
        rq = run_rq(url, conn, a, budget)
    for name, r in (("jobqueue", ours), ("rq", rq)):
        late, prom = r["delayed_start_lateness_s"], r["delayed_promotion_lateness_s"]
        print(f"{name:<9} {r['jobs']} jobs, {r['elapsed_s']} s, kills {r['kills']}")
        print(
            f"          statuses {r['by_status']}; lost or stuck: {r['lost_or_stuck']}; failed before using "
            f"all attempts: {r['failed_before_using_all_attempts']}"
        )
        print(
            f"          duplicates: {r['duplicates_jobs_completed_more_than_once']} job(s) completed "
            f"more than once ({r['duplicate_extra_completions']} extra completion(s))"
        )
        print(
            f"          delayed jobs made runnable: {prom['n']}, lateness p50 {prom['p50']} s, "
            f"p99 {prom['p99']} s, max {prom['max']} s; never promoted: {prom['still_scheduled']}"
        )
        print(
            f"          delayed jobs started: {late['n']} (behind the backlog queued before them), lateness "
            f"p50 {late['p50']} s, max {late['max']} s, min {late['min']} s"
        )
    goal = (
        ours["lost_or_stuck"] == 0
        and ours["failed_before_using_all_attempts"] == 0
        and ours["finished_without_completion_record"] == 0
        and ours["wip_left"] == 0
    )
    verdict_text = "met" if goal else "NOT met"
    print(f"goal (zero jobs lost: every job finished, or failed after its attempts): {verdict_text}")
    emit({"benchmark": "worker_chaos", "jobqueue": ours, "rq": rq, "goal_met": goal})


if __name__ == "__main__":
    main()
