"""Helpers of the autoscaler's integration tests."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import redis
from lightkube import ApiError, Client, KubeConfig
from lightkube.resources.apps_v1 import Deployment
from opkit import kubectl_json

import devenv
import testimages

ROOT = Path(__file__).resolve().parents[3]
JOBS = "integration.scaling.scalejobs"


def worker_spec(concurrency_per_pod: int = 1, **extra: Any) -> dict[str, Any]:
    """A worker that runs :mod:`scalejobs` on the pod runner (threads: cheap to start), in
    the tests' worker image (in process mode: from ``tests/`` on the runner's PYTHONPATH)."""
    return {
        "image": testimages.SCALE_TESTS.ref,
        "imports": [JOBS],
        "mode": "thread",
        "concurrencyPerPod": concurrency_per_pod,
        "env": [],
        **extra,
    }


def replicas(cluster: devenv.Cluster, namespace: str, deployment: str) -> int | None:
    result = cluster.kubectl(
        "get", "deployment", deployment, "-n", namespace, "-o", "jsonpath={.spec.replicas}", check=False
    )
    return int(result.stdout) if result.returncode == 0 and result.stdout else None


def pods(cluster: devenv.Cluster, namespace: str, jobqueue: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json(
        cluster, "get", "pods", "-n", namespace, "-l", f"jobqueue.glec.io/jobqueue={jobqueue}"
    )["items"]
    return items


def runs(conn: redis.Redis, tag: str) -> list[str]:
    return [p.decode() for p in conn.lrange(f"test:runs:{tag}", 0, -1)]


def done(conn: redis.Redis, tag: str) -> list[str]:
    return [p.decode() for p in conn.lrange(f"test:done:{tag}", 0, -1)]


class ReplicaWatch:
    """Every ``spec.replicas`` value a Deployment goes through, from a watch in a thread;
    ``timeline`` has each change with the unix time it was seen.

    A watch can break (a dropped connection, a busy API server's timeout); it is resumed from
    the last resourceVersion seen, so no change in between goes unseen. Only when the API
    server no longer has that version (410 Gone) does it start afresh from the current
    object; a change it may have missed then shows in ``gaps`` (the Deployment's
    ``metadata.generation`` moves by one per spec change, so a jump of more than one between
    two objects seen is a spec change not seen). An audit that compares these values with
    the operator's scale Events must read ``gaps`` first: a missed 2 → 1 → 0 looks like one
    change 2 → 0 and two Events without a change of their own."""

    def __init__(self, cluster: devenv.Cluster, namespace: str, deployment: str) -> None:
        self.values: list[int] = []
        self.timeline: list[tuple[float, int]] = []
        #: watches that broke and were resumed
        self.restarts = 0
        #: spec changes the watch may not have seen (generation jumps, see above)
        self.gaps = 0
        self._client = Client(config=KubeConfig.from_file(str(cluster.kubeconfig)))
        self._namespace, self._name = namespace, deployment
        self._closed = threading.Event()

    def __enter__(self) -> ReplicaWatch:
        threading.Thread(target=self._run, daemon=True).start()
        devenv.wait_until("the replica watch", lambda: bool(self.values), timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._client.close()

    def _run(self) -> None:
        version: str | None = None
        generation = 0
        while not self._closed.is_set():
            try:
                for _, obj in self._client.watch(
                    Deployment,
                    namespace=self._namespace,
                    fields={"metadata.name": self._name},
                    resource_version=version,
                ):
                    assert obj.metadata is not None
                    assert obj.spec is not None
                    version = obj.metadata.resourceVersion
                    seen = obj.metadata.generation or 0
                    if generation and seen > generation + 1:
                        self.gaps += 1
                    generation = max(generation, seen)
                    value = 1 if obj.spec.replicas is None else int(obj.spec.replicas)
                    if not self.values or self.values[-1] != value:
                        self.timeline.append((time.time(), value))
                        self.values.append(value)
            except ApiError as error:
                if error.status.code == 410:  # that version is gone: start from the current object
                    version = None
                self.restarts += 1
                time.sleep(0.2)
            except Exception:  # (the client is closed under the stream at the end)
                self.restarts += 1
                time.sleep(0.2)

    def changes(self) -> list[int]:
        time.sleep(0.2)
        return list(self.values)
