"""The queue-wide concurrency cap (``JobQueue.spec.concurrency``) is exact.

The claim script bounds the jobs a queue holds in ``rq:wip`` (running, or claimed to start at
once) by the concurrency the operator published, whatever the number of pods and slots: a
rollout's surge pod, a ``kubectl scale`` or ceil() rounding adds slots, never running jobs.
"""

from __future__ import annotations

import signal
import threading
import time

import redis

from integration.workers.whelpers import FN, WorkerProcess, publish, wait_for, wait_status, worker_process
from jobqueue import JobSpec, enqueue_many, get_job


class Sampler:
    """Samples how many jobs of `queue` are held (rq:wip) every few milliseconds."""

    def __init__(self, conn: redis.Redis, queue: str) -> None:
        self.conn, self.key = conn, f"rq:wip:{queue}"
        self.max = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.max = max(self.max, self.conn.zcard(self.key))
            self.samples += 1
            time.sleep(0.002)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_more_slots_than_the_cap_never_run_more_than_the_cap(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "cap", concurrency=5, attempts=1)
    ids = [f"j{i}" for i in range(40)]
    enqueue_many("cap", [JobSpec(FN + "capped", (0.3,), job_id=j) for j in ids], connection=redis_conn)
    # 3 pods x 4 slots = 12 slots for a cap of 5, one pod per mode
    with (
        Sampler(redis_conn, "cap") as held,
        worker_process(redis_url, "cap", pod="pod-a", mode="process", concurrency=4) as a,
        worker_process(redis_url, "cap", pod="pod-b", mode="thread", concurrency=4) as b,
        worker_process(redis_url, "cap", pod="pod-c", mode="async", concurrency=4) as c,
    ):
        for j in ids:
            assert wait_status(redis_conn, "cap", j, "finished", timeout=60).attempts_made == 1
        for w in (a, b, c):
            assert w.proc.poll() is None, w.log()
    assert held.samples > 100
    assert held.max <= 5
    assert int(redis_conn.get("test:running:max") or 0) == 5  # as the jobs saw it: reached, never passed
    pods = {get_job("cap", j, connection=redis_conn).pod for j in ids}
    assert len(pods) >= 2  # (the cap is queue-wide: units move between pods)


def test_a_killed_workers_units_come_back(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "capk", concurrency=3, attempts=2, backoff={"type": "fixed", "delaySeconds": 0})
    lease = ("--lease-seconds", "5")
    enqueue_many("capk", [JobSpec(FN + "capped", (3,), job_id=f"long{i}") for i in range(3)],
                 connection=redis_conn)  # fmt: skip
    with Sampler(redis_conn, "capk") as held:
        doomed = WorkerProcess(redis_url, "capk", pod="pod-doomed", mode="thread", concurrency=4, extra=lease)
        try:
            wait_for("the doomed pod to hold the 3 units", lambda: redis_conn.zcard("rq:wip:capk") == 3)
            short = [f"short{i}" for i in range(4)]
            enqueue_many("capk", [JobSpec(FN + "add", (i, 1), job_id=j) for i, j in enumerate(short)],
                         connection=redis_conn)  # fmt: skip
            with worker_process(
                redis_url, "capk", pod="pod-live", mode="thread", concurrency=4, extra=lease
            ) as live:
                time.sleep(1.0)
                assert get_job("capk", "short0", connection=redis_conn).status == "queued"  # cap full
                doomed.kill_pod()  # its 3 units stay in rq:wip until their leases run out
                for j in short:
                    assert wait_status(redis_conn, "capk", j, "finished", timeout=45).pod == "pod-live"
                for i in range(3):
                    info = wait_status(redis_conn, "capk", f"long{i}", "finished", timeout=45)
                    assert (info.pod, info.attempts_made) == ("pod-live", 2)
                assert live.proc.poll() is None, live.log()
                live.signal(signal.SIGTERM)
                assert live.wait(20) == 0
        finally:
            doomed.stop()
    assert held.max <= 3
    assert redis_conn.zcard("rq:wip:capk") == 0
