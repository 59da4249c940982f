"""Runnable examples of docs/bulk-operations.md, cancel.md, completion-events.md, rate-limits.md,
flows.md.

    redis-server --port 6399 --save '' --daemonize yes
    export JOBQUEUE_REDIS_URL=redis://127.0.0.1:6399/0
    PYTHONPATH=examples python examples/features.py bulk     # or: cancel, wait, rate, flow

The jobs are in ``feature_jobs.py`` (workers import job modules by name). Each example
declares its queue as the operator would for a JobQueue (``settings.publish``), runs a real
worker in this process (thread or process mode, as a pod would) and prints what happens.
Exit status 0 when everything behaved as the page says.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import feature_jobs

from jobqueue import JobSpec, admin, cancel, enqueue, enqueue_flow, enqueue_many, get_job, settings, wait
from jobqueue._redis import connect
from jobqueue.worker import Worker, WorkerConfig


def declare(queue: str, rate_limit: dict[str, float] | None = None, **job_defaults: Any) -> None:
    settings.publish(
        connect(),
        settings.QueueSettings.model_validate(
            {
                "queueName": queue,
                "imports": ["feature_jobs"],
                "jobDefaults": job_defaults,
                "rateLimit": rate_limit,
            }
        ),
    )


@contextmanager
def worker(queue: str, mode: str = "thread", concurrency: int = 8, pod: str = "example") -> Iterator[Worker]:
    w = Worker(
        os.environ["JOBQUEUE_REDIS_URL"],
        WorkerConfig(
            queue=queue,
            imports=("feature_jobs",),
            concurrency=concurrency,
            mode=mode,  # type: ignore[arg-type]
            pod=pod,
        ),
    )
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    try:
        yield w
    finally:
        w.request_stop()
        t.join(30)


def until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.05)


def bulk() -> None:
    q = "demo:bulk"
    declare(q, attempts=1)
    conn = connect()
    # an outage: 1,000 e-mails fail while the relay is down
    os.environ["RELAY_DOWN"] = "1"
    enqueue_many(q, [JobSpec(feature_jobs.send_email, (f"user{i}@example.com",)) for i in range(1000)])
    with worker(q):
        until(lambda: admin.list_jobs(q, "failed", limit=1).total == 1000)
    page = admin.list_jobs(q, "failed", limit=3)
    print(f"failed: {page.total}; first: {page.jobs[0].id} {page.jobs[0].failed_reason}")
    print("dry run:", admin.retry_jobs(q, "failed", dry_run=True).done, "would be retried")
    # the relay is back: retry them all, in atomic batches of 500, while a worker runs
    del os.environ["RELAY_DOWN"]
    with worker(q):
        res = admin.retry_jobs(q, "failed", function="feature_jobs.send_email")
        print(f"retried {res.done} (skipped {res.skipped})")
        until(lambda: admin.list_jobs(q, "finished", limit=1).total == 1000)
    purged = admin.remove_jobs(q, "finished")
    print(f"finished: 1000; purged {purged.done}; left {conn.zcard('rq:finished:' + q)}")
    assert (res.done, purged.done) == (1000, 1000)


def cancel_one(q: str, mode: str, fn: Callable[..., Any], *args: Any) -> None:
    declare(q, attempts=3)
    pending = enqueue(q, fn, *args, delay=30)  # scheduled: cancelled before it starts
    print(
        f"{mode}: cancel a scheduled job ->",
        cancel(q, pending.id).previous_status,
        "->",
        get_job(q, pending.id).status,
    )
    running = enqueue(q, fn, *args)
    with worker(q, mode=mode, concurrency=1):
        until(lambda: get_job(q, running.id).status == "started")
        time.sleep(0.5)
        asked = time.time()
        cancel(q, running.id, by="example")
        until(lambda: get_job(q, running.id).status == "canceled")
    info = get_job(q, running.id)
    took = info.finished_at.timestamp() - asked if info.finished_at else float("nan")
    print(
        f"{mode}: running job stopped {took * 1000:.0f} ms after cancel; {info.status} "
        f"({info.failed_reason}); attempts used {info.attempts_made} of {info.attempts}"
    )
    assert took < 1.0
    assert info.attempts_made == 1


def cancel_example() -> None:
    cancel_one("demo:cancel-process", "process", feature_jobs.slow_export, 60)
    cancel_one("demo:cancel-thread", "thread", feature_jobs.nightly_export, 6000)


def wait_example() -> None:
    q = "demo:quotes"
    declare(q)
    late = []
    with worker(q, concurrency=1):
        for i in range(200):
            res = enqueue(q, feature_jobs.quote, 100 + i)
            info = wait(q, res.id, timeout=10)  # blocks on the job's results stream: no polling
            late.append(time.time() - info.result["ended"])
    late.sort()
    print(
        f"200 quotes; job end -> wait() returned: p50 {late[100] * 1000:.2f} ms, "
        f"p99 {late[198] * 1000:.2f} ms; last total {info.result['total']}"
    )
    assert late[198] < 0.5


def rate() -> None:
    q = "demo:sms"
    declare(q, rate_limit={"jobs": 10, "perSeconds": 1})  # the SMS provider's quota: 10 a second
    enqueue_many(q, [JobSpec(feature_jobs.send_email, (f"+8210{i:08d}",)) for i in range(300)])
    with worker(q, pod="pod-a"), worker(q, pod="pod-b"), worker(q, pod="pod-c"):  # three "pods"
        time.sleep(8.5)
    starts = sorted(
        j.started_at.timestamp() for j in admin.list_jobs(q, "finished", limit=500).jobs if j.started_at
    )
    busiest = max(sum(1 for t in starts if s <= t < s + 0.95) for s in starts)
    pods = {j.pod for j in admin.list_jobs(q, "finished", limit=500).jobs}
    print(
        f"limit 10/s, pods {sorted(p or '-' for p in pods)}: {len(starts)} jobs started in 8.5 s, "
        f"at most {busiest} in any 0.95 s; {admin.list_jobs(q, 'queued', limit=1).total} still queued"
    )
    assert busiest <= 10


def flow() -> None:
    q = "demo:reports"
    declare(q, attempts=1)
    odometer = {"truck-1": 1200.0, "truck-2": 860.5, "truck-3": -1.0}  # truck-3 sent no data
    children = [
        JobSpec(feature_jobs.vehicle_emissions, (v, km), job_id=f"co2-{v}") for v, km in odometer.items()
    ]
    # all or nothing: the report and its three children, in one call
    strict = enqueue_flow(q, JobSpec(feature_jobs.fleet_report, ("north",), job_id="report-strict"), children)
    print("enqueued:", strict.parent.id, strict.parent.status, [c.status for c in strict.children])
    with worker(q):
        failed = wait(q, "report-strict", timeout=30)
        print(f"without allow_failure: {failed.status} ({failed.failed_reason})")
        # the same month again, this time the report runs whatever the children did
        again = [JobSpec(c.function, c.args, job_id=f"{c.job_id}-2") for c in children]
        lenient = JobSpec(feature_jobs.fleet_report, ("north",), job_id="report", allow_failure=True)
        enqueue_flow(q, lenient, again)
        info = wait(q, "report", timeout=30)
    print(f"with allow_failure: {info.status} {info.result}")
    assert info.result == {"fleet": "north", "kg": 247.3, "missing": ["co2-truck-3-2"]}


def main() -> None:
    examples = {"bulk": bulk, "cancel": cancel_example, "wait": wait_example, "rate": rate, "flow": flow}
    if len(sys.argv) != 2 or sys.argv[1] not in examples:
        raise SystemExit(f"usage: features.py {'|'.join(examples)}")
    examples[sys.argv[1]]()


if __name__ == "__main__":
    main()
