"""The autoscaler's shards over replicas (:mod:`jobqueue_operator.sharding`): the pure hashing,
and several real shard tables sharing one in-memory Lease API under a fake clock.

The property that matters is checked after every single action of random schedules
(Hypothesis): **no shard is ever held by two replicas at once** — replicas stepping in any
order, freezing, dying, joining, the API failing. And once the survivors have stepped for a
while, every shard is held by exactly the member the assignment gives it to.
tests/integration/operator/test_operator_sharding.py shows the same with operator processes
on the real API server.
"""

from __future__ import annotations

import asyncio
import collections
import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jobqueue_operator import leader, sharding
from unit.middle.middlekit import api_error

NAMESPACE = "ops"
TIMING = leader.Timing(lease_seconds=3, renew_deadline=2.0, retry_period=0.5)


# ---- the hashing


def test_a_queue_keeps_its_shard_and_the_shards_are_even() -> None:
    keys = [("team", f"q{n}") for n in range(4000)]
    shards = [sharding.shard_of(key, 8) for key in keys]
    assert shards == [sharding.shard_of(key, 8) for key in keys]
    counts = collections.Counter(shards)
    assert set(counts) == set(range(8))
    assert all(400 <= n <= 600 for n in counts.values()), counts  # 500 each, give or take


def test_every_member_gets_an_equal_share_and_a_departure_moves_little() -> None:
    members = ["a_1", "b_2", "c_3"]
    before = sharding.assignment(12, members)
    assert sorted(collections.Counter(before.values()).values()) == [4, 4, 4]
    assert sharding.assignment(12, list(reversed(members))) == before  # (every replica agrees)
    assert sorted(collections.Counter(sharding.assignment(13, members).values()).values()) == [4, 4, 5]
    after = sharding.assignment(12, ["a_1", "c_3"])
    assert sorted(collections.Counter(after.values()).values()) == [6, 6]
    for survivor in ("a_1", "c_3"):  # the survivors keep (nearly) all they had
        kept = [s for s, m in before.items() if m == survivor and after[s] == survivor]
        assert len(kept) >= 3
    assert sharding.assignment(4, []) == {}


def test_the_lease_names_are_the_ones_the_chart_grants() -> None:
    assert sharding.lease_names("jq", 2) == ("jq-member-0", "jq-member-1", "jq-shard-0", "jq-shard-1")


# ---- shard tables over one fake Lease API


class FakeLeases:
    """The Lease part of the API server: resourceVersion compare-and-swap, 409 on a stale
    write or a create of an existing Lease; ``down`` makes every request fail."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise api_error(503, "the API server is down (injected)")

    def _store(self, body: Any) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(dict(body))
        stored["metadata"] = {**stored["metadata"], "resourceVersion": str(self.version)}
        self.leases[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    async def list_leases(self, namespace: str) -> list[dict[str, Any]]:
        self._check()
        return [copy.deepcopy(b) for b in self.leases.values()]

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._check()
        body = self.leases.get(name)
        return None if body is None else copy.deepcopy(body)

    async def create_lease(self, body: Any, *, field_manager: str) -> dict[str, Any]:
        self._check()
        if body["metadata"]["name"] in self.leases:
            raise api_error(409)
        return self._store(body)

    async def replace_lease(self, body: Any) -> dict[str, Any]:
        self._check()
        current = self.leases.get(body["metadata"]["name"])
        if current is None:
            raise api_error(404)
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise api_error(409)
        return self._store(body)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Cluster:
    """Replicas (shard tables) over one Lease API and one clock; ``dead`` ones never step again."""

    def __init__(self, count: int) -> None:
        self.api = FakeLeases()
        self.clock = Clock()
        self.count = count
        self.tables: list[sharding.ShardTable] = []
        self.dead: set[int] = set()

    def join(self) -> int:
        n = len(self.tables)
        self.tables.append(
            sharding.ShardTable(
                self.api,
                namespace=NAMESPACE,
                lease="jq",
                identity=f"op-{n}_{n:08x}",
                count=self.count,
                timing=TIMING,
                monotonic=self.clock,
            )
        )
        return n

    def alive(self) -> list[int]:
        return [n for n in range(len(self.tables)) if n not in self.dead]

    async def step(self, n: int) -> None:
        if n not in self.dead:
            await self.tables[n].step()
        self.assert_one_holder_at_most()

    async def rounds(self, rounds: int) -> None:
        for _ in range(rounds):
            for n in self.alive():
                await self.step(n)
            self.clock.now += TIMING.retry_period
            self.assert_one_holder_at_most()

    def assert_one_holder_at_most(self) -> None:
        holders = collections.defaultdict(list)
        for n, table in enumerate(self.tables):
            for shard in table.held():
                holders[shard].append(n)
        assert all(len(h) == 1 for h in holders.values()), dict(holders)

    def holders(self) -> dict[int, int]:
        return {shard: n for n, table in enumerate(self.tables) for shard in table.held()}

    def assert_settled(self) -> None:
        """Every shard held by one live replica: the one the assignment gives it to."""
        live = {self.tables[n].identity: n for n in self.alive() if self.tables[n].is_member()}
        assert len(live) == min(len(self.alive()), self.count)  # (a member Lease per shard)
        expected = {s: live[m] for s, m in sharding.assignment(self.count, live).items()}
        assert self.holders() == expected


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_replicas_share_the_shards_and_a_dead_ones_move_within_a_lease_duration() -> None:
    async def scenario() -> None:
        cluster = Cluster(count=12)
        for _ in range(3):
            cluster.join()
        await cluster.rounds(4)
        cluster.assert_settled()
        assert all(cluster.tables[n].held() for n in range(3))  # (12 shards: each gets some)
        assert cluster.tables[0].members == tuple(sorted(t.identity for t in cluster.tables))

        victim = cluster.holders()[0]
        orphans = set(cluster.tables[victim].held())
        cluster.dead.add(victim)  # SIGKILL: no release
        died = cluster.clock.now
        while not orphans <= set(cluster.holders()) or any(cluster.holders()[s] == victim for s in orphans):
            await cluster.rounds(1)
            assert cluster.clock.now - died <= TIMING.lease_seconds + 2 * TIMING.retry_period
        # not before the Lease expired by the survivors' clocks
        assert cluster.clock.now - died >= TIMING.lease_seconds
        await cluster.rounds(2)
        cluster.assert_settled()

    run(scenario())


def test_a_clean_stop_hands_over_at_the_next_step_and_a_newcomer_gets_its_share() -> None:
    async def scenario() -> None:
        cluster = Cluster(count=8)
        cluster.join()
        await cluster.rounds(3)
        assert cluster.tables[0].held() == list(range(8))
        cluster.join()
        await cluster.rounds(4)  # the first stops acting on the newcomer's shards, releases, it takes
        cluster.assert_settled()
        assert cluster.tables[1].held()

        await cluster.tables[0].release()
        cluster.dead.add(0)
        await cluster.rounds(3)  # released Leases are free: no waiting for them to expire
        cluster.assert_settled()
        assert cluster.tables[1].held() == list(range(8))

    run(scenario())


def test_a_replica_that_cannot_renew_stops_acting_before_anyone_takes_over() -> None:
    async def scenario() -> None:
        cluster = Cluster(count=4)
        cluster.join()
        cluster.join()
        await cluster.rounds(4)
        frozen = cluster.holders()[0]
        # it freezes (a long pause): the others step on; at every step at most one holder
        cluster.dead.add(frozen)
        for _ in range(12):
            await cluster.rounds(1)
        cluster.dead.discard(frozen)  # it wakes up: its first step finds itself replaced
        assert not cluster.tables[frozen].held()
        await cluster.rounds(4)
        cluster.assert_settled()

    run(scenario())


Action = tuple[str, int]
actions = st.lists(
    st.one_of(
        st.tuples(st.just("step"), st.integers(0, 5)),
        st.tuples(st.just("tick"), st.integers(1, 8)),  # retry periods / 2 of fake time
        st.tuples(st.just("kill"), st.integers(0, 5)),
        st.tuples(st.just("release"), st.integers(0, 5)),
        st.tuples(st.just("join"), st.just(0)),
        st.tuples(st.just("api"), st.integers(0, 1)),  # the API server down (0) or up (1)
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(schedule=actions, count=st.integers(1, 6))
def test_no_shard_ever_has_two_holders_and_the_survivors_settle(schedule: list[Action], count: int) -> None:
    async def scenario() -> None:
        cluster = Cluster(count=count)
        cluster.join()
        cluster.join()
        for what, n in schedule:
            if what == "step" and n < len(cluster.tables):
                await cluster.step(n)
            elif what == "tick":
                cluster.clock.now += n * TIMING.retry_period / 2
            elif what == "kill" and n < len(cluster.tables):
                cluster.dead.add(n)
            elif what == "release" and n < len(cluster.tables) and n not in cluster.dead:
                await cluster.tables[n].release()
                cluster.dead.add(n)
            elif what == "join" and len(cluster.tables) < 6:
                cluster.join()
            elif what == "api":
                cluster.api.down = n == 0
            cluster.assert_one_holder_at_most()
        cluster.api.down = False
        if not cluster.alive():
            cluster.join()
        # the dead Leases expire, the survivors settle (members: one lease duration; shards:
        # one more step; handovers: two)
        await cluster.rounds(int(2 * TIMING.lease_seconds / TIMING.retry_period) + 6)
        cluster.assert_settled()

    run(scenario())
