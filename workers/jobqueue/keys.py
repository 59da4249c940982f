"""Redis key names and job-hash field names: RQ's, and the few we add.

Jobs live in RQ's own keys so that ``rq info``, rq-dashboard and plain RQ producers keep
working against our queues (docs/architecture.md, "The Redis contract"). What RQ lacks lives
next to them:

* **priority levels** — level 3 (the default) *is* RQ's list ``rq:queue:<q>``; the other
  levels are lists of the same shape, ``rq:queue:<q>:p1`` … ``:p5``, registered in
  ``rq:queues`` so ``rq info`` shows them as pseudo-queues;
* ``jobqueue:signal:<q>`` — a one-element list that producers push when they add work and
  the claim script deletes when the queue runs dry; idle workers block on it with
  ``BLMOVE sig sig LEFT LEFT`` (a rotation that waits without consuming), which wakes every
  idle worker at once and loses no wake-up;
* ``jobqueue:wrr:<q>`` — the smooth weighted round-robin state of the priority levels;
* ``jobqueue:activity`` — hash queue -> unix time of the last job started or finished there
  (the autoscaler counts idle time from it);
* ``jobqueue:exhausted`` — a stream (capped at about 10,000 entries) with one entry per job
  that failed for good, written by the script that fails it; the operator reads it
  (:mod:`jobqueue.failures`) for Events, a metric and failure notifications;
* ``jobqueue:paused`` — hash queue -> JSON ``{"at": unix time, "by": who}`` of the queues
  paused with ``jobqueue pause`` (:mod:`jobqueue.admin`): the claim script takes nothing from
  them, producers still add;
* ``jobqueue:cancel:<worker>`` — a list of ``<id>:<execution>`` the CANCEL script pushes for
  a running job; the worker that runs it blocks on it (BLPOP) and stops the job at once;
* ``jobqueue:rate:<q>`` and ``jobqueue:rate:<q>:k:<key>`` — sorted sets of the claim times of
  the last ``perSeconds`` (``spec.rateLimit`` / ``spec.keyRateLimit``), ``jobqueue:ratekeys:<q>``
  the slot reserved for a key's next waiting job, ``jobqueue:limited`` hash queue -> when its
  window next frees (SNAPSHOT reports the queue as rate-limited);
* ``jq_*`` fields in RQ's job and worker hashes (RQ ignores fields it does not know).

Every name is defined once, below: the Python helpers build keys from these constants, and
the Lua scripts are templates that get them rendered in (:mod:`jobqueue._lua`, ``K.<name>``),
as they get :data:`PRIORITY_WEIGHTS`.
"""

from __future__ import annotations

from typing import Final

#: Priority levels inside one queue: 1 = most important … 5 = least (the seed's scale).
PRIORITY_LEVELS: Final = (1, 2, 3, 4, 5)
#: Jobs enqueued without a priority (and every job a plain RQ producer adds) are level 3.
DEFAULT_PRIORITY: Final = 3
#: Share of dequeues each level gets while several levels have work (smooth weighted
#: round-robin): level 1 is served 16x as often as level 5, and level 5 still gets 1/31 of
#: the dequeues when every level is backlogged, so no level ever starves.
PRIORITY_WEIGHTS: Final = {1: 16, 2: 8, 3: 4, 4: 2, 5: 1}

#: RQ's key prefix (fixed in RQ 2.x; rq.md section 13) and ours.
RQ: Final = "rq:"
OURS: Final = "jobqueue:"

# RQ's keys. A name ending in ':' is a prefix: a queue name, job id or worker name follows.
RQ_QUEUES: Final = RQ + "queues"  # SET of every queue list (rq:queue:<q>[:p<N>])
QUEUE: Final = RQ + "queue:"  # + queue [+ ":p<level>"]: a pending LIST (level_key)
# + id: the job HASH; + id + ":dependents" and + ":" + id + ":dependencies" (RQ's two colons)
JOB: Final = RQ + "job:"
RESULTS: Final = RQ + "results:"  # + id: the results STREAM
WIP: Final = RQ + "wip:"  # + queue: StartedJobRegistry, member "<id>:<exec>", score = lease end
SCHEDULED: Final = RQ + "scheduled:"
FINISHED: Final = RQ + "finished:"
FAILED: Final = RQ + "failed:"
CANCELED: Final = RQ + "canceled:"
DEFERRED: Final = RQ + "deferred:"
RQ_WORKERS: Final = RQ + "workers"  # SET of every worker key
WORKERS_OF: Final = RQ + "workers:"  # + queue: SET of its worker keys
WORKER: Final = RQ + "worker:"  # + worker name: the worker HASH
RQ_SUSPENDED: Final = RQ + "suspended"  # `rq suspend`

# Ours (see the module's docstring).
SIGNAL: Final = OURS + "signal:"
WRR: Final = OURS + "wrr:"
ACTIVITY: Final = OURS + "activity"
PAUSED: Final = OURS + "paused"
EXHAUSTED: Final = OURS + "exhausted"
CANCEL: Final = OURS + "cancel:"
RATE: Final = OURS + "rate:"  # + queue [+ ":k:" + rate key]
RATE_KEYS: Final = OURS + "ratekeys:"
LIMITED: Final = OURS + "limited"

# Fields we add to RQ's job hash (rq:job:<id>).
F_ATTEMPTS: Final = "jq_attempts"  # total attempts allowed, the first included
F_MADE: Final = "jq_made"  # attempts claimed so far
F_BACKOFF: Final = "jq_backoff"  # JSON of settings.Backoff (camelCase)
F_PRIORITY: Final = "jq_prio"  # level 1..5
F_READY: Final = "jq_ready"  # unix time since which the job may run (enqueued, or due)
F_CREATED: Final = "jq_created"  # unix time of the enqueue
F_POD: Final = "jq_pod"  # pod (RQ worker hostname) of the worker that claimed it
F_EXEC: Final = "jq_exec"  # execution id of the current claim (rq:wip member suffix)
F_REASON: Final = "jq_reason"  # why the last attempt failed, one line
F_PROGRESS: Final = "jq_progress"  # 0..100, also mirrored into meta["progress"]
F_STARTED: Final = "jq_start"  # unix time the current/last attempt really started
F_ENDED: Final = "jq_end"  # unix time the last attempt ended
F_RATE_KEY: Final = "jq_rkey"  # the producer's rateKey (spec.keyRateLimit applies per key)
F_CANCEL: Final = "jq_cancel"  # unix time a cancel was asked for (the job ends canceled, never retried)


def level_key(queue_name: str, level: int) -> str:
    """The pending list of one priority level (level 3 is RQ's own queue list)."""
    if level == DEFAULT_PRIORITY:
        return QUEUE + queue_name
    return f"{QUEUE}{queue_name}:p{level}"


def job_key(job_id: str) -> str:
    return JOB + job_id


def worker_key(worker_name: str) -> str:
    return WORKER + worker_name


def workers_of(queue_name: str) -> str:
    return WORKERS_OF + queue_name


def wip(queue_name: str) -> str:
    return WIP + queue_name


def scheduled(queue_name: str) -> str:
    return SCHEDULED + queue_name


def finished(queue_name: str) -> str:
    return FINISHED + queue_name


def failed(queue_name: str) -> str:
    return FAILED + queue_name


def canceled(queue_name: str) -> str:
    return CANCELED + queue_name


def signal(queue_name: str) -> str:
    return SIGNAL + queue_name


def cancel_list(worker_name: str) -> str:
    return CANCEL + worker_name
