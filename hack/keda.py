"""The real KEDA in a dev cluster: the baseline the autoscaling benchmarks race.

KEDA's operator and metrics API server are built from their Go module (``hack/build-keda.sh``,
``make keda``) and run here as host processes with the cluster's admin kubeconfig — they
need no pod. What a KEDA install normally brings, and what stands in for it here:

* **CRDs**: the module's own ``config/crd/bases`` (copied into the binaries' cache), applied
  server-side.
* **Certificates**: KEDA's operator and metrics server talk gRPC over mutual TLS with the
  files ``ca.crt``, ``tls.crt``, ``tls.key`` of one directory, and the API server's aggregator
  checks the metrics server's certificate against the APIService's ``caBundle``. KEDA's own
  rotation (``--enable-cert-rotation``) expects the kubelet to mount the Secret it writes, so it
  is off; instead, as with KEDA's "bring your own certificates" set-up, one certificate is
  issued by the cluster's CA (``keda-certs``, a few lines of Go's standard library built with
  KEDA) for the operator's and the metrics server's service names, ``localhost`` and
  ``127.0.0.1``.
* **The APIService** ``v1beta1.external.metrics.k8s.io`` points at a Service of type
  ``ExternalName`` (``localhost``) in namespace ``keda``: the aggregator resolves such a
  Service to ``https://<externalName>:<port>`` without cluster IPs or endpoints
  (``k8s.io/apiserver/pkg/util/proxy.ResolveCluster``), which a cluster without kube-proxy
  cannot route. The API server's front-proxy settings (``--requestheader-*``, added to every
  dev cluster by ``devenv.Cluster``) let the metrics server authenticate the proxied caller.
* **The HPA** is the real kube-controller-manager's ``horizontalpodautoscaling`` controller
  (on by default, 15 s sync), reading the metric through the aggregator.

:func:`scaled_object` and :func:`plain_rq_deployment` build what a user writes: a
``ScaledObject`` with the ``redis`` (list) trigger, once with KEDA's and the HPA's defaults
and once tuned (:data:`DEFAULTS`, :func:`tuned`), and a Deployment of plain ``rq worker``
processes (JSON serializer) for it to scale.

Use :class:`Keda` as a context manager (benchmarks, the ``keda`` tests), or attach KEDA to the
running dev environment: ``python hack/keda.py up|down`` (after ``python hack/devenv.py up``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import devenv

NAMESPACE = "keda"
"""Where KEDA's cluster objects live (``KEDA_CLUSTER_OBJECT_NAMESPACE``), as in KEDA's manifests."""

APISERVICE = "v1beta1.external.metrics.k8s.io"
METRICS_SERVICE = "keda-metrics-apiserver"
OPERATOR_SERVICE = "keda-operator"

RQ_JSON_SERIALIZER = "rq.serializers.JSONSerializer"

#: What the plain-RQ pods run: RQ's ``SimpleWorker`` runs each job in the worker process (the
#: default ``Worker`` forks a work horse per job and re-imports the job's module there, which
#: on 50 ms jobs measures fork and import, not the autoscaler). One job at a time per pod.
RQ_WORKER_CLASS = "rq.worker.SimpleWorker"

BUILD_HINT = "run `make keda` (hack/build-keda.sh; ~15 min the first time, cached afterwards)"

_PR_SET_PDEATHSIG = 1


# --------------------------------------------------------------------------------------
# What users write: the ScaledObject and the plain-RQ Deployment


@dataclass(frozen=True)
class Tuning:
    """The knobs of a ScaledObject that decide how fast KEDA + the HPA react.

    ``None`` leaves a field out, so KEDA's or the HPA's default applies."""

    label: str
    #: seconds between two checks of the trigger by KEDA's operator (KEDA: 30); governs 0 <-> 1
    polling_interval: int | None = None
    #: seconds without activity before KEDA scales to 0 (KEDA: 300)
    cooldown_period: int | None = None
    #: the HPA's ``spec.behavior`` (Kubernetes: scale-up max(+100 %, +4 pods) per 15 s,
    #: scale-down after a 300 s stabilization window)
    behavior: Mapping[str, Any] | None = None


DEFAULTS = Tuning("defaults")
"""KEDA and the HPA as installed: 30 s polling, 300 s cooldown, the HPA's default behavior."""


def tuned(
    *, max_replicas: int, scale_down_delay: int, idle_before_zero: int, polling_interval: int = 5
) -> Tuning:
    """What a careful user sets: polling every ``polling_interval`` s; the HPA may go to the
    needed count in one step (no scale-up stabilization, a Pods policy as large as the
    maximum); scale-down stabilization and the cooldown to zero as long as the JobQueue's
    ``scaleDownDelaySeconds`` and ``idleSecondsBeforeZero`` it races (the same delays)."""
    return Tuning(
        "tuned",
        polling_interval=polling_interval,
        cooldown_period=idle_before_zero,
        behavior={
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "selectPolicy": "Max",
                "policies": [{"type": "Pods", "value": max_replicas, "periodSeconds": 1}],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": scale_down_delay,
                "selectPolicy": "Max",
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}],
            },
        },
    )


def scaled_object(
    name: str,
    namespace: str,
    *,
    deployment: str,
    redis_address: str,
    list_name: str,
    list_length: int,
    max_replicas: int,
    tuning: Tuning,
    database: int = 0,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A ``keda.sh/v1alpha1`` ScaledObject scaling ``deployment`` from 0 to ``max_replicas`` on
    the length of the Redis list ``list_name`` (one pod per ``list_length`` queued jobs:
    the HPA's AverageValue target, ``desired = ceil(LLEN / listLength)``)."""
    if list_length < 1:
        raise ValueError(f"list_length must be >= 1 (jobs one pod runs at once), got {list_length}")
    if max_replicas < 1:
        raise ValueError(f"max_replicas must be >= 1, got {max_replicas}")
    spec: dict[str, Any] = {
        "scaleTargetRef": {"name": deployment},
        "minReplicaCount": 0,
        "maxReplicaCount": max_replicas,
        "triggers": [
            {
                "type": "redis",
                "metadata": {
                    "address": redis_address,
                    "listName": list_name,
                    "listLength": str(list_length),
                    "databaseIndex": str(database),
                },
            }
        ],
    }
    if tuning.polling_interval is not None:
        spec["pollingInterval"] = tuning.polling_interval
    if tuning.cooldown_period is not None:
        spec["cooldownPeriod"] = tuning.cooldown_period
    if tuning.behavior is not None:
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": dict(tuning.behavior)}}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": spec,
    }


def plain_rq_deployment(
    name: str,
    namespace: str,
    *,
    queue: str,
    redis_url: str,
    image: str,
    grace_seconds: int | None = None,
    replicas: int = 0,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Deployment of plain RQ workers as a KEDA user runs them: one ``rq worker`` per pod
    (JSON serializer, :data:`RQ_WORKER_CLASS`) on ``queue``, Kubernetes' default grace period
    unless ``grace_seconds`` is given, restricted-compliant, ``POD_NAME`` in the environment.

    Its pods carry ``app.kubernetes.io/part-of=jobqueue`` so the dev cluster's pod runner
    (``hack/podrunner.py``) runs them; ``image`` must contain ``rq`` (the project's worker
    image does) where pods run in containers."""
    selector = {"app.kubernetes.io/name": "plain-rq-worker", "app.kubernetes.io/instance": name}
    pod_labels = {**selector, "app.kubernetes.io/part-of": "jobqueue", **(labels or {})}
    pod_spec: dict[str, Any] = {
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "worker",
                "image": image,
                "command": ["rq", "worker"],
                "args": [
                    "--url",
                    "$(REDIS_URL)",
                    "--serializer",
                    RQ_JSON_SERIALIZER,
                    "--worker-class",
                    RQ_WORKER_CLASS,
                    "--logging_level",
                    "WARNING",
                    queue,
                ],
                "env": [
                    {"name": "REDIS_URL", "value": redis_url},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                },
            }
        ],
    }
    if grace_seconds is not None:
        pod_spec["terminationGracePeriodSeconds"] = grace_seconds
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": pod_labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


# --------------------------------------------------------------------------------------
# The binaries


@dataclass(frozen=True)
class Binaries:
    """Where ``hack/build-keda.sh`` put KEDA (keyed by KEDA's and Go's versions)."""

    dir: Path

    @classmethod
    def locate(cls) -> Binaries:
        gover = subprocess.run(
            ["go", "env", "GOVERSION"], check=True, capture_output=True, text=True
        ).stdout.strip()
        version = devenv.versions()["KEDA_VERSION"]
        return cls(devenv.CACHE / "bin" / f"keda-{version}_{gover}")

    @property
    def version(self) -> str:
        return self.dir.name.split("_")[0].removeprefix("keda-")

    @property
    def complete(self) -> bool:
        return all((self.dir / n).exists() for n in ("keda", "keda-adapter", "keda-certs")) and any(
            (self.dir / "crds").glob("*.yaml")
        )

    def ensure(self) -> Binaries:
        """Build KEDA when it is not cached yet (long the first time: see :data:`BUILD_HINT`)."""
        if not self.complete:
            devenv.log(f"KEDA binaries missing in {self.dir}: {BUILD_HINT}; building now")
            subprocess.run([str(devenv.HACK / "build-keda.sh")], check=True)
        return self


# --------------------------------------------------------------------------------------
# KEDA running against a cluster


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the thread that started it ends (a benchmark
    killed hard must not leave KEDA scaling its cluster's Deployments)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def issue_certificates(keda_certs: Path, ca_dir: Path, out: Path) -> None:
    """``ca.crt``, ``tls.crt``, ``tls.key`` in ``out``: one certificate issued by the
    cluster's CA (``ca_dir/ca.{crt,key}``) for both KEDA servers and their clients, by
    ``keda_certs`` (hack/tools/keda-bins/keda-certs)."""
    names = [
        f"{svc}.{NAMESPACE}.svc{suffix}"
        for svc in (OPERATOR_SERVICE, METRICS_SERVICE)
        for suffix in ("", ".cluster.local")
    ]
    subprocess.run(
        [
            str(keda_certs),
            f"-ca-cert={ca_dir / 'ca.crt'}",
            f"-ca-key={ca_dir / 'ca.key'}",
            f"-out={out}",
            f"-cn={OPERATOR_SERVICE}",
            f"-dns={','.join([*names, 'localhost'])}",
            "-ip=127.0.0.1",
        ],
        check=True,
        capture_output=True,
        text=True,
    )


def cluster_objects(ca_bundle: bytes, adapter_port: int) -> list[dict[str, Any]]:
    """The Service and APIService that route ``external.metrics.k8s.io`` to the metrics
    server on ``localhost:adapter_port``."""
    import base64

    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": METRICS_SERVICE, "namespace": NAMESPACE},
            "spec": {
                "type": "ExternalName",
                "externalName": "localhost",
                "ports": [{"name": "https", "port": adapter_port}],
            },
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": APISERVICE},
            "spec": {
                "service": {"name": METRICS_SERVICE, "namespace": NAMESPACE, "port": adapter_port},
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "caBundle": base64.b64encode(ca_bundle).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]


def crd_name(path: Path) -> str:
    """The CRD's name from its file in KEDA's ``config/crd/bases``: ``<group>_<plural>.yaml``."""
    group, _, plural = path.stem.partition("_")
    if not plural:
        raise ValueError(f"{path.name}: not a <group>_<plural>.yaml CRD file")
    return f"{plural}.{group}"


@dataclass
class Keda:
    """KEDA's operator and metrics server as processes against ``cluster`` (admin kubeconfig).

    :meth:`start` installs the CRDs and the APIService and waits until the aggregator reports
    the APIService Available; :meth:`stop` stops both and deletes the APIService (an
    unavailable aggregated API would break discovery and namespace deletion for everyone)."""

    cluster: devenv.Cluster
    binaries: Binaries = field(default_factory=lambda: Binaries.locate().ensure())
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jq-keda-")))
    log_level: str = "info"
    #: SIGKILL both processes when the thread that started them ends (off for `hack/keda.py up`,
    #: which leaves them running)
    tied_to_parent: bool = True
    operator: subprocess.Popen[bytes] | None = None
    adapter: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] = field(default_factory=dict)

    def __enter__(self) -> Keda:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def certs(self) -> Path:
        return self.workdir / "certs"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KEDA_", "WATCH_", "POD_"))}
        return env | {
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
        }

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "ab") as out:
            return subprocess.Popen(
                argv,
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # only a prctl in the child: no lock taken
                preexec_fn=_die_with_parent if self.tied_to_parent else None,  # noqa: PLW1509
            )

    def start(self) -> Keda:
        t0 = time.monotonic()
        crds = sorted((self.binaries.dir / "crds").glob("*.yaml"))
        for crd in crds:
            self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        self.cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *(f"crd/{crd_name(c)}" for c in crds),
            timeout=70,
        )
        if self.cluster.kubectl("get", "namespace", NAMESPACE, check=False).returncode != 0:
            self.cluster.create_namespace(NAMESPACE)
        issue_certificates(self.binaries.dir / "keda-certs", self.cluster.workdir / "pki", self.certs)
        self.ports = {
            n: devenv.free_port() for n in ("grpc", "adapter", "adapter_metrics", "metrics", "health")
        }
        self.operator = self._spawn(
            "operator",
            [
                str(self.binaries.dir / "keda"),
                "--leader-elect=false",
                f"--zap-log-level={self.log_level}",
                "--zap-encoder=console",
                "--enable-cert-rotation=false",
                f"--cert-dir={self.certs}",
                f"--metrics-bind-address=127.0.0.1:{self.ports['metrics']}",
                f"--health-probe-bind-address=127.0.0.1:{self.ports['health']}",
                f"--metrics-service-bind-address=127.0.0.1:{self.ports['grpc']}",
            ],
        )
        kubeconfig = str(self.cluster.kubeconfig)
        self.adapter = self._spawn(
            "adapter",
            [
                str(self.binaries.dir / "keda-adapter"),
                f"--zap-log-level={self.log_level}",
                "--zap-encoder=console",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['adapter']}",
                f"--cert-dir={self.certs}",
                f"--tls-cert-file={self.certs / 'tls.crt'}",
                f"--tls-private-key-file={self.certs / 'tls.key'}",
                f"--lister-kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--kubeconfig={kubeconfig}",
                f"--port={self.ports['adapter_metrics']}",
                f"--metrics-service-address=127.0.0.1:{self.ports['grpc']}",
            ],
        )
        body = json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": cluster_objects((self.certs / "ca.crt").read_bytes(), self.ports["adapter"]),
            }
        )
        self.cluster.kubectl("apply", "-f", "-", input=body)
        devenv.wait_until(
            "KEDA's metrics API Available", self._available, timeout=120, interval=0.5, gone=self._exited
        )
        devenv.log(
            f"KEDA {self.binaries.version} running in {time.monotonic() - t0:.1f}s (logs in {self.workdir})"
        )
        return self

    def _available(self) -> bool:
        out = self.cluster.kubectl("get", "apiservice", APISERVICE, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        conditions = json.loads(out.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

    def _exited(self) -> str | None:
        for name, proc in (("operator", self.operator), ("adapter", self.adapter)):
            if proc is not None and proc.poll() is not None:
                return f"KEDA's {name} exited with {proc.returncode}: {self.log_tail(name)}"
        return None

    def log_tail(self, name: str, lines: int = 10) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        self.cluster.kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
        for proc in (self.operator, self.adapter):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in (self.operator, self.adapter):
            if proc is not None:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


# --------------------------------------------------------------------------------------
# python hack/keda.py up|down: KEDA beside `python hack/devenv.py up`


def _dev_cluster() -> devenv.Cluster:
    state = devenv.load_state()
    return devenv.Cluster(state["cluster"], devenv.Binaries.locate())


def cmd_up() -> None:
    state = devenv.load_state()
    if state.get("keda_pids"):
        devenv.log("KEDA already recorded in the dev environment; `python hack/keda.py down` first")
        return
    keda = Keda(_dev_cluster(), workdir=devenv.CACHE / "devenv" / "keda", tied_to_parent=False)
    keda.workdir.mkdir(parents=True, exist_ok=True)
    keda.start()
    assert keda.operator is not None
    assert keda.adapter is not None
    state["keda_pids"] = [keda.operator.pid, keda.adapter.pid]
    devenv.save_state(state)
    print(
        f"KEDA {keda.binaries.version}: operator pid {keda.operator.pid}, metrics server pid "
        f"{keda.adapter.pid}; logs in {keda.workdir}; stop with `python hack/keda.py down`"
    )


def cmd_down() -> None:
    state = devenv.load_state()
    for pid in state.pop("keda_pids", []):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    _dev_cluster().kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
    devenv.save_state(state)
    devenv.log("KEDA stopped")


if __name__ == "__main__":
    commands = {"up": cmd_up, "down": cmd_down}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        raise SystemExit(f"usage: python hack/keda.py {{{'|'.join(commands)}}}")
    commands[sys.argv[1]]()
