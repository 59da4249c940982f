"""Shared plumbing of the operator benchmarks: a real control plane, Redis, the operator.

Each benchmark is self-contained (``python benchmarks/operator_<name>.py``): it starts its
own kwokctl cluster (hack/devenv.py ``session_cluster``), its own redis-server, applies the
generated CRDs, runs the real ``python -m jobqueue_operator`` as a subprocess, prints a
human-readable report and, last, one JSON line. Timings come from one watch stream per
measurement, so the operator and its baseline are measured the same way.

Set ``JOBQUEUE_BENCH_KUBECONFIG`` to reuse a running cluster instead of starting one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT / "hack", ROOT / "workers", ROOT / "operator"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from lightkube import Client, KubeConfig  # noqa: E402

import devenv  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


#: The kube-controller-manager's API rate where thousands of Deployments are made
#: (``devenv.Cluster.controller_qps``): at its default 20/s the Deployment controller is
#: still writing the status of 10,000 new Deployments half an hour later, and each write is an
#: event the operator handles — no window would be quiet.
CONTROLLER_QPS = 200


@contextlib.contextmanager
def environment(
    nodes: int = 2, *, controller_qps: int | None = None
) -> Iterator[tuple[devenv.Cluster, devenv.RedisServer]]:
    """A cluster with the CRDs applied, and a Redis; ``controller_qps``: see
    ``devenv.Cluster.controller_qps`` (not applied to a ``JOBQUEUE_BENCH_KUBECONFIG`` cluster)."""
    existing = os.environ.get("JOBQUEUE_BENCH_KUBECONFIG")
    redis_server = devenv.RedisServer().start()
    try:
        if existing:
            cluster: devenv.Cluster = _External(Path(existing))
            _apply_crds(cluster)
            yield cluster, redis_server
        else:
            with devenv.session_cluster(nodes=nodes, controller_qps=controller_qps) as cluster:
                _apply_crds(cluster)
                yield cluster, redis_server
    finally:
        redis_server.stop()


class _External(devenv.Cluster):
    def __init__(self, kubeconfig: Path) -> None:
        super().__init__("external", devenv.Binaries.locate().ensure())
        self._kubeconfig = kubeconfig

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig


def _apply_crds(cluster: devenv.Cluster) -> None:
    """The JobQueue CRD (all these benchmarks need)."""
    name = "jobqueues.jobqueue.glec.io"
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds" / f"{name}.yaml"))
    # `kubectl wait` on a control plane seconds old now and then fails at once (exit 1) rather
    # than waiting: ask again until it answers Established
    devenv.wait_until(
        f"CRD {name} established",
        lambda: (
            cluster.kubectl(
                "wait", "--for=condition=Established", f"crd/{name}", "--timeout=10s", check=False, timeout=20
            ).returncode
            == 0
        ),
        timeout=60,
    )


def client(cluster: devenv.Cluster) -> Client:
    return Client(config=KubeConfig.from_file(str(cluster.kubeconfig)), timeout=None)


@dataclass
class Operator:
    """``python -m jobqueue_operator`` as a subprocess, with its CPU and memory readable."""

    cluster: devenv.Cluster
    namespaces: list[str]
    redis_url: str
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBQUEUE_")}
        health = devenv.free_port()
        env |= {
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "JOBQUEUE_NAMESPACES": ",".join(self.namespaces),
            "JOBQUEUE_REDIS_URL": self.redis_url,
            "JOBQUEUE_METRICS_PORT": str(devenv.free_port()),
            "JOBQUEUE_HEALTH_PORT": str(health),
            "JOBQUEUE_LOG_LEVEL": "WARNING",
            **self.extra_env,
        }
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jobqueue_operator"],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        import urllib.request

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited: {self.log_path.read_text()[-3000:]}")
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2) as r:
                return bool(r.status == 200)

        devenv.wait_until("operator liveness", healthy, timeout=60)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    @contextlib.contextmanager
    def profiled(self, out: Path | None, seconds: float) -> Iterator[None]:
        """Sample the operator with py-spy (no pausing: ``--nonblocking``) while the block runs:
        ``out``.svg is the flame graph, ``out``.txt the collapsed stacks. No-op without ``out``."""
        if out is None:
            yield
            return
        assert self.proc is not None
        out.parent.mkdir(parents=True, exist_ok=True)
        common = ["-p", str(self.proc.pid), "-r", "97", "-d", str(int(seconds)), "--nonblocking"]
        spies = [
            subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    *common,
                    "-f",
                    fmt,
                    "-o",
                    str(out.with_suffix(suffix)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for fmt, suffix in (("flamegraph", ".svg"), ("raw", ".txt"))
        ]
        try:
            yield
        finally:
            for spy in spies:
                spy.wait(seconds + 60)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the operator process so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")


class EventCount:
    """Counts the watch events of one resource in a namespace: how many writes a window cost
    the API server and every watcher. A raw watch from the current resource version (``kubectl
    get --raw``, its own process), so it starts at once, without first listing what may be ten
    thousand objects.

    ``operator_writes``: the events whose object carries a newer write of the operator's own
    field managers (``jobqueue-*`` in ``managedFields``) than before, since the watch began —
    the Deployment controller's status writes are not the operator's. At most one per object
    per second (``managedFields`` times are in seconds), so a lower bound: 0 means none."""

    PATHS: ClassVar[dict[str, str]] = {
        "jobqueues": "/apis/jobqueue.glec.io/v1alpha1",
        "deployments": "/apis/apps/v1",
    }

    def __init__(self, cluster: devenv.Cluster, namespace: str, resource: str) -> None:
        self.counts: dict[str, int] = {}
        self.operator_writes = 0
        self._stamps: dict[str, str] = {}
        self._since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._cluster = cluster
        self._path = f"{self.PATHS[resource]}/namespaces/{namespace}/{resource}"
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> EventCount:
        kubectl = [self._cluster.binaries.path("kubectl"), "--kubeconfig", str(self._cluster.kubeconfig)]
        # a one-item page carries the list's current resourceVersion: watch from there
        now = json.loads(
            subprocess.run(
                [*kubectl, "get", "--raw", f"{self._path}?limit=1"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        rv = now["metadata"]["resourceVersion"]
        self._proc = subprocess.Popen(
            [*kubectl, "get", "--raw", f"{self._path}?watch=1&resourceVersion={rv}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.terminate()
        self._proc.wait(10)

    def _run(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            with contextlib.suppress(ValueError, KeyError):
                event = json.loads(line)
                kind = event["type"]
                self.counts[kind] = self.counts.get(kind, 0) + 1
                meta = event["object"]["metadata"]
                stamp = max(
                    (
                        f.get("time", "")
                        for f in meta.get("managedFields", [])
                        if f.get("manager", "").startswith("jobqueue-")
                    ),
                    default="",
                )
                if stamp >= self._since and stamp != self._stamps.get(meta["name"]):
                    self._stamps[meta["name"]] = stamp
                    self.operator_writes += 1


class DeploymentWatch:
    """Records when each Deployment of a namespace is first seen, from ``kubectl get -w``;
    with ``resource`` and ``field`` (e.g. ``jobqueues``, ``.status.observedGeneration``): when
    each object is first seen with that field set.

    A kubectl process rather than an in-process client: nothing of the benchmark shares a
    connection or the GIL with the measurement, and both contenders are measured alike.
    """

    def __init__(
        self, cluster: devenv.Cluster, namespace: str, resource: str = "deployments", field: str | None = None
    ) -> None:
        self.seen: dict[str, float] = {}
        self._field = field
        columns = "EVENT:.type,NAME:.object.metadata.name" + (f",F:.object{field}" if field else "")
        self._argv = [
            cluster.binaries.path("kubectl"),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "get",
            resource,
            "-n",
            namespace,
            "--watch",
            "--output-watch-events",
            "-o",
            f"custom-columns={columns}",
            "--no-headers",
        ]
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DeploymentWatch:
        self._proc = subprocess.Popen(
            self._argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
        )
        self._thread.start()
        time.sleep(1.0)  # the watch request is established (an empty namespace prints nothing)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.terminate()
        self._proc.wait(10)

    def _run(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            parts = line.split()
            if self._field is None:  # seen once added
                seen = len(parts) == 2 and parts[0] == "ADDED"
            else:  # seen once the field is set, by whichever event
                seen = len(parts) == 3 and parts[2] != "<none>"
            if seen:
                self.seen.setdefault(parts[1], time.monotonic())

    def wait_for(self, count: int, timeout: float) -> None:
        devenv.wait_until(
            f"{count} Deployments", lambda: len(self.seen) >= count, timeout=timeout, interval=0.05
        )


def kubectl_apply(cluster: devenv.Cluster, objects: list[dict[str, Any]]) -> float:
    """``kubectl apply`` all ``objects`` in one call; returns the monotonic time it started."""
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    started = time.monotonic()
    cluster.kubectl("apply", "-f", "-", input=body, timeout=600)
    return started


def jobqueue(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("worker", {"image": "registry.invalid/glec-jobs:1", "imports": ["glec.jobs"]})
    return {
        "apiVersion": "jobqueue.glec.io/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(pct(values, 50), 3),
        "p95": round(pct(values, 95), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
    }


def wait_all(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.5) -> None:
    devenv.wait_until(what, check, timeout=timeout, interval=interval)


def emit(result: dict[str, Any]) -> None:
    """The machine-readable result: always the last line of stdout."""
    print(json.dumps(result, sort_keys=True), flush=True)
