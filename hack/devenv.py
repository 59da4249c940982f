"""Local development and test environment: a real Kubernetes control plane (kwokctl with
self-built kube-apiserver, kube-controller-manager, kube-scheduler, etcd and kwok fake
nodes), a real Redis and a real Prometheus — all on 127.0.0.1, no Docker.

Used three ways:

* by the pytest fixtures in ``tests/conftest.py`` (one cluster per test session);
* by ``python hack/devenv.py up|down|status|env`` for a long-lived dev environment;
* by ``hack/demo.sh`` (the README's main job).

Every server this module starts records its owner's pid next to its data, so a later run
can reap what an interrupted (SIGKILLed) run left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HACK = ROOT / "hack"
CACHE = Path(os.environ.get("JOBQUEUE_CACHE", ROOT / ".cache"))
STATE_FILE = CACHE / "devenv" / "state.json"

#: Cluster names made by test sessions start with this; anything else (the long-lived dev
#: cluster) is never reaped automatically.
TEST_CLUSTER_PREFIX = "jqt-"
DEV_CLUSTER_NAME = "jobqueue-dev"


class SetupError(RuntimeError):
    """The environment cannot start; the message is one line that says what to do."""


MISSING_TOOL = "{tool} not found on PATH: run `make deps` (hack/system-deps.sh installs it)"


def require_tools(*tools: str) -> None:
    """Fail before starting anything when a server the environment needs is not installed."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SetupError(MISSING_TOOL.format(tool=" and ".join(missing)))


def log(msg: str) -> None:
    print(f"[devenv {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_until(
    what: str,
    check: Any,
    timeout: float = 60.0,
    interval: float = 0.2,
    gone: Callable[[], str | None] | None = None,
) -> Any:
    """Poll ``check()`` until it returns something truthy; raise with ``what`` on timeout.

    ``gone()``, when given, returns why waiting is pointless (e.g. the server exited): then
    this raises at once with that reason instead of waiting out the timeout."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as e:  # the thing is not up yet; remember why for the error message
            last_error = e
        else:
            if result:
                return result
        reason = gone() if gone else None
        if reason:
            raise SetupError(f"{what}: {reason}")
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s (last error: {last_error!r})")


# --------------------------------------------------------------------------------------
# Binaries


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in (HACK / "versions.env").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


@dataclass(frozen=True)
class Binaries:
    """Where ``hack/build-control-plane.sh`` put the control-plane binaries and the tools."""

    bin_dir: Path
    tools_dir: Path

    @classmethod
    def locate(cls) -> Binaries:
        v = versions()
        gover = subprocess.run(
            ["go", "env", "GOVERSION"], check=True, capture_output=True, text=True
        ).stdout.strip()
        key = f"k8s-{v['KUBE_VERSION']}_etcd-{v['ETCD_VERSION']}_kwok-{v['KWOK_VERSION']}_{gover}"
        return cls(CACHE / "bin" / key, CACHE / "bin" / f"tools-{v['KUBECTL_LAYER_VERSION']}")

    @property
    def complete(self) -> bool:
        names = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kwok", "kwokctl"]
        return all((self.bin_dir / n).exists() for n in names) and all(
            (self.tools_dir / n).exists() for n in ["helm", "kubectl"]
        )

    def ensure(self) -> Binaries:
        """Build whatever is missing (a no-op when everything is cached)."""
        if not self.complete:
            log("control-plane binaries missing: running hack/build-control-plane.sh (first time: ~25 min)")
            subprocess.run([str(HACK / "build-control-plane.sh")], check=True)
        return self

    def path(self, name: str) -> str:
        for d in (self.tools_dir, self.bin_dir):
            if (d / name).exists():
                return str(d / name)
        raise FileNotFoundError(name)

    def env(self) -> dict[str, str]:
        """An environment whose PATH finds our kubectl/helm first (kwokctl shells out to kubectl)."""
        env = dict(os.environ)
        env["PATH"] = f"{self.tools_dir}:{self.bin_dir}:{env.get('PATH', '')}"
        env["KWOK_WORKDIR"] = str(CACHE / "kwok")
        return env


# --------------------------------------------------------------------------------------
# Redis


@dataclass
class RedisServer:
    """A throw-away ``redis-server`` on a free loopback port, no persistence."""

    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jq-redis-")))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if not exe:
            raise SetupError(MISSING_TOOL.format(tool="redis-server"))
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--databases",
                "64",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(f"redis on :{self.port}", self.ping, timeout=20)
        return self

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            if self.proc.poll() is None:
                self.proc.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): clients see timeouts, as with a network partition."""
        assert self.proc
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGCONT)


# --------------------------------------------------------------------------------------
# Prometheus


@dataclass
class PrometheusServer:
    """A real Prometheus (Debian's package) scraping targets that tests add at run time.

    Targets come from a file_sd JSON file, re-read every second, so ``add_target`` takes
    effect without a restart. Scrape and evaluation intervals are 1 s to keep tests short.
    """

    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jq-prom-")))
    rule_files: list[Path] = field(default_factory=list)
    #: extra file_sd files (globs allowed), scraped under job="pods": the pod runner's
    #: per-pod metrics targets (hack/podrunner.py writes prometheus-targets.json)
    pod_target_files: list[Path] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    _targets: dict[str, list[str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_targets(self) -> None:
        groups = [{"targets": t, "labels": {"job": job}} for job, t in self._targets.items()]
        tmp = self.workdir / "targets.json.tmp"
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.workdir / "targets.json")

    def start(self) -> PrometheusServer:
        exe = shutil.which("prometheus")
        if not exe:
            raise SetupError(MISSING_TOOL.format(tool="prometheus"))
        self._write_targets()
        rules = "".join(f"  - {p}\n" for p in self.rule_files)
        pods = "".join(f"'{p}', " for p in self.pod_target_files).rstrip(", ")
        (self.workdir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            + (f"rule_files:\n{rules}" if rules else "")
            + "scrape_configs:\n  - job_name: dynamic\n    file_sd_configs:\n"
            f"      - files: ['{self.workdir / 'targets.json'}']\n        refresh_interval: 1s\n"
            + (
                f"  - job_name: pods\n    file_sd_configs:\n      - files: [{pods}]\n"
                "        refresh_interval: 1s\n"
                if pods
                else ""
            )
        )
        self.proc = subprocess.Popen(
            [
                exe,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "prometheus.log", "wb"),  # noqa: SIM115
            start_new_session=True,  # survives `devenv.py up` exiting; stopped by process group
        )
        wait_until(
            f"prometheus on :{self.port}", lambda: self._get("/-/ready"), timeout=60, gone=self._exited
        )
        return self

    def _exited(self) -> str | None:
        if self.proc is None or self.proc.poll() is None:
            return None
        tail = (self.workdir / "prometheus.log").read_text(errors="replace").strip().splitlines()[-1:]
        return f"exited with code {self.proc.returncode} at start-up{': ' + tail[0] if tail else ''}"

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as r:  # noqa: S310 (loopback only)
            body = r.read()
        try:
            return json.loads(body)
        except ValueError:
            return body.decode()

    def add_target(self, job: str, address: str) -> None:
        """Scrape ``address`` (``host:port``, path /metrics) under the job label ``job``."""
        self._targets.setdefault(job, []).append(address)
        self._write_targets()

    def remove_job(self, job: str) -> None:
        self._targets.pop(job, None)
        self._write_targets()

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if data.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {data}")
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def wait_for_sample(self, expr: str, timeout: float = 30) -> list[dict[str, Any]]:
        return list(wait_until(f"a sample for {expr!r}", lambda: self.query(expr), timeout=timeout))

    def reload(self) -> None:
        req = urllib.request.Request(self.url + "/-/reload", method="POST")  # noqa: S310 (loopback only)
        urllib.request.urlopen(req, timeout=10).close()  # noqa: S310 (loopback only)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
            if self.proc.poll() is None:
                self.proc.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Kubernetes (kwokctl, binary runtime)


@dataclass
class Cluster:
    """A real control plane managed by kwokctl: etcd, kube-apiserver, kube-controller-manager,
    kube-scheduler and kwok, every one bound to 127.0.0.1, plus ``nodes`` fake Ready nodes."""

    name: str
    binaries: Binaries
    nodes: int = 2
    #: The kube-controller-manager's API rate (``--kube-api-qps``, burst 1.5×); None: its
    #: default, 20/s. Benchmarks with thousands of Deployments raise it as a large cluster
    #: does: at 20/s the Deployment controller writes the status of 10,000 new Deployments
    #: for half an hour, and every write is a watch event the operator handles.
    controller_qps: int | None = None

    @property
    def workdir(self) -> Path:
        return CACHE / "kwok" / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig.yaml"

    def kwokctl(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binaries.path("kwokctl"), "--name", self.name, *args],
            check=check,
            capture_output=True,
            text=True,
            env=self.binaries.env(),
            timeout=timeout,
        )

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binaries.path("kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            check=check,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )

    def create_namespace(self, name: str, timeout: float = 60) -> None:
        """Create namespace ``name`` and wait for its default ServiceAccount: pods can be
        refused until it exists."""
        self.kubectl("create", "namespace", name)
        self.wait_default_service_account(name, timeout)

    def wait_default_service_account(self, namespace: str, timeout: float) -> None:
        wait_until(
            f"the default ServiceAccount in {namespace}",
            lambda: (
                self.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0
            ),
            timeout=timeout,
        )

    def _config(self) -> Path:
        b = self.binaries
        path = CACHE / "kwok" / f"{self.name}.kwokctl.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        v = versions()
        path.write_text(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokctlConfiguration\noptions:\n"
            "  runtime: binary\n  bindAddress: 127.0.0.1\n"
            f"  kubeVersion: {v['KUBE_VERSION']}\n"
            f"  kubeApiserverBinary: {b.bin_dir / 'kube-apiserver'}\n"
            f"  kubeControllerManagerBinary: {b.bin_dir / 'kube-controller-manager'}\n"
            f"  kubeSchedulerBinary: {b.bin_dir / 'kube-scheduler'}\n"
            f"  kubectlBinary: {b.tools_dir / 'kubectl'}\n"
            f"  etcdBinary: {b.bin_dir / 'etcd'}\n"
            f"  kwokControllerBinary: {b.bin_dir / 'kwok'}\n"
            "  quietPull: true\n" + self._front_proxy_patch() + self._controller_manager_patch()
        )
        return path

    def _front_proxy_patch(self) -> str:
        """The aggregation layer's front-proxy settings, as a real cluster has them.

        kwokctl gives the API server a proxy client certificate (its admin certificate) but no
        ``--requestheader-*`` flags, so an aggregated API server (KEDA's metrics server,
        hack/keda.py) could not tell who the proxied caller is. With these it reads the
        caller from the ``X-Remote-*`` headers of requests signed by the cluster's CA and
        presented by the API server's proxy certificate (CN ``kwok-admin``)."""
        args = {
            "requestheader-client-ca-file": str(self.workdir / "pki" / "ca.crt"),
            "requestheader-allowed-names": "kwok-admin",
            "requestheader-username-headers": "X-Remote-User",
            "requestheader-group-headers": "X-Remote-Group",
            "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        }
        return "componentsPatches:\n- name: kube-apiserver\n  extraArgs:\n" + "".join(
            f"  - key: {k}\n    value: {v}\n" for k, v in args.items()
        )

    def _controller_manager_patch(self) -> str:
        """The next item of the ``componentsPatches`` list :meth:`_front_proxy_patch` opens."""
        if self.controller_qps is None:
            return ""
        args = {"kube-api-qps": self.controller_qps, "kube-api-burst": self.controller_qps * 3 // 2}
        return "- name: kube-controller-manager\n  extraArgs:\n" + "".join(
            f'  - key: {k}\n    value: "{v}"\n' for k, v in args.items()
        )

    def exists(self) -> bool:
        return self.kubeconfig.exists()

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of every component's log, for error messages."""
        logs = self.workdir / "logs"
        tail = ""
        if logs.exists():
            for f in sorted(logs.iterdir()):
                tail += f"\n--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-lines:])
        return tail

    def start(self) -> Cluster:
        """Create and start the cluster. kwokctl picks its components' ports itself, so a
        cluster started at the same moment by another process can take one of them between
        the pick and the bind: then this one is deleted and started once more."""
        try:
            return self._start_once()
        except RuntimeError as e:
            if "address already in use" not in str(e):
                raise
            log(f"cluster {self.name}: a port was taken by another process while starting; once more")
            self.delete()
            return self._start_once()

    def _start_once(self) -> Cluster:
        t0 = time.monotonic()
        if self.exists():
            log(f"cluster {self.name}: stale state found, deleting it first")
            self.delete()
        log(f"cluster {self.name}: starting etcd, kube-apiserver, controller-manager, scheduler, kwok")
        proc = self.kwokctl(
            "-c",
            str(self._config()),
            "create",
            "cluster",
            "--kubeconfig",
            "",
            "--wait",
            "3m",
            check=False,
            timeout=400,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"kwokctl create cluster failed:\n{proc.stdout}\n{proc.stderr}{self.log_tails()}"
            )
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        log(
            f"cluster {self.name}: control plane up in {time.monotonic() - t0:.0f}s, "
            f"adding {self.nodes} nodes"
        )
        try:
            self.kwokctl("scale", "node", "--replicas", str(self.nodes))
            wait_until(f"{self.nodes} Ready nodes", self._nodes_ready, timeout=120)
            self.wait_default_service_account("default", timeout=120)
        except (TimeoutError, subprocess.SubprocessError) as e:
            raise RuntimeError(f"cluster {self.name} did not become ready: {e}{self.log_tails()}") from e
        log(f"cluster {self.name}: ready in {time.monotonic() - t0:.0f}s, kubeconfig {self.kubeconfig}")
        return self

    def _nodes_ready(self) -> bool:
        out = self.kubectl("get", "nodes", "-o", "json", check=False)
        if out.returncode != 0:
            return False
        items = json.loads(out.stdout)["items"]
        ready = [
            n
            for n in items
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
        ]
        return len(ready) >= self.nodes

    def delete(self) -> None:
        self.kwokctl("delete", "cluster", check=False, timeout=120)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_component(self, component: str) -> None:
        """Stop one control-plane component (e.g. ``kube-controller-manager``) for fault tests."""
        self.kwokctl("stop", "component", component)

    def start_component(self, component: str) -> None:
        self.kwokctl("start", "component", component)


def reap_stale_test_clusters(binaries: Binaries) -> None:
    """Delete test clusters whose owning process is gone (an interrupted earlier run)."""
    clusters = CACHE / "kwok" / "clusters"
    if not clusters.exists():
        return
    for d in clusters.iterdir():
        if not d.name.startswith(TEST_CLUSTER_PREFIX):
            continue
        owner = d / "owner.pid"
        try:
            alive = pid_alive(int(owner.read_text()))
        except (OSError, ValueError):
            # no owner recorded: either being created right now by another session, or a
            # crash during creation; only reap it when it is clearly old
            alive = time.time() - d.stat().st_mtime < 900
        if not alive:
            log(f"reaping stale test cluster {d.name}")
            Cluster(d.name, binaries).delete()


@contextlib.contextmanager
def session_cluster(
    nodes: int = 2, *, suffix: str = "", controller_qps: int | None = None
) -> Iterator[Cluster]:
    """A fresh cluster for one test session, deleted afterwards (also on SIGTERM/SIGINT);
    ``suffix`` names a second one of the same session (a test that must not touch the shared
    cluster's cluster-scoped objects, e.g. delete its CRDs); ``controller_qps``: see
    :attr:`Cluster.controller_qps`."""
    binaries = Binaries.locate().ensure()
    reap_stale_test_clusters(binaries)
    cluster = Cluster(
        f"{TEST_CLUSTER_PREFIX}{os.getpid()}{suffix}", binaries, nodes=nodes, controller_qps=controller_qps
    )
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        # pytest does not turn SIGTERM into an exception; do it so finalizers run
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.delete()
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------------------
# Long-lived dev environment: python hack/devenv.py up|down|status|env


def save_state(state: dict[str, Any]) -> None:
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=2))


def load_state() -> dict[str, Any]:
    if not STATE_FILE.exists():
        raise SystemExit("no dev environment: run `python hack/devenv.py up` first")
    state: dict[str, Any] = json.loads(STATE_FILE.read_text())
    return state


def _spawn_detached(argv: list[str], logfile: Path) -> int:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid


def cmd_up() -> None:
    require_tools("redis-server", "prometheus")
    binaries = Binaries.locate().ensure()
    if STATE_FILE.exists():
        log("dev environment already recorded; run `down` first to recreate it")
        cmd_status()
        return
    # Recorded before anything starts and after each start, so that a failure part-way (or a
    # later `down`) stops exactly what is running.
    state: dict[str, Any] = {"cluster": DEV_CLUSTER_NAME}
    save_state(state)
    try:
        _start_environment(binaries, state)
    except BaseException:
        log("start-up failed: stopping what was already started")
        cmd_down()
        raise
    cmd_status()


def _start_environment(binaries: Binaries, state: dict[str, Any]) -> None:
    cluster = Cluster(DEV_CLUSTER_NAME, binaries)
    cluster.start()
    state.update(kubeconfig=str(cluster.kubeconfig), path=f"{binaries.tools_dir}:{binaries.bin_dir}")
    devdir = CACHE / "devenv"
    redis_port = free_port()
    state["redis_pid"] = _spawn_detached(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        devdir / "redis.log",
    )
    state["redis_url"] = f"redis://127.0.0.1:{redis_port}/0"
    save_state(state)
    wait_until("redis", lambda: RedisServer(port=redis_port).ping(), timeout=20)
    import podrunner  # the pods' metrics targets are where the runner writes them

    alerts = ROOT / "manifests" / "monitoring" / "jobqueue-alerts.yaml"
    prom = PrometheusServer(
        workdir=devdir / "prometheus",
        rule_files=[alerts] if alerts.exists() else [],
        pod_target_files=[podrunner.DEFAULT_STATE_DIR / "prometheus-targets*.json"],
    )
    prom.workdir.mkdir(parents=True, exist_ok=True)
    state.update(prometheus_url=prom.url, prometheus_dir=str(prom.workdir))
    try:
        prom.start()
    finally:  # started but never ready still needs stopping
        if prom.proc:
            state["prometheus_pid"] = prom.proc.pid
            save_state(state)
    state["podrunner_pid"] = _start_podrunner(cluster, devdir)
    save_state(state)


def _start_podrunner(cluster: Cluster, devdir: Path) -> int:
    """Run the cluster's pods as local processes (hack/podrunner.py), until `down`."""
    import podrunner  # lazily: only `up` needs it (and its lightkube import)

    ready = devdir / "podrunner.ready"
    ready.unlink(missing_ok=True)
    config = podrunner.Config(kubeconfig=cluster.kubeconfig, pythonpath=(ROOT / "examples",))
    pid = _spawn_detached(
        [sys.executable, str(HACK / "podrunner.py"), *podrunner.cli_args(config), "--ready-file", str(ready)],
        devdir / "podrunner.log",
    )
    wait_until("the pod runner", ready.exists, timeout=60)
    log(f"pod runner pid {pid}: pod logs in {config.state_dir}/<namespace>/<pod>.log")
    return pid


def cmd_down() -> None:
    if not STATE_FILE.exists():
        log("nothing to stop")
        return
    state = load_state()
    pids = [state.get(k) for k in ("redis_pid", "prometheus_pid", "operator_pid", "podrunner_pid")]
    for pid in [*pids, *state.get("keda_pids", [])]:  # keda_pids: `python hack/keda.py up`
        if pid and pid_alive(int(pid)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid), signal.SIGTERM)
    runner = state.get("podrunner_pid")
    if runner:  # its processes get their grace period (≤ 30 s) while the API is still up
        with contextlib.suppress(TimeoutError):
            wait_until("the pod runner to stop", lambda: not pid_alive(int(runner)), timeout=45)
    Cluster(state["cluster"], Binaries.locate()).delete()
    shutil.rmtree(state.get("prometheus_dir", "/nonexistent"), ignore_errors=True)
    STATE_FILE.unlink()
    log("dev environment stopped")


def cmd_status() -> None:
    state = load_state()
    cluster = Cluster(state["cluster"], Binaries.locate())
    print(cluster.kubectl("get", "nodes", "-o", "wide", check=False).stdout)
    print(
        f"KUBECONFIG={state['kubeconfig']}\nJOBQUEUE_REDIS_URL={state['redis_url']}\n"
        f"PROMETHEUS_URL={state['prometheus_url']}"
    )


def cmd_env() -> None:
    """Print shell exports: eval "$(python hack/devenv.py env)"."""
    state = load_state()
    print(
        f"export KUBECONFIG={state['kubeconfig']}\nexport JOBQUEUE_REDIS_URL={state['redis_url']}\n"
        f"export PROMETHEUS_URL={state['prometheus_url']}\nexport PATH={state['path']}:$PATH"
    )


def one_line_failure(what: str, error: BaseException, logfile: Path) -> str:
    """Write the whole story of a failure (traceback included) to ``logfile``; return the one
    line a person reads first: what failed, the reason's first line, where the rest is."""
    import traceback

    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("a") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {what} failed\n")
        out.write("".join(traceback.format_exception(error)))
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return f"{what} failed: {lines[0]} (details: {logfile})"


def main(argv: list[str]) -> None:
    commands = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "env": cmd_env}
    if len(argv) != 1 or argv[0] not in commands:
        raise SystemExit(f"usage: python hack/devenv.py {{{'|'.join(commands)}}}")
    try:
        commands[argv[0]]()
    except Exception as e:  # every failure ends in one line; the traceback goes to the log
        raise SystemExit(one_line_failure(f"devenv {argv[0]}", e, CACHE / "devenv" / "errors.log")) from None


if __name__ == "__main__":
    main(sys.argv[1:])
