"""Shared parts of the autoscaler benchmarks: watching the cluster, the real KEDA, and a model of it.

The baseline is the real KEDA 2.21 (hack/keda.py; :class:`RealKeda` puts ScaledObjects over
plain-RQ Deployments). :class:`KedaSimulator` is kept as a documented *model* of what KEDA's
``redis`` (list) trigger and the HorizontalPodAutoscaler compute, run beside the real KEDA in
the same benchmark so the two can be compared (docs/autoscaling.md shows the difference).
The model, with KEDA's and the HPA's documented defaults unless a benchmark says otherwise
(KEDA's Redis Lists scaler and ScaledObject reference, keda.sh/docs/2.x/, and the
HorizontalPodAutoscaler's algorithm, kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/):

* the KEDA operator checks each ScaledObject every ``pollingInterval`` (30 s): the list's
  length (``LLEN`` of one key) > ``activationListLength`` (0) activates 0 → 1; inactive for
  ``cooldownPeriod`` (300 s) after the last active check → 0;
* the HPA syncs every 15 s while the target has replicas: ``desired = ceil(length /
  listLength)`` (AverageValue), unchanged within a 10 % tolerance; scale-up at most to
  max(2 × current, 4) per sync — the rule of an HPA without ``spec.behavior``, which is what
  KEDA creates unless ``advanced.horizontalPodAutoscalerConfig.behavior`` is set
  (``calculateScaleUpLimit`` in kubernetes' pkg/controller/podautoscaler; an HPA *with* a
  behavior defaults to max(+100 %, +4 pods) instead, which this model assumed until the real
  KEDA showed 1 → 4 → 8 → 15) — or, tuned, any step up to the maximum; scale-down to the
  highest recommendation of the stabilisation window (300 s); clamped to ``[1, maxReplicaCount]``.

Each ScaledObject and its HPA get random phases, as objects created at different times
have. Replicas are written through the scale subresource, as KEDA and the HPA do.
"""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from lightkube import Client
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

import operator_benchlib as bl

assert str(bl.ROOT / "hack") in sys.path  # operator_benchlib put it there

import devenv  # noqa: E402
import images  # noqa: E402
import keda  # noqa: E402
import podrunner  # noqa: E402
import podrunner_containers  # noqa: E402

KEDA_POLLING_INTERVAL = 30.0
KEDA_COOLDOWN_PERIOD = 300.0
HPA_SYNC_PERIOD = 15.0
HPA_TOLERANCE = 0.1
HPA_SCALE_UP_FACTOR = 2
HPA_SCALE_UP_MINIMUM = 4
HPA_DOWNSCALE_STABILIZATION = 300.0


def watch(kube: Client, resource: Any, namespace: str, handle: Callable[[str, Any, float], None]) -> None:
    """Call ``handle(event type, object, monotonic time)`` for every watch event, from a thread."""

    def run() -> None:
        while True:  # a broken watch (API server restart, timeout) starts again: it re-lists
            try:
                for event, obj in kube.watch(resource, namespace=namespace):
                    handle(event, obj, time.monotonic())
            except Exception:  # also the cluster's end when the benchmark exits
                time.sleep(0.5)

    threading.Thread(target=run, daemon=True).start()
    time.sleep(1.0)  # the watch request is established


class ReplicaTimeline:
    """(monotonic time, value) changes of ``spec.replicas`` and of ``status.readyReplicas`` of
    every Deployment of a namespace."""

    def __init__(self, kube: Client, namespace: str) -> None:
        self.history: dict[str, list[tuple[float, int]]] = {}
        self.ready_history: dict[str, list[tuple[float, int]]] = {}
        self._lock = threading.Lock()
        watch(kube, Deployment, namespace, self._seen)

    def _seen(self, _event: str, obj: Any, now: float) -> None:
        value = 1 if obj.spec.replicas is None else int(obj.spec.replicas)
        ready = int((obj.status and obj.status.readyReplicas) or 0)
        with self._lock:
            for history, v in ((self.history, value), (self.ready_history, ready)):
                seen = history.setdefault(obj.metadata.name, [])
                if not seen or seen[-1][1] != v:
                    seen.append((now, v))

    def reached(
        self, name: str, since: float, target: int, *, ready: bool = False
    ) -> tuple[float, int] | None:
        """(seconds after ``since`` when replicas — ready ones with ``ready`` — first were >= target,
        changes it took)."""
        with self._lock:
            seen = list((self.ready_history if ready else self.history).get(name, []))
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

    def replica_seconds(self, name: str, start: float, end: float) -> float:
        """The integral of ``spec.replicas`` over [start, end]: pod-seconds paid for."""
        with self._lock:
            seen = list(self.history.get(name, []))
        total, value, at = 0.0, 0, start
        for when, v in seen:
            if when > start:
                total += value * (min(when, end) - at)
                at = min(when, end)
            value = v
            if when >= end:
                break
        return total + value * max(0.0, end - at)


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
    polling_interval: float = KEDA_POLLING_INTERVAL
    #: scale-up in one step to the need (a tuned ``behavior``); else the HPA's default policies
    one_step_up: bool = False
    replicas: int = 0
    last_active: float = -math.inf
    next_poll: float = 0.0
    next_sync: float = 0.0
    recommendations: deque[tuple[float, int]] = field(default_factory=deque)


class KedaSimulator:
    """Runs every :class:`ScaledObject` from a thread (``with`` block); see the module doc."""

    def __init__(
        self, kube: Client, conn: redis.Redis, namespace: str, objects: list[ScaledObject], rnd: random.Random
    ) -> None:
        self.kube, self.conn, self.namespace, self.objects = kube, conn, namespace, objects
        self._stop = threading.Event()
        self._lock = threading.Lock()
        start = time.monotonic()
        for o in objects:
            o.next_poll = start + rnd.uniform(0, o.polling_interval)
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
            self.kube.patch(
                Deployment.Scale,
                o.deployment,
                {"spec": {"replicas": replicas}},
                namespace=self.namespace,
                patch_type=PatchType.MERGE,
            )
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
        limit = (
            o.max_replicas if o.one_step_up else max(o.replicas * HPA_SCALE_UP_FACTOR, HPA_SCALE_UP_MINIMUM)
        )
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
                        o.next_poll += o.polling_interval
                        self._poll(o, now)
                    if now >= o.next_sync:
                        o.next_sync += HPA_SYNC_PERIOD
                        self._sync(o, now)


# --------------------------------------------------------------------------------------
# The real KEDA

#: The benchmarks' worker image (benchmarks/Dockerfile): the project's image — ``jobqueue`` and
#: ``rq`` — plus the benchmarks' job modules. The pod runner's container mode runs it (built by
#: :func:`pod_runner` when needed); its process mode ignores images and finds the modules on
#: PYTHONPATH.
BENCH_WORKERS = images.ImageSpec(
    name="bench-workers",
    ref="registry.invalid/bench-workers:1",
    parent=images.OPERATOR.name,
    dockerfile=bl.ROOT / "benchmarks/Dockerfile",
    context=bl.ROOT / "benchmarks",
    inputs=tuple(
        bl.ROOT / "benchmarks" / f for f in (".dockerignore", "autoscaler_jobs.py", "worker_rqjobs.py")
    ),
)
#: the plain ``rq worker`` pods' image
PLAIN_RQ_IMAGE = BENCH_WORKERS.ref
KEDA_LABEL = "bench.jobqueue.dev/keda"


def pod_runner(
    cluster: devenv.Cluster,
    namespace: str,
    state_dir: Path,
    *,
    mode: podrunner.Mode = "auto",
    shutdown_grace: float = 5.0,
) -> podrunner.PodRunner:
    """A pod runner (not started) for ``namespace`` whose pods find the benchmarks' job modules:
    in :data:`BENCH_WORKERS` under runc — built first when containers will run here — or on the
    processes' PYTHONPATH."""
    if mode != "process" and podrunner_containers.problem() is None:
        images.Builder(images.Store()).build(
            [BENCH_WORKERS.name], specs={**images.IMAGES, BENCH_WORKERS.name: BENCH_WORKERS}
        )
    return podrunner.PodRunner(
        podrunner.Config(
            kubeconfig=cluster.kubeconfig,
            namespace=namespace,
            pythonpath=(bl.ROOT / "benchmarks",),
            state_dir=state_dir,
            shutdown_grace=shutdown_grace,
            mode=mode,
        )
    )


@dataclass(frozen=True)
class KedaTarget:
    """One plain-RQ Deployment (``rq worker`` on ``queue``) and the ScaledObject scaling it."""

    deployment: str
    queue: str
    list_length: int
    max_replicas: int
    tuning: keda.Tuning

    @property
    def list_key(self) -> str:
        return f"rq:queue:{self.queue}"


class RealKeda:
    """Plain-RQ Deployments in ``namespace``, each scaled by a ScaledObject of the real KEDA
    (running: :class:`keda.Keda`) on its queue's list in the benchmark's Redis."""

    def __init__(
        self,
        cluster: devenv.Cluster,
        namespace: str,
        redis_server: devenv.RedisServer,
        targets: list[KedaTarget],
        *,
        database: int = 0,
        grace_seconds: int | None = None,
    ) -> None:
        self.cluster, self.namespace, self.targets = cluster, namespace, targets
        self._address = f"127.0.0.1:{redis_server.port}"
        self._url = f"redis://127.0.0.1:{redis_server.port}/{database}"
        self._database, self._grace = database, grace_seconds

    def deployments(self) -> list[dict[str, Any]]:
        return [
            keda.plain_rq_deployment(
                t.deployment,
                self.namespace,
                queue=t.queue,
                redis_url=self._url,
                image=PLAIN_RQ_IMAGE,
                grace_seconds=self._grace,
                labels={KEDA_LABEL: t.tuning.label},
            )
            for t in self.targets
        ]

    def scaled_objects(self) -> list[dict[str, Any]]:
        return [
            keda.scaled_object(
                t.deployment,
                self.namespace,
                deployment=t.deployment,
                redis_address=self._address,
                list_name=t.list_key,
                list_length=t.list_length,
                max_replicas=t.max_replicas,
                tuning=t.tuning,
                database=self._database,
                labels={KEDA_LABEL: t.tuning.label},
            )
            for t in self.targets
        ]

    def apply(self) -> None:
        """The Deployments (at 0) and their ScaledObjects, returning once KEDA has taken each
        on (condition Ready: its HPA exists)."""
        bl.kubectl_apply(self.cluster, self.deployments())
        self.apply_scaled_objects()

    def apply_scaled_objects(self) -> None:
        bl.kubectl_apply(self.cluster, self.scaled_objects())
        self.cluster.kubectl(
            "wait",
            "--for=condition=Ready",
            "scaledobject",
            "-l",
            KEDA_LABEL,
            "-n",
            self.namespace,
            "--timeout=120s",
            timeout=130,
        )

    def remove_scaled_objects(self) -> None:
        """Delete the ScaledObjects (KEDA deletes their HPAs: the HPA controller forgets their
        history) and scale the Deployments to 0: where KEDA is after a long idle period."""
        self.cluster.kubectl(
            "delete",
            "scaledobject",
            "-l",
            KEDA_LABEL,
            "-n",
            self.namespace,
            "--wait=true",
            "--timeout=120s",
            timeout=130,
        )
        devenv.wait_until(
            "KEDA's HPAs gone",
            lambda: not self.cluster.kubectl("get", "hpa", "-n", self.namespace, "-o", "name").stdout.strip(),
            timeout=60,
        )
        self.cluster.kubectl("scale", "deployment", "-l", KEDA_LABEL, "-n", self.namespace, "--replicas=0")
