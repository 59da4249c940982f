"""When the jobs of a vanished worker pod may be taken back: pure bookkeeping, no I/O.

:func:`jobqueue.recovery.recover_pod` re-queues (or fails) every job a pod held. Calling it
while the pod's worker process still runs would run those jobs twice, and "the pod is gone
from the API" does not mean "its process is gone":

* a pod deleted gracefully gets ``deletionTimestamp`` and its workers keep finishing their
  jobs for up to the grace period (a job timeout and more);
* with ``--grace-period=0 --force`` (and on kwok, for every deletion) the object disappears
  at once, while the process is still being stopped — or, on a lost node, keeps running;
* a pod relabelled out of the Deployment leaves our watch but keeps running.

So the Kubernetes side says *which* pods to look at: pods seen once and now gone,
terminating, or finished (evicted). Redis adds the pods the watch never showed alive: a pod
killed within a second of starting (before the operator's pod index had it), or one that
vanished while the operator was down, still has worker records naming it — those pods are
*suspects*, and a suspect whose heartbeats move is simply alive (the pod index was behind,
or a worker runs outside Kubernetes) and is dropped. The verdict comes from Redis: each RQ worker of such a
pod refreshes ``last_heartbeat`` in its record every few seconds while it lives, and
deletes (or marks dead) its record when it exits cleanly. A pod is **dead** when none of its
workers has a live record, or when none of their heartbeats has changed for
:data:`SILENCE_SECONDS` of uninterrupted observation. Comparing values for *change* (never
against our clock) makes the rule immune to clock skew between the operator and the
workers; a failed read restarts the silence count, because after a Redis outage a live
worker needs a moment to get its next heartbeat through.

A container restarting inside a pod that still exists is *not* handled here: its new
process registers under the same pod name, and recovering "the pod" would take its jobs
too. The worker-side reaper re-queues what the dead process held once its leases expire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

#: Seconds without any heartbeat change before a gone pod's workers count as dead: more
#: than three heartbeats (``jobqueue.worker.HEARTBEAT_SECONDS`` = 3 s) so a busy machine's
#: late heartbeat is not mistaken for death, and below the job lease (15 s) so the operator
#: acts before the worker-side reaper would.
SILENCE_SECONDS: Final = 10.0
#: A gone pod whose workers still heartbeat after this long is left to the workers' own
#: lease reaping (a draining pod may legitimately run this long only with very long jobs).
GIVE_UP_SECONDS: Final = 6 * 3600.0

PodKey = tuple[str, str, str]  # namespace, JobQueue name, pod name


@dataclass(frozen=True)
class PodSighting:
    """What the pod watch says about one worker pod."""

    name: str
    #: deletion requested (``deletionTimestamp`` set)
    terminating: bool = False
    #: phase Failed or Succeeded: its containers have stopped (eviction, node shutdown)
    finished: bool = False


@dataclass
class _Watch:
    queue: str
    how: str
    since: float
    beats: dict[str, str | None] | None = None
    quiet_since: float | None = None
    #: found through Redis only (a worker record names a pod the watch does not show)
    suspect: bool = False


@dataclass
class LostPods:
    """Pods whose jobs may have to be recovered, and the evidence collected about them."""

    silence: float = SILENCE_SECONDS
    give_up: float = GIVE_UP_SECONDS
    #: pods seen alive last time, per JobQueue: a pod missing from the next look is gone
    _known: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    _watched: dict[PodKey, _Watch] = field(default_factory=dict)

    def look(self, key: tuple[str, str], queue: str, pods: Iterable[PodSighting], now: float) -> None:
        """The pods the watch shows for JobQueue ``key`` (serving ``queue``) right now."""
        alive = set()
        for pod in pods:
            if pod.finished:
                self._watch((*key, pod.name), queue, "stopped (pod phase Failed/Succeeded)", now)
            elif pod.terminating:
                self._watch((*key, pod.name), queue, "deleted", now)
            else:
                alive.add(pod.name)
        for name in self._known.get(key, set()) - alive:
            self._watch((*key, name), queue, "deleted", now)
        self._known[key] = alive
        for name in alive:  # a suspect the watch now shows alive: the pod index was behind
            w = self._watched.get((*key, name))
            if w is not None and w.suspect:
                del self._watched[(*key, name)]

    def knows(self, key: tuple[str, str]) -> bool:
        """Whether pods of JobQueue ``key`` were seen alive (so that their absence means something)."""
        return bool(self._known.get(key))

    def suspect(self, pod: PodKey, queue: str, now: float) -> None:
        """Redis has worker records of ``pod``, which the pod watch does not show alive."""
        if pod not in self._watched and pod[2] not in self._known.get(pod[:2], set()):
            self._watched[pod] = _Watch(
                queue=queue, how="vanished (never seen alive by the operator)", since=now, suspect=True
            )

    def forget(self, key: tuple[str, str]) -> None:
        """JobQueue ``key`` is gone: stop caring about its pods."""
        self._known.pop(key, None)
        for pod in [p for p in self._watched if p[:2] == key]:
            del self._watched[pod]

    def _watch(self, pod: PodKey, queue: str, how: str, now: float) -> None:
        if pod not in self._watched:
            self._watched[pod] = _Watch(queue=queue, how=how, since=now)

    def watched(self) -> dict[PodKey, str]:
        """Every pod under watch and the RQ queue its workers serve."""
        return {pod: w.queue for pod, w in self._watched.items()}

    def observe(self, pod: PodKey, heartbeats: Mapping[str, str | None] | None, now: float) -> bool:
        """Record what Redis says of ``pod``'s workers; True once they are dead.

        ``heartbeats``: worker name -> ``last_heartbeat`` of every *live* worker record of the
        pod (empty: none left); ``None``: Redis could not be read this time.
        """
        w = self._watched.get(pod)
        if w is None:
            return False
        if heartbeats is None:
            w.quiet_since = None
            return False
        if not heartbeats:
            return True
        beats = dict(heartbeats)
        if beats != w.beats or w.quiet_since is None:
            if w.suspect and w.beats is not None and beats != w.beats:
                del self._watched[pod]  # heartbeats moved: alive, whatever the watch shows
                return False
            w.beats, w.quiet_since = beats, now
            return False
        return now - w.quiet_since >= self.silence

    def how(self, pod: PodKey) -> str:
        w = self._watched.get(pod)
        return w.how if w else "gone"

    def done(self, pod: PodKey) -> None:
        """The pod's jobs were recovered (or there were none)."""
        self._watched.pop(pod, None)

    def expire(self, now: float) -> list[PodKey]:
        """Drop pods watched longer than :data:`GIVE_UP_SECONDS`; returns them (to log)."""
        old = [pod for pod, w in self._watched.items() if now - w.since >= self.give_up]
        for pod in old:
            del self._watched[pod]
        return old
