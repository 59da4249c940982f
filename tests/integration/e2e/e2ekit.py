"""The product end to end: the chart installed the way users install it, worker pods run by
the pod runner, a real Redis — and the bookkeeping that says whether every job ran once.

Shared by the tests of this folder, which assert invariants (nothing lost, no result recorded
twice, convergence), and by ``benchmarks/e2e_*.py`` / ``benchmarks/chaos_*.py``, which run the
same scenarios and print their figures: a test and its benchmark look at the same thing.

The jobs are :func:`integration.scaling.scalejobs.nap` (``scalekit.JOBS``): each run pushes its
pod to ``test:runs:<tag>`` when it starts and to ``test:done:<tag>`` when it ends, so a run
that was cut by a kill and started again is told apart from one whose function completed
twice; the job id is its tag. Whether a *result* was recorded twice comes from the job's own
RQ results stream (``rq:results:<id>``): one success entry per finished job.
"""

from __future__ import annotations

import functools
import json
import statistics
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from lightkube import ApiError, Client, KubeConfig
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Pod
from opkit import kubectl_json

import devenv
import podrunner
from integration.chart import clusterkit
from integration.scaling import scalekit
from jobqueue import JobSpec, enqueue_many
from unit.chart import chartkit

NAP = f"{scalekit.JOBS}.nap"


# --------------------------------------------------------------------------------------
# The chart


@dataclass
class Product:
    """The chart installed in one namespace (watching it, namespaced RBAC), its operator pods
    run by a pod runner with a token of the chart's ServiceAccount, as ``make demo`` does.
    With the chart's defaults two operator pods run: the leader (holder of the Lease
    :attr:`deployment`) and a standby."""

    cluster: devenv.Cluster
    namespace: str
    release: str
    runner: podrunner.PodRunner
    helm: clusterkit.Helm = field(repr=False)
    #: leader election on (the chart's default): "live" means holding the Lease
    elected: bool = True

    @classmethod
    def install(
        cls,
        cluster: devenv.Cluster,
        namespace: str,
        runner: podrunner.PodRunner,
        *,
        redis_url: str,
        release: str = "jq",
        env: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        chart: Path = chartkit.CHART,
    ) -> Product:
        """``helm install`` with the test's Redis; ``env`` goes to the operator as
        ``operator.extraEnv`` (``JOBQUEUE_*`` settings the chart has no value for), ``values``
        are further top-level chart values (e.g. ``autoscaler``); ``chart``: another version of
        the chart (the upgrade test's previous one)."""
        helm = clusterkit.Helm(cluster)
        helm.install(
            release,
            namespace,
            chart=chart,
            values={
                "watchNamespaces": [namespace],
                # the tests' Redis has no password, so namespace isolation (the chart's default)
                # could not protect anything there; the tests that need it set their own values
                "redis": {"url": redis_url, "isolation": "none"},
                "operator": {
                    "logFormat": "plain",
                    "resyncSeconds": 5,
                    "extraEnv": [{"name": k, "value": v} for k, v in (env or {}).items()],
                },
                **(values or {}),
            },
        )
        product = cls(
            cluster,
            namespace,
            release,
            runner,
            helm,
            elected=(values or {}).get("leaderElection", {}).get("enabled", True),
        )
        product.wait_live()
        return product

    def upgrade(self, values: Mapping[str, Any]) -> None:
        """``helm upgrade --reuse-values`` with ``values`` changed (a change of the pod template
        rolls the operator pods), waiting for the rollout as ``helm upgrade --wait`` does."""
        self.helm.run(
            "upgrade",
            self.release,
            str(chartkit.CHART),
            "--namespace",
            self.namespace,
            "--reuse-values",
            "--wait",
            "--timeout",
            "150s",
            values=dict(values),
        )

    def uninstall(self) -> None:
        for release, namespace in list(self.helm.releases):
            self.helm.run(
                "uninstall", release, "--namespace", namespace, "--wait", "--timeout", "120s", check=False
            )
            self.helm.releases.remove((release, namespace))

    @property
    def deployment(self) -> str:
        return f"{self.release}-jobqueue-operator"

    @functools.cached_property
    def _api(self) -> Client:
        """For the reads that are repeated many times a second while waiting (a kubectl
        process each would cost the shared cores more than what is measured)."""
        return Client(config=KubeConfig.from_file(str(self.cluster.kubeconfig)))

    def operator_pods(self) -> list[str]:
        """Names of the operator's pods that are not terminating."""
        pods = self._api.list(
            Pod,
            namespace=self.namespace,
            labels={"app.kubernetes.io/instance": self.release, "app.kubernetes.io/component": "operator"},
        )
        return [
            p.metadata.name
            for p in pods
            if p.metadata and p.metadata.name and not p.metadata.deletionTimestamp
        ]

    def operator_process(
        self, name: str | None = None, exclude: Iterable[str] = ()
    ) -> podrunner.ProcessInfo | None:
        """The running process of operator pod ``name`` (default: any operator pod, none of
        ``exclude``)."""
        pods = {name} if name else set(self.operator_pods()) - set(exclude)
        return next(
            (
                p
                for p in self.runner.snapshot()
                if p.namespace == self.namespace and p.name in pods and p.state == "running"
            ),
            None,
        )

    def leader(self) -> str | None:
        """The operator pod holding the leader Lease, if it still exists (pod runner identity:
        ``<pod>_<random>``)."""
        pod = self.holder()
        return pod if pod and pod in self.operator_pods() else None

    def holder(self) -> str | None:
        """The pod named by the leader Lease's holder (None: no Lease, or released)."""
        try:
            lease = self._api.get(Lease, self.deployment, namespace=self.namespace)
        except ApiError as e:
            if e.status.code == 404:
                return None
            raise
        identity = lease.spec.holderIdentity if lease.spec else None
        return identity.rsplit("_", 1)[0] if identity else None

    def wait_live(self, exclude: Iterable[str] = (), timeout: float = 120) -> str:
        """Wait until an operator pod (none of ``exclude``) runs the operator — holds the Lease
        and answers ``/healthz`` with kopf's probes, not as a standby; its name."""
        skip = list(exclude)

        def live() -> str | None:
            name = (
                self.leader()
                if self.elected
                else next((p for p in self.operator_pods() if p not in skip), None)
            )
            info = self.operator_process(name) if name and name not in skip else None
            if info is None or "JOBQUEUE_HEALTH_PORT" not in info.ports:
                return None
            try:
                status, body = http_get(info.ports["JOBQUEUE_HEALTH_PORT"], "/healthz")
            except OSError:
                return None
            return info.name if status == 200 and json.loads(body).get("role") != "standby" else None

        name: str = devenv.wait_until(
            "an operator pod running the operator", live, timeout=timeout, interval=0.05
        )
        return name

    def wait_standby(self, exclude: Iterable[str] = (), timeout: float = 120) -> str:
        """Wait until an operator pod (none of ``exclude``) stands by (answers ``/healthz`` as a
        standby); its name."""
        skip = set(exclude)

        def standing_by() -> str | None:
            for name in self.operator_pods():
                info = self.operator_process(name)
                if name in skip or info is None or "JOBQUEUE_HEALTH_PORT" not in info.ports:
                    continue
                try:
                    status, body = http_get(info.ports["JOBQUEUE_HEALTH_PORT"], "/healthz")
                except OSError:
                    continue
                if status == 200 and json.loads(body).get("role") == "standby":
                    return name
            return None

        name: str = devenv.wait_until(
            "an operator pod standing by", standing_by, timeout=timeout, interval=0.1
        )
        return name

    def restart(self, *, force: bool) -> list[str]:
        """Restart the operator; return the pods that are replaced. ``force``: the leader's pod
        (the operator's pod, without leader election) is deleted with ``--grace-period=0
        --force`` (SIGKILL, as a crash or a node loss); otherwise ``kubectl rollout restart``,
        as ``helm upgrade`` does (every pod SIGTERMed in turn)."""
        if force:
            old = self.wait_live()
            self.cluster.kubectl("delete", "pod", old, "-n", self.namespace, "--grace-period=0", "--force")
            return [old]
        pods = self.operator_pods()
        self.cluster.kubectl("rollout", "restart", f"deployment/{self.deployment}", "-n", self.namespace)
        return pods

    def logs(self) -> str:
        """The operator pods' logs (pod runner), for failure messages."""
        return "\n".join(
            f"--- {p.name}\n{p.log_file.read_text(errors='replace')[-8000:]}"
            for p in self.runner.snapshot()
            if p.namespace == self.namespace and p.name.startswith(self.deployment)
        )


def http_get(port: int, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.status, response.read().decode()


# --------------------------------------------------------------------------------------
# Queues and jobs


def queue_body(
    name: str,
    namespace: str,
    *,
    concurrency: int,
    per_pod: int,
    attempts: int = 3,
    timeout_seconds: int = 60,
    **scaling: Any,
) -> dict[str, Any]:
    """A JobQueue running :mod:`scalejobs` in thread mode (``scaling`` goes to spec.scaling)."""
    return {
        "apiVersion": "jobqueue.glec.io/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "concurrency": concurrency,
            "worker": scalekit.worker_spec(per_pod),
            "jobDefaults": {
                "attempts": attempts,
                "timeoutSeconds": timeout_seconds,
                "backoff": {"type": "fixed", "delaySeconds": 1},
            },
            "scaling": {"minReplicas": 0, **scaling},
        },
    }


def apply_queue(cluster: devenv.Cluster, conn: redis.Redis, body: dict[str, Any]) -> str:
    """Apply a JobQueue, wait for its Deployment (at 0) and published settings; its RQ queue name."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    devenv.wait_until(
        f"Deployment {name}-worker",
        lambda: scalekit.replicas(cluster, namespace, f"{name}-worker") is not None,
        timeout=60,
    )
    queue = f"{namespace}.{name}"
    devenv.wait_until(
        f"settings of {queue} published", lambda: conn.exists(f"jobqueue:settings:{queue}"), timeout=60
    )
    return queue


def enqueue_naps(conn: redis.Redis, queue: str, run: str, count: int, seconds: float) -> list[str]:
    """``count`` nap jobs of ``seconds``; ids (= tags) ``<run>-00000``…, in one bulk enqueue."""
    ids = [f"{run}-{i:05d}" for i in range(count)]
    results = enqueue_many(queue, [JobSpec(NAP, [i, seconds], job_id=i) for i in ids], connection=conn)
    assert not any(r.duplicate for r in results)
    return ids


def settled(conn: redis.Redis, queue: str) -> int:
    """Jobs of ``queue`` that ended (finished or failed), from RQ's registries."""
    pipe = conn.pipeline(transaction=False)
    pipe.zcard(f"rq:finished:{queue}")
    pipe.zcard(f"rq:failed:{queue}")
    return sum(int(n) for n in pipe.execute())


def wait_settled(conn: redis.Redis, queue: str, count: int, timeout: float) -> None:
    devenv.wait_until(
        f"{count} jobs of {queue} finished or failed",
        lambda: settled(conn, queue) >= count,
        timeout=timeout,
        interval=0.1,
    )


@dataclass(frozen=True)
class Audit:
    """Where every job ended, and how many times its function started, completed, and had a
    success result recorded (each a Counter: times -> number of jobs)."""

    statuses: Counter[str]
    starts: Counter[int]
    completions: Counter[int]
    results: Counter[int]
    #: ids of jobs not ``finished``, with their status and reason (for failure messages)
    unfinished: dict[str, str]

    @property
    def jobs(self) -> int:
        return sum(self.statuses.values())

    def exactly_once(self) -> bool:
        """Every job finished, its function started and completed once, one result recorded."""
        n = self.jobs
        return (
            self.statuses == Counter(finished=n)
            and self.starts == Counter({1: n})
            and self.completions == Counter({1: n})
            and self.results == Counter({1: n})
        )

    def figures(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "statuses": dict(self.statuses),
            "started_more_than_once": sum(v for k, v in self.starts.items() if k > 1),
            "completed_more_than_once": sum(v for k, v in self.completions.items() if k > 1),
            "results_recorded_more_than_once": sum(v for k, v in self.results.items() if k > 1),
            "never_started": self.starts.get(0, 0),
        }

    def __str__(self) -> str:
        sample = dict(list(self.unfinished.items())[:10])
        return f"{self.figures()} unfinished (first 10): {sample}"


def audit(conn: redis.Redis, ids: list[str], chunk: int = 2000) -> Audit:
    statuses: Counter[str] = Counter()
    starts: Counter[int] = Counter()
    completions: Counter[int] = Counter()
    results: Counter[int] = Counter()
    unfinished: dict[str, str] = {}
    for lo in range(0, len(ids), chunk):
        part = ids[lo : lo + chunk]
        pipe = conn.pipeline(transaction=False)
        for job_id in part:
            pipe.hmget(f"rq:job:{job_id}", "status", "jq_reason")
            pipe.llen(f"test:runs:{job_id}")
            pipe.llen(f"test:done:{job_id}")
            pipe.xrange(f"rq:results:{job_id}")
        replies = pipe.execute()
        for n, job_id in enumerate(part):
            (status, reason), runs, done, stream = replies[4 * n : 4 * n + 4]
            state = status.decode() if status else "missing"
            statuses[state] += 1
            starts[int(runs)] += 1
            completions[int(done)] += 1
            results[sum(1 for _, entry in stream if entry.get(b"type") == b"1")] += 1
            if state != "finished":
                unfinished[job_id] = f"{state}: {(reason or b'').decode(errors='replace')}"
    return Audit(statuses, starts, completions, results, unfinished)


# --------------------------------------------------------------------------------------
# Objects and figures


def owned_children(cluster: devenv.Cluster, namespace: str, kind: str) -> dict[str, list[str]]:
    """Objects of ``kind`` in ``namespace`` by the uid of their controller owner."""
    out: dict[str, list[str]] = {}
    for item in kubectl_json(cluster, "get", kind, "-n", namespace)["items"]:
        for ref in item["metadata"].get("ownerReferences") or []:
            if ref.get("controller"):
                out.setdefault(ref["uid"], []).append(item["metadata"]["name"])
    return out


def uids(cluster: devenv.Cluster, namespace: str, kind: str) -> dict[str, str]:
    """name -> uid of every object of ``kind`` in ``namespace``."""
    return {
        i["metadata"]["name"]: i["metadata"]["uid"]
        for i in kubectl_json(cluster, "get", kind, "-n", namespace)["items"]
    }


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def distribution(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(pct(values, 50), 3),
        "p95": round(pct(values, 95), 3),
        "p99": round(pct(values, 99), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
    }


def load() -> str:
    """The machine's load averages (1, 5, 15 min), for reports."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
