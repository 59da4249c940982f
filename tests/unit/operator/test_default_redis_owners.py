"""Which JobQueues own a namespace's default-Redis Secret: a few, the same ones for as long as
they exist, whatever the number of JobQueues."""

from __future__ import annotations

from jobqueue_operator.builders.redissecret import Owner
from jobqueue_operator.defaultredis import OWNER_LIMIT, pick_owners


def queues(count: int) -> list[Owner]:
    return [Owner(f"q{i:05d}", f"uid-{i:05d}") for i in range(count)]


def test_at_most_the_limit_however_many_jobqueues() -> None:
    assert len(pick_owners(queues(10_000), ())) == OWNER_LIMIT
    assert pick_owners(queues(3), ()) == frozenset(queues(3))
    assert pick_owners([], ()) == frozenset()


def test_current_owners_stay_so_that_nothing_is_rewritten() -> None:
    everyone = queues(100)
    current = {o.uid for o in everyone[50 : 50 + OWNER_LIMIT]}
    assert {o.uid for o in pick_owners(everyone, current)} == current


def test_a_gone_owner_is_replaced_and_the_others_kept() -> None:
    everyone = queues(100)
    owners = pick_owners(everyone, ())
    gone = sorted(owners)[0]
    after = pick_owners([o for o in everyone if o != gone], {o.uid for o in owners})
    assert len(after) == OWNER_LIMIT
    assert owners - {gone} <= after
    assert gone not in after
