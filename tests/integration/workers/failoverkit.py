"""Redis failover under load, shared by ``test_worker_sentinel.py`` (invariants) and
``benchmarks/chaos_redis_failover.py`` (figures): a primary and a replica watched by three
Sentinels (:class:`redisfarm.SentinelGroup`), real ``jobqueue worker`` processes and a producer
that all use the ``redis+sentinel://`` URL, and the operator's Redis module polling the queue;
the primary is SIGKILLed in the middle of the burst.

How the producer makes its enqueues survive the failover: after each batch it asks Redis to
``WAIT`` until a replica has it; a batch the replica has not confirmed (the WAIT timed out, or
the primary died first) is sent again once the new primary answers — with the same job ids, so
a batch that did arrive is reported as duplicates and not added twice. Replication is
asynchronous, so what the workers wrote to the old primary in its last moments may be missing
on the new one: a claim (the job is simply claimed again), a finished job's result (its claim
then expires and the job runs again). Those re-runs are the duplicates this scenario counts;
every run's completion is written to a journal file (outside Redis, which the failover may
roll back), so they are counted exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from whelpers import FN, WorkerProcess, publish

import devenv
import redisfarm
from jobqueue import JobSpec, _redis, enqueue_many
from jobqueue_operator import errors, redisq

QUEUE = "failover"


@dataclass
class FailoverRun:
    jobs: int
    job_seconds: float
    #: unix times: the primary killed, the Sentinels agreeing on a new one
    failed_at: float
    promoted_at: float
    #: seconds from the kill to: the first job completed after it, all jobs settled
    first_completion_after: float | None
    settled_after: float
    #: batches the producer sent again (not confirmed by a replica), jobs among them that
    #: were already there (reported as duplicates by the enqueue)
    resent_batches: int
    resent_already_there: int
    #: times a job's function completed -> number of jobs
    completions: Counter[int]
    statuses: Counter[str]
    #: jobs that never completed or did not end ``finished``
    lost: int
    #: the operator's poll of the queue: seconds from the kill to its first success after the
    #: promotion, and its failures meanwhile
    operator_polls_back_after: float | None
    operator_poll_failures: int
    worker_logs: list[str] = field(default_factory=list)

    @property
    def duplicated(self) -> int:
        return sum(n for times, n in self.completions.items() if times > 1)

    def figures(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "job_seconds": self.job_seconds,
            "failover_seconds": round(self.promoted_at - self.failed_at, 2),
            "first_completion_after_kill_seconds": None
            if self.first_completion_after is None
            else round(self.first_completion_after, 2),
            "all_settled_after_kill_seconds": round(self.settled_after, 2),
            "operator_poll_back_after_kill_seconds": None
            if self.operator_polls_back_after is None
            else round(self.operator_polls_back_after, 2),
            "operator_poll_failures": self.operator_poll_failures,
            "producer_batches_resent": self.resent_batches,
            "producer_resent_jobs_already_there": self.resent_already_there,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "completions": dict(sorted(self.completions.items())),
            "statuses": dict(self.statuses),
        }

    def report(self) -> str:
        f = self.figures()
        return "\n".join(
            [
                f"{self.jobs:,} jobs of {self.job_seconds * 1000:g} ms through redis+sentinel://; the primary "
                f"SIGKILLed mid-burst, Sentinels promoted the replica after {f['failover_seconds']} s",
                f"  first job completed {f['first_completion_after_kill_seconds']} s after the kill; all settled "
                f"after {f['all_settled_after_kill_seconds']} s; the operator's poll back after "
                f"{f['operator_poll_back_after_kill_seconds']} s ({self.operator_poll_failures} failed polls)",
                f"  producer: {self.resent_batches} batches sent again ({self.resent_already_there} of their "
                "jobs already there)",
                f"  lost {self.lost}, completed more than once {self.duplicated}; completions "
                f"{f['completions']}; statuses {f['statuses']}",
            ]
        )


class _Producer(threading.Thread):
    """Enqueues ``ids`` in batches, every ``every`` seconds; a batch counts once a replica has
    it (``WAIT 1``), otherwise it is sent again."""

    def __init__(self, url: str, ids: list[str], job_seconds: float, batch: int, every: float) -> None:
        super().__init__(daemon=True)
        self.conn = _redis.connect(url, socket_timeout=2, socket_connect_timeout=2)
        self.batches = [ids[i : i + batch] for i in range(0, len(ids), batch)]
        self.job_seconds, self.every = job_seconds, every
        self.resent = self.already_there = 0
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for batch in self.batches:
                specs = [JobSpec(f"{FN}journal", [i, self.job_seconds], job_id=i) for i in batch]
                attempt = 0
                while True:
                    try:
                        results = enqueue_many(QUEUE, specs, connection=self.conn)
                        if attempt:
                            self.already_there += sum(r.duplicate for r in results)
                        if self.conn.wait(1, 2000) >= 1:
                            break
                    except redis.RedisError:
                        pass
                    attempt += 1
                    self.resent += attempt == 1
                    time.sleep(0.1)
                time.sleep(self.every)
        except BaseException as e:  # (reported by the scenario)
            self.error = e
        finally:
            self.done.set()


class _OperatorPolls(threading.Thread):
    """The operator's Redis module (``RedisHub``) polling the queue every 0.2 s."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.ok: list[float] = []
        self.failed: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        hub = redisq.RedisHub(timeout=1.0, retry_after=0.5)
        try:
            while not self.stop.is_set():
                try:
                    poll = await hub.poll(self.url, [QUEUE])
                    assert QUEUE in poll.queues
                    self.ok.append(time.time())
                except errors.RedisUnavailable:
                    self.failed.append(time.time())
                await asyncio.sleep(0.2)
        finally:
            hub.close()


def _finished(conn: redis.Redis) -> tuple[int] | None:
    """(jobs in the finished registry,) or None when Redis does not answer."""
    with contextlib.suppress(redis.RedisError):
        return (int(conn.zcard(f"rq:finished:{QUEUE}")),)
    return None


def sentinel_failover(
    group: redisfarm.SentinelGroup,
    workdir: Path,
    *,
    jobs: int = 2000,
    job_seconds: float = 0.05,
    workers: int = 2,
    concurrency: int = 8,
    fail_when_done: float = 0.3,
    timeout: float = 300,
    direct: bool = False,
) -> FailoverRun:
    """Half the jobs enqueued at once, the rest in batches of 50 every 0.1 s; once
    ``fail_when_done`` of them completed, the primary is SIGKILLed; then everything must
    settle on the new primary. ``direct``: everyone uses a plain ``redis://`` URL of the
    primary instead (the baseline: nobody follows the failover); the run then ends
    ``timeout`` seconds after the kill, with what settled by then (read on the new primary)."""
    sentinel_url = group.url(db=0)
    url = f"redis://127.0.0.1:{group.primary_port()}/0" if direct else sentinel_url
    conn = _redis.connect(sentinel_url, socket_timeout=2, socket_connect_timeout=2)
    publish(conn, QUEUE, attempts=5)
    journal = workdir / "journal"
    journal.touch()
    ids = [f"job-{n:05d}" for n in range(jobs)]
    half = jobs // 2
    enqueue_many(
        QUEUE, [JobSpec(f"{FN}journal", [i, job_seconds], job_id=i) for i in ids[:half]], connection=conn
    )
    assert conn.wait(1, 5000) >= 1
    procs = [
        WorkerProcess(
            url,
            QUEUE,
            pod=f"pod-{n}",
            mode="thread",
            concurrency=concurrency,
            env={"JOBQUEUE_TEST_JOURNAL": str(journal)},
        )
        for n in range(workers)
    ]
    producer = _Producer(url, ids[half:], job_seconds, batch=50, every=0.1)
    polls = _OperatorPolls(url)
    first_after: float | None = None
    try:
        producer.start()
        polls.start()
        devenv.wait_until(
            "the burst under way",
            lambda: len(journal.read_text().splitlines()) >= jobs * fail_when_done,
            timeout=timeout,
            interval=0.05,
        )
        old_port, failed_at = group.fail_primary()
        promoted_at = group.wait_failover(old_port)
        if direct:
            time.sleep(max(0.0, failed_at + timeout - time.time()))
            settled_after = timeout
        else:
            # the workers are back when jobs are recorded finished on the new primary (a job
            # in flight at the kill may complete without Redis; its result cannot be recorded)
            base = devenv.wait_until("the new primary answering", lambda: _finished(conn), timeout=timeout)
            first_after = devenv.wait_until(
                "a job recorded finished after the failover",
                lambda: (_finished(conn) or (0,))[0] > base[0] and time.time() - failed_at,
                timeout=timeout,
                interval=0.05,
            )
            producer.done.wait(timeout)
            assert producer.error is None, repr(producer.error)

            def settled() -> bool:
                with contextlib.suppress(redis.RedisError):
                    done = int(conn.zcard(f"rq:finished:{QUEUE}")) + int(conn.zcard(f"rq:failed:{QUEUE}"))
                    return done >= jobs
                return False

            devenv.wait_until(
                f"{jobs} jobs settled on the new primary", settled, timeout=timeout, interval=0.2
            )
            settled_after = time.time() - failed_at
            time.sleep(1.0)  # (a re-run already started would still complete: count it)
    finally:
        polls.stop.set()
        polls.join(10)
        logs = []
        for p in procs:
            p.stop()
            logs.append(p.log())
    runs = Counter(journal.read_text().split())
    pipe = conn.pipeline(transaction=False)
    for i in ids:
        pipe.hget(f"rq:job:{i}", "status")
    status_of = {i: s.decode() if s else "missing" for i, s in zip(ids, pipe.execute(), strict=True)}
    back = next((t - failed_at for t in polls.ok if t > promoted_at), None)
    return FailoverRun(
        jobs=jobs,
        job_seconds=job_seconds,
        failed_at=failed_at,
        promoted_at=promoted_at,
        first_completion_after=first_after,
        settled_after=settled_after,
        resent_batches=producer.resent,
        resent_already_there=producer.already_there,
        completions=Counter(runs.get(i, 0) for i in ids),
        statuses=Counter(status_of.values()),
        lost=sum(1 for i in ids if not runs.get(i) or status_of[i] != "finished"),
        operator_polls_back_after=back,
        operator_poll_failures=sum(1 for t in polls.failed if t >= failed_at),
        worker_logs=logs,
    )
