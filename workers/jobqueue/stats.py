"""Every figure the autoscaler (and ``jobqueue stats``) needs, for many queues, in one round trip.

The operator calls :func:`snapshot` every second for up to a thousand queues, so it is one
network round trip: a pipeline of Lua ``EVALSHA`` calls, 250 queues each (so no single
script holds Redis for more than a few ms). ``benchmarks/bench_worker_snapshot.py`` measures
it: about 25 ms of Redis time for 1,000 busy queues, 12 ms when most are idle. The reply
is packed (two strings per queue), which keeps Redis's and the client's share small. It is
strictly read-only: RQ's own counters (``registry.count``, ``rq info``) run registry
clean-up, which re-queues or fails jobs and runs their callbacks in the *calling* process
(``BaseRegistry.count`` calls ``cleanup()`` first). Nothing here calls RQ.

Reading the figures:

* ``queued`` counts every priority level (``queued_by_priority`` has the split);
* ``scheduled`` counts delayed jobs and retry back-offs; ``scheduled_due`` those already due
  (workers promote them within about a second; a high value means no worker is running);
* ``running`` counts jobs workers hold (started, or claimed and about to start);
  ``lost`` is the part of it whose lease expired — their worker is gone and a live worker
  or :func:`jobqueue.recovery.recover_pod` will re-queue them;
* ``oldest_queued_seconds`` is the age of the longest-waiting runnable job (queued, or due
  but not yet promoted), counted from the moment it became runnable;
* ``last_activity_at`` is when a job last started or finished on the queue (unix time), so
  idle time survives operator restarts;
* ``workers`` are the live RQ worker records (one per ``jobqueue worker`` process; a record
  whose hash expired is dead and left out);
* ``paused`` says the queue is paused (:func:`jobqueue.admin.pause`);
* ``rate_limited`` that its ``spec.rateLimit`` held back a claim within the last 2 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Literal

import redis

from jobqueue import _lua
from jobqueue._redis import Script, text
from jobqueue.keys import PRIORITY_LEVELS

_SNAPSHOT = Script(_lua.SNAPSHOT)
#: Queues per script call. All calls go in one pipeline (one network round trip), but Redis
#: runs each script atomically, so chunks keep any single block of Redis time to a few ms.
_CHUNK = 250


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    pod: str  # the RQ worker's hostname: the pod name (POD_NAME) for our workers
    state: Literal["busy", "idle"]
    current_job: str | None
    busy_slots: int  # jobs this worker process runs right now
    slots: int  # jobs it can run at once (--concurrency); 1 for plain RQ workers


@dataclass(frozen=True)
class QueueStats:
    queue: str
    queued: int
    scheduled: int
    scheduled_due: int
    running: int
    lost: int
    failed: int
    finished: int
    oldest_queued_seconds: float
    last_activity_at: float | None
    queued_by_priority: dict[int, int] = field(default_factory=dict)
    workers: list[WorkerInfo] = field(default_factory=list)
    paused: bool = False  # `jobqueue pause`: workers take nothing new, producers still add
    rate_limited: bool = False  # spec.rateLimit held back a claim within the last 2 s

    @property
    def busy_workers(self) -> int:
        return sum(1 for w in self.workers if w.state == "busy")


def _int(value: object, default: int) -> int:
    try:
        return int(text(value))
    except ValueError:
        return default


#: What :func:`snapshot` may reuse from an earlier call: queue -> (the script's reply for it,
#: the stats made of it). Kept by a caller that polls the same queues again and again.
Reuse = MutableMapping[str, tuple[object, object, QueueStats]]


def _empty(queue: str, packed: str) -> QueueStats:
    """The stats of a queue with no key at all, from its short reply: "last_activity[,1]"."""
    activity, _, paused = packed.partition(",")
    return QueueStats(
        queue=queue,
        queued=0,
        queued_by_priority=dict.fromkeys(PRIORITY_LEVELS, 0),
        scheduled=0,
        scheduled_due=0,
        running=0,
        lost=0,
        failed=0,
        finished=0,
        oldest_queued_seconds=0.0,
        last_activity_at=float(activity) if activity else None,
        paused=paused == "1",
    )


def snapshot(
    conn: redis.Redis, queue_names: Iterable[str], now: float | None = None, *, reuse: Reuse | None = None
) -> dict[str, QueueStats]:
    """Stats of every queue in ``queue_names``; unknown queues simply read as empty.

    With ``reuse`` (the same mapping, call after call), a queue whose reply is what it was
    last time, and whose stats do not depend on the time (nothing runnable is waiting, so no
    age), gets the *same* :class:`QueueStats` object back: the autoscaler polls thousands of
    mostly idle queues every second and skips every queue whose stats object is unchanged."""
    names = list(dict.fromkeys(queue_names))
    now = time.time() if now is None else now
    out: dict[str, QueueStats] = {}
    chunks = [names[s : s + _CHUNK] for s in range(0, len(names), _CHUNK)]
    replies = _SNAPSHOT.many(conn, [(repr(now), *chunk) for chunk in chunks]) if chunks else []
    for chunk, flat in zip(chunks, replies, strict=True):
        for q, figures, rows in zip(chunk, flat[::2], flat[1::2], strict=True):
            if reuse is not None:
                earlier = reuse.get(q)
                if earlier is not None and earlier[0] == figures and earlier[1] == rows:
                    out[q] = earlier[2]
                    continue
            packed = text(figures)
            if packed[:1] == "=":  # no key at all: nothing queued, held or kept, no worker
                out[q] = _empty(q, packed[1:])
                if reuse is not None:
                    reuse[q] = (figures, rows, out[q])
                continue
            (p1, p2, p3, p4, p5, scheduled, due, oldest, running, lost, failed, finished,
             activity, paused, limited) = packed.split(",")  # fmt: skip
            levels = dict(zip(PRIORITY_LEVELS, (int(p1), int(p2), int(p3), int(p4), int(p5)), strict=True))
            workers = []
            for row in text(rows).split("\x1e") if rows else ():
                name, pod, state, job, busy, slots = row.split("\x1f")
                workers.append(
                    WorkerInfo(
                        name=name,
                        pod=pod,
                        state="busy" if state == "busy" else "idle",
                        current_job=job or None,
                        busy_slots=_int(busy, 1 if state == "busy" else 0),
                        slots=_int(slots, 1),
                    )
                )
            out[q] = QueueStats(
                queue=q,
                queued=sum(levels.values()),
                queued_by_priority=levels,
                scheduled=int(scheduled),
                scheduled_due=int(due),
                running=int(running),
                lost=int(lost),
                failed=int(failed),
                finished=int(finished),
                oldest_queued_seconds=max(0.0, now - float(oldest)) if oldest else 0.0,
                last_activity_at=float(activity) if activity else None,
                workers=workers,
                paused=paused == "1",
                rate_limited=limited == "1",
            )
            if reuse is not None:
                if oldest:  # its age grows with the time: never the same stats twice
                    reuse.pop(q, None)
                else:
                    reuse[q] = (figures, rows, out[q])
    if reuse is not None and len(reuse) > len(names):
        for gone in set(reuse) - set(names):
            del reuse[gone]
    return out
