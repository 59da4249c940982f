"""The scaling policy: how many worker pods a queue should have right now.

Pure functions, no I/O: the poller feeds them what it read from Redis and Kubernetes and
applies what they return. Everything here is decided per queue, every poll (1 s), so it
must be cheap and deterministic — the unit tests drive it through whole scenarios with a
fake clock.

The rules, and why they differ from the HPA/KEDA defaults:

* **Demand counts running jobs, not only queued ones.** ``queued + scheduled_due + running``
  capped at the queue's ``concurrency``; KEDA reads one list length and scales busy workers
  away (kedacore/keda#1663, #356).
* **Up at once, straight to the needed count.** No doubling per 15 s step.
* **Never below the number of busy pods.** A pod running a job is never chosen for
  removal by *our* arithmetic; scale-in only ever removes idle pods (the poller also marks
  them cheapest to delete, since the ReplicaSet picks victims itself).
* **Down only after demand stayed lower for ``scaleDownDelaySeconds``**, and then to the
  highest need seen during that window (the HPA's stabilization idea).
* **To zero only after ``idleSecondsBeforeZero`` with nothing queued or running**, counted
  from the last job *seen* (by the poller or recorded by a worker), not from the last poll:
  a queue that runs a 50 ms job every 10 s is not idle although most polls see nothing.
* **Unknown demand holds.** Redis unreachable → keep the current replicas.
* **Suspended** → workers take nothing new; the queue goes to zero once nothing runs.
* **Paused** (``jobqueue pause``, the admin API: a flag in Redis) → workers take nothing new
  and producers still add; the queue goes to ``minReplicas`` (no lower: the resume finds warm
  workers) once nothing runs, and never grows meanwhile — a backlog is not demand while no
  worker may take from it. ``spec.suspend`` wins when both are set.
* **Above ``maxReplicas`` → down to it at once.** A lowered maximum is a limit the user
  wants now (a cost cap, a downstream outage), not a demand estimate to smooth.

Every :class:`Decision` carries a short ``cause`` (a metric label: a handful of values) next
to its human ``reason`` (status ``lastScaleReason``, Events, logs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True)
class ScalingSpec:
    """The scaling-relevant part of a JobQueue spec, with defaults already applied."""

    min_replicas: int
    max_replicas: int
    concurrency: int
    concurrency_per_pod: int
    scale_down_delay_seconds: float
    idle_seconds_before_zero: float
    suspend: bool = False
    #: spec.rateLimit.jobs: at most this many jobs start in any window (None: no rate limit)
    rate_limit_jobs: int | None = None


@dataclass(frozen=True)
class Observation:
    """What one poll saw. ``None`` counts mean Redis could not be read."""

    queued: int | None
    scheduled_due: int = 0
    running: int = 0
    busy_pods: int = 0
    #: last time a worker recorded a job start/finish on this queue (epoch seconds)
    last_activity_at: float | None = None
    #: paused in Redis: workers take nothing new
    paused: bool = False

    @property
    def known(self) -> bool:
        return self.queued is not None

    @property
    def outstanding(self) -> int:
        return (self.queued or 0) + self.scheduled_due + self.running


@dataclass(frozen=True)
class Memory:
    """What the policy remembers between polls for one queue (kept by the poller)."""

    #: since when the need has been below the current replicas (None: it is not)
    lower_since: float | None = None
    #: the highest need seen since ``lower_since``: where a delayed scale-down lands
    lower_peak: int = 0
    #: last time work (queued, due or running) was seen, by any means
    last_work_at: float | None = None


#: Why the replicas are what they are, in one word (the ``reason`` label of
#: ``jobqueue_scaling_decisions_total``): ``demand`` (up, or steady, to what the work
#: needs), ``demand-fell`` (down after the scale-down delay), ``idle`` (to zero, or to one
#: warm pod), ``max`` (down to a lowered maxReplicas), ``suspended``, ``paused``, ``unknown``
#: (Redis unreachable: held), ``budget`` (cut by the operator's worker budget, see
#: :func:`share_budget`).
Cause = Literal["demand", "demand-fell", "idle", "max", "suspended", "paused", "unknown", "budget"]


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    memory: Memory
    cause: Cause = "demand"

    def changes(self, current: int) -> bool:
        return self.replicas != current


def needed_replicas(spec: ScalingSpec, obs: Observation) -> int:
    """Pods the observed demand needs, within min/max, never below the busy pods.

    A rate-limited queue's waiting jobs count only as far as the limit lets them start: at most
    ``rate_limit_jobs`` in the next window, so 10,000 queued jobs at 10 per second ask for slots
    for the running ones and 10 more, not for maxReplicas pods that would sit idle."""
    waiting = (obs.queued or 0) + obs.scheduled_due
    if spec.rate_limit_jobs is not None:
        waiting = min(waiting, spec.rate_limit_jobs)
    demand = min(waiting + obs.running, spec.concurrency)
    need = math.ceil(demand / spec.concurrency_per_pod)
    need = max(need, obs.busy_pods)
    return clamp(need, spec.min_replicas, spec.max_replicas)


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def _describe(obs: Observation) -> str:
    parts = [f"queued={obs.queued}"]
    if obs.scheduled_due:
        parts.append(f"due={obs.scheduled_due}")
    parts.append(f"running={obs.running}")
    if obs.busy_pods:
        parts.append(f"busyPods={obs.busy_pods}")
    return " ".join(parts)


def decide(spec: ScalingSpec, obs: Observation, current: int, memory: Memory, now: float) -> Decision:
    """The replicas a queue should have now, why, and what to remember for the next poll."""
    if not obs.known:
        return Decision(current, f"demand unknown (Redis unreachable): holding {current}", memory, "unknown")
    memory = _remember_work(memory, obs, now)
    seen = _describe(obs)
    if spec.suspend or obs.paused:  # nothing new may start: the backlog is no demand
        hold = _suspended(obs, current, seen) if spec.suspend else _paused(spec, obs, current, seen)
        return replace(hold, memory=_steady(memory))

    need = needed_replicas(spec, obs)
    if current > spec.max_replicas:  # only the limit is immediate; any further drop waits as usual
        top = spec.max_replicas
        return Decision(top, f"{seen}, above maxReplicas {top} → {top} replicas", _steady(memory), "max")
    warm = False
    if need == 0 and current > 0:
        idle_for = math.inf if memory.last_work_at is None else now - memory.last_work_at
        # idle time counts from the last work, so it also bounds how long demand was lower
        if idle_for >= max(spec.idle_seconds_before_zero, spec.scale_down_delay_seconds):
            return Decision(0, f"{seen}, idle {idle_for:.0f}s → 0 replicas", _steady(memory), "idle")
        # idle, but not long enough for zero: one warm pod spares the next job a cold start
        need, warm = min(1, spec.max_replicas), True

    if need >= current:
        verdict = f"→ {need} replicas" if need > current else f"{current} replicas are right"
        return Decision(need, f"{seen} {verdict}", _steady(memory))
    decision = _scale_down_after_delay(spec, need, current, memory, now=now, seen=seen)
    return replace(decision, cause="idle") if warm and decision.replicas < current else decision


def _suspended(obs: Observation, current: int, seen: str) -> Decision:
    """Suspended: nothing new starts, so no pod is needed once the running jobs are done."""
    if obs.running > 0 or obs.busy_pods > 0:
        return Decision(current, f"suspended, {seen}: waiting for running jobs", Memory(), "suspended")
    return Decision(0, f"suspended, {seen} → 0 replicas", Memory(), "suspended")


def _paused(spec: ScalingSpec, obs: Observation, current: int, seen: str) -> Decision:
    """Paused: nothing new starts; minReplicas once the running jobs are done, never more."""
    floor = min(spec.min_replicas, spec.max_replicas)
    why = "paused (workers take nothing new until the queue is resumed)"
    if current < floor:
        return Decision(floor, f"{why}, {seen} → {floor} replicas (minReplicas)", Memory(), "paused")
    if current > floor and (obs.running > 0 or obs.busy_pods > 0):
        return Decision(
            current, f"{why}, {seen}: waiting for running jobs, then minReplicas {floor}", Memory(), "paused"
        )
    verdict = f"→ {floor} replicas" if floor != current else f"holding {floor}"
    return Decision(floor, f"{why}, {seen} {verdict} (minReplicas)", Memory(), "paused")


def _remember_work(memory: Memory, obs: Observation, now: float) -> Memory:
    last_work = memory.last_work_at
    if obs.outstanding > 0:
        last_work = now
    if obs.last_activity_at is not None and (last_work is None or obs.last_activity_at > last_work):
        last_work = obs.last_activity_at
    # (the same object when nothing changed: a thousand idle queues every second)
    return memory if last_work == memory.last_work_at else replace(memory, last_work_at=last_work)


def _scale_down_after_delay(
    spec: ScalingSpec, need: int, current: int, memory: Memory, *, now: float, seen: str
) -> Decision:
    """need < current: lower the replicas only once the need stayed lower for the whole delay."""
    if memory.lower_since is None:
        memory = replace(memory, lower_since=now, lower_peak=need)
    else:
        memory = replace(memory, lower_peak=max(memory.lower_peak, need))
    lower_since = memory.lower_since
    assert lower_since is not None
    lower_for = now - lower_since
    if lower_for >= spec.scale_down_delay_seconds:
        target = memory.lower_peak
        return Decision(
            target, f"{seen}, lower for {lower_for:.0f}s → {target} replicas", _steady(memory), "demand-fell"
        )
    left = spec.scale_down_delay_seconds - lower_for
    return Decision(
        current, f"{seen}: need {need}, holding {current} ({left:.0f}s of scale-down delay left)", memory
    )


def _steady(memory: Memory) -> Memory:
    if memory.lower_since is None and memory.lower_peak == 0:
        return memory
    return replace(memory, lower_since=None, lower_peak=0)


# --------------------------------------------------------------------------------------
# A worker budget shared by the whole operator


@dataclass(frozen=True)
class Claim:
    """One queue's wish within a shared budget."""

    key: str
    priority: int  # 1 = most important … 5 = least
    wanted: int
    #: pods that must not be taken away (busy ones): granted first, budget or not
    protected: int = 0


def share_budget(budget: int | None, claims: Iterable[Claim]) -> dict[str, int]:
    """Share ``budget`` worker pods between queues, most important priority first.

    Within one priority level the pods are dealt out one at a time, round robin, so equal
    queues get equal shares. Busy pods (``protected``) are always kept, even over budget:
    the budget limits growth, it never kills running jobs. ``None`` = unlimited.
    """
    claims = list(claims)
    if budget is None:
        return {c.key: c.wanted for c in claims}
    granted = {c.key: min(c.protected, c.wanted) for c in claims}
    left = budget - sum(granted.values())
    for priority in sorted({c.priority for c in claims}):
        level = sorted((c for c in claims if c.priority == priority), key=lambda c: c.key)
        while left > 0:
            progressed = False
            for c in level:
                if left > 0 and granted[c.key] < c.wanted:
                    granted[c.key] += 1
                    left -= 1
                    progressed = True
            if not progressed:
                break
    return granted


# --------------------------------------------------------------------------------------
# Which pods the ReplicaSet should delete first


#: pod-deletion-cost for an idle worker pod: the ReplicaSet removes the lowest cost first
IDLE_POD_COST = -1000
#: base cost of a busy pod; the seconds its job has run are added so the newest work goes first
BUSY_POD_COST = 1000
#: cap of the age bonus, so costs stay far inside int32
MAX_BUSY_AGE_BONUS = 86400


@dataclass(frozen=True)
class PodState:
    name: str
    busy: bool
    #: epoch seconds the pod's oldest running job started (None when unknown or idle)
    busy_since: float | None = None


def deletion_costs(pods: Sequence[PodState], now: float) -> dict[str, int]:
    """``controller.kubernetes.io/pod-deletion-cost`` for each pod before a scale-in.

    Idle pods get the lowest cost so they go first; busy pods a high one, higher the longer
    their job has run (losing a job that ran an hour costs more than one that just began —
    the Windmill pattern). Kubernetes asks not to update this often: the poller writes it
    only just before lowering replicas, and only where the value changes.
    """
    costs: dict[str, int] = {}
    for pod in pods:
        if not pod.busy:
            costs[pod.name] = IDLE_POD_COST
            continue
        age = 0 if pod.busy_since is None else int(max(0.0, now - pod.busy_since))
        costs[pod.name] = BUSY_POD_COST + min(age, MAX_BUSY_AGE_BONUS)
    return costs


def cost_patches(wanted: Mapping[str, int], current: Mapping[str, int | None]) -> dict[str, int]:
    """The annotations to write so that the ReplicaSet ranks the pods as ``wanted`` does.

    The ReplicaSet only compares costs, so what matters is their *order*, not their values.
    Busy pods' wanted costs grow by one every second their job runs: patching every value
    that differs would rewrite every busy pod before every scale-in (Kubernetes asks not to
    update the annotation often), and the poller, which scales in only once the annotations
    it wants are in place, would never get there. So: pods without an annotation get one;
    if the annotations then already rank the pods as ``wanted`` does (every pod cheaper
    than another in ``wanted`` is strictly cheaper in the result), that is all; otherwise
    every differing value is written.
    """
    missing = {name: cost for name, cost in wanted.items() if current.get(name) is None}
    result = {name: missing.get(name, current.get(name)) for name in wanted}
    if _ranks_alike(wanted, result):
        return missing
    return {name: cost for name, cost in wanted.items() if current.get(name) != cost}


def _ranks_alike(wanted: Mapping[str, int], actual: Mapping[str, int | None]) -> bool:
    """Whether ``actual`` puts every pod strictly below each pod ``wanted`` puts above it."""
    groups: dict[int, list[int]] = {}
    for name, cost in wanted.items():
        value = actual.get(name)
        if value is None:
            return False
        groups.setdefault(cost, []).append(value)
    highest_below = -math.inf
    for cost in sorted(groups):
        if min(groups[cost]) <= highest_below:
            return False
        highest_below = max(groups[cost])
    return True
