"""When a vanished pod's jobs may be taken back: never while its workers still heart-beat."""

from __future__ import annotations

from jobqueue import worker
from jobqueue_operator.scaling.lost import GIVE_UP_SECONDS, SILENCE_SECONDS, LostPods, PodSighting

KEY = ("ns", "emails")
POD = ("ns", "emails", "emails-worker-a")


def tracker_with_gone_pod(now: float = 0.0) -> LostPods:
    lost = LostPods()
    lost.look(KEY, "ns.emails", [PodSighting("emails-worker-a"), PodSighting("emails-worker-b")], now)
    lost.look(KEY, "ns.emails", [PodSighting("emails-worker-b")], now + 1)
    return lost


def test_the_silence_outlasts_several_heartbeats_and_ends_before_the_lease() -> None:
    assert SILENCE_SECONDS >= 3 * worker.HEARTBEAT_SECONDS
    assert SILENCE_SECONDS < worker.LEASE_SECONDS


def test_pods_that_are_still_there_are_not_watched() -> None:
    lost = LostPods()
    lost.look(KEY, "ns.emails", [PodSighting("a"), PodSighting("b")], 0)
    lost.look(KEY, "ns.emails", [PodSighting("a"), PodSighting("b"), PodSighting("c")], 1)
    assert lost.watched() == {}


def test_a_pod_missing_from_the_next_look_is_watched() -> None:
    assert tracker_with_gone_pod().watched() == {POD: "ns.emails"}


def test_terminating_and_finished_pods_are_watched_at_once() -> None:
    lost = LostPods()
    lost.look(KEY, "q", [PodSighting("t", terminating=True), PodSighting("f", finished=True)], 0)
    assert set(lost.watched()) == {(*KEY, "t"), (*KEY, "f")}
    assert "Failed" in lost.how((*KEY, "f"))


def test_a_pod_never_seen_alive_is_not_mistaken_for_a_gone_one() -> None:
    """The index fills gradually after a start: absence before presence means nothing."""
    lost = LostPods()
    lost.look(KEY, "q", [], 0)
    lost.look(KEY, "q", [PodSighting("a")], 1)
    assert lost.watched() == {}


def test_no_live_worker_record_means_dead_at_once() -> None:
    """A worker that exits cleanly (after draining) deletes its record."""
    lost = tracker_with_gone_pod()
    assert lost.observe(POD, {}, 2) is True


def test_a_worker_that_keeps_heart_beating_is_never_dead() -> None:
    """A gracefully deleted pod disappears from the API at once on kwok (and with --force),
    while its worker finishes its jobs for the whole grace period."""
    lost = tracker_with_gone_pod()
    for t in range(2, 400):
        beat = f"beat-{t // 3}"  # a new value every 3 s
        assert lost.observe(POD, {"w1": beat}, t) is False


def test_heartbeats_that_stop_changing_mean_dead_after_the_silence() -> None:
    lost = tracker_with_gone_pod()
    assert lost.observe(POD, {"w1": "t0", "w2": "t0"}, 2) is False
    assert lost.observe(POD, {"w1": "t0", "w2": "t0"}, 2 + SILENCE_SECONDS - 0.5) is False
    assert lost.observe(POD, {"w1": "t0", "w2": "t0"}, 2 + SILENCE_SECONDS) is True


def test_one_worker_still_beating_keeps_the_whole_pod_alive() -> None:
    lost = tracker_with_gone_pod()
    for t in range(2, 60):
        assert lost.observe(POD, {"dead": "t0", "alive": f"b{t}"}, t) is False


def test_a_failed_read_restarts_the_silence_count() -> None:
    """After a Redis outage a live worker needs a moment to get its next heartbeat through."""
    lost = tracker_with_gone_pod()
    lost.observe(POD, {"w1": "t0"}, 2)
    lost.observe(POD, None, 8)  # Redis unreachable
    assert lost.observe(POD, {"w1": "t0"}, 12.5) is False
    assert lost.observe(POD, {"w1": "t0"}, 12.5 + SILENCE_SECONDS) is True


def test_done_and_forget_stop_the_watch() -> None:
    lost = tracker_with_gone_pod()
    lost.done(POD)
    assert lost.watched() == {}
    assert lost.observe(POD, {}, 5) is False
    lost = tracker_with_gone_pod()
    lost.forget(KEY)
    assert lost.watched() == {}


def test_a_pod_that_never_goes_quiet_is_given_up_eventually() -> None:
    lost = tracker_with_gone_pod(now=0)
    assert lost.expire(GIVE_UP_SECONDS - 10) == []
    assert lost.expire(GIVE_UP_SECONDS + 1) == [POD]
    assert lost.watched() == {}


def test_a_pod_known_only_from_redis_is_a_suspect_and_dies_by_silence() -> None:
    """Killed within a second of starting: the pod index never showed it, its worker record
    (and the job it claimed) remain in Redis."""
    lost = LostPods()
    lost.look(KEY, "q", [PodSighting("b")], 0)
    lost.suspect((*KEY, "a"), "q", 0)
    assert lost.watched() == {(*KEY, "a"): "q"}
    assert "never seen alive" in lost.how((*KEY, "a"))
    assert lost.observe((*KEY, "a"), {"w1": "t0"}, 1) is False
    assert lost.observe((*KEY, "a"), {"w1": "t0"}, 1 + SILENCE_SECONDS) is True


def test_a_suspect_whose_heartbeats_move_is_alive_and_dropped() -> None:
    """A worker outside Kubernetes, or a pod the index has not caught up with yet."""
    lost = LostPods()
    lost.suspect((*KEY, "laptop"), "q", 0)
    assert lost.observe((*KEY, "laptop"), {"w1": "t0"}, 1) is False
    assert lost.observe((*KEY, "laptop"), {"w1": "t3"}, 4) is False
    assert lost.watched() == {}


def test_a_suspect_the_watch_then_shows_alive_is_dropped_and_pods_shown_alive_are_never_suspects() -> None:
    lost = LostPods()
    lost.suspect((*KEY, "a"), "q", 0)
    lost.look(KEY, "q", [PodSighting("a")], 1)
    assert lost.watched() == {}
    lost.suspect((*KEY, "a"), "q", 2)
    assert lost.watched() == {}
