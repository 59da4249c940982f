"""Recovery of the jobs of a worker pod that vanished — the operator's side.

A worker holds each job it claimed under a lease in ``rq:wip:<queue>``; the job hash records
the claim's pod (``jq_pod``) and execution id. When the operator sees a worker pod disappear
(deleted, evicted, OOM-killed, node lost) it calls :func:`recover_pod` at once instead of
waiting for the lease to run out: every job that pod held is re-queued at the front of its
priority level if it has an attempt left, or failed with ``reason`` otherwise, and the pod's
RQ worker records are retired. (Live workers do the same for any expired lease on their own,
within ~20 s, so recovery also happens when the operator is down — see
:mod:`jobqueue.worker`.)

One Lua script does it atomically, so it is idempotent (a second call finds nothing of that
pod's left) and safe to run concurrently with workers and with another recovery. Call it only
once the pod's containers are really gone: a job re-queued while its old process still runs
would run twice (the old run's result is then discarded, not recorded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from jobqueue import _lua, payload
from jobqueue._redis import Script, text

_RECOVER_POD = Script(_lua.RECOVER_POD)


@dataclass(frozen=True)
class RecoveryReport:
    queue: str
    pod: str
    requeued: list[str]  # job ids put back in their queue (an attempt was left)
    failed: list[str]  # job ids failed with the reason (no attempt left)
    workers_removed: list[str]  # RQ worker names retired

    @property
    def jobs(self) -> int:
        return len(self.requeued) + len(self.failed)


def recover_pod(conn: redis.Redis, queue_name: str, pod_name: str, *, reason: str) -> RecoveryReport:
    """Re-queue or fail every job ``pod_name`` held on ``queue_name``; see the module doc."""
    if not pod_name:
        raise ValueError("pod_name must not be empty")
    now = time.time()
    requeued, failed, workers = _RECOVER_POD(
        conn,
        queue_name,
        pod_name,
        repr(now),
        payload.utcformat(now),
        reason or f"lost: pod {pod_name} vanished",
    )
    return RecoveryReport(
        queue=queue_name,
        pod=pod_name,
        requeued=[text(x) for x in requeued],
        failed=[text(x) for x in failed],
        workers_removed=[text(x) for x in workers],
    )
