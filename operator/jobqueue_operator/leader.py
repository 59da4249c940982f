"""Leader election on a ``coordination.k8s.io/v1`` Lease: one replica acts, the others wait.

The chart runs two operator replicas; only the holder of the Lease runs kopf, and with it
every handler, the autoscaler, the settings sweep and lost-job recovery
(:mod:`jobqueue_operator.__main__`; docs/operator.md says why the whole operator and not
just its loops). This module is the election alone, for any Lease by name, so that more
than one election (a Lease per shard, say) can use it.

The protocol is client-go's (``k8s.io/client-go/tools/leaderelection``) on the same Lease
fields, so ``kubectl get lease`` reads as it does for any controller:

* a **candidate** reads the Lease every ``retry_period``. It takes the Lease when nobody
  holds it (empty ``holderIdentity``: released by a holder that stopped cleanly), or when
  the Lease has not changed for ``leaseDurationSeconds`` *by the candidate's own monotonic
  clock*, counted from when it first saw that version. ``renewTime`` is never compared with
  the local clock, so clock skew between nodes cannot hand the Lease over early;
* every write replaces the Lease at the ``resourceVersion`` it was read at: of two
  candidates racing for an expired Lease one wins, the other gets 409 and stays a candidate;
* the **holder** renews every ``retry_period``. When it has not managed to renew for
  ``renew_deadline`` — counted from when it *sent* its last successful renewal — it stops
  leading. No candidate can have taken over by then: a candidate counts
  ``leaseDurationSeconds`` from when it *saw* that renewal, which is later, and
  ``renew_deadline < leaseDurationSeconds``; the difference is the margin for the holder to
  stop acting;
* a holder that stops cleanly **releases** the Lease (empty holder), and a candidate takes
  it at its next look instead of waiting out the duration.

What this costs the API server: one write per ``retry_period`` from the holder (a renewal
replaces at the version it last wrote, without a read) and one read per ``retry_period``
from each candidate.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from jobqueue_operator import k8s, metrics, settings

logger = logging.getLogger(__name__)

API_VERSION: Final = "coordination.k8s.io/v1"
#: How long a released Lease says it lasts (client-go writes the same): nobody holds it anyway.
RELEASED_SECONDS: Final = 1
#: A candidate repeats the same API error in its log at most this often.
ERROR_LOG_SECONDS: Final = 30.0


@dataclass(frozen=True)
class Timing:
    """The election's three durations (client-go's names; its defaults are 15 s, 10 s, 2 s).

    Takeover after the holder dies without releasing (SIGKILL, node lost) takes between
    ``lease_seconds - retry_period`` and ``lease_seconds + retry_period`` after the death; a
    released Lease is taken within ``retry_period``."""

    #: ``leaseDurationSeconds`` written into the Lease (the API field is whole seconds)
    lease_seconds: int = settings.DEFAULT_LEASE_SECONDS
    #: the holder stops leading when it could not renew for this long
    renew_deadline: float = settings.DEFAULT_RENEW_DEADLINE_SECONDS
    #: how often the holder renews and a candidate looks
    retry_period: float = settings.DEFAULT_RETRY_PERIOD_SECONDS

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_seconds:
            raise ValueError(
                f"lease timings must satisfy 0 < retry period ({self.retry_period:g} s) < renew "
                f"deadline ({self.renew_deadline:g} s) < lease duration ({self.lease_seconds} s)"
            )


@dataclass(frozen=True)
class Record:
    """What the election reads from a Lease."""

    #: "" when nobody holds it
    holder: str
    #: 0 when the Lease does not say (then the candidate's own lease duration applies)
    lease_seconds: int
    #: ``metadata.resourceVersion``: changes with every write, renewals included
    version: str

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Record:
        spec = body.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            lease_seconds=int(spec.get("leaseDurationSeconds") or 0),
            version=str(body["metadata"].get("resourceVersion") or ""),
        )


Verdict = Literal["mine", "free", "expired", "held"]


class _Unread(enum.Enum):
    UNREAD = enum.auto()


#: "the caller has not read the Lease" (as opposed to None: read, and not there)
UNREAD: Final = _Unread.UNREAD


class Observer:
    """A candidate's memory of a Lease someone else holds: its version and since when (by the
    candidate's monotonic clock) that version has been seen unchanged. Pure: no I/O."""

    def __init__(self) -> None:
        self._version: str | None = None
        self._since = 0.0

    def verdict(self, record: Record, me: str, now: float, default_seconds: int) -> Verdict:
        if record.holder == me:
            return "mine"
        if not record.holder:
            return "free"
        if record.version != self._version:
            self._version, self._since = record.version, now
            return "held"
        duration = record.lease_seconds or default_seconds
        return "expired" if now - self._since >= duration else "held"


def identity() -> str:
    """This process's name in the Lease: its pod (``POD_NAME``, else the host name) and a
    random suffix, so that a restarted container is a new candidate rather than a holder
    that never renewed."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _now() -> str:
    """Now as a Kubernetes MicroTime (RFC 3339 with microseconds, UTC). Only people read the
    Lease's times; the election itself never compares them with a clock."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """Candidate for, and holder of, the Lease ``namespace``/``name`` under ``identity``
    (unique per process: a restarted process is a new candidate)."""

    def __init__(
        self,
        kube: k8s.LeaseApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        gauge: bool = True,
    ) -> None:
        self._kube = kube
        #: whether the Lease is reported as the leader gauge (not the shards' Leases)
        self._gauge = gauge
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing or Timing()
        self._mono = monotonic
        self._observer = Observer()
        #: the Lease as this process last wrote it (renewals replace at its version, no read)
        self._written: dict[str, Any] | None = None
        #: monotonic time the last successful write was *sent*
        self._renewed = -math.inf
        self._last_error_log = -math.inf
        self.leading = False
        #: the holder last seen ("" nobody); for logs and the standby's health answer
        self.holder = ""
        if gauge:
            metrics.LEADER.labels(name).set(0)

    def valid(self) -> bool:
        """Leading, and renewed recently enough that nobody else can have taken over — what
        to check right before acting (:attr:`leading` turns False only when :meth:`hold`
        next runs, which a process waking from a freeze may not do first)."""
        return self.leading and self._mono() - self._renewed < self.timing.renew_deadline

    # ---- the three phases

    async def acquire(self) -> None:
        """Return once this process holds the Lease; until then look every ``retry_period``.
        API errors are logged and retried (a candidate has nothing else to do)."""
        logger.info(
            "lease %s/%s: candidate %s (lease %ds, renew deadline %gs, retry %gs)",
            self.namespace,
            self.name,
            self.identity,
            self.timing.lease_seconds,
            self.timing.renew_deadline,
            self.timing.retry_period,
        )
        while True:
            try:
                if await self._attempt():
                    break
            except Exception as e:  # the API server down or refusing: a candidate just tries again
                self._log_error("reading or taking", e)
            await asyncio.sleep(self.timing.retry_period)
        logger.info("lease %s/%s: %s is the leader", self.namespace, self.name, self.identity)

    async def hold(self) -> None:
        """Renew every ``retry_period``; return when leadership is lost — the Lease taken by
        someone else, or not renewed for ``renew_deadline`` — with :attr:`leading` False."""
        deadline = self.timing.renew_deadline
        while self.leading:
            asleep = self._mono()
            await asyncio.sleep(self.timing.retry_period)
            late = self._mono() - asleep - self.timing.retry_period
            if late > (deadline - self.timing.retry_period) / 2:
                # the event loop was busy (or the process starved of CPU) for that long: half
                # the margin before the leader must give up is gone
                logger.warning(
                    "lease %s/%s: renewal %.1fs late (event loop busy)", self.namespace, self.name, late
                )
            left = self._renewed + deadline - self._mono()
            if left > 0:
                try:
                    async with asyncio.timeout(left):  # (no task of its own: see renew_or_take)
                        await self._attempt()
                except TimeoutError:
                    pass
                except Exception as e:  # anything that kept the renewal from happening
                    self._log_error("renewing", e)
            self._check_held()

    async def renew_or_take(self, seen: Mapping[str, Any] | None) -> bool:
        """One step for a caller that lists its Leases itself (:mod:`.sharding`): renew the
        Lease if this process holds it (no read), else take or create it from ``seen`` — the
        Lease as a list just showed it, None if absent — when it is free or expired. Losing it
        is noticed as in :meth:`hold`. True if this process may act on it now."""
        try:
            # asyncio.timeout, not wait_for: wait_for runs the call as a task of its own, and a
            # kopf that stops in this process (the standby's, when it starts leading) cancels
            # every task created after it started — the election's own task is older
            async with asyncio.timeout(self.timing.renew_deadline):
                await self._attempt(seen)
        except TimeoutError:
            pass
        except Exception as e:  # the API server down or refusing: the next step tries again
            self._log_error("renewing or taking", e)
        self._check_held()
        return self.valid()

    def watch(self, seen: Mapping[str, Any] | None) -> None:
        """Note the Lease as a list showed it, without acting: the time a holder has not
        renewed counts from when it was first seen so, not from when this process wants it."""
        if seen is not None and not self.leading:
            record = Record.of(seen)
            self.holder = record.holder
            self._observer.verdict(record, self.identity, self._mono(), self.timing.lease_seconds)

    def _check_held(self) -> None:
        if not self.leading:
            return
        if self.holder and self.holder != self.identity:
            self._lose(f"the Lease is held by {self.holder}")
        elif self._mono() - self._renewed >= self.timing.renew_deadline:
            self._lose(f"not renewed for {self.timing.renew_deadline:g}s")

    async def release(self) -> None:
        """Give the Lease up (empty holder) so that a candidate takes it at once; best effort:
        if this fails the Lease simply expires."""
        written, self._written = self._written, None
        if not self.leading or written is None:
            return
        self._lose("")
        now = _now()
        released = {
            "holderIdentity": None,
            "leaseDurationSeconds": RELEASED_SECONDS,
            "renewTime": now,
            "acquireTime": now,
        }
        try:
            try:
                await self._kube.replace_lease({**written, "spec": {**written["spec"], **released}})
            except k8s.ApiError as e:  # a renewal cut short may have moved the version on
                if not k8s.is_conflict(e):
                    raise
                current = await self._kube.get_lease(self.namespace, self.name)
                if current is None or Record.of(current).holder != self.identity:
                    raise
                await self._kube.replace_lease({**current, "spec": {**current["spec"], **released}})
        except Exception as e:
            logger.warning(
                "lease %s/%s: not released (%s); it expires in %ds",
                self.namespace,
                self.name,
                e,
                self.timing.lease_seconds,
            )

    # ---- one look (and write)

    async def _attempt(self, seen: Mapping[str, Any] | _Unread | None = UNREAD) -> bool:
        """Renew, take or create the Lease if this process may; True if it holds it now.
        ``seen``: the Lease as the caller last read it (None: absent); else it is read here."""
        sent = self._mono()
        if self.leading and self._written is not None:
            try:  # a renewal at the version this process wrote last: one request, no read
                return await self._write(self._written, sent, renewal=True)
            except k8s.ApiError as e:
                if not k8s.is_conflict(e):
                    raise
            self._written = None  # changed by someone else: read it
            seen = UNREAD
        body = await self._kube.get_lease(self.namespace, self.name) if isinstance(seen, _Unread) else seen
        if body is None:
            return await self._create(sent)
        record = Record.of(body)
        self.holder = record.holder
        verdict = self._observer.verdict(record, self.identity, self._mono(), self.timing.lease_seconds)
        if verdict == "held":
            return False
        if verdict == "expired":
            logger.warning(
                "lease %s/%s: holder %s did not renew for %ds; taking over",
                self.namespace,
                self.name,
                record.holder,
                record.lease_seconds or self.timing.lease_seconds,
            )
        try:
            return await self._write(body, sent, renewal=verdict == "mine")
        except k8s.ApiError as e:
            if k8s.is_conflict(e):
                return False  # another candidate wrote first
            raise

    async def _write(self, body: Mapping[str, Any], sent: float, *, renewal: bool) -> bool:
        now = _now()
        spec = dict(body.get("spec") or {})
        if not renewal:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1  # (as client-go counts)
        spec |= {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.timing.lease_seconds,
            "renewTime": now,
        }
        out = {"apiVersion": API_VERSION, "kind": "Lease", "metadata": body["metadata"], "spec": spec}
        self._won(await self._kube.replace_lease(out), sent)
        return True

    async def _create(self, sent: float) -> bool:
        now = _now()
        body = {
            "apiVersion": API_VERSION,
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.timing.lease_seconds,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        manager = f"jobqueue-leader/{self.identity}"[:128]  # its own: a racing candidate gets 409
        try:
            created = await self._kube.create_lease(body, field_manager=manager)
        except k8s.ApiError as e:
            if k8s.is_conflict(e):
                return False  # another candidate created it first
            raise
        self._won(created, sent)
        return True

    def _won(self, written: dict[str, Any], sent: float) -> None:
        self._written = written
        self._renewed = sent
        self.holder = self.identity
        if not self.leading:
            self.leading = True
            if self._gauge:
                metrics.LEADER.labels(self.name).set(1)

    def _lose(self, why: str) -> None:
        """Stop leading; ``why`` empty: on purpose (released)."""
        if self.leading and not why:
            logger.info("lease %s/%s: %s releases it", self.namespace, self.name, self.identity)
        elif self.leading:
            logger.warning("lease %s/%s: %s stops leading: %s", self.namespace, self.name, self.identity, why)
        self.leading = False
        self._written = None
        if self._gauge:
            metrics.LEADER.labels(self.name).set(0)

    def _log_error(self, doing: str, error: Exception) -> None:
        now = self._mono()
        if self.leading or now - self._last_error_log >= ERROR_LOG_SECONDS:
            self._last_error_log = now
            text = (
                k8s.message(error) if isinstance(error, k8s.ApiError) else f"{type(error).__name__}: {error}"
            )
            logger.warning("lease %s/%s: %s failed: %s", self.namespace, self.name, doing, text)
