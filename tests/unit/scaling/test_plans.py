"""From Redis figures and pod views to the policy's inputs, and the worker budget."""

from __future__ import annotations

from jobqueue.stats import QueueStats, WorkerInfo
from jobqueue_operator import index
from jobqueue_operator.scaling import plans, policy
from jobqueue_operator.scaling.views import PodView
from unit.middle.middlekit import queue_stats


def worker(name: str, pod: str, busy: bool, job: str | None = None) -> WorkerInfo:
    return WorkerInfo(
        name=name,
        pod=pod,
        state="busy" if busy else "idle",
        current_job=job,
        busy_slots=1 if busy else 0,
        slots=1,
    )


def stats(*workers: WorkerInfo, queued: int = 0, running: int = 0) -> QueueStats:
    return queue_stats("q", queued=queued, running=running, workers=workers)


def pod(name: str, *, terminating: bool = False, cost: int | None = None) -> PodView:
    return PodView(name=name, deletion_cost=cost, terminating=terminating, finished=False)


def test_spec_of_an_index_entry() -> None:
    ref = index.QueueRef(
        namespace="ns",
        name="emails",
        uid="u",
        generation=1,
        queue_name="ns.emails",
        redis_secret=None,
        priority=2,
        concurrency=20,
        concurrency_per_pod=4,
        min_replicas=1,
        max_replicas=5,
        scale_down_delay_seconds=60,
        idle_seconds_before_zero=300,
        suspend=False,
        deployment_name="emails-worker",
        deleting=False,
    )
    assert plans.spec_of(ref) == policy.ScalingSpec(1, 5, 20, 4, 60, 300, suspend=False)


def test_busy_pods_are_joined_by_hostname_and_terminating_ones_do_not_count() -> None:
    s = stats(
        worker("w1", "p1", True, "j1"),
        worker("w2", "p1", True, "j2"),
        worker("w3", "p2", False),
        worker("w4", "p3", True, "j4"),
        worker("w5", "gone", True, "j5"),
        running=4,
    )
    obs = plans.observation(s, [pod("p1"), pod("p2"), pod("p3", terminating=True)])
    # p1 (two busy processes) and "gone" (not in the index yet, so counted): p3 is leaving anyway
    assert obs.busy_pods == 2
    assert obs.running == 4


def test_pod_states_give_busy_pods_their_oldest_job_start_and_skip_leaving_pods() -> None:
    s = stats(worker("w1", "p1", True, "j1"), worker("w2", "p1", True, "j2"), worker("w3", "p2", False))
    states = plans.pod_states(
        [pod("p1"), pod("p2"), pod("p3"), pod("p4", terminating=True)], s, {"j1": 100.0, "j2": 50.0}
    )
    assert states == [
        policy.PodState("p1", True, 50.0),
        policy.PodState("p2", False, None),
        policy.PodState("p3", False, None),
    ]


def decision(replicas: int, cause: policy.Cause = "demand") -> policy.Decision:
    return policy.Decision(replicas, f"→ {replicas} replicas", policy.Memory(), cause)


def test_without_a_budget_every_decision_stands() -> None:
    wishes = [plans.Wish("a", 1, 0, decision(9), 0), plans.Wish("b", 5, 2, None, 0)]
    assert plans.targets(None, wishes) == {"a": decision(9), "b": None}


def test_the_budget_serves_the_more_important_queue_first_and_says_so() -> None:
    wishes = [plans.Wish("low", 5, 4, decision(6), busy_pods=1), plans.Wish("high", 1, 0, decision(8), 0)]
    out = plans.targets(10, wishes)
    assert out["high"] == decision(8)
    low = out["low"]
    assert low is not None
    assert low.replicas == 2
    assert low.cause == "budget"
    assert "worker budget of 10 pods leaves 2" in low.reason


def test_queues_without_news_or_with_unknown_demand_keep_their_pods_within_the_budget() -> None:
    wishes = [
        plans.Wish("pending", 5, 3, None, 0),
        plans.Wish("redis-down", 5, 4, decision(4, "unknown"), 0),
        plans.Wish("hungry", 1, 0, decision(10), 0),
    ]
    out = plans.targets(8, wishes)
    hungry = out["hungry"]
    assert hungry is not None
    assert hungry.replicas == 1  # 8 - 3 - 4: the others' pods are not taken away
    assert out["redis-down"] == decision(4, "unknown")
