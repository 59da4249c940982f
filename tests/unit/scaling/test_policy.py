"""The scaling policy, driven through whole scenarios with a fake clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jobqueue_operator.scaling.policy import (
    BUSY_POD_COST,
    IDLE_POD_COST,
    Claim,
    Memory,
    Observation,
    PodState,
    ScalingSpec,
    cost_patches,
    decide,
    deletion_costs,
    needed_replicas,
    share_budget,
)

SPEC = ScalingSpec(
    min_replicas=0,
    max_replicas=5,
    concurrency=20,
    concurrency_per_pod=4,
    scale_down_delay_seconds=60,
    idle_seconds_before_zero=300,
)


def obs(
    queued: int = 0, running: int = 0, due: int = 0, busy_pods: int = 0, last_activity_at: float | None = None
) -> Observation:
    return Observation(
        queued=queued,
        scheduled_due=due,
        running=running,
        busy_pods=busy_pods,
        last_activity_at=last_activity_at,
    )


class Sim:
    """Feeds observations to the policy the way the poller does, one per simulated second."""

    def __init__(self, spec: ScalingSpec = SPEC, replicas: int = 0, now: float = 1_000_000.0) -> None:
        self.spec, self.replicas, self.now, self.memory = spec, replicas, now, Memory()
        self.reasons: list[str] = []

    def poll(self, o: Observation, seconds: float = 1.0) -> int:
        d = decide(self.spec, o, self.replicas, self.memory, self.now)
        self.replicas, self.memory = d.replicas, d.memory
        self.reasons.append(d.reason)
        self.now += seconds
        return self.replicas

    def hold(self, o: Observation, seconds: int) -> int:
        for _ in range(seconds):
            self.poll(o)
        return self.replicas


@pytest.mark.parametrize(
    ("queued", "running", "expected"),
    [
        (0, 0, 0),
        (1, 0, 1),
        (4, 0, 1),
        (5, 0, 2),
        (16, 4, 5),
        (1000, 0, 5),
        (0, 3, 1),
    ],
)
def test_needed_replicas_is_ceil_of_capped_demand_over_per_pod(
    queued: int, running: int, expected: int
) -> None:
    assert needed_replicas(SPEC, obs(queued, running)) == expected


def test_concurrency_caps_demand_before_max_replicas() -> None:
    spec = replace(SPEC, concurrency=3, concurrency_per_pod=1, max_replicas=10)
    assert needed_replicas(spec, obs(queued=500)) == 3


@pytest.mark.parametrize(
    ("queued", "running", "expected"),
    [
        (10000, 0, 2),  # 6 may start in a window: 2 pods of 4, not maxReplicas
        (10000, 8, 4),  # the running ones, plus 6 more
        (3, 0, 1),  # fewer waiting than the limit: as without one
    ],
)
def test_rate_limited_backlog_counts_only_as_fast_as_it_may_start(
    queued: int, running: int, expected: int
) -> None:
    spec = replace(SPEC, rate_limit_jobs=6, max_replicas=10)
    assert needed_replicas(spec, obs(queued, running)) == expected


def test_never_below_busy_pods_even_when_per_pod_math_says_less() -> None:
    # 5 running jobs spread over 5 pods: ceil(5/4) = 2, but 3 of the pods would be busy victims
    assert needed_replicas(SPEC, obs(running=5, busy_pods=5)) == 5


def test_min_replicas_is_a_floor() -> None:
    assert needed_replicas(replace(SPEC, min_replicas=2), obs()) == 2


def test_burst_scales_up_in_one_step() -> None:
    sim = Sim()
    assert sim.poll(obs(queued=100)) == 5
    assert "queued=100" in sim.reasons[-1]
    assert "→ 5 replicas" in sim.reasons[-1]


def test_scale_down_waits_for_the_delay_and_lands_on_the_window_peak() -> None:
    sim = Sim(replicas=5)
    # need drops to 2 for 30 s, then 3 for 20 s, then 1: scale-down happens 60 s after the
    # drop began, to the highest need seen in the window (3), not the latest (1)
    sim.hold(obs(running=8), 30)
    assert sim.replicas == 5
    sim.hold(obs(running=12), 20)
    assert sim.replicas == 5
    sim.hold(obs(running=4), 10)  # polls at t+50 … t+59
    assert sim.replicas == 5
    sim.poll(obs(running=4))  # t+60
    assert sim.replicas == 3
    assert "lower for 60s" in sim.reasons[-1]


def test_a_rise_during_the_delay_resets_it() -> None:
    sim = Sim(replicas=5)
    sim.hold(obs(running=4), 50)
    sim.poll(obs(queued=40))  # back up to the current need
    sim.hold(obs(running=4), 59)
    assert sim.replicas == 5  # the 60 s window restarted


def test_goes_to_zero_only_after_idle_seconds_counted_from_the_last_job_seen() -> None:
    sim = Sim(replicas=2)
    sim.poll(obs(running=2))
    # nothing visible to the poller, but a worker recorded a (short) job 100 s later
    sim.hold(obs(), 100)
    activity = sim.now
    sim.hold(obs(last_activity_at=activity), 250)
    assert sim.replicas == 1  # down to one warm pod after the scale-down delay, not zero
    sim.hold(obs(last_activity_at=activity), 49)
    assert sim.replicas == 1
    sim.hold(obs(last_activity_at=activity), 2)
    assert sim.replicas == 0
    assert "idle 300s → 0 replicas" in sim.reasons[-1]


def test_zero_never_comes_before_the_scale_down_delay() -> None:
    spec = replace(SPEC, idle_seconds_before_zero=5, scale_down_delay_seconds=60)
    sim = Sim(spec, replicas=3)
    sim.poll(obs(running=1))
    sim.hold(obs(), 30)
    assert sim.replicas == 3
    sim.hold(obs(), 31)
    assert sim.replicas == 0


def test_redis_unreachable_holds_the_current_replicas() -> None:
    sim = Sim(replicas=4)
    for _ in range(1000):
        sim.poll(Observation(queued=None))
    assert sim.replicas == 4
    assert "Redis unreachable" in sim.reasons[-1]


def test_suspend_waits_for_running_jobs_then_goes_to_zero() -> None:
    sim = Sim(replace(SPEC, suspend=True), replicas=3)
    sim.poll(obs(queued=50, running=2, busy_pods=2))
    assert sim.replicas == 3
    sim.poll(obs(queued=50))
    assert sim.replicas == 0
    assert sim.reasons[-1].startswith("suspended")


def paused(queued: int = 0, running: int = 0, busy_pods: int = 0) -> Observation:
    return replace(obs(queued=queued, running=running, busy_pods=busy_pods), paused=True)


def test_paused_holds_minimum_whatever_the_backlog() -> None:
    sim = Sim(replace(SPEC, min_replicas=1), replicas=4)
    sim.poll(paused(queued=500, running=3, busy_pods=2))
    assert sim.replicas == 4  # running jobs finish on their pods
    assert "waiting for running jobs" in sim.reasons[-1]
    sim.poll(paused(queued=500))
    assert sim.replicas == 1  # at once: no scale-down delay for an explicit pause
    assert sim.reasons[-1].startswith("paused (workers take nothing new until the queue is resumed)")
    assert "minReplicas" in sim.reasons[-1]
    sim.hold(paused(queued=900), 400)  # the backlog grows: still not demand, never zero
    assert sim.replicas == 1
    assert sim.poll(obs(queued=900)) == 5  # resumed: the backlog is demand again, at once


def test_paused_brings_a_queue_below_its_minimum_up_to_it() -> None:
    sim = Sim(replace(SPEC, min_replicas=2), replicas=0)
    assert sim.poll(paused(queued=10)) == 2
    assert decide(replace(SPEC, min_replicas=2), paused(), 0, Memory(), 0).cause == "paused"


def test_suspend_wins_over_pause() -> None:
    decision = decide(replace(SPEC, min_replicas=1, suspend=True), paused(queued=5), 3, Memory(), 0)
    assert (decision.replicas, decision.cause) == (0, "suspended")


def test_from_zero_first_job_scales_at_once() -> None:
    sim = Sim(replicas=0)
    sim.hold(obs(), 1000)
    assert sim.replicas == 0
    assert sim.poll(obs(due=1)) == 1


def test_budget_goes_to_higher_priority_first_and_round_robin_within_a_level() -> None:
    granted = share_budget(
        7,
        [
            Claim("low", priority=5, wanted=10),
            Claim("a", priority=1, wanted=2),
            Claim("b", priority=2, wanted=4),
            Claim("c", priority=2, wanted=4),
        ],
    )
    assert granted == {"a": 2, "b": 3, "c": 2, "low": 0}


def test_budget_never_takes_busy_pods_away() -> None:
    granted = share_budget(2, [Claim("hi", 1, wanted=5), Claim("lo", 5, wanted=3, protected=3)])
    assert granted == {"hi": 0, "lo": 3}


def test_no_budget_grants_every_wish() -> None:
    assert share_budget(None, [Claim("a", 1, 9), Claim("b", 5, 2)]) == {"a": 9, "b": 2}


def test_idle_pods_are_cheapest_to_delete_and_long_running_work_most_expensive() -> None:
    now = 10_000.0
    costs = deletion_costs(
        [
            PodState("idle", busy=False),
            PodState("new", True, busy_since=now - 5),
            PodState("old", True, busy_since=now - 3600),
        ],
        now,
    )
    assert costs["idle"] == IDLE_POD_COST
    assert costs["idle"] < costs["new"] < costs["old"]
    assert costs["old"] == BUSY_POD_COST + 3600


def test_only_changed_costs_are_patched() -> None:
    assert cost_patches({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 5}) == {"b": 2, "c": 3}


def test_busy_pod_costs_that_only_aged_are_not_rewritten() -> None:
    # Written 30 s ago: both jobs have run 30 s longer since, but the order is the same.
    now = 10_000.0
    pods = [
        PodState("idle", False),
        PodState("a", True, busy_since=now - 100),
        PodState("b", True, busy_since=now - 50),
    ]
    written = deletion_costs(pods, now - 30)
    assert deletion_costs(pods, now) != written  # a naive diff would patch a and b again …
    assert cost_patches(deletion_costs(pods, now), written) == {}  # … for nothing


def test_a_pod_that_turned_busy_gets_new_costs() -> None:
    now = 10_000.0
    written = deletion_costs([PodState("a", False), PodState("b", False)], now - 30)
    wanted = deletion_costs([PodState("a", True, busy_since=now - 10), PodState("b", False)], now)
    assert cost_patches(wanted, written) == {"a": BUSY_POD_COST + 10}


def test_an_idle_pod_whose_stale_cost_outranks_a_busy_one_is_fixed() -> None:
    now = 10_000.0
    wanted = deletion_costs([PodState("was-busy", False), PodState("busy", True, busy_since=now - 5)], now)
    written = {"was-busy": BUSY_POD_COST + 600, "busy": BUSY_POD_COST + 1}
    assert cost_patches(wanted, written) == {"was-busy": IDLE_POD_COST, "busy": BUSY_POD_COST + 5}


def test_new_pods_without_a_cost_get_one_and_nothing_else_changes() -> None:
    wanted = {"old-idle": IDLE_POD_COST, "new": IDLE_POD_COST, "busy": BUSY_POD_COST + 40}
    written: dict[str, int | None] = {"old-idle": IDLE_POD_COST, "busy": BUSY_POD_COST + 7}
    assert cost_patches(wanted, written) == {"new": IDLE_POD_COST}


def test_decisions_say_why_in_one_word() -> None:
    sim = Sim(replace(SPEC, scale_down_delay_seconds=10, idle_seconds_before_zero=20), replicas=0)
    causes = []
    for o in [obs(queued=20), *[obs(running=4)] * 11, *[obs()] * 25]:
        before = sim.replicas
        d = decide(sim.spec, o, sim.replicas, sim.memory, sim.now)
        sim.replicas, sim.memory, sim.now = d.replicas, d.memory, sim.now + 1
        if d.replicas != before:
            causes.append((before, d.replicas, d.cause))
    assert causes == [(0, 5, "demand"), (5, 1, "demand-fell"), (1, 0, "idle")]
    assert decide(SPEC, Observation(queued=None), 3, Memory(), 0).cause == "unknown"
    assert decide(replace(SPEC, suspend=True), obs(), 3, Memory(), 0).cause == "suspended"


def test_a_lowered_max_applies_at_once_but_only_down_to_the_max() -> None:
    sim = Sim(replace(SPEC, max_replicas=3), replicas=5)
    assert sim.poll(obs(running=1)) == 3  # the limit, immediately
    assert "above maxReplicas 3" in sim.reasons[-1]
    assert sim.hold(obs(running=1), 60) == 3  # the rest of the way waits the 60 s delay as usual
    assert sim.poll(obs(running=1)) == 1
