"""The leader election's pure parts: when a candidate may take a Lease, and the timings."""

from __future__ import annotations

import pytest

from jobqueue_operator import leader
from jobqueue_operator.leader import Observer, Record


def record(holder: str, version: str, seconds: int = 3) -> Record:
    return Record(holder=holder, lease_seconds=seconds, version=version)


def test_a_lease_held_by_someone_else_expires_only_after_its_duration_unchanged() -> None:
    seen = Observer()
    assert seen.verdict(record("a", "1"), "me", now=100.0, default_seconds=3) == "held"
    assert seen.verdict(record("a", "1"), "me", now=102.9, default_seconds=3) == "held"
    assert seen.verdict(record("a", "1"), "me", now=103.0, default_seconds=3) == "expired"


def test_every_renewal_restarts_the_count() -> None:
    seen = Observer()
    for n, now in enumerate((100.0, 102.5, 105.0, 107.5)):
        assert seen.verdict(record("a", str(n)), "me", now=now, default_seconds=3) == "held"
    assert seen.verdict(record("a", "3"), "me", now=110.4, default_seconds=3) == "held"
    assert seen.verdict(record("a", "3"), "me", now=110.5, default_seconds=3) == "expired"


def test_a_new_candidate_waits_a_full_duration_whatever_the_lease_says_about_time() -> None:
    """The first sighting starts the count, however long ago the Lease was renewed: the
    candidate's clock is never compared with renewTime (another node's clock)."""
    seen = Observer()
    old = Record(holder="a", lease_seconds=3, version="9")
    assert seen.verdict(old, "me", now=5000.0, default_seconds=3) == "held"
    assert seen.verdict(old, "me", now=5003.0, default_seconds=3) == "expired"


def test_the_duration_is_the_leases_own_else_the_candidates() -> None:
    seen = Observer()
    assert seen.verdict(record("a", "1", seconds=10), "me", now=0.0, default_seconds=3) == "held"
    assert seen.verdict(record("a", "1", seconds=10), "me", now=9.0, default_seconds=3) == "held"
    other = Observer()
    assert other.verdict(record("a", "1", seconds=0), "me", now=0.0, default_seconds=3) == "held"
    assert other.verdict(record("a", "1", seconds=0), "me", now=3.0, default_seconds=3) == "expired"


def test_released_and_own_leases() -> None:
    seen = Observer()
    assert seen.verdict(record("", "1"), "me", now=0.0, default_seconds=3) == "free"
    assert seen.verdict(record("me", "1"), "me", now=0.0, default_seconds=3) == "mine"


def test_record_of_a_lease_body() -> None:
    body = {
        "metadata": {"name": "l", "namespace": "n", "resourceVersion": "42"},
        "spec": {
            "holderIdentity": "pod-a_1234",
            "leaseDurationSeconds": 3,
            "leaseTransitions": 5,
            "renewTime": "2001-01-01T00:00:00.000000Z",
        },
    }
    assert Record.of(body) == Record("pod-a_1234", 3, "42")
    assert Record.of({"metadata": {"resourceVersion": "1"}}) == Record("", 0, "1")


def test_timings_must_nest() -> None:
    leader.Timing(lease_seconds=15, renew_deadline=10, retry_period=2)
    for bad in ((3, 3.0, 0.5), (3, 2.0, 2.0), (3, 2.0, 0.0)):
        with pytest.raises(ValueError, match=r"retry period .* < renew deadline .* < lease duration"):
            leader.Timing(lease_seconds=bad[0], renew_deadline=bad[1], retry_period=bad[2])


def test_each_process_is_a_new_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "jq-operator-7d9f-abcde")
    a, b = leader.identity(), leader.identity()
    assert a.startswith("jq-operator-7d9f-abcde_")
    assert a != b
