"""The worker runtime behind ``jobqueue worker`` (the command every worker pod runs).

One *coordinator* per process does all the Redis work; an executor
(:mod:`jobqueue.executors`) runs the jobs in pre-forked processes, threads or asyncio tasks.
The coordinator's loop is built for throughput and for never losing a job:

* **one round trip per loop turn** — the SYNC script records every attempt that ended since
  the last turn (success, retry with backoff, failure), writes progress, hands back jobs
  when stopping, promotes due delayed jobs, and claims new jobs for the free slots (plus a
  small prefetch, ~10 ms of work, so fast jobs never wait for Redis);
* **no window where a job is nowhere**: a claim moves the id from its pending list to
  ``rq:wip`` (RQ's StartedJobRegistry) inside the script, with a *lease*; the end of an
  attempt removes it in the same script that records the outcome. If the pod dies in
  between, the lease expires and the job is re-queued (attempts left) or failed with the
  reason — by any live worker (the REAP script, every few seconds) or by the operator
  (:func:`jobqueue.recovery.recover_pod`) as soon as it sees the pod vanish. A result that
  arrives after its job was taken away is dropped, never recorded twice;
* **no scheduler lock**: every worker promotes due jobs atomically in SYNC; an idle worker
  sleeps in ``BLMOVE`` on the queue's signal list until work arrives or the next delayed
  job is due, so delayed jobs and retries start within a few ms of their time;
* a background thread renews the leases and the worker's RQ record (heartbeat), reaps
  expired leases, and re-reads the queue's published settings (``suspend`` included);
* the queue-wide ``concurrency`` is enforced where jobs are claimed (the SYNC script counts
  ``rq:wip``), so it holds across pods, rollouts and manual scaling;
* nothing a job record holds or a job function does ends the worker: the script fails
  records that cannot run, and this module turns every other surprise (a payload it cannot
  decode, an exception it cannot print, a process that dies) into that job's failure.

Signals: the first SIGTERM/SIGINT stops claiming, hands back claimed-but-unstarted jobs,
lets running jobs finish and exits 0. A second one aborts running jobs, puts them back in
their queue with their attempt refunded, and exits 1.

The worker registers one RQ worker record (``rq:worker:<name>``) with ``hostname`` =
``$POD_NAME``, ``state`` busy/idle and our ``jq_slots``/``jq_busy`` fields, so ``rq info``
and the autoscaler see it.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import queue
import random
import signal
import socket
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import redis
from redis.typing import EncodableT
from rq.version import VERSION as RQ_VERSION

from jobqueue import _lua, executors, keys, payload, protocol, settings
from jobqueue._redis import Script, clean, connect, text
from jobqueue.errors import RegistrationError
from jobqueue.metrics import UNREGISTERED, Tally, WorkerMetrics
from jobqueue.registry import Allowlist, JobFunction

log = logging.getLogger("jobqueue.worker")

_SYNC = Script(_lua.SYNC)
_HEARTBEAT = Script(_lua.HEARTBEAT)
_REAP = Script(_lua.REAP)

Mode = Literal["process", "thread", "async"]

#: A claimed job's lease: renewed every HEARTBEAT_SECONDS while the worker lives; once it
#: runs out the job counts as lost. 15 s survives a few missed heartbeats (GC pause, CPU
#: starvation) and still lets a live worker recover a dead pod's jobs within ~20 s.
LEASE_SECONDS: Final = 15.0
HEARTBEAT_SECONDS: Final = 3.0
REAP_SECONDS: Final = 5.0
#: The RQ worker record expires this long after the last heartbeat (RQ's own is 420 s).
WORKER_TTL: Final = 20
#: Unanswered claiming calls remembered until Redis answers again (each adds ~60 bytes to
#: the next call; older ones' claims have been reaped by then anyway).
UNANSWERED_LIMIT: Final = 64
SETTINGS_REFRESH_SECONDS: Final = 5.0
#: Finished attempts are recorded in batches: at most this many, or this old. With
#: PREFETCH_MAX, the size of a call at millisecond jobs: every SYNC call costs Redis some
#: work of its own, so at no-op jobs 256 rather than 64 cut Redis's CPU per job from ~46 to
#: ~34 µs (benchmarks/bench_worker_floor.py; docs/performance.md, "Where the floor is").
ACK_BATCH: Final = 256
ACK_DELAY: Final = 0.005
#: Prefetch: hold about this much work (seconds) beyond the free slots, at most PREFETCH_MAX.
PREFETCH_SECONDS: Final = 0.01
PREFETCH_MAX: Final = 256
PROMOTE_LIMIT: Final = 200
PROGRESS_INTERVAL: Final = 0.1
#: Process mode queues one task per process ahead while jobs average less than this (s).
QUEUE_AHEAD_BELOW: Final = 0.05
#: A worker whose claim the queue's concurrency cap cut short asks again after this long
#: (jittered) while none of its own jobs ends: the cap binds only when a queue has more slots
#: than its concurrency (a rollout's extra pod, manual scaling, rounding), so polling costs
#: a few calls per second per such worker, while a worker whose own job ends claims at once.
CAP_POLL_SECONDS: Final = 0.1
#: An async job cancelled at its deadline gets this long to end; one still running then
#: caught the CancelledError and carries on: its attempt fails for good (retrying would start
#: a second copy next to it) and it is left to run in the background.
CANCEL_GRACE_SECONDS: Final = 2.0
_DEFAULT_BACKOFF: Final = settings.Backoff()


@dataclass
class Claimed:
    id: str
    exec: str
    data: bytes
    timeout: float
    attempts: int
    made: int
    backoff: settings.Backoff
    keep_completed: int
    keep_failed: int
    level: int
    ready: float
    function: JobFunction | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: RQ's Retry(interval=[...]) of a job plain RQ enqueued (None: ``backoff`` applies)
    rq_intervals: list[float] | None = None

    @property
    def member(self) -> str:
        return f"{self.id}:{self.exec}"


@dataclass
class Running:
    job: Claimed
    seq: int
    started: float | None  # None: submitted ahead, waiting for a slot in the executor
    deadline: float  # time.monotonic(); inf until started
    cancelled: bool = False  # async mode: cancelled at its deadline, given CANCEL_GRACE_SECONDS
    cancel_asked: bool = False  # someone cancelled the job (jobqueue.cancel): it ends canceled


@dataclass
class _Call:
    """One SYNC call: what it carries (taken out of the worker's pending lists when it is
    sent: new results gather for the next call meanwhile) and, once Redis answered, the
    reply or the error."""

    n: int
    args: protocol.SyncArgs
    acks: list[protocol.Ack]
    releases: list[protocol.Release]
    progress: dict[tuple[str, str], float]
    sent: tuple[int, int, float]  # ok_count, ko_count, work_time counted in this call
    reply: Any = None
    error: redis.RedisError | None = None
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class WorkerConfig:
    queue: str
    imports: tuple[str, ...]
    concurrency: int = 1
    mode: Mode = "thread"
    pod: str | None = None  # default: $POD_NAME, else the host name
    burst: bool = False  # exit once nothing is queued, scheduled or running
    lease_seconds: float = LEASE_SECONDS
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    reap_seconds: float = REAP_SECONDS


class Worker:
    #: the SYNC call Redis is running now (at most one): the coordinator hands it to the
    #: jobqueue-sync thread and goes on starting buffered jobs and collecting results while
    #: Redis works, so Redis's time and ours overlap instead of adding up
    inflight: _Call | None
    _calls: queue.SimpleQueue[_Call | None]

    def __init__(self, redis_url: str, config: WorkerConfig, metrics: WorkerMetrics | None = None) -> None:
        if config.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.url = redis_url
        self.cfg = config
        self.queue = config.queue
        self.slots = config.concurrency
        self.allow = Allowlist(config.imports)
        self.metrics = metrics
        self.tally = Tally()  # per-job metric updates, written once per loop turn
        self._busy_shown: int | None = None  # the busy-slots gauge's value
        self.pod = config.pod or os.environ.get("POD_NAME") or socket.gethostname()
        self.token = uuid.uuid4().hex[:8]
        self.name = f"{self.pod}.{self.token}"
        self.wkey = keys.worker_key(self.name)
        self.events: executors.Events = queue.SimpleQueue()
        self.executor = executors.make(config.mode, self.slots, self.events, self.allow)
        self.conn = connect(redis_url)
        # coordinator state (coordinator thread only, except _held which the heartbeat reads)
        self.running: dict[int, Running] = {}
        self.buffer: deque[Claimed] = deque()
        self.acks: list[protocol.Ack] = []
        self.first_ack = 0.0
        self.progress: dict[tuple[str, str], float] = {}
        self.last_progress_flush = 0.0
        self.releases: list[protocol.Release] = []
        self.seq = 0
        self.sync_count = 0
        self.ok_count = self.ko_count = 0
        self.work_time = 0.0
        self._ok_sent = self._ko_sent = 0  # what the worker record already counts
        self._wt_sent = 0.0
        self.avg_run: float | None = None
        self.queue_empty = False
        self.paused_until = 0.0
        self.capped = False  # the last claim was cut short by the queue's concurrency cap
        self.next_due: float | None = None
        self.drained = False
        self.stopping = False
        self.cold = False
        self.exit_code = 0
        self.redis_error_at = 0.0
        #: claiming calls that failed without a reply (see _keep)
        self.unanswered: list[protocol.Unanswered] = []
        self.inflight, self._calls = None, queue.SimpleQueue()
        self._held: set[str] = set()
        self._held_lock = threading.Lock()
        self._want_signal = threading.Event()
        self._done = threading.Event()
        self._stop_signals = 0
        self._backoffs: dict[str, settings.Backoff | list[float] | str] = {}
        self._settings: settings.QueueSettings | None = None
        self._defaults: protocol.Defaults | None = None

    # ---------------------------------------------------------------- lifecycle

    def request_stop(self) -> None:
        """First call: graceful stop. Second: abort running jobs (they are re-queued)."""
        self._stop_signals += 1
        if self._stop_signals == 1:
            self.stopping = True
            log.info("stop requested: finishing %d running job(s), taking no new ones", len(self.running))
        else:
            self.cold = True
            log.warning("second stop request: aborting running jobs and re-queueing them")
        self.events.put(executors.Wake())

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.request_stop()

    def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        self.allow.import_modules()
        functions = self.allow.functions()
        if not functions:
            raise RegistrationError(f"no @job functions found in {', '.join(self.allow.modules)}")
        log.info(
            "worker %s: queue %s, %d slot(s) (%s mode), jobs: %s",
            self.name,
            self.queue,
            self.slots,
            self.cfg.mode,
            ", ".join(sorted(functions)),
        )
        if not self._wait_for_settings():
            return 0
        self._register(self.conn)
        if self.metrics:
            self.metrics.slots.labels(self.queue).set(self.slots)
            self.metrics.busy_slots.labels(self.queue).set(0)
        self.executor.start()
        threads = [
            threading.Thread(target=self._housekeeping, name="jobqueue-heartbeat", daemon=True),
            threading.Thread(target=self._watch, name="jobqueue-watch", daemon=True),
            threading.Thread(target=self._syncer, name="jobqueue-sync", daemon=True),
            threading.Thread(target=self._listen_cancels, name="jobqueue-cancel", daemon=True),
        ]
        for t in threads:
            t.start()
        try:
            self._loop()
        finally:
            self._flush_metrics()
            self._calls.put(None)
            self._done.set()
            self._want_signal.set()
            if not self.cold:  # _abort() already killed the running jobs
                self.executor.stop(kill=False)
            # (the watcher may sit in BLMOVE for up to a second more; it is a daemon thread
            # and touches nothing once _done is set)
            threads[0].join(timeout=3)
            self._unregister()
        log.info("worker %s stopped: %d succeeded, %d failed", self.name, self.ok_count, self.ko_count)
        return self.exit_code

    def _wait_for_settings(self) -> bool:
        waited = False
        while not self.stopping:
            try:
                self._apply_settings(settings.load(self.conn, self.queue, owner=settings.pod_owner()))
                return True
            except settings.UnknownQueueError as exc:
                if not waited:
                    log.warning("%s; waiting for the operator to publish it", exc)
                    waited = True
            except redis.RedisError as exc:
                log.warning("Redis unavailable (%s); retrying", exc)
            self._collect(2.0)
        return False

    def _apply_settings(self, qs: settings.QueueSettings) -> None:
        if self._settings is not None and qs.suspend != self._settings.suspend:
            log.info("queue %s %s", self.queue, "suspended: taking no new jobs" if qs.suspend else "resumed")
        self._settings = qs
        eff = qs.effective()
        self._defaults = protocol.Defaults(
            attempts=eff.attempts,
            timeout=eff.timeout_seconds,
            backoff=eff.backoff.model_dump_json(by_alias=True, exclude_none=True),
            keep_completed=eff.keep_completed_seconds,
            keep_failed=eff.keep_failed_seconds,
        )

    def _register(self, conn: redis.Redis) -> None:
        now_iso = payload.utcformat(time.time())
        record: dict[EncodableT, EncodableT] = {
            "birth": now_iso,
            "last_heartbeat": now_iso,
            "queues": self.queue,
            "pid": os.getpid(),
            "hostname": self.pod,
            "ip_address": "",
            "version": RQ_VERSION,
            "python_version": sys.version.split()[0],
            "state": "idle",
            "current_job": "",
            "successful_job_count": self.ok_count,
            "failed_job_count": self.ko_count,
            "total_working_time": self.work_time,
            "jq_slots": self.slots,
            "jq_busy": self._busy(),
            "jq_mode": self.cfg.mode,
        }
        pipe = conn.pipeline(transaction=True)
        pipe.delete(self.wkey)
        pipe.hset(self.wkey, mapping=record)
        pipe.expire(self.wkey, WORKER_TTL)
        pipe.sadd(keys.RQ_WORKERS, self.wkey)
        pipe.sadd(keys.workers_of(self.queue), self.wkey)
        pipe.execute()

    def _unregister(self) -> None:
        try:
            pipe = self.conn.pipeline(transaction=True)
            pipe.srem(keys.RQ_WORKERS, self.wkey)
            pipe.srem(keys.workers_of(self.queue), self.wkey)
            pipe.hset(
                self.wkey, mapping={"death": payload.utcformat(time.time()), "state": "dead", "jq_busy": 0}
            )
            pipe.expire(self.wkey, 60)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not unregister worker %s: %s", self.name, exc)

    # ---------------------------------------------------------------- the loop

    def _loop(self) -> None:
        while True:
            if self.next_due is not None and self.queue_empty and time.time() >= self.next_due:
                self.queue_empty = False  # a delayed job or a retry is due: promote and claim it
            self._enforce_deadlines()
            if self.cold:
                self._abort()
                return
            if self.stopping:
                self._release_unstarted()
            if self.inflight is not None and self.inflight.done.is_set():
                call, self.inflight = self.inflight, None
                if not self._settle(call):
                    self._collect(1.0)  # Redis trouble: results stay pending, retried next turn
            self._dispatch()
            n = self._claim_count()
            if self.inflight is None and self._should_sync(n):
                self.inflight = self._prepare(n)
                self._calls.put(self.inflight)
            if self.inflight is None and self._finished():
                return
            self._flush_metrics()
            self._collect(self._timeout())

    def _finished(self) -> bool:
        if self.stopping and not (self.running or self.buffer or self.acks or self.releases):
            return True
        return self.cfg.burst and self.drained and not (self.running or self.buffer or self.acks)

    def _timeout(self) -> float:
        t = 1.0
        now = time.monotonic()
        # (while a call is in flight nothing can be sent: its reply, an event, ends the wait)
        if self.inflight is None:
            if self._claim_count() > 0:
                return 0.0
            if self.next_due is not None and len(self.running) < self._capacity():
                t = min(t, max(0.0, self.next_due - time.time()))
            if self.capped:
                t = min(t, max(0.0, self.paused_until - now))
            if self.acks:
                t = min(t, max(0.0, self.first_ack + ACK_DELAY - now))
            if self.progress:
                t = min(t, max(0.0, self.last_progress_flush + PROGRESS_INTERVAL - now))
        for r in self.running.values():
            t = min(t, max(0.0, r.deadline - now))
        return t

    def _collect(self, timeout: float) -> None:
        try:
            ev = self.events.get(timeout=timeout) if timeout > 0 else self.events.get_nowait()
        except queue.Empty:
            return
        while True:
            self._handle(ev)
            try:
                ev = self.events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, ev: executors.Event) -> None:
        if isinstance(ev, executors.Done):
            self._on_done(ev)
        elif isinstance(ev, executors.Died):
            run = self.running.pop(ev.seq, None)
            if run is not None:
                end = time.time()
                self._failed(run.job, ev.reason, ev.reason, run.started or end, end, retryable=ev.retryable)
                self._busy_changed()
        elif isinstance(ev, executors.Cancelled):
            self._on_cancelled(ev)
        elif isinstance(ev, executors.CancelAsked):
            self._cancel(ev.job_id, ev.exec)
        elif isinstance(ev, executors.Started):
            run = self.running.get(ev.seq)
            if run is not None and run.started is None:
                self._started(run, ev.at)
                self._busy_changed()
        elif isinstance(ev, executors.Progress):
            run = self.running.get(ev.seq)
            if run is not None:
                self.progress[(run.job.id, run.job.exec)] = ev.value
        elif isinstance(ev, executors.SyncDone):
            pass  # the loop reads the reply (self.inflight)
        else:  # Wake
            self.queue_empty = False

    def _on_cancelled(self, ev: executors.Cancelled) -> None:
        """Async mode: a task the coordinator cancelled ended (a cancel request, or its deadline)."""
        run = self.running.pop(ev.seq, None)
        if run is not None and run.cancel_asked:
            self._canceled(run, "its task was cancelled")
        elif run is not None:
            self._timed_out(run, retryable=True)

    def _on_done(self, ev: executors.Done) -> None:
        run = self.running.pop(ev.seq, None)
        if run is None:
            return  # already failed at its deadline
        if run.cancel_asked:  # [cancel] ended after the request
            self._canceled(
                run,
                "its task was cancelled"
                if run.cancelled
                else "it ended after it was asked to stop (current_job().cancel_requested)",
            )
            return
        if run.cancelled:  # ended (caught the cancellation, then returned) after its deadline
            self._timed_out(run, retryable=True)
            return
        run_time = max(0.0, ev.ended - ev.started)
        self.avg_run = run_time if self.avg_run is None else 0.8 * self.avg_run + 0.2 * run_time
        fn = run.job.function.name if run.job.function else UNREGISTERED
        if self.metrics:
            self.tally.observe(self.metrics.fn(fn).run_seconds, run_time)
        if ev.ok:
            result = base64.b64encode(ev.result).decode() if ev.result is not None else ""
            self._ack(run.job, "ok", ev.started, ev.ended, run.job.keep_completed, result=result)
            self.ok_count += 1
            self.work_time += run_time
            if self.metrics:
                self.tally.inc(self.metrics.fn(fn).succeeded)
        else:
            self._failed(run.job, ev.error, ev.trace, ev.started, ev.ended)
        self._busy_changed()

    def _busy(self) -> int:
        return sum(1 for r in self.running.values() if r.started is not None)

    def _busy_changed(self) -> None:
        self._busy_shown = None  # (the gauge is written by _flush_metrics, once per loop turn)

    def _flush_metrics(self) -> None:
        if not self.metrics:
            return
        self.tally.flush()
        if self._busy_shown is None:
            self._busy_shown = self._busy()
            self.metrics.busy_slots.labels(self.queue).set(self._busy_shown)

    def _ack(
        self,
        job: Claimed,
        outcome: protocol.Outcome,
        started: float,
        ended: float,
        keep: float,
        *,
        result: str = "",
        trace: str = "",
        reason: str = "",
    ) -> None:
        if not self.acks:
            self.first_ack = time.monotonic()
        trace, reason = clean(trace), clean(reason)  # (job text may hold lone surrogates)
        exc_z = base64.b64encode(zlib.compress(trace.encode())).decode() if trace else ""
        self.acks.append(
            protocol.Ack(
                job.id,
                job.exec,
                outcome,
                payload.utcformat(started),
                payload.utcformat(ended),
                repr(started),
                repr(ended),
                keep,
                result,
                trace,
                exc_z,
                reason,
            )
        )
        with self._held_lock:
            self._held.discard(job.member)

    def _failed(
        self, job: Claimed, reason: str, trace: str, started: float, ended: float, *, retryable: bool = True
    ) -> None:
        fn = job.function.name if job.function else UNREGISTERED
        self.ko_count += 1
        self.work_time += max(0.0, ended - started)
        if retryable and job.made < job.attempts:
            if job.rq_intervals is not None:
                # RQ's own rule (Job.get_retry_interval): the list read from the back of the
                # retries left, its first value repeated while more retries are left than values
                left = job.attempts - job.made
                delay = job.rq_intervals[min(max(len(job.rq_intervals) - left, 0), len(job.rq_intervals) - 1)]
            else:
                rand = random.random() if job.backoff.jitter else 1.0
                delay = job.backoff.delay_for_retry(job.made, rand)
            self._ack(job, "retry", started, ended, round(delay, 3), trace=trace or reason, reason=reason)
            if self.metrics:
                self.metrics.fn(fn).retried.inc()
            log.info(
                "job %s attempt %d/%d failed (%s); retry in %.3g s",
                job.id,
                job.made,
                job.attempts,
                reason,
                delay,
            )
        else:
            self._ack(job, "fail", started, ended, job.keep_failed, trace=trace or reason, reason=reason)
            if self.metrics:
                self.metrics.fn(fn).failed.inc()
            log.info("job %s failed for good after %d attempt(s): %s", job.id, job.made, reason)

    def _enforce_deadlines(self) -> None:
        if not self.running:
            return
        now = time.monotonic()
        for seq, run in list(self.running.items()):
            if now < run.deadline:
                continue
            if run.cancelled:  # the grace passed: it swallowed the CancelledError
                del self.running[seq]
                self._timed_out(run, retryable=False)
                continue
            self.executor.cancel(seq)
            if self.cfg.mode == "async":
                # a task ends at its next await, unless it catches the CancelledError: wait
                # for the executor's Cancelled (or Done) before recording the outcome
                run.cancelled = True
                run.deadline = now + CANCEL_GRACE_SECONDS
                continue
            del self.running[seq]
            self._timed_out(run, retryable=True)

    # ---------------------------------------------------------------- cancel (issue 21)

    def _cancel(self, job_id: str, ex: str) -> None:
        """Stop a job someone cancelled (the CANCEL script told us through our cancel list)."""
        for job in list(self.buffer):  # claimed, not started: it never will
            if (job.id, job.exec) == (job_id, ex):
                self.buffer.remove(job)
                now = time.time()
                self._ack(job, "cancel", now, now, job.keep_failed, reason="stopped before it started")
                return
        seq, run = next(
            ((s, r) for s, r in self.running.items() if (r.job.id, r.job.exec) == (job_id, ex)), (0, None)
        )
        if run is None or run.cancel_asked:
            return  # ended already (its outcome is on its way: the script honours the cancel), or asked twice
        run.cancel_asked = True
        log.info("job %s cancelled: stopping it (%s mode)", job_id, self.cfg.mode)
        if self.cfg.mode == "process":
            self.executor.cancel(seq)  # SIGKILL to its process (or out of the queue ahead)
            del self.running[seq]
            self._canceled(run, "its process was killed" if run.started is not None else "it had not started")
        elif self.cfg.mode == "async":
            self.executor.flag_cancel(seq)
            self.executor.cancel(seq)
            run.cancelled = True  # the Cancelled (or Done) event records it; see _enforce_deadlines
            run.deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        else:  # threads cannot be stopped: the job reads the flag; at its timeout it is abandoned
            self.executor.flag_cancel(seq)

    def _canceled(self, run: Running, how: str) -> None:
        end = time.time()
        self._ack(run.job, "cancel", run.started or end, end, run.job.keep_failed, reason=f"stopped: {how}")
        log.info("job %s canceled: %s", run.job.id, how)
        self._busy_changed()

    def _listen_cancels(self) -> None:
        """Block on this worker's cancel list (see keys.py): a cancel reaches the job at once."""
        conn = connect(self.url)
        key = keys.cancel_list(self.name)
        while not self._done.is_set():
            try:
                item = conn.blpop([key], timeout=1)
            except redis.RedisError:
                time.sleep(1.0)
                continue
            if item:
                job_id, _, ex = text(item[1]).rpartition(":")
                self.events.put(executors.CancelAsked(job_id, ex))
        conn.close()

    def _timed_out(self, run: Running, *, retryable: bool) -> None:
        if run.cancel_asked:  # [cancel] it did not stop when asked: recorded as canceled, never retried
            self._canceled(
                run,
                {
                    "thread": f"it did not stop by its timeout of {run.job.timeout:g} s and was abandoned "
                    "(threads cannot be killed; it may still run in the background)",
                    "async": f"it caught the CancelledError and still runs {CANCEL_GRACE_SECONDS:g} s later "
                    "(left to run in the background)",
                    "process": "its process was killed",
                }[self.cfg.mode],
            )
            return
        how = {
            "process": "its process was killed",
            "async": "it was cancelled",
            "thread": "the worker gave up on it (threads cannot be killed)",
        }[self.cfg.mode]
        reason = f"JobTimeoutError: the attempt exceeded its timeout of {run.job.timeout:g} s; {how}"
        if not retryable:
            reason += (
                f", but it caught the CancelledError and still runs {CANCEL_GRACE_SECONDS:g} s later "
                f"(left to run in the background); not retried"
            )
        if self.metrics and run.job.function:
            self.metrics.fn(run.job.function.name).timed_out.inc()
        self._failed(run.job, reason, reason, run.started or time.time(), time.time(), retryable=retryable)
        self._busy_changed()

    def _capacity(self) -> int:
        """Tasks the executor may hold: its slots, plus as many queued ahead when jobs are
        short (process mode), so a process starts its next job without waiting for us."""
        if self.executor.queue_ahead and self.avg_run is not None and self.avg_run < QUEUE_AHEAD_BELOW:
            return 2 * self.slots
        return self.slots

    def _dispatch(self) -> None:
        if self.stopping:
            return
        capacity = self._capacity()
        while self.buffer and len(self.running) < capacity:
            job = self.buffer.popleft()
            assert job.function is not None
            self.seq += 1
            run = Running(job, self.seq, None, math.inf)
            self.running[self.seq] = run
            task = executors.Task(
                self.seq, job.id, job.function, job.args, job.kwargs, self.queue, job.made, job.attempts
            )
            try:
                started = self.executor.submit(task)
            except executors.SubmitError as exc:
                del self.running[self.seq]
                self._reject(job, str(exc))
                continue
            if started:
                self._started(run, time.time())
        self._busy_changed()

    def _started(self, run: Running, at: float) -> None:
        run.started = at
        run.deadline = time.monotonic() - (time.time() - at) + run.job.timeout
        if self.metrics and run.job.function:
            series = self.metrics.fn(run.job.function.name)
            self.tally.inc(series.started)
            self.tally.observe(series.wait_seconds, max(0.0, at - run.job.ready))

    def _prefetch(self) -> int:
        if self.avg_run is None:
            return 0
        return min(PREFETCH_MAX, int(PREFETCH_SECONDS * self.slots / max(self.avg_run, 1e-6)))

    def _claim_count(self) -> int:
        if self.stopping or self.queue_empty:
            return 0
        # (under the concurrency cap, a job of ours that ended frees a unit: claim with its ack)
        if time.monotonic() < self.paused_until and not (self.capped and self.acks):
            return 0
        if self._settings is not None and self._settings.suspend:
            return 0
        free = self._capacity() - len(self.running)
        prefetch = self._prefetch()
        want = free + prefetch - len(self.buffer)
        if want <= 0:
            return 0
        if len(self.buffer) >= free and len(self.buffer) > prefetch // 2:
            return 0  # enough work in hand: claim more with a later, bigger batch
        return want

    def _should_sync(self, n: int) -> bool:
        if n > 0 or self.releases or len(self.acks) >= ACK_BATCH:
            return True
        now = time.monotonic()
        if self.acks and (not self.running or now - self.first_ack >= ACK_DELAY):
            return True
        return bool(self.progress) and now - self.last_progress_flush >= PROGRESS_INTERVAL

    def _sync(self, n: int) -> bool:
        """One SYNC call, waited for here (the aborting worker's last word)."""
        if self.inflight is not None:  # (its outcome first: its acks go back in the lists)
            self.inflight.done.wait(30)
            call, self.inflight = self.inflight, None
            self._settle(call)
        call = self._prepare(n)
        self._call(call)
        return self._settle(call)

    def _syncer(self) -> None:
        """The jobqueue-sync thread: runs the calls the coordinator prepared, one at a time."""
        while (call := self._calls.get()) is not None:
            self._call(call)
            self.events.put(executors.SyncDone())

    def _call(self, call: _Call) -> None:
        try:
            call.reply = _SYNC(self.conn, call.args.encode())
        except redis.RedisError as exc:
            call.error = exc
        except Exception as exc:  # a bug: kept as a Redis error, so the results are kept too
            log.exception("SYNC call failed")
            call.error = redis.RedisError(f"{type(exc).__name__}: {exc}")
        finally:
            call.done.set()

    def _prepare(self, n: int) -> _Call:
        """The next SYNC call's arguments; the pending results, progress and hand-backs move
        into it (_settle puts them back should the call fail)."""
        now = time.time()
        self.sync_count += 1
        current = next((r.job.id for r in self.running.values() if r.started is not None), "")
        args = protocol.SyncArgs(
            queue=self.queue,
            now=now,
            iso=payload.utcformat(now),
            lease=now + self.cfg.lease_seconds,
            worker=self.name,
            pod=self.pod,
            n=n,
            free=max(0, min(n, self._capacity() - len(self.running) - len(self.buffer))),
            exec_prefix=f"{self.token}{self.sync_count:x}.",
            busy=self._busy(),
            slots=self.slots,
            current=current,
            ok=self.ok_count - self._ok_sent,
            ko=self.ko_count - self._ko_sent,
            work_time=round(self.work_time - self._wt_sent, 6),
            defaults=self._defaults,
            promote_limit=PROMOTE_LIMIT,
            acks=self.acks,
            progress=[protocol.Progress(i, e, v) for (i, e), v in self.progress.items()],
            releases=self.releases,
            unanswered=list(self.unanswered),
        )
        call = _Call(
            n, args, self.acks, self.releases, self.progress, (self.ok_count, self.ko_count, self.work_time)
        )
        self.acks, self.releases, self.progress = [], [], {}
        return call

    def _keep(self, call: _Call, exc: redis.RedisError) -> None:
        """A SYNC call failed: what it carried goes back to be sent with the next call."""
        n, args = call.n, call.args
        self.redis_error_at = args.now
        # (results that ended while it was in flight came after its own)
        self.acks = call.acks + self.acks
        self.releases = call.releases + self.releases
        self.progress = {**call.progress, **self.progress}
        if self.acks:
            self.first_ack = time.monotonic()
        log.warning("Redis call failed (%s); %d result(s) kept for the next try", exc, len(self.acks))
        if n > 0:
            # A timeout does not say the call did not run: a frozen or partitioned Redis
            # runs it when it comes back, claiming jobs this worker never hears of. The
            # next call hands them back, found by this call's lease and exec prefix
            # (else they would wait out their lease and cost an attempt unrun). Best
            # effort: a lost call that Redis runs after the next one still waits out
            # its lease, as before.
            lost = protocol.Unanswered(args.lease, args.exec_prefix)
            self.unanswered = [*self.unanswered, lost][-UNANSWERED_LIMIT:]

    def _settle(self, call: _Call) -> bool:
        """Take in a SYNC call's reply (True), or keep what it carried for the next (False)."""
        n, args = call.n, call.args
        if call.error is not None:
            self._keep(call, call.error)
            return False
        nxt, stale, claimed, paused, capped, rejected = call.reply
        replayed = bool(args.unanswered)  # acks sent again may have been recorded by those calls
        self.unanswered = []
        self._ok_sent, self._ko_sent, self._wt_sent = call.sent
        self.last_progress_flush = time.monotonic()
        self.next_due = float(nxt) if nxt else None
        for job_id in stale:
            log.warning(
                "job %s was taken from this worker before it reported (its lease expired or its pod "
                "was recovered)%s; this attempt's outcome is dropped",
                text(job_id),
                ", or an earlier call whose reply was lost already recorded it" if replayed else "",
            )
        if paused:
            self.paused_until = time.monotonic() + 1.0
        if n > 0:  # (a call that claims nothing says nothing about the cap)
            self.capped = bool(capped)
            if self.capped:
                self._pause_capped(args.now)
        for i in range(0, len(rejected), 2):
            # failed for good by the script, unseen by any worker: its record cannot run
            log.warning("job %s %s", text(rejected[i]), text(rejected[i + 1]))
            if self.metrics:
                self.metrics.fn(UNREGISTERED).rejected.inc()
        got = 0
        try:
            for claim in protocol.decode_claims(claimed):
                got += 1
                self._claimed(claim)
        except Exception:  # a bug, not a record: the claim script checked every field
            # (the jobs not read yet are held by no one here: their leases run out, and the
            # reaper re-queues them with the attempt counted, as for a crashed worker)
            log.exception("cannot read the claimed jobs after %d of them; their leases will run out", got)
        if n > 0:
            self.queue_empty = got < n and not paused and not self.capped
            if self.queue_empty:
                self._want_signal.set()
            self.drained = not claimed and not nxt and not paused and not self.capped
        return True

    def _pause_capped(self, now: float) -> None:
        """The cap or the rate limit cut the claim short: ask again a little later, or when the
        script said a unit frees ([rate limit]: the oldest claim leaves the window; or a due job)."""
        self.paused_until = time.monotonic() + CAP_POLL_SECONDS * random.uniform(0.5, 1.5)
        if self.next_due is not None:
            self.paused_until = min(self.paused_until, time.monotonic() + max(0.0, self.next_due - now))

    def _claimed(self, claim: protocol.Claim) -> None:
        # (the script validated every field)
        job = Claimed(
            id=claim.id,
            exec=claim.exec,
            data=claim.data,
            timeout=claim.timeout if claim.timeout > 0 else math.inf,  # RQ's -1: no limit
            attempts=claim.attempts,
            made=claim.made,
            backoff=_DEFAULT_BACKOFF,  # (replaced below; a model per job would cost throughput)
            keep_completed=claim.keep_completed,
            keep_failed=claim.keep_failed,
            level=claim.level,
            ready=claim.ready,
        )
        with self._held_lock:
            self._held.add(job.member)
        try:
            retry = self._backoff(text(claim.backoff))
            if isinstance(retry, str):
                raise payload.PayloadError(retry)
            if isinstance(retry, list):
                job.rq_intervals = retry
            else:
                job.backoff = retry
            name, job.args, job.kwargs = payload.decode(job.data)
            job.function = self.allow.lookup(name)
        except (payload.PayloadError, RegistrationError) as exc:
            self._reject(job, str(exc))
            return
        except Exception as exc:  # anything a record can hold ends as this job's failure
            self._reject(job, f"its record could not be read ({type(exc).__name__}: {exc})")
            return
        self.buffer.append(job)

    def _backoff(self, raw: str) -> settings.Backoff | list[float] | str:
        """The retry delays a claimed job carries: our backoff (``jq_backoff``), RQ's Retry
        intervals (a JSON list, for jobs plain RQ enqueued), or why neither is valid."""
        found = self._backoffs.get(raw)
        if found is not None:
            return found
        if raw.startswith("["):
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
            ok = isinstance(value, list) and all(
                isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 86400 * 366
                for v in value
            )
            found = (
                [float(v) for v in value]
                if ok and value
                else (
                    f"field retry_intervals is {raw[:80]!r}, not a JSON list of seconds (RQ's Retry intervals)"
                )
            )
        else:
            try:
                found = settings.Backoff.model_validate_json(raw)
            except ValueError as exc:
                first = str(exc).splitlines()[1:2] or [""]
                found = f"field jq_backoff is {raw[:80]!r}, not a valid backoff ({first[0].strip()})"
        if len(self._backoffs) < 1000:  # (a queue has a handful; don't grow on garbage)
            self._backoffs[raw] = found
        return found

    def _reject(self, job: Claimed, why: str) -> None:
        """Fail a claimed job for good: it cannot run, and retrying cannot help."""
        reason = f"rejected: {why}"
        log.warning("job %s %s", job.id, reason)
        if self.metrics:
            self.metrics.fn(UNREGISTERED).rejected.inc()
        now = time.time()
        self._failed(job, reason, reason, now, now, retryable=False)

    def _release_unstarted(self) -> None:
        """Hand back claimed jobs that have not started: in our buffer or queued ahead."""
        jobs = list(self.buffer)
        self.buffer.clear()
        for seq in self.executor.take_back():
            run = self.running.pop(seq, None)
            if run is not None:
                jobs.append(run.job)
        for job in jobs:
            self.releases.append(protocol.Release(job.id, job.exec))
            with self._held_lock:
                self._held.discard(job.member)
        if jobs:
            log.info("handing back %d claimed job(s) that had not started", len(jobs))

    def _abort(self) -> None:
        self.executor.stop(kill=True)
        for run in self.running.values():
            self.releases.append(protocol.Release(run.job.id, run.job.exec))
        self.running.clear()
        self._release_unstarted()
        self.exit_code = 1
        for _ in range(3):
            if self._sync(0):
                return

    # ---------------------------------------------------------------- background threads

    def _housekeeping(self) -> None:
        conn = connect(self.url)
        last_reap = last_settings = time.monotonic()
        while not self._done.wait(self.cfg.heartbeat_seconds):
            now = time.time()
            with self._held_lock:
                members = list(self._held)
            try:
                registered, gone = _HEARTBEAT(
                    conn,
                    json.dumps(
                        {
                            "q": self.queue,
                            "w": self.name,
                            "iso": payload.utcformat(now),
                            "ttl": WORKER_TTL,
                            "lease": now + self.cfg.lease_seconds,
                            "members": members,
                        }
                    ),
                )
                if not registered:
                    log.warning(
                        "worker record %s had expired or was declared dead; registering again", self.name
                    )
                    self._register(conn)
                with self._held_lock:  # (acked since we read them is not lost)
                    lost = [text(m) for m in gone if text(m) in self._held]
                for m in lost:
                    log.warning("lease on %s was lost; another worker or the operator re-queued it", m)
                mono = time.monotonic()
                # After Redis was unreachable every lease looks expired, ours included: give
                # the other workers a full lease to renew theirs before reaping anything.
                if (
                    mono - last_reap >= self.cfg.reap_seconds
                    and now - self.redis_error_at > self.cfg.lease_seconds
                ):
                    last_reap = mono
                    requeued, failed = _REAP(
                        conn, self.queue, repr(now), payload.utcformat(now), 100, self.cfg.lease_seconds
                    )
                    if requeued or failed:
                        log.warning(
                            "recovered lost jobs on %s: re-queued %s, failed %s",
                            self.queue,
                            [text(x) for x in requeued],
                            [text(x) for x in failed],
                        )
                if mono - last_settings >= SETTINGS_REFRESH_SECONDS:
                    last_settings = mono
                    try:
                        self._apply_settings(settings.load(conn, self.queue, owner=settings.pod_owner()))
                    except settings.ForeignQueueError as exc:  # another JobQueue's queue now: take nothing
                        if self._settings is not None and not self._settings.suspend:
                            log.warning("%s", exc)
                            self._apply_settings(self._settings.model_copy(update={"suspend": True}))
                    except settings.UnknownQueueError:
                        pass  # (JobQueue deleted: keep the last settings until the pod is removed)
            except ValueError as exc:  # settings someone wrote by hand: this thread must live on
                log.warning("settings of queue %s unreadable (%s); keeping the last", self.queue, exc)
            except redis.RedisError as exc:
                self.redis_error_at = now
                log.warning("heartbeat failed: %s", exc)
        conn.close()

    def _watch(self) -> None:
        """Sleep in BLMOVE on the queue's signal list while the queue is empty (see keys.py)."""
        conn = connect(self.url)
        sig = keys.signal(self.queue)
        while not self._done.is_set():
            if not self._want_signal.wait(0.5):
                continue
            self._want_signal.clear()
            if self._done.is_set():
                break
            timeout = 1.0
            if self.next_due is not None:
                timeout = min(1.0, max(0.01, self.next_due - time.time()))
            try:
                # BLMOVE takes fractional timeouts (Redis >= 6); redis-py's stub says int
                conn.blmove(sig, sig, timeout, "LEFT", "LEFT")  # type: ignore[arg-type]
            except redis.RedisError:
                time.sleep(1.0)
            self.events.put(executors.Wake())
        conn.close()


def run_worker(
    redis_url: str,
    config: WorkerConfig,
    metrics: WorkerMetrics | None = None,
    on_start: Callable[[Worker], None] | None = None,
) -> int:
    w = Worker(redis_url, config, metrics)
    if on_start is not None:
        on_start(w)
    return w.run()
