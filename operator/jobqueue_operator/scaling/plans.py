"""From what the poller read to what the policy needs, and from decisions to replica targets.

Pure functions between the I/O of :mod:`.poller` and the rules of :mod:`.policy`:

* :func:`spec_of` / :func:`observation` — a JobQueue (index entry) and its Redis figures as
  the policy's :class:`~.policy.ScalingSpec` and :class:`~.policy.Observation`; a pod counts
  as busy when any of its RQ workers (joined by the pod name they record as hostname) runs
  a job, unless the pod is already terminating (it is no longer among the replicas);
* :func:`pod_states` — the worker pods of a Deployment as the policy's
  :class:`~.policy.PodState` for deletion costs; a pod none of whose workers is busy (or
  whose worker has not registered yet) is idle;
* :func:`targets` — the worker budget applied to every queue's decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from jobqueue.stats import QueueStats, WorkerInfo
from jobqueue_operator.index import QueueRef
from jobqueue_operator.scaling import policy
from jobqueue_operator.scaling.views import PodView


def spec_of(ref: QueueRef) -> policy.ScalingSpec:
    return policy.ScalingSpec(
        min_replicas=ref.min_replicas,
        max_replicas=ref.max_replicas,
        concurrency=ref.concurrency,
        concurrency_per_pod=ref.concurrency_per_pod,
        scale_down_delay_seconds=ref.scale_down_delay_seconds,
        idle_seconds_before_zero=ref.idle_seconds_before_zero,
        suspend=ref.suspend,
        rate_limit_jobs=ref.rate_limit_jobs,
    )


def busy_workers(stats: QueueStats) -> dict[str, list[WorkerInfo]]:
    """Busy RQ workers by pod name."""
    out: dict[str, list[WorkerInfo]] = {}
    for worker in stats.workers:
        if worker.state == "busy" and worker.pod:
            out.setdefault(worker.pod, []).append(worker)
    return out


def observation(stats: QueueStats, pods: Iterable[PodView]) -> policy.Observation:
    busy = 0
    if stats.workers:
        terminating = {p.name for p in pods if p.terminating or p.finished}
        busy = sum(1 for pod in busy_workers(stats) if pod not in terminating)
    return policy.Observation(
        queued=stats.queued,
        scheduled_due=stats.scheduled_due,
        running=stats.running,
        busy_pods=busy,
        last_activity_at=stats.last_activity_at,
        paused=stats.paused,
    )


def live_pods(pods: Iterable[PodView]) -> list[PodView]:
    """Pods the ReplicaSet may still choose from (not already going away)."""
    return [p for p in pods if not p.terminating and not p.finished]


def pod_states(
    pods: Iterable[PodView], stats: QueueStats, job_starts: Mapping[str, float]
) -> list[policy.PodState]:
    """Each live pod, busy or idle; a busy pod's ``busy_since`` is its oldest running job's start."""
    busy = busy_workers(stats)
    states = []
    for pod in live_pods(pods):
        workers = busy.get(pod.name, [])
        starts = [
            job_starts[w.current_job]
            for w in workers
            if w.current_job is not None and w.current_job in job_starts
        ]
        states.append(
            policy.PodState(pod.name, busy=bool(workers), busy_since=min(starts) if starts else None)
        )
    return states


@dataclass(frozen=True)
class Wish:
    """One queue's decision this poll, before the budget."""

    key: str
    priority: int
    current: int
    #: None: nothing new was learnt this poll (its Redis is still being read)
    decision: policy.Decision | None
    busy_pods: int


def targets(budget: int | None, wishes: Sequence[Wish]) -> dict[str, policy.Decision | None]:
    """Every wish's decision once the budget is shared (None stays None: hold).

    Queues with nothing new keep what they have (it is all protected). Demand unknown
    (Redis unreachable) protects the current replicas too: pods whose jobs cannot be seen
    are never taken away for another queue.
    """
    if budget is None:
        return {w.key: w.decision for w in wishes}
    claims = []
    for w in wishes:
        if w.decision is None or w.decision.cause == "unknown":
            claims.append(policy.Claim(w.key, w.priority, wanted=w.current, protected=w.current))
        else:
            claims.append(policy.Claim(w.key, w.priority, wanted=w.decision.replicas, protected=w.busy_pods))
    granted = policy.share_budget(budget, claims)
    out: dict[str, policy.Decision | None] = {}
    for w in wishes:
        decision = w.decision
        if decision is not None and granted[w.key] < decision.replicas:
            decision = policy.Decision(
                granted[w.key],
                f"{decision.reason}; the worker budget of {budget} pods leaves {granted[w.key]}",
                decision.memory,
                "budget",
            )
        out[w.key] = decision
    return out
