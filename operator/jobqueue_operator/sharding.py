"""The autoscaler's queues spread over the operator's replicas: a Lease per shard.

Without sharding the leader alone polls every queue every second (:mod:`.scaling.poller`),
and that per-queue cost is what limits how many queues one operator serves
(docs/performance.md). With ``JOBQUEUE_SHARDS`` = N every replica runs an autoscaler, each
over the queues of the shards it holds; everything else (reconciles, the settings sweep,
RecurringJobs, failure notifications) stays with the leader.

* a queue belongs to shard ``hash(namespace/name) mod N`` — fixed for the queue's life;
* a replica that runs takes one of N **member** Leases (``<lease>-member-<k>``): the
  members are the holders of live member Leases;
* shard ``s`` belongs to a member by **rendezvous hashing with equal quotas**
  (:func:`assignment`): every member gets the same number of shards (give or take one), and
  a member coming or going moves its own shards and a few others;
* the shard's own Lease (``<lease>-shard-<s>``) says who *may* act on it: the member it
  belongs to takes it when it is free or has expired (the election of :mod:`.leader`, by the
  taker's own clock); a holder it no longer belongs to stops acting on it at once and
  releases it one step later (an autoscaler pass in flight may not write after the release).

So a queue is scaled by at most one replica at any time, even while the replicas disagree
about who the members are (each shard is still one Lease); when a replica dies its shards
move within a lease duration and a step. Cost: one list of the namespace's Leases per
replica per retry period, and one renewal per held Lease (members and shards).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from jobqueue_operator import index, k8s, leader, metrics

logger = logging.getLogger(__name__)

MEMBER_INFIX: Final = "-member-"
SHARD_INFIX: Final = "-shard-"


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def shard_of(key: index.Key, count: int) -> int:
    """The shard of the JobQueue ``key`` (namespace, name) among ``count``: stable across
    processes and restarts (never Python's salted ``hash``)."""
    return int.from_bytes(_digest(f"{key[0]}/{key[1]}")) % count


def assignment(count: int, members: Collection[str]) -> dict[int, str]:
    """Which member each of ``count`` shards belongs to: **rendezvous hashing with equal
    quotas**. Every member gets ``count // len(members)`` shards or one more (plain rendezvous
    hashing leaves a member of three without any shard in one case of forty at 12 shards);
    shard by shard, each goes to the member with the highest score of (member, shard) that
    has room left. A member coming or going moves its own shards and, through the quotas, a
    few others — never a reshuffle of all. The same on every replica that sees the same members."""
    ordered = sorted(members)
    if not ordered:
        return {}
    each, extra = divmod(count, len(ordered))
    room = {member: each + (1 if n < extra else 0) for n, member in enumerate(ordered)}
    out = {}
    for shard in range(count):
        for member in sorted(ordered, key=lambda m: _digest(f"{m}#{shard}"), reverse=True):
            if room[member]:
                room[member] -= 1
                out[shard] = member
                break
    return out


def lease_names(lease: str, count: int) -> tuple[str, ...]:
    """The member and shard Lease names of ``count`` shards (the chart grants exactly these)."""
    return (
        *(f"{lease}{MEMBER_INFIX}{k}" for k in range(count)),
        *(f"{lease}{SHARD_INFIX}{k}" for k in range(count)),
    )


class ShardTable:
    """This replica's membership and shards; :meth:`run` it for the life of the process, ask
    :meth:`holds` before acting on a queue, :meth:`release` when stopping."""

    def __init__(
        self,
        kube: k8s.LeaseApi,
        *,
        namespace: str,
        lease: str,
        identity: str,
        count: int,
        timing: leader.Timing,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if count < 1:
            raise ValueError(f"shard count must be at least 1, not {count}")
        self._kube = kube
        self.namespace = namespace
        self.identity = identity
        self.count = count
        self.timing = timing
        self._mono = monotonic

        def elector(name: str) -> leader.Elector:
            return leader.Elector(
                kube,
                namespace=namespace,
                name=name,
                identity=identity,
                timing=timing,
                monotonic=monotonic,
                gauge=False,
            )

        # one member Lease per possible member: a replica takes a free (or expired) one
        self._slots = [elector(f"{lease}{MEMBER_INFIX}{k}") for k in range(count)]
        self._shards = [elector(f"{lease}{SHARD_INFIX}{k}") for k in range(count)]
        #: other members' Leases as this replica last saw them (whether they are alive)
        self._observers = {e.name: leader.Observer() for e in self._slots}
        #: shards this replica stopped acting on, released at the next step
        self._dropping: set[int] = set()
        #: the members at the last step (identities), this replica included while it is one
        self.members: tuple[str, ...] = ()

    def holds(self, key: index.Key) -> bool:
        """May this replica act on the JobQueue ``key`` now? (Its shard's Lease is held and
        renewed in time, and not being handed over.)"""
        shard = shard_of(key, self.count)
        return shard not in self._dropping and self._shards[shard].valid()

    def is_member(self) -> bool:
        return any(e.valid() for e in self._slots)

    def held(self) -> list[int]:
        return [s for s, e in enumerate(self._shards) if s not in self._dropping and e.valid()]

    async def run(self) -> None:
        """Step every retry period until cancelled."""
        logger.info(
            "shards: %s takes part in %d shards (Leases %s…)", self.identity, self.count, self._shards[0].name
        )
        while True:
            started = self._mono()
            try:
                await self.step()
            except Exception:
                logger.exception("shards: a step failed; the next one runs as usual")
            await asyncio.sleep(max(0.0, self.timing.retry_period - (self._mono() - started)))

    async def step(self) -> None:
        """Read every Lease once; keep (or take) a member Lease; take the shards that belong
        to this replica, renew them, and hand over the others."""
        try:
            listed = {
                lease["metadata"]["name"]: lease for lease in await self._kube.list_leases(self.namespace)
            }
        except Exception as e:  # held Leases are renewed from what was written last (no read)
            why = k8s.message(e) if isinstance(e, k8s.ApiError) else e
            logger.warning("shards: listing the Leases failed: %s", why)
            listed = None
        member = await self._membership(listed)
        self.members = self._alive(listed, member) if listed is not None else self.members
        before = set(self.held())
        owners = assignment(self.count, self.members) if member else {}
        for shard, elector in enumerate(self._shards):
            if shard in self._dropping:
                await elector.release()
                self._dropping.discard(shard)
                continue
            mine = owners.get(shard) == self.identity
            if elector.leading and not mine:
                self._dropping.add(shard)  # no write on it from now on; released next step
                continue
            seen = listed.get(elector.name) if listed is not None else None
            if mine and (elector.leading or listed is not None):
                await elector.renew_or_take(seen)
            else:
                elector.watch(seen)  # (so that a dead holder's Lease expires on time once it is)
        after = set(self.held())
        if after != before:
            logger.info(
                "shards: %s holds %s of %d (members: %d)",
                self.identity,
                sorted(after) or "none",
                self.count,
                len(self.members),
            )
        metrics.SHARDS_HELD.set(len(after))
        metrics.SHARD_MEMBERS.set(len(self.members))

    async def _membership(self, listed: Mapping[str, Mapping[str, Any]] | None) -> bool:
        """Renew this replica's member Lease, or take a free or expired one; True if it is a
        member now."""
        held = next((e for e in self._slots if e.leading), None)
        if held is not None:
            return await held.renew_or_take(listed.get(held.name) if listed is not None else None)
        if listed is None:
            return False
        for elector in self._slots:
            if await elector.renew_or_take(listed.get(elector.name)):
                logger.info("shards: %s is a member (Lease %s)", self.identity, elector.name)
                return True
        return False

    def _alive(self, listed: Mapping[str, Mapping[str, Any]], member: bool) -> tuple[str, ...]:
        """The identities holding member Leases that are not expired (by this replica's clock)."""
        alive = {self.identity} if member else set()
        now = self._mono()
        for name, observer in self._observers.items():
            body = listed.get(name)
            if body is None:
                continue
            record = leader.Record.of(body)
            verdict = observer.verdict(record, self.identity, now, self.timing.lease_seconds)
            if verdict == "held":
                alive.add(record.holder)
        return tuple(sorted(alive))

    async def release(self) -> None:
        """Give every held Lease up (on a clean stop): the others take the shards at once."""
        for elector in [*self._shards, *self._slots]:
            await elector.release()
        self._dropping.clear()
        metrics.SHARDS_HELD.set(0)
