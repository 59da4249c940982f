"""Helpers for the worker tests: publish a queue, run real workers, wait for outcomes.

Workers run either as the real ``jobqueue worker`` command in a subprocess (the pod
contract: signals, processes, metrics port) or, where only the Redis semantics matter, as a
:class:`jobqueue.worker.Worker` on a thread of the test process (thread mode, no start-up
cost).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from jobqueue import get_job, protocol, settings
from jobqueue.worker import Worker, WorkerConfig

ROOT = Path(__file__).resolve().parents[3]
JOBS = "integration.workers.wjobs"
FN = JOBS + "."


def publish(
    conn: redis.Redis, queue: str, *, concurrency: int | None = None, **job_defaults: Any
) -> settings.QueueSettings:
    """Publish a queue as the operator would (``concurrency``: the queue-wide cap, none by default)."""
    qs = settings.QueueSettings.model_validate(
        {"queueName": queue, "jobDefaults": job_defaults, "imports": [JOBS], "concurrency": concurrency}
    )
    settings.publish(conn, qs)
    return qs


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def wait_status(conn: redis.Redis, queue: str, job_id: str, status: str, timeout: float = 20.0) -> Any:
    return wait_for(
        f"job {job_id} to be {status}",
        lambda: (info := get_job(queue, job_id, connection=conn)).status == status and info,
        timeout,
    )


def worker_env(redis_url: str, pod: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        JOBQUEUE_REDIS_URL=redis_url,
        JOBQUEUE_TEST_REDIS_URL=redis_url,
        POD_NAME=pod,
        PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")]),
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def jq(redis_url: str, *args: str | bytes, text: bool = True) -> subprocess.CompletedProcess[Any]:
    """The ``jobqueue`` command in a subprocess, as a CronJob pod or a person runs it
    (``text=False``: raw bytes, for output that need not be UTF-8)."""
    return subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", *args],
        capture_output=True,
        text=text,
        env=worker_env(redis_url, "cli"),
        timeout=60,
        check=False,
    )


class WorkerProcess:
    """``jobqueue worker`` as a subprocess in its own process group (like a pod)."""

    def __init__(
        self,
        redis_url: str,
        queue: str,
        *,
        pod: str = "pod-a",
        mode: str = "process",
        concurrency: int = 1,
        metrics_port: int = 0,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.pod = pod
        cmd = [
            sys.executable,
            "-m",
            "jobqueue.cli",
            "worker",
            "--queue",
            queue,
            "--import",
            JOBS,
            "--concurrency",
            str(concurrency),
            "--mode",
            mode,
            "--metrics-port",
            str(metrics_port),
            *extra,
        ]
        self.proc = subprocess.Popen(
            cmd,
            env={**worker_env(redis_url, pod), **(env or {})},
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.output.append(line)

    def log(self) -> str:
        return "".join(self.output)

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)

    def kill_pod(self) -> None:
        """SIGKILL every process of the 'pod' (the worker and its children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill_pod()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stray children, if any
        self._reader.join(timeout=5)


@contextlib.contextmanager
def worker_process(redis_url: str, queue: str, **kw: Any) -> Iterator[WorkerProcess]:
    w = WorkerProcess(redis_url, queue, **kw)
    try:
        yield w
    finally:
        w.stop()


@contextlib.contextmanager
def thread_worker(
    redis_url: str,
    queue: str,
    *,
    concurrency: int = 4,
    pod: str = "pod-t",
    mode: str = "thread",
    imports: tuple[str, ...] = (JOBS,),
    **cfg: Any,
) -> Iterator[Worker]:
    """A Worker on a thread of this process (no signals); stopped gracefully on exit."""
    saved = os.environ.get("JOBQUEUE_TEST_REDIS_URL")
    os.environ["JOBQUEUE_TEST_REDIS_URL"] = redis_url  # for the jobs in wjobs
    w = Worker(
        redis_url,
        WorkerConfig(queue=queue, imports=imports, concurrency=concurrency, mode=mode, pod=pod, **cfg),
    )  # type: ignore[arg-type]
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(w.run()), daemon=True)
    t.start()
    try:
        yield w
    finally:
        w.request_stop()
        t.join(timeout=30)
        if saved is None:
            os.environ.pop("JOBQUEUE_TEST_REDIS_URL", None)
        else:
            os.environ["JOBQUEUE_TEST_REDIS_URL"] = saved
        assert not t.is_alive(), "worker did not stop"


def claim(
    conn: redis.Redis,
    queue: str,
    n: int,
    *,
    pod: str = "pod-x",
    worker: str = "w-x",
    lease: float = 30.0,
    acks: list[protocol.Ack] | None = None,
    xp: str | None = None,
    now: float | None = None,
    lost: list[protocol.Unanswered] | None = None,
) -> list[Any]:
    """Run the SYNC script like a worker would (claim n jobs for `pod`), without running them;
    returns [id, exec, payload] per job. ``xp``: the call's exec prefix; ``lost``: earlier
    unanswered calls."""
    import uuid

    from jobqueue import payload
    from jobqueue.worker import _SYNC

    now = time.time() if now is None else now
    args = protocol.SyncArgs(
        queue=queue,
        now=now,
        iso=payload.utcformat(now),
        lease=now + lease,
        worker=worker,
        pod=pod,
        n=n,
        free=n,
        exec_prefix=xp or f"{uuid.uuid4().hex[:8]}.",
        busy=0,
        slots=n,
        current="",
        ok=0,
        ko=0,
        work_time=0,
        defaults=protocol.Defaults(
            attempts=1,
            timeout=180,
            backoff='{"type":"fixed","delaySeconds":1}',
            keep_completed=3600,
            keep_failed=3600,
        ),
        promote_limit=100,
        acks=acks or [],
        progress=[],
        releases=[],
        unanswered=lost or [],
    )
    reply = _SYNC(conn, args.encode())
    return [[c.id, c.exec, c.data] for c in protocol.decode_claims(reply[2])]
