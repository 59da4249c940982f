"""Where jobs run: pre-forked processes, threads, or asyncio tasks.

The worker's coordinator (:mod:`jobqueue.worker`) owns everything that touches Redis; an
executor only runs calls and reports back through one queue of events (:class:`Done`,
:class:`Progress`, :class:`Died`). Three kinds, chosen by ``--mode``:

``process`` (CPU-bound work)
    ``--concurrency`` long-lived child processes, started from a ``forkserver`` that has
    already imported the job modules, so a child costs one fork and no imports, and the
    coordinator's threads are never forked. Each child runs one job at a time and lives until
    the worker stops — no fork per job (RQ's forking Worker pays ~15 ms per job for that).
    A **hard timeout** kills the child (SIGKILL) and starts a replacement; a child that dies
    on its own (segfault, OOM kill, ``os._exit``) fails only the attempt it was running.

``thread`` (blocking I/O)
    ``--concurrency`` threads. Python cannot kill a thread, so at the deadline the attempt is
    **failed and its slot given to a fresh thread**; the old thread gets a
    :class:`JobTimeout` raised asynchronously, which interrupts Python code but not a call
    blocked inside C (a socket read without its own timeout, ``time.sleep``) — such code
    keeps running in the background until that call returns, and its result is discarded.
    Give I/O calls their own timeouts, or use process mode when a hard stop matters.

``async`` (many concurrent I/O waits)
    One event loop in its own thread; ``async def`` jobs run as tasks and are **cancelled**
    at the deadline (``CancelledError`` at their current ``await``). Plain functions run in
    the loop's thread pool (``asyncio.to_thread``), with thread-mode timeout semantics.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import json
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import connection as mp_connection
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Final

from jobqueue import context, metrics, payload
from jobqueue.registry import Allowlist, JobFunction

log = logging.getLogger("jobqueue.worker")

#: Longest failure reason kept on one line; the full traceback is stored separately.
MAX_REASON: Final = 1000
MAX_TRACE: Final = 64 * 1024


class JobTimeout(BaseException):
    """Raised asynchronously into a thread-mode job whose deadline passed."""


class SubmitError(Exception):
    """A task cannot be handed to its executor (process mode: arguments that cannot be sent
    to a job process); the message says why, and becomes the job's failure reason."""


@dataclass(frozen=True, slots=True)
class Task:
    seq: int
    job_id: str
    function: JobFunction
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    attempt: int
    attempts: int


@dataclass(frozen=True, slots=True)
class Done:
    seq: int
    ok: bool
    result: bytes | None  # JSON of the return value
    error: str  # "Type: message", one line ("" on success)
    trace: str  # the traceback ("" on success)
    started: float
    ended: float


@dataclass(frozen=True, slots=True)
class Progress:
    seq: int
    value: float


@dataclass(frozen=True, slots=True)
class Died:
    seq: int
    reason: str
    #: False when the job ended its own process (an exit code, a crash signal): it would do it
    #: again. A SIGKILL comes from outside (the OOM killer, a person): worth another attempt.
    retryable: bool


@dataclass(frozen=True, slots=True)
class Cancelled:
    """Async mode: a task the coordinator cancelled at its deadline ended."""

    seq: int


@dataclass(frozen=True, slots=True)
class CancelAsked:
    """Not from an executor: someone cancelled a job this worker holds (issue 21)."""

    job_id: str
    exec: str


@dataclass(frozen=True, slots=True)
class Started:
    """A task submitted ahead (see :attr:`Executor.queue_ahead`) really started, at ``at``."""

    seq: int
    at: float


@dataclass(frozen=True, slots=True)
class Wake:
    """Not from an executor: the coordinator's own wake-up (new work, a signal)."""


@dataclass(frozen=True, slots=True)
class SyncDone:
    """Not from an executor: the coordinator's SYNC call (run on its jobqueue-sync thread) ended."""


Event = Done | Progress | Died | Cancelled | CancelAsked | Started | Wake | SyncDone
Events = queue.SimpleQueue[Event]


def describe(exc: BaseException) -> tuple[str, str]:
    """(one-line reason, traceback) of an exception raised by job code.

    Never raises: a job's exception is job code too — its ``__str__`` may raise or return
    anything — and a failure to describe it must not cost the slot or the process."""
    try:
        name = type(exc).__name__
    except BaseException:  # (a metaclass of the job's may override even that)
        name = "Exception"
    try:
        message = str(exc)
    except BaseException as inner:
        message = f"<its message could not be read: str() raised {type(inner).__name__}>"
    line = f"{name}: {message}".strip().replace("\n", " ")
    if len(line) > MAX_REASON:
        line = line[:MAX_REASON] + "…"
    try:
        trace = "".join(traceback.format_exception(exc))
    except BaseException as inner:
        trace = f"{line}\n(no traceback: formatting it raised {type(inner).__name__})"
    return line, trace[-MAX_TRACE:]


def _failure(seq: int, exc: BaseException, started: float) -> Done:
    line, trace = describe(exc)
    return Done(seq, False, None, line, trace, started, time.time())


def _never() -> bool:
    return False


def run_call(task: Task, report: Callable[[float], None], cancel_asked: Callable[[], bool] = _never) -> Done:
    """Run one job function here and now (thread mode, and inside process children)."""
    ctx = context.JobContext(
        task.job_id, task.queue, task.function.name, task.attempt, task.attempts, report, cancel_asked
    )
    token = context.activate(ctx)
    started = time.time()
    try:
        if task.function.is_async:
            value = asyncio.run(task.function.func(*task.args, **task.kwargs))
        else:
            value = task.function.func(*task.args, **task.kwargs)
    except BaseException as exc:  # job code may raise anything, SystemExit included
        return _failure(task.seq, exc, started)
    finally:
        context.deactivate(token)
    return Done(task.seq, True, payload.encode_result(value), "", "", started, time.time())


class Executor(ABC):
    #: True: the coordinator may submit more tasks than ``slots``; the extra ones wait in the
    #: executor and start the moment a slot frees (a Started event says when), without a
    #: round trip through the coordinator — what keeps a process busy with millisecond jobs.
    queue_ahead = False

    def __init__(self, slots: int, events: Events, allow: Allowlist) -> None:
        self.slots = slots
        self.events = events
        self.allow = allow
        #: seq -> set once the job is cancelled (``current_job().cancel_requested``)
        self._cancel_flags: dict[int, threading.Event] = {}

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def submit(self, task: Task) -> bool:
        """Start a task (True), or queue it to start when a slot frees (False: only with
        :attr:`queue_ahead`; a Started event follows)."""

    def take_back(self) -> list[int]:
        """Withdraw the tasks queued ahead that have not started (the worker is stopping)."""
        return []

    @abstractmethod
    def cancel(self, seq: int) -> None:
        """Stop a task whose deadline passed; a Done for it may still arrive and is ignored."""

    @abstractmethod
    def stop(self, *, kill: bool) -> None:
        """Release resources; ``kill`` aborts tasks still running."""

    def flag_cancel(self, seq: int) -> None:
        """Tell a running task it was cancelled: ``current_job().cancel_requested`` turns True
        (thread and async mode; a process is killed instead)."""
        flag = self._cancel_flags.get(seq)
        if flag is not None:
            flag.set()

    def _cancel_check(self, seq: int) -> Callable[[], bool]:
        flag = self._cancel_flags[seq] = threading.Event()
        return flag.is_set

    def _report(self, seq: int) -> Callable[[float], None]:
        def report(value: float) -> None:
            self.events.put(Progress(seq, value))

        return report


# --------------------------------------------------------------------------------------
# threads


def _async_raise(ident: int, exc: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc))


class ThreadExecutor(Executor):
    def start(self) -> None:
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread_of: dict[int, int] = {}  # seq -> thread ident
        self._abandoned: set[int] = set()
        self._threads: list[threading.Thread] = []
        for _ in range(self.slots):
            self._spawn()

    def _spawn(self) -> None:
        t = threading.Thread(target=self._loop, name="jobqueue-job", daemon=True)
        t.start()
        self._threads.append(t)

    def _loop(self) -> None:
        ident = threading.get_ident()
        while True:
            task = self._tasks.get()
            if task is None:
                return
            with self._lock:
                self._thread_of[task.seq] = ident
            try:
                done = run_call(task, self._report(task.seq), self._cancel_check(task.seq))
            except JobTimeout:  # arrived after the call returned
                done = None
            self._cancel_flags.pop(task.seq, None)
            with self._lock:
                self._thread_of.pop(task.seq, None)
                abandoned = task.seq in self._abandoned
                self._abandoned.discard(task.seq)
            if abandoned:
                return  # a replacement thread took this one's place
            if done is not None:
                self.events.put(done)

    def submit(self, task: Task) -> bool:
        self._tasks.put(task)
        return True

    def cancel(self, seq: int) -> None:
        with self._lock:
            ident = self._thread_of.get(seq)
            if ident is None:
                return
            self._abandoned.add(seq)
            # the abandoned thread is no longer ours to wait for; it ends when its call returns
            self._threads = [t for t in self._threads if t.ident != ident]
        _async_raise(ident, JobTimeout)
        self._spawn()

    def stop(self, *, kill: bool) -> None:
        for _ in self._threads:
            self._tasks.put(None)
        if not kill:
            for t in list(self._threads):
                t.join(timeout=5)


# --------------------------------------------------------------------------------------
# asyncio


class AsyncExecutor(Executor):
    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        # (for job code's own asyncio.to_thread / run_in_executor)
        self._loop.set_default_executor(
            ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="jobqueue-sync-job")
        )
        self._running: dict[int, asyncio.Task[None]] = {}
        self._cancelling: set[int] = set()  # tasks the coordinator cancelled (loop thread only)
        # tasks submitted since the loop last took them: one wake-up of the loop (a write to
        # its self-pipe) per batch, not per task
        self._incoming: deque[Task] = deque()
        self._incoming_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jobqueue-asyncio", daemon=True)
        self._thread.start()

    def submit(self, task: Task) -> bool:
        with self._incoming_lock:
            self._incoming.append(task)
            if len(self._incoming) > 1:
                return True  # the wake-up of the first in the batch takes this one too
        self._loop.call_soon_threadsafe(self._create)
        return True

    def _create(self) -> None:
        with self._incoming_lock:
            tasks = list(self._incoming)
            self._incoming.clear()
        for task in tasks:
            self._running[task.seq] = self._loop.create_task(self._run(task))

    async def _run(self, task: Task) -> None:
        ctx = context.JobContext(
            task.job_id,
            task.queue,
            task.function.name,
            task.attempt,
            task.attempts,
            self._report(task.seq),
            self._cancel_check(task.seq),
        )
        token = context.activate(ctx)
        started = time.time()
        try:
            if task.function.is_async:
                value = await task.function.func(*task.args, **task.kwargs)
            else:
                value = await self._in_thread(task)
        except asyncio.CancelledError as exc:
            if task.seq in self._cancelling:  # at its deadline: the coordinator records the outcome
                self.events.put(Cancelled(task.seq))
                return
            # the job's own code was cancelled (or raised CancelledError): an ordinary failure
            line, trace = describe(exc)
            if line == "CancelledError:":
                line = "CancelledError: raised in the job's own code (the worker did not cancel it)"
            self.events.put(Done(task.seq, False, None, line, trace, started, time.time()))
            return
        except BaseException as exc:
            self.events.put(_failure(task.seq, exc, started))
            return
        finally:
            context.deactivate(token)
            self._running.pop(task.seq, None)
            self._cancelling.discard(task.seq)
            self._cancel_flags.pop(task.seq, None)
        self.events.put(Done(task.seq, True, payload.encode_result(value), "", "", started, time.time()))

    async def _in_thread(self, task: Task) -> Any:
        """Run a plain function on a daemon thread of its own (not a pool's): one that outlives
        its deadline keeps no pool worker busy and cannot hold up the process's exit."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        call = contextvars.copy_context()

        def settle(error: BaseException | None, value: Any) -> None:
            if future.done():  # cancelled at its deadline: the late outcome is dropped
                return
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

        def body() -> None:
            error: BaseException | None = None
            value: Any = None
            try:
                value = call.run(task.function.func, *task.args, **task.kwargs)
            except StopIteration as exc:  # (a Future refuses StopIteration)
                error = RuntimeError(f"the job raised StopIteration: {describe(exc)[0]}")
            except BaseException as exc:  # job code may raise anything, SystemExit included
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: the worker stopped
                loop.call_soon_threadsafe(settle, error, value)

        threading.Thread(target=body, name="jobqueue-sync-job", daemon=True).start()
        return await future

    def cancel(self, seq: int) -> None:
        def do() -> None:
            t = self._running.get(seq)
            if t is not None:
                self._cancelling.add(seq)
                t.cancel()

        self._loop.call_soon_threadsafe(do)

    def stop(self, *, kill: bool) -> None:
        def shutdown() -> None:
            if kill:
                for seq, t in self._running.items():
                    self._cancelling.add(seq)
                    t.cancel()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shutdown)
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------------------
# pre-forked processes


def child_main(conn: Connection, modules: list[str]) -> None:
    """Body of a pre-forked child: run the tasks the coordinator sends, one at a time."""
    # The coordinator decides when children end (closing the pipe, or SIGKILL at a deadline);
    # a SIGTERM/SIGINT sent to the whole process group must not cut a job short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    allow = Allowlist(modules)
    allow.import_modules()
    lock = threading.Lock()

    def send(msg: list[Any]) -> None:
        data = json.dumps(msg).encode()
        with lock:
            conn.send_bytes(data)

    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        seq, name, args, kwargs, job_id, q, attempt, attempts = json.loads(raw)
        fn = allow.lookup(name)  # the coordinator checked too; a child never trusts its input

        def report(value: float, seq: int = seq) -> None:
            send(["p", seq, value])

        done = run_call(Task(seq, job_id, fn, args, kwargs, q, attempt, attempts), report)
        result = done.result.decode() if done.result is not None else None
        send(["d", seq, done.ok, result, done.error, done.trace, done.started, done.ended])


@dataclass
class _Child:
    proc: BaseProcess
    conn: Connection
    seq: int | None = None
    cancelled: bool = False
    born: float = 0.0


class ProcessExecutor(Executor):
    #: How long a stopping worker waits for an idle child to exit before killing it.
    STOP_GRACE: Final = 5.0
    queue_ahead = True

    def start(self) -> None:
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["jobqueue.executors", *self.allow.modules])
        self._lock = threading.Lock()
        self._children: list[_Child] = []
        self._pending: deque[tuple[int, bytes]] = deque()  # (seq, encoded task)
        self._closing = False
        for _ in range(self.slots):
            self._children.append(self._spawn())
        self._reader = threading.Thread(target=self._read, name="jobqueue-children", daemon=True)
        self._reader.start()

    def _spawn(self) -> _Child:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=child_main, args=(child, list(self.allow.modules)), name="jobqueue-job", daemon=True
        )
        proc.start()
        child.close()
        return _Child(proc, parent, born=time.monotonic())

    @staticmethod
    def _encode(task: Task) -> bytes:
        try:
            return json.dumps(
                [
                    task.seq,
                    task.function.name,
                    task.args,
                    task.kwargs,
                    task.job_id,
                    task.queue,
                    task.attempt,
                    task.attempts,
                ]
            ).encode()
        except (RecursionError, ValueError, TypeError) as exc:  # (decoded once, so only depth)
            raise SubmitError(
                f"its arguments cannot be sent to a job process ({type(exc).__name__}: {exc})"
            ) from None

    def _send(self, child: _Child, seq: int, data: bytes) -> bool:
        """Hand a task to an idle child (lock held); False if the child's pipe is broken (it
        died while idle: the reader replaces it, and no attempt is charged)."""
        try:
            child.conn.send_bytes(data)
        except OSError:
            child.cancelled = True  # never picked again; its replacement takes the task
            return False
        child.seq = seq
        return True

    def submit(self, task: Task) -> bool:
        data = self._encode(task)
        with self._lock:
            for c in self._children:
                if c.seq is None and not c.cancelled and self._send(c, task.seq, data):
                    return True
            # the next child to free up (or be replaced) takes it
            self._pending.append((task.seq, data))
            return False

    def _send_pending(self, c: _Child) -> None:
        """Hand the next queued task to an idle child at once (called with the lock held)."""
        if self._pending and self._send(c, *self._pending[0]):
            seq, _ = self._pending.popleft()
            self.events.put(Started(seq, time.time()))

    def take_back(self) -> list[int]:
        with self._lock:
            seqs = [seq for seq, _ in self._pending]
            self._pending.clear()
        return seqs

    def _read(self) -> None:
        while not self._closing:
            with self._lock:
                conns = {c.conn: c for c in self._children}
            for conn in mp_connection.wait(list(conns), timeout=0.2):
                c = conns[conn]  # type: ignore[index]
                try:
                    msg = json.loads(c.conn.recv_bytes())
                except (EOFError, OSError):
                    self._replace(c)
                    continue
                if msg[0] == "p":
                    self.events.put(Progress(msg[1], msg[2]))
                    continue
                _, seq, ok, result, error, trace, started, ended = msg
                with self._lock:
                    c.seq = None
                    if c.cancelled:
                        continue
                    self._send_pending(c)
                self.events.put(
                    Done(
                        seq, ok, result.encode() if result is not None else None, error, trace, started, ended
                    )
                )

    def _replace(self, c: _Child) -> None:
        c.proc.join(timeout=5)
        code = c.proc.exitcode
        metrics.mark_dead(c.proc.pid or 0)
        with self._lock:
            if c in self._children:
                self._children.remove(c)
            seq, cancelled = c.seq, c.cancelled
        c.conn.close()
        if seq is not None and not cancelled:
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            retry = code == -signal.SIGKILL
            reason = f"WorkerProcessDied: the process running this job died ({how})"
            self.events.put(Died(seq, reason if retry else f"{reason}; not retried", retryable=retry))
        if self._closing:
            return
        if time.monotonic() - c.born < 1.0:
            time.sleep(1.0)  # a child that cannot even start must not become a fork loop
        fresh = self._spawn()
        with self._lock:
            self._children.append(fresh)
            self._send_pending(fresh)

    def cancel(self, seq: int) -> None:
        with self._lock:
            for c in self._children:
                if c.seq == seq:
                    c.cancelled = True
                    if c.proc.pid:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(c.proc.pid, signal.SIGKILL)
                    return
            self._pending = deque(p for p in self._pending if p[0] != seq)

    def stop(self, *, kill: bool) -> None:
        self._closing = True
        self._reader.join(timeout=2)
        with self._lock:
            children = list(self._children)
        for c in children:
            if kill and c.proc.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(c.proc.pid, signal.SIGKILL)
            c.conn.close()  # an idle child exits on EOF
        deadline = time.monotonic() + self.STOP_GRACE
        for c in children:
            c.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if c.proc.exitcode is None and c.proc.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(c.proc.pid, signal.SIGKILL)
                c.proc.join(timeout=2)
            metrics.mark_dead(c.proc.pid or 0)


def make(mode: str, slots: int, events: Events, allow: Allowlist) -> Executor:
    kinds: dict[str, type[Executor]] = {
        "process": ProcessExecutor,
        "thread": ThreadExecutor,
        "async": AsyncExecutor,
    }
    return kinds[mode](slots, events, allow)
