"""Shared parts of the autoscaler benchmarks: watching the cluster, and KEDA + HPA simulated.

:class:`KedaSimulator` is the baseline of ``bench_autoscaler_reaction.py`` and
``bench_autoscaler_soak.py``: the algorithm KEDA's ``redis`` (list) trigger and the
HorizontalPodAutoscaler run, with their documented defaults unless a benchmark says
otherwise (sources in ``../shared/notes/autoscaling.md`` §1–3):

* the KEDA operator checks each ScaledObject every ``pollingInterval`` (30 s): the list's
  length (``LLEN`` of one key) > ``activationListLength`` (0) activates 0 → 1; inactive for
  ``cooldownPeriod`` (300 s) after the last active check → 0;
* the HPA syncs every 15 s while the target has replicas: ``desired = ceil(length /
  listLength)`` (AverageValue), unchanged within a 10 % tolerance; scale-up at most
  max(+100 %, +4 pods) per sync; scale-down to the highest recommendation of the
  stabilisation window (300 s); clamped to ``[1, maxReplicaCount]``.

Each ScaledObject and its HPA get random phases, as objects created at different times
have. Replicas are written through the scale subresource, as KEDA and the HPA do.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from lightkube import Client
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

KEDA_POLLING_INTERVAL = 30.0
KEDA_COOLDOWN_PERIOD = 300.0
HPA_SYNC_PERIOD = 15.0
HPA_TOLERANCE = 0.1
HPA_SCALE_UP_PERCENT = 100
HPA_SCALE_UP_PODS = 4
HPA_DOWNSCALE_STABILIZATION = 300.0


def watch(kube: Client, resource: Any, namespace: str, handle: Callable[[str, Any, float], None]) -> None:
    """Call ``handle(event type, object, monotonic time)`` for every watch event, from a thread."""

    def run() -> None:
        for event, obj in kube.watch(resource, namespace=namespace):
            handle(event, obj, time.monotonic())

    threading.Thread(target=run, daemon=True).start()
    time.sleep(1.0)  # the watch request is established


class ReplicaTimeline:
    """(monotonic time, ``spec.replicas``) changes of every Deployment of a namespace."""

    def __init__(self, kube: Client, namespace: str) -> None:
        self.history: dict[str, list[tuple[float, int]]] = {}
        self._lock = threading.Lock()
        watch(kube, Deployment, namespace, self._seen)

    def _seen(self, _event: str, obj: Any, now: float) -> None:
        value = 1 if obj.spec.replicas is None else int(obj.spec.replicas)
        with self._lock:
            seen = self.history.setdefault(obj.metadata.name, [])
            if not seen or seen[-1][1] != value:
                seen.append((now, value))

    def reached(self, name: str, since: float, target: int) -> tuple[float, int] | None:
        """(seconds after ``since`` when replicas first were >= target, replica writes it took)."""
        with self._lock:
            seen = list(self.history.get(name, []))
        steps = 0
        for when, value in seen:
            if when < since:
                continue
            steps += 1
            if value >= target:
                return when - since, steps
        return None

    def current(self, name: str) -> int | None:
        with self._lock:
            seen = self.history.get(name)
            return seen[-1][1] if seen else None


class PodDeletions:
    """Unix time each pod of a namespace was first seen deleted (deletionTimestamp, or gone)."""

    def __init__(self, kube: Client, namespace: str) -> None:
        self.deleted: dict[str, float] = {}
        watch(kube, Pod, namespace, self._seen)

    def _seen(self, event: str, obj: Any, _now: float) -> None:
        if event == "DELETED" or obj.metadata.deletionTimestamp is not None:
            self.deleted.setdefault(obj.metadata.name, time.time())


@dataclass
class ScaledObject:
    """One simulated ScaledObject (``redis`` trigger on ``list_key``) and its HPA."""

    deployment: str
    list_key: str
    max_replicas: int
    list_length: int
    stabilization: float = HPA_DOWNSCALE_STABILIZATION
    cooldown: float = KEDA_COOLDOWN_PERIOD
    replicas: int = 0
    last_active: float = -math.inf
    next_poll: float = 0.0
    next_sync: float = 0.0
    recommendations: deque[tuple[float, int]] = field(default_factory=deque)


class KedaSimulator:
    """Runs every :class:`ScaledObject` from a thread (``with`` block); see the module doc."""

    def __init__(self, kube: Client, conn: redis.Redis, namespace: str, objects: list[ScaledObject],
                 rnd: random.Random) -> None:
        self.kube, self.conn, self.namespace, self.objects = kube, conn, namespace, objects
        self._stop = threading.Event()
        self._lock = threading.Lock()
        start = time.monotonic()
        for o in objects:
            o.next_poll = start + rnd.uniform(0, KEDA_POLLING_INTERVAL)
            o.next_sync = start + rnd.uniform(0, HPA_SYNC_PERIOD)

    def __enter__(self) -> KedaSimulator:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def reset(self) -> None:
        """Where KEDA ends up after its cooldown once the queue is empty: 0 replicas."""
        with self._lock:
            for o in self.objects:
                self._write(o, 0)
                o.last_active, o.recommendations = -math.inf, deque()

    def _write(self, o: ScaledObject, replicas: int) -> None:
        if replicas != o.replicas:
            self.kube.patch(Deployment.Scale, o.deployment, {"spec": {"replicas": replicas}},
                            namespace=self.namespace, patch_type=PatchType.MERGE)
            o.replicas = replicas

    def _poll(self, o: ScaledObject, now: float) -> None:
        if int(self.conn.llen(o.list_key)) > 0:
            o.last_active = now
            if o.replicas == 0:
                self._write(o, 1)
        elif o.replicas > 0 and now - o.last_active >= o.cooldown:
            self._write(o, 0)

    def _sync(self, o: ScaledObject, now: float) -> None:
        if o.replicas == 0:
            return  # the HPA is disabled while its target has no replica (KEDA activates it)
        metric = int(self.conn.llen(o.list_key))  # the metrics server asks the scaler each sync
        ratio = metric / (o.list_length * o.replicas)
        desired = o.replicas if abs(1 - ratio) <= HPA_TOLERANCE else math.ceil(metric / o.list_length)
        limit = max(o.replicas * (100 + HPA_SCALE_UP_PERCENT) // 100, o.replicas + HPA_SCALE_UP_PODS)
        desired = max(1, min(desired, limit, o.max_replicas))
        o.recommendations.append((now, desired))
        while o.recommendations and o.recommendations[0][0] < now - o.stabilization:
            o.recommendations.popleft()
        if desired < o.replicas:
            desired = max(r for _, r in o.recommendations)
        self._write(o, desired)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            now = time.monotonic()
            with self._lock:
                for o in self.objects:
                    if now >= o.next_poll:
                        o.next_poll += KEDA_POLLING_INTERVAL
                        self._poll(o, now)
                    if now >= o.next_sync:
                        o.next_sync += HPA_SYNC_PERIOD
                        self._sync(o, now)
