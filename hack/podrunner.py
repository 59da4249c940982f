"""The pod runner: run the pods of the dev cluster, in their images under runc or as local processes.

kwok nodes run no containers: a pod scheduled on one becomes ``Running`` but nothing executes.
To close the loop from backlog to replicas to real workers draining real jobs on one machine
without Docker, this runner watches the pods it is told about (by default every pod labelled
``app.kubernetes.io/part-of=jobqueue`` — JobQueue workers, RecurringJob CronJob pods and the
operator's own pod when the chart is installed) and runs each pod's first container — from its
image under runc (container mode, below), or its ``command`` + ``args`` as a local process —
with the environment the kubelet would have given it, for as long as the pod exists. It is dev
tooling, not product code.

What it emulates, and why each choice (``docs/development.md`` has the user's view):

* **Start** as soon as the pod is bound to a kwok node (``spec.nodeName`` set), not when kwok
  reports it ``Running``: the autoscaler benchmarks measure backlog → replicas → work, and
  kwok's status is fake anyway. The watch (never a poll) delivers the binding within
  milliseconds. A pod first seen in a terminal phase is never started: after a runner restart
  that is a completed Job pod, and running it again would duplicate its work.
* **Environment** as the kubelet builds it: ``envFrom`` (ConfigMaps, Secrets, prefixes), then
  ``env`` in order with ``$(VAR)`` expansion, the downward API (``fieldRef``), ``secretKeyRef``
  and ``configMapKeyRef`` honouring ``optional``. A missing non-optional reference keeps the
  pod waiting and retried, like ``CreateContainerConfigError``. Under it a small base
  environment (the project's venv first on ``PATH``, an extra ``PYTHONPATH``); the runner's own
  environment is *not* inherited, so a pod never sees the runner's admin ``KUBECONFIG``.
  Images, ``workingDir``, volumes, probes, resources and init containers are ignored.
* **Credentials**: a pod with a mounted service-account token (the admission plugin added the
  projected ``serviceAccountToken`` volume, i.e. ``automountServiceAccountToken`` is not false)
  gets a kubeconfig holding a TokenRequest token of exactly its ServiceAccount, so RBAC is
  enforced for real. The token is refreshed at 80 % of its lifetime (as the kubelet does) and
  the kubeconfig rewritten in place; it is not bound to the pod object, because kwok finalises
  deleted pods at once and a pod-bound token would die at the start of the grace period.
* **Stop** like the container runtime: SIGTERM to the main process only (as CRI's StopContainer
  does — a group-wide SIGTERM would kill RQ's work-horse children mid-job), SIGKILL to the whole
  process group after the grace period, which starts when the deletion is first observed and
  is honoured even after kwok has removed the object. When the main process exits, whatever is
  left in its group is killed, as when a container's PID 1 exits.
* **Restart** per ``restartPolicy`` with the kubelet's crash-loop backoff (10 s doubling to
  300 s, reset after 10 minutes of running); Job pods with ``Never`` run once.

Per pod the runner keeps one asyncio task and one pidfd (no thread, no pipe: output goes
straight to ``<state-dir>/<namespace>/<pod>.log``), so hundreds of pods cost little. Children are
cleaned up on SIGTERM/SIGINT, at interpreter exit, and (through ``PR_SET_PDEATHSIG``) even when
the runner is SIGKILLed.

**Container mode** (the default where runc works, ``--mode``): the pod's container runs from its
image (``make image`` builds them) under runc, with its securityContext, volumes and limits —
``podrunner_containers`` and ``podrunner_oci``; everything above still holds, with the image's
environment in place of the runner's base. ``--mode process`` runs the command on the host.

Use it as a library (:class:`PodRunner` in a background thread, or :func:`spawn` for a
subprocess) or from the command line::

    python hack/podrunner.py --kubeconfig .cache/kwok/clusters/jobqueue-dev/kubeconfig.yaml \\
        [--selector app.kubernetes.io/part-of=jobqueue] [--namespace NS] [--pythonpath examples]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import ctypes
import datetime
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import httpx2
import yaml
from lightkube import ALL_NS, ApiError, AsyncClient, KubeConfig, operators
from lightkube.core.client import FieldSelector, LabelSelector
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.core_v1 import (
    Container,
    EnvVarSource,
    EventSource,
    ObjectReference,
    PodSpec,
    PodStatus,
)
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import (
    ConfigMap,
    Event,
    Namespace,
    Node,
    Pod,
    Secret,
    Service,
    ServiceAccount,
)

import images
import podrunner_containers as containers
import podrunner_oci as oci
import podrunner_services as services

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("JOBQUEUE_CACHE", ROOT / ".cache"))

DEFAULT_SELECTOR = "app.kubernetes.io/part-of=jobqueue"
"""Every pod of the project carries it: worker pods, CronJob pods and the operator's pod."""

PRIVATE_NAMESPACE_LABEL = "podrunner.jobqueue.dev/private"
"""A namespace labelled with it (any value) has a runner of its own (``namespace`` set): a
runner of all namespaces leaves its pods alone, so no pod ever gets two processes. Set it
before the namespace's first pod is scheduled: the answer is cached per namespace."""

DEFAULT_STATE_DIR = CACHE / "podrunner"
"""Pod logs go to ``<state dir>/<namespace>/<pod>.log``, credentials to ``<state dir>/.credentials``
(a namespace name can never start with a dot, so the two never collide)."""

KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
"""How kwokctl marks the nodes it creates. Pods on other nodes (a kind cluster's real nodes)
already run their containers and are left alone unless ``all_nodes`` is set."""

DEFAULT_GRACE_SECONDS = 30.0
"""Kubernetes' default ``terminationGracePeriodSeconds``."""

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET_AFTER = 600.0
"""The kubelet's crash-loop backoff: 10 s doubling to 5 min, forgotten after 10 min of running."""

CONFIG_RETRY_SECONDS = 2.0
"""How often a pod whose Secret/ConfigMap/ServiceAccount is missing is retried. Short, so a
Secret created just after its Deployment is picked up promptly (the kubelet retries too)."""

TOKEN_SECONDS = 3600
"""Requested token lifetime: the kubelet's default for projected tokens."""

TOKEN_REFRESH_FRACTION = 0.8
"""Refresh when 80 % of a token's lifetime has passed, as the kubelet does."""

WATCH_SERVER_TIMEOUT = 240
"""The API server ends each watch request after this many seconds and the watch resumes from the
last resourceVersion: a silently dead connection is noticed within this time."""

WATCH_RETRY_SECONDS = (0.5, 5.0)
"""Pause before re-listing after a watch failure (API server restarting, 410 Gone): doubling
from the first value to the second while the failures last."""

PORT_ENV_VARS = ("JOBQUEUE_METRICS_PORT", "JOBQUEUE_HEALTH_PORT", "JOBQUEUE_API_PORT")
"""Env vars that name a port the process listens on. Local processes share the host's network
(there are no pod IPs), so two worker pods would both try :9100. Each pod gets free host ports
for these instead; the mapping is published in ``<state dir>/endpoints.json`` and, for the
metrics port, as a Prometheus file_sd target list in ``<state dir>/prometheus-targets.json``."""

Mode = Literal["auto", "container", "process"]
"""``container``: each pod's container runs from its image under runc; ``process``: its command
runs on the host; ``auto``: container where the runtime works here, else process (logged)."""

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
POD_IP_FIELDS = frozenset({"status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs"})

#: Process groups of every child this interpreter started and has not seen exit: the
#: interpreter-exit hook SIGKILLs them if a runner was never stopped properly.
_LIVE_GROUPS: set[int] = set()
#: the same for containers: their kill functions (runc's children outlive a killed runc)
_LIVE_CONTAINERS: dict[int, Callable[[], None]] = {}
_LIVE_GROUPS_LOCK = threading.Lock()

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class ConfigError(Exception):
    """The pod cannot start yet (a missing Secret, ConfigMap, key or ServiceAccount, no command).

    The analogue of the kubelet's ``CreateContainerConfigError``: retried until fixed or deleted.
    """


@dataclass(frozen=True)
class Config:
    """What to run and how. Every field has a command-line option (see :func:`cli_args`)."""

    kubeconfig: Path
    #: label selector of the pods to run (``kubectl -l`` syntax); empty: every pod
    selector: str = DEFAULT_SELECTOR
    #: watch one namespace only; ``None``: all namespaces
    namespace: str | None = None
    #: prepended to the processes' ``PYTHONPATH`` (e.g. the demo's ``examples/``)
    pythonpath: tuple[Path, ...] = ()
    #: extra base environment (below the pod's own env, above the runner's defaults)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    state_dir: Path = DEFAULT_STATE_DIR
    #: the processes' working directory (images' ``workingDir`` does not exist locally)
    workdir: Path = ROOT
    #: its ``bin/`` goes first on ``PATH``, so ``python``, ``jobqueue``, ``jobqueue-operator``
    #: are the project's
    venv: Path = ROOT / ".venv"
    backoff_initial: float = BACKOFF_INITIAL
    backoff_max: float = BACKOFF_MAX
    #: on runner shutdown, give processes at most this long before SIGKILL (``None``: each
    #: pod's own grace period)
    shutdown_grace: float | None = None
    #: run selected pods on every node, not only on kwok nodes
    all_nodes: bool = False
    token_seconds: int = TOKEN_SECONDS
    #: replace a token once this fraction of its lifetime has passed
    token_refresh: float = TOKEN_REFRESH_FRACTION
    mode: Mode = "auto"
    #: the images container mode runs (``hack/images.py``'s store; ``make image`` fills it)
    images: Path = images.DEFAULT_STORE


def cli_args(config: Config) -> list[str]:
    """The command-line options that reproduce ``config`` (for :func:`spawn` and ``devenv up``)."""
    args = [
        "--kubeconfig",
        str(config.kubeconfig),
        "--selector",
        config.selector,
        "--state-dir",
        str(config.state_dir),
        "--workdir",
        str(config.workdir),
        "--venv",
        str(config.venv),
        "--backoff-initial",
        str(config.backoff_initial),
        "--backoff-max",
        str(config.backoff_max),
        "--token-seconds",
        str(config.token_seconds),
        "--token-refresh",
        str(config.token_refresh),
        "--mode",
        config.mode,
        "--images",
        str(config.images),
    ]
    if config.namespace:
        args += ["--namespace", config.namespace]
    for p in config.pythonpath:
        args += ["--pythonpath", str(p)]
    for k, v in config.extra_env.items():
        args += ["--env", f"{k}={v}"]
    if config.shutdown_grace is not None:
        args += ["--shutdown-grace", str(config.shutdown_grace)]
    if config.all_nodes:
        args.append("--all-nodes")
    return args


# --------------------------------------------------------------------------------------
# Pure helpers: selectors, $(VAR) expansion, downward API, grace periods


_REQUIREMENT = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<nkey>[^\s=!(),]+)"
    r"|(?P<skey>[^\s=!(),]+)\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\)"
    r"|(?P<key>[^\s=!(),]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^\s=!(),]*))?)\s*$"
)


def parse_selector(selector: str) -> LabelSelector:
    """A ``kubectl -l`` label selector as lightkube's selector mapping (which takes no raw string).

    One requirement per key: ``a!=x,a!=y`` would keep only the last (use ``a notin (x,y)``).
    """
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(selector):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(selector[start:i])
            start = i + 1
    parts.append(selector[start:])
    pairs: LabelSelector = {}
    for part in parts:
        if not part.strip():
            continue
        m = _REQUIREMENT.match(part)
        if not m:
            raise ValueError(f"invalid label selector requirement {part!r} in {selector!r}")
        if m["nkey"]:
            pairs[m["nkey"]] = operators.not_exists()
        elif m["skey"]:
            values = [v.strip() for v in m["values"].split(",") if v.strip()]
            op = operators.in_(values) if m["setop"] == "in" else operators.not_in(values)
            pairs[m["skey"]] = op
        elif m["op"] is None:
            pairs[m["key"]] = operators.exists()
        elif m["op"] == "!=":
            pairs[m["key"]] = operators.not_equal(m["value"])
        else:
            pairs[m["key"]] = operators.equal(m["value"])
    return pairs


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` is a literal ``$``,
    anything else (an undefined name, an unclosed ``$(``) stays as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$" or i + 1 >= len(text):
            out.append(ch)
            i += 1
        elif text[i + 1] == "$":
            out.append("$")
            i += 2
        elif text[i + 1] == "(" and (end := text.find(")", i + 2)) != -1:
            name = text[i + 2 : end]
            out.append(env[name] if name in env else text[i : end + 1])
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class PodFacts:
    """What the runner acts on in a Pod object: lightkube's Optionals resolved in one place."""

    raw: Pod
    uid: str
    namespace: str
    name: str
    node: str  # "" while unscheduled
    deleting: bool
    deletion_grace: int | None
    termination_grace: int | None
    phase: str
    pod_ip: str
    restart_policy: str
    service_account: str
    #: the ServiceAccount admission plugin decided (``automountServiceAccountToken`` of pod and
    #: ServiceAccount) and added a projected ``serviceAccountToken`` volume accordingly
    mounts_token: bool
    container: Container | None  # the first one

    @classmethod
    def of(cls, pod: Pod) -> PodFacts:
        meta = pod.metadata or ObjectMeta()
        spec = pod.spec or PodSpec(containers=[])
        status = pod.status or PodStatus()
        mounts = any(
            v.projected and any(s.serviceAccountToken for s in v.projected.sources or [])
            for v in spec.volumes or []
        )
        return cls(
            raw=pod,
            uid=meta.uid or "",
            namespace=meta.namespace or "",
            name=meta.name or "",
            node=spec.nodeName or "",
            deleting=meta.deletionTimestamp is not None,
            deletion_grace=meta.deletionGracePeriodSeconds,
            termination_grace=spec.terminationGracePeriodSeconds,
            phase=status.phase or "",
            pod_ip=status.podIP or "",
            restart_policy=spec.restartPolicy or "Always",
            service_account=spec.serviceAccountName or "default",
            mounts_token=mounts,
            container=spec.containers[0] if spec.containers else None,
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


def field_ref(pod: Pod, path: str) -> str:
    """The downward-API value of ``path`` (``fieldRef.fieldPath``) for ``pod``."""
    meta = pod.metadata or ObjectMeta()
    spec = pod.spec or PodSpec(containers=[])
    status = pod.status or PodStatus()
    simple: dict[str, str | None] = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid,
        "spec.nodeName": spec.nodeName,
        "spec.serviceAccountName": spec.serviceAccountName,
        "status.podIP": status.podIP,
        "status.hostIP": status.hostIP,
        "status.podIPs": ",".join(i.ip for i in status.podIPs or [] if i.ip),
        "status.hostIPs": ",".join(i.ip for i in status.hostIPs or [] if i.ip),
    }
    if path in simple:
        return simple[path] or ""
    m = _SUBSCRIPT.match(path)
    if m:
        source = (meta.labels if m[1] == "labels" else meta.annotations) or {}
        return str(source.get(m[2], ""))
    raise ConfigError(f"unsupported fieldRef {path!r}")


def grace_seconds(pod: PodFacts) -> float:
    """The grace period a deletion of ``pod`` grants, as first observed.

    kwok finalises every terminating pod with a second, immediate deletion, so only the first
    deletion event carries the user's grace period; the caller keeps that one. The API server
    also deletes pods in a terminal phase immediately — but here the phase is kwok's fiction
    while the local process may still be working, so those get the pod's own grace period.
    """
    own = float(pod.termination_grace if pod.termination_grace is not None else DEFAULT_GRACE_SECONDS)
    if pod.deletion_grace is None or (pod.deletion_grace == 0 and pod.phase in TERMINAL_PHASES):
        return own
    return float(pod.deletion_grace)


def listen_ports(env: Mapping[str, str], declared: Iterable[int]) -> list[str]:
    """The variables of ``env`` that name a port the process listens on, each to get a free
    host port (pods share the host's network): those of PORT_ENV_VARS, and any ``…PORT``
    variable whose value is one of the container's declared ``containerPort`` s."""
    ports = {str(p) for p in declared}
    return [var for var in env if var in PORT_ENV_VARS or (var.endswith("PORT") and env[var] in ports)]


def oneline(argv: Sequence[str], limit: int = 120) -> str:
    """A command for a one-line log entry: shell-quoted, newlines shown as ``\\n``, shortened."""
    return shorten(shlex.join(argv), limit)


def shorten(text: str, limit: int = 120) -> str:
    """``text`` for a one-line log entry: newlines shown as ``\\n``, cut at ``limit``."""
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def exit_code(returncode: int) -> int:
    """A :class:`subprocess.Popen` return code as a container's exit code (128 + signal)."""
    return 128 - returncode if returncode < 0 else returncode


def describe_exit(code: int) -> str:
    with contextlib.suppress(ValueError):
        if code > 128:
            return f"{code} ({signal.Signals(code - 128).name})"
    return str(code)


def restarts(policy: str, code: int) -> bool:
    """Whether the kubelet restarts a container that exited with ``code`` under ``policy``."""
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return code != 0
    return True  # Always, the default


# --------------------------------------------------------------------------------------
# Credentials: one TokenRequest token + kubeconfig per ServiceAccount


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically (a process reading it never sees half a file), mode 0600."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _cluster_entry(kubeconfig: Path) -> dict[str, Any]:
    """The current context's cluster of the runner's kubeconfig, CA paths made absolute."""
    conf = yaml.safe_load(kubeconfig.read_text())
    contexts = {c["name"]: c["context"] for c in conf.get("contexts", [])}
    clusters = {c["name"]: c["cluster"] for c in conf.get("clusters", [])}
    current = conf.get("current-context") or next(iter(contexts))
    cluster = dict(clusters[contexts[current]["cluster"]])
    ca = cluster.get("certificate-authority")
    if ca and not Path(ca).is_absolute():
        cluster["certificate-authority"] = str((kubeconfig.parent / ca).resolve())
    return cluster


class Credentials:
    """A TokenRequest token of one ServiceAccount, written as a kubeconfig and kept fresh.

    Shared by every pod of that ServiceAccount. The kubeconfig names the token both inline
    (kopf's kubeconfig login reads only ``token``, and re-reads the file after a 401) and as
    ``tokenFile`` (client-go re-reads it periodically, lightkube on a 401).
    """

    def __init__(self, runner: Runner, namespace: str, service_account: str) -> None:
        self.runner = runner
        self.namespace = namespace
        self.service_account = service_account
        self.dir = runner.config.state_dir / ".credentials" / namespace / service_account
        self.kubeconfig = self.dir / "kubeconfig"
        self.users: set[str] = set()
        #: container mode: token files in pods' projected volumes (path -> mode), rewritten on refresh
        self.sinks: dict[Path, int] = {}
        self._token = ""
        self._lock = asyncio.Lock()
        self._refresh_at = 0.0
        self._task: asyncio.Task[None] | None = None

    async def ensure(self) -> Path:
        async with self._lock:
            if time.monotonic() >= self._refresh_at:
                try:
                    await self._mint()
                except ApiError as e:
                    raise ConfigError(
                        f"cannot mint a token for serviceaccount "
                        f"{self.namespace}/{self.service_account}: {e.status.message}"
                    ) from e
            if self._task is None:
                self._task = asyncio.create_task(self._refresher())
        return self.kubeconfig

    async def _mint(self) -> None:
        spec = TokenRequestSpec(expirationSeconds=self.runner.config.token_seconds)
        granted = await self.runner.api.create(
            ServiceAccount.Token(metadata=ObjectMeta(), spec=spec),
            name=self.service_account,
            namespace=self.namespace,
        )
        status = granted.status
        if status is None or not status.token or status.expirationTimestamp is None:
            raise ConfigError(f"the API server granted no token: {granted!r}")
        token = self._token = status.token
        lifetime = (status.expirationTimestamp - datetime.datetime.now(datetime.UTC)).total_seconds()
        self._refresh_at = time.monotonic() + self.runner.config.token_refresh * lifetime
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(self.dir / "token", token)
        user = f"system:serviceaccount:{self.namespace}:{self.service_account}"
        _write_private(
            self.kubeconfig,
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "podrunner", "cluster": self.runner.cluster}],
                    "users": [{"name": user, "user": {"token": token, "tokenFile": str(self.dir / "token")}}],
                    "contexts": [
                        {
                            "name": user,
                            "context": {"cluster": "podrunner", "user": user, "namespace": self.namespace},
                        }
                    ],
                    "current-context": user,
                }
            ),
        )
        for path, mode in list(self.sinks.items()):
            self._write_sink(path, mode)

    async def write_token(self, path: Path, mode: int) -> None:
        """Write the token to ``path`` (a pod's projected volume) now and after each refresh."""
        await self.ensure()
        self.sinks[path] = mode
        self._write_sink(path, mode)

    def _write_sink(self, path: Path, mode: int) -> None:
        if not path.parent.is_dir():  # the pod and its volumes are gone
            self.sinks.pop(path, None)
            return
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self._token)
        tmp.chmod(mode)
        tmp.replace(path)  # the volume is bind-mounted as a directory: the container sees the new file

    async def _refresher(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self._refresh_at - time.monotonic()))
            async with self._lock:
                try:
                    await self._mint()
                except Exception as e:  # keep the old token (still valid for a while) and retry
                    self.runner.log(
                        f"token refresh for {self.namespace}/{self.service_account} failed: {e!r}"
                    )
                    self._refresh_at = time.monotonic() + 10

    def close(self) -> None:
        if self._task:
            self._task.cancel()
        for name in ("kubeconfig", "token"):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / name).unlink()


# --------------------------------------------------------------------------------------
# One pod's process


def _die_with(parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGKILLed if ``parent`` dies without cleaning up."""

    def in_child() -> None:
        if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(255)  # the runner is already gone

    return in_child


def _exit_future(proc: subprocess.Popen[bytes]) -> asyncio.Future[int]:
    """A future resolved with the exit code of ``proc``: a pidfd readable on exit, no thread."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    fd = os.pidfd_open(proc.pid)

    def exited() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        code = proc.wait()  # already exited: only reaps
        if not fut.done():
            fut.set_result(code)

    loop.add_reader(fd, exited)
    return fut


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_running(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies excluded: a reparented
    child is reaped by whatever init the machine has, maybe never)."""
    try:
        os.killpg(pgid, 0)  # the usual empty group: no scan of /proc
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == pgid and state != "Z":
                return True
    return False


async def _group_gone(pgid: int) -> None:
    """Wait (at most 5 s) until a SIGKILLed group is gone: SIGKILL is delivered asynchronously,
    and on a loaded machine a background child can still run a while after ``killpg``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            # nothing signals another process's exit but a pidfd per member, hence the poll
            while _group_running(pgid):  # noqa: ASYNC110
                await asyncio.sleep(0.01)


State = Literal["pending", "running", "backoff", "completed", "stopping", "stopped", "ignored"]


@dataclass(frozen=True)
class ProcessInfo:
    """A snapshot of one pod's process, for tests and diagnostics."""

    namespace: str
    name: str
    uid: str
    state: State
    pid: int | None
    starts: int
    last_exit_code: int | None
    log_file: Path
    #: env var -> host port the process got instead of the pod's own (see PORT_ENV_VARS)
    ports: Mapping[str, int] = field(default_factory=dict)
    #: container mode: the runc container id of the current run (``pid`` is runc's)
    container: str | None = None


class PodProcess:
    """Supervises the local process of one pod (by uid) from binding until deletion."""

    def __init__(self, runner: Runner, pod: PodFacts) -> None:
        self.runner = runner
        self.pod = pod
        self.uid = pod.uid
        self.namespace = pod.namespace
        self.name = pod.name
        self.state: State = "pending"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.last_exit_code: int | None = None
        self.gone = False  # the API object no longer exists
        self._kill_at: float | None = None  # monotonic deadline, set once deletion is observed
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()
        self._credentials: Credentials | None = None
        self.ports: dict[str, int] = {}
        #: declared containerPort -> the host port the process was told to listen on instead
        self.container_ports: dict[int, int] = {}
        self.log_file = runner.config.state_dir / self.namespace / f"{self.name}.log"
        self.launch: containers.Launch | None = None
        self.volumes: containers.PodVolumes | None = None  # container mode
        self._reported: set[str] = set()  # container errors already posted as Events
        self.task = asyncio.create_task(self._run(), name=f"pod {self.key}")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def info(self) -> ProcessInfo:
        running = self.proc is not None and self.proc.returncode is None
        return ProcessInfo(
            self.namespace,
            self.name,
            self.uid,
            self.state,
            self.proc.pid if self.proc and running else None,
            self.starts,
            self.last_exit_code,
            self.log_file,
            dict(self.ports),
            self.launch.container if self.launch and running else None,
        )

    # -- events from the watch

    def update(self, pod: PodFacts) -> None:
        self.pod = pod
        if pod.deleting:
            self.stop(grace_seconds(pod), "pod deleted")
        self._changed.set()

    def vanish(self, last: PodFacts | None) -> None:
        """The object is gone (DELETED event, or missing from a re-list)."""
        if last is not None:
            self.pod = last
        self.gone = True
        self.stop(grace_seconds(self.pod), "pod gone")
        if self.task.done():
            self.runner.forget(self)

    def stop(self, grace: float, reason: str) -> None:
        """Terminate with ``grace`` seconds before SIGKILL. Only the first request counts, except
        that a runner shutdown may shorten it (kwok's own re-deletion with grace 0 must not)."""
        if self._kill_at is not None and reason != "runner shutdown":
            return
        deadline = time.monotonic() + max(0.0, grace)
        if self._kill_at is None or deadline < self._kill_at:
            if self._kill_at is None and self.proc is not None and self.proc.returncode is None:
                self.runner.log(
                    f"stop {self.key} pid={self.proc.pid} ({reason}): "
                    + ("SIGKILL now" if grace <= 0 else f"SIGTERM, SIGKILL in {grace:g}s")
                )
            self._kill_at = deadline
        self._stop.set()
        self._changed.set()

    # -- the supervisor

    async def _run(self) -> None:
        try:
            await self._supervise()
        except Exception as e:  # one pod's trouble never takes the runner down
            self.runner.log(f"error {self.key}: {e!r} (traceback in {self.log_file})")
            self._append_log("runner error:\n" + traceback.format_exc())
            if self.proc is not None and self.proc.returncode is None:
                _killpg(self.proc.pid, signal.SIGKILL)
        finally:
            if self.state != "ignored":
                self.state = "stopped" if self._stop.is_set() else "completed"
            if self._credentials is not None:
                self.runner.release(self._credentials, self.uid)
            if self.volumes is not None:
                self.volumes.remove()
            if self.gone:
                self.runner.forget(self)

    async def _supervise(self) -> None:
        backoff = self.runner.config.backoff_initial
        last_config_error = ""
        while not self._stop.is_set():
            try:
                if not await self.runner.runs_on_node(self.pod.node):
                    self.state = "ignored"
                    return
                launch = await self._prepare()
            except (ConfigError, oci.ContainerConfigError, ApiError, httpx2.HTTPError) as e:
                # missing objects, API trouble, an image not built here, a container that
                # cannot be created as specified
                if str(e) != last_config_error:
                    self.runner.log(f"waiting {self.key}: {e}")
                    self._append_log(f"waiting: {e}")
                    last_config_error = str(e)
                if isinstance(e, oci.ContainerConfigError):
                    await self._report(e)
                await self._sleep(CONFIG_RETRY_SECONDS)
                continue
            started = time.monotonic()
            code = await self._run_once(launch)
            self.last_exit_code = code
            if self._stop.is_set():
                return
            policy = self.pod.restart_policy
            if not restarts(policy, code):
                self.runner.log(
                    f"exit {self.key} code={describe_exit(code)} after "
                    f"{time.monotonic() - started:.1f}s (restartPolicy {policy}: not restarted)"
                )
                self.state = "completed"
                await self._stop.wait()  # keep the record, so the pod is never run twice
                return
            if time.monotonic() - started >= BACKOFF_RESET_AFTER:
                backoff = self.runner.config.backoff_initial
            self.runner.log(
                f"exit {self.key} code={describe_exit(code)} after "
                f"{time.monotonic() - started:.1f}s: restarting in {backoff:g}s"
            )
            self.state = "backoff"
            await self._sleep(backoff)
            backoff = min(backoff * 2, self.runner.config.backoff_max)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _report(self, error: oci.ContainerConfigError) -> None:
        """A Warning Event on the pod, as the kubelet posts for a failed pull or container config."""
        if str(error) in self._reported:
            return
        self._reported.add(str(error))
        reason = "Failed"
        meta = self.pod.raw.metadata or ObjectMeta()
        with contextlib.suppress(ApiError, httpx2.HTTPError):
            await self.runner.api.create(
                Event(
                    metadata=ObjectMeta(generateName=f"{self.name}.", namespace=self.namespace),
                    involvedObject=ObjectReference(
                        kind="Pod",
                        namespace=self.namespace,
                        name=self.name,
                        uid=self.uid,
                        apiVersion="v1",
                        resourceVersion=meta.resourceVersion,
                        fieldPath=f"spec.containers{{{self.pod.container.name if self.pod.container else ''}}}",
                    ),
                    reason=reason,
                    message=str(error),
                    type="Warning",
                    count=1,
                    firstTimestamp=datetime.datetime.now(datetime.UTC),
                    lastTimestamp=datetime.datetime.now(datetime.UTC),
                    source=EventSource(component="podrunner", host=self.pod.node),
                )
            )

    async def _prepare(self) -> containers.Launch:
        """How to run the container, resolved against the API server right now."""
        container = self.pod.container
        if container is None:
            raise ConfigError("the pod has no container")
        if self.runner.containers is None and not container.command:
            raise ConfigError(
                "containers[0] has no command: images are not run in process mode, so the "
                "pod runner needs an explicit command"
            )
        while self._needs_pod_ip(container) and not self.pod.pod_ip:
            # the kubelet knows the pod IP before starting containers; kwok sets it right after binding
            self._changed.clear()
            await self._changed.wait()
            if self._stop.is_set():
                raise ConfigError("deleted while waiting for its pod IP")
        pod_env = await self.runner.container_env(self.pod.raw, container, note=self._append_log)
        self._remap_ports(pod_env, container)  # before $(VAR) expansion: `--port $(REDIS_PORT)`
        command = [expand(a, pod_env) for a in container.command or []]
        args = [expand(a, pod_env) for a in container.args or []]
        if self.runner.containers is not None:
            return await self._prepare_container(self.runner.containers, command, args, pod_env)
        argv = [*command, *args]
        env = self.runner.base_env(self.pod)
        env.update(pod_env)
        self._remap_ports(env, container)
        if self.pod.mounts_token and "KUBECONFIG" not in pod_env:
            env["KUBECONFIG"] = str(await self._pod_credentials().ensure())
        return containers.Launch(argv, env, self.runner.config.workdir, description=oneline(argv))

    async def _prepare_container(
        self, runtime: containers.Runtime, command: list[str], args: list[str], pod_env: dict[str, str]
    ) -> containers.Launch:
        pod = self.pod.raw.to_dict()
        if self.volumes is None:
            self.volumes = containers.PodVolumes(self.runner.config.state_dir / ".volumes", pod)
        self.volumes.pod = pod
        await self.volumes.prepare(
            self.runner.volume_data,
            self._write_token,
            lambda path: field_ref(self.pod.raw, path),
            runtime.service.ip,
            self.runner.service_hosts(self.namespace),
        )
        base = {"HOSTNAME": self.name, **self.runner.config.extra_env}
        return runtime.launch(
            containers.container_id(os.getpid(), self.uid, self.starts + 1),
            pod=pod,
            container=pod["spec"]["containers"][0],
            command=command or None,
            args=args or None,
            pod_env=pod_env,
            base_env=base,
            volumes=self.volumes,
        )

    async def _write_token(self, path: Path, mode: int) -> None:
        await self._pod_credentials().write_token(path, mode)

    def _pod_credentials(self) -> Credentials:
        if self._credentials is None:
            self._credentials = self.runner.credentials(self.namespace, self.pod.service_account, self.uid)
        return self._credentials

    def _remap_ports(self, env: dict[str, str], container: Container) -> None:
        declared = {p.containerPort for p in container.ports or []}
        for var in listen_ports(env, declared):
            original = int(env[var]) if env[var].isdigit() else None
            # stable across restarts of this pod, so scrape targets and Services do not churn
            self.ports.setdefault(var, _free_port())
            env[var] = str(self.ports[var])
            if original in declared:
                self.container_ports[original] = self.ports[var]
        if self.ports:
            self.runner.publish_endpoints()

    def address(self, container_port: int) -> tuple[str, int]:
        """Where the process listens for ``container_port`` (a Service's backend)."""
        return "127.0.0.1", self.container_ports.get(container_port, container_port)

    @staticmethod
    def _needs_pod_ip(container: Container) -> bool:
        return any(
            v.valueFrom and v.valueFrom.fieldRef and v.valueFrom.fieldRef.fieldPath in POD_IP_FIELDS
            for v in container.env or []
        )

    def _append_log(self, line: str) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "a") as f:
            f.write(f"--- podrunner {time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    async def _run_once(self, launch: containers.Launch) -> int:
        """Start the process, wait for it to exit or to be stopped; return its exit code."""
        self.starts += 1
        self.launch = launch
        self._append_log(f"start #{self.starts}: {launch.description}")
        # Forked from the loop's own thread, on purpose: fork+exec takes milliseconds, and
        # PR_SET_PDEATHSIG fires when the *thread* that forked ends — an executor thread could.
        try:
            with open(self.log_file, "ab") as out:  # noqa: ASYNC230
                self.proc = subprocess.Popen(  # noqa: ASYNC220
                    launch.argv,
                    env=launch.env,
                    cwd=launch.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with(os.getpid()),  # noqa: PLW1509 (only a prctl: no locks taken)
                )
        except OSError as e:  # not found / not executable: a failed start, as a container's
            self._append_log(f"cannot start: {e}")
            self.runner.log(f"start {self.key} failed: {e}")
            launch.cleanup()
            return 127 if isinstance(e, FileNotFoundError) else 126
        pid = self.proc.pid
        with _LIVE_GROUPS_LOCK:
            _LIVE_GROUPS.add(pid)
            _LIVE_CONTAINERS[pid] = launch.kill
        self.state = "running"
        self.runner.log(f"start {self.key} pid={pid} #{self.starts}: {shorten(launch.description)}")
        exited = _exit_future(self.proc)
        try:
            stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait([exited, stop], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not exited.done():
                await self._terminate(pid, exited, launch)
            code = exit_code(await exited)
        finally:
            _killpg(pid, signal.SIGKILL)  # what is left of the group dies with its main process
            launch.kill()  # and of the container (runc's children are not in runc's group)
            with _LIVE_GROUPS_LOCK:
                _LIVE_GROUPS.discard(pid)
                _LIVE_CONTAINERS.pop(pid, None)
            await _group_gone(pid)
            launch.cleanup()
        self._append_log(f"exit code {describe_exit(code)}")
        if self._stop.is_set():
            self.runner.log(f"exit {self.key} pid={pid} code={describe_exit(code)}")
        return code

    async def _terminate(self, pid: int, exited: asyncio.Future[int], launch: containers.Launch) -> None:
        self.state = "stopping"
        assert self._kill_at is not None
        graceful = self._kill_at > time.monotonic()
        if graceful:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        while not exited.done():
            remaining = self._kill_at - time.monotonic()
            if remaining <= 0:
                if graceful:
                    self.runner.log(f"kill {self.key} pid={pid}: SIGKILL (grace period over)")
                launch.kill()
                _killpg(pid, signal.SIGKILL)
                return
            self._changed.clear()
            changed: asyncio.Future[Any] = asyncio.ensure_future(self._changed.wait())
            await asyncio.wait([exited, changed], timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()


# --------------------------------------------------------------------------------------
# The runner: one list+watch of pods, one PodProcess per selected, scheduled pod


class Runner:
    """The asyncio core. :class:`PodRunner` runs it in a thread, :func:`main` in the foreground."""

    def __init__(self, config: Config, *, log: TextIO | None = None) -> None:
        self.config = config
        self._log_stream = log
        self.api = AsyncClient(
            KubeConfig.from_file(config.kubeconfig), trust_env=False, field_manager="podrunner"
        )
        self.cluster = _cluster_entry(config.kubeconfig)
        self.labels = parse_selector(config.selector)
        self.pods: dict[str, PodProcess] = {}
        #: namespace -> labelled PRIVATE_NAMESPACE_LABEL (see :meth:`_private`)
        self._private_namespaces: dict[str, bool] = {}
        self._nodes: dict[str, asyncio.Task[bool]] = {}
        self._credentials: dict[tuple[str, str], Credentials] = {}
        self._shutdown = asyncio.Event()
        self.containers = self._runtime()
        #: container mode: the stand-in for the cluster's Services (podrunner_services)
        self.services = services.Services(self._backends, self.log) if self.containers is not None else None

    def _runtime(self) -> containers.Runtime | None:
        """The container runtime for ``mode`` (None: process mode); reaps dead runners' containers."""
        mode = self.config.mode
        store = images.Store(self.config.images)
        problem = containers.problem() if mode != "process" else None
        if mode == "auto" and not problem and not store.refs():
            problem = f"has no image to run: none is built in {store.root} (make image)"
        if mode == "container" and problem:
            raise RuntimeError(f"container mode is not available here: {problem}")
        if mode == "process" or problem:
            if problem:
                self.log(f"process mode: the container mode {problem}")
            return None
        runtime = containers.Runtime(store, self.cluster["server"], self.log)
        reaped = runtime.reap()
        if reaped:
            self.log(f"removed {len(reaped)} container(s) left by runners that are gone: {' '.join(reaped)}")
        return runtime

    def log(self, msg: str) -> None:
        stream = self._log_stream or sys.stderr
        print(f"[podrunner {time.strftime('%H:%M:%S')}] {msg}", file=stream, flush=True)

    # -- services for PodProcess

    def base_env(self, pod: PodFacts) -> dict[str, str]:
        env = {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR") if k in os.environ}
        env["PATH"] = f"{self.config.venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        env["HOSTNAME"] = pod.name
        env["PYTHONUNBUFFERED"] = "1"  # logs reach the pod's log file line by line
        if self.config.pythonpath:
            env["PYTHONPATH"] = ":".join(str(p) for p in self.config.pythonpath)
        env.update(self.config.extra_env)
        return env

    async def _get_data(
        self, kind: type[Secret] | type[ConfigMap], name: str | None, namespace: str, optional: bool | None
    ) -> dict[str, str] | None:
        if not name:
            raise ConfigError(f"a {kind.__name__} reference without a name")
        try:
            obj = await self.api.get(kind, name, namespace=namespace)
        except ApiError as e:
            if e.status.code == 404 and optional:
                return None
            raise ConfigError(f"{kind.__name__.lower()} {name!r}: {e.status.message}") from e
        if isinstance(obj, Secret):
            return {
                k: base64.b64decode(v).decode(errors="surrogateescape") for k, v in (obj.data or {}).items()
            }
        return dict(obj.data or {})

    async def volume_data(
        self, kind: str, name: str | None, namespace: str, optional: bool | None
    ) -> dict[str, str] | None:
        """A ConfigMap's or Secret's data for a volume (container mode)."""
        return await self._get_data(ConfigMap if kind == "ConfigMap" else Secret, name, namespace, optional)

    async def _value_from(self, pod: Pod, source: EnvVarSource) -> str | None:
        ns = (pod.metadata or ObjectMeta()).namespace or ""
        if source.fieldRef:
            return field_ref(pod, source.fieldRef.fieldPath)
        for ref, kind in ((source.secretKeyRef, Secret), (source.configMapKeyRef, ConfigMap)):
            if ref is None:
                continue
            data = await self._get_data(kind, ref.name, ns, ref.optional)
            if data is None:
                return None
            if ref.key not in data:
                if ref.optional:
                    return None
                raise ConfigError(f"{kind.__name__.lower()} {ref.name!r} has no key {ref.key!r}")
            return data[ref.key]
        return None  # resourceFieldRef, fileKeyRef: not emulated (container_env says so)

    async def container_env(
        self, pod: Pod, container: Container, note: Callable[[str], None] = lambda _: None
    ) -> dict[str, str]:
        """The container's environment as the kubelet builds it: envFrom, then env in order.

        Variables from sources the runner does not emulate are left out and ``note``-d.
        """
        env: dict[str, str] = {}
        ns = (pod.metadata or ObjectMeta()).namespace or ""
        for source in container.envFrom or []:
            ref = source.configMapRef or source.secretRef
            kind = ConfigMap if source.configMapRef else Secret
            if ref is None:
                continue
            data = await self._get_data(kind, ref.name, ns, ref.optional)
            for k, v in (data or {}).items():
                if "=" not in k:
                    env[(source.prefix or "") + k] = v
        for var in container.env or []:
            value_from = var.valueFrom
            if value_from is None:
                env[var.name] = expand(var.value or "", env)
            elif value_from.resourceFieldRef or value_from.fileKeyRef:
                note(f"{var.name} left unset: resourceFieldRef/fileKeyRef are not emulated")
            elif (value := await self._value_from(pod, value_from)) is not None:
                env[var.name] = value
        return env

    async def runs_on_node(self, node: str) -> bool:
        if self.config.all_nodes:
            return True
        if node not in self._nodes:  # one lookup per node, however many pods wait for it
            self._nodes[node] = asyncio.create_task(self._is_kwok_node(node))
        try:
            return await self._nodes[node]
        except BaseException:
            self._nodes.pop(node, None)  # ask again next time
            raise

    async def _is_kwok_node(self, name: str) -> bool:
        key, value = KWOK_NODE_ANNOTATION
        node = await self.api.get(Node, name)
        kwok = ((node.metadata or ObjectMeta()).annotations or {}).get(key) == value
        if not kwok:
            self.log(f"node {name} is not a kwok node: its pods are left alone")
        return kwok

    def credentials(self, namespace: str, service_account: str, user: str) -> Credentials:
        key = (namespace, service_account)
        if key not in self._credentials:
            self._credentials[key] = Credentials(self, namespace, service_account)
        cred = self._credentials[key]
        cred.users.add(user)
        return cred

    def release(self, cred: Credentials, user: str) -> None:
        cred.users.discard(user)
        if not cred.users:
            cred.close()
            self._credentials.pop((cred.namespace, cred.service_account), None)

    def forget(self, pod: PodProcess) -> None:
        if self.pods.get(pod.uid) is pod:
            del self.pods[pod.uid]
            if pod.ports:
                self.publish_endpoints()

    def publish_endpoints(self) -> None:
        """Write the host ports of every running pod (see PORT_ENV_VARS), atomically."""
        endpoints = []
        targets = []
        for entry in sorted(self.pods.values(), key=lambda e: e.key):
            if not entry.ports:
                continue
            labels = dict(entry.pod.raw.metadata.labels or {}) if entry.pod.raw.metadata else {}
            endpoints.append(
                {"namespace": entry.namespace, "pod": entry.name, "labels": labels, "ports": entry.ports}
            )
            if "JOBQUEUE_METRICS_PORT" in entry.ports:
                targets.append(
                    {
                        "targets": [f"127.0.0.1:{entry.ports['JOBQUEUE_METRICS_PORT']}"],
                        "labels": {
                            "namespace": entry.namespace,
                            "pod": entry.name,
                            "component": labels.get("app.kubernetes.io/component", ""),
                        },
                    }
                )
        state = self.config.state_dir
        state.mkdir(parents=True, exist_ok=True)
        for name, data in (("endpoints.json", endpoints), ("prometheus-targets.json", targets)):
            tmp = state / f".{name}.tmp"
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(state / name)

    # -- watching

    def _on_event(self, kind: str, raw: Pod) -> None:
        pod = PodFacts.of(raw)
        entry = self.pods.get(pod.uid)
        if kind == "DELETED":
            if entry is not None:
                entry.vanish(pod)
        elif entry is not None:
            entry.update(pod)
        elif self._startable(pod):
            self.pods[pod.uid] = PodProcess(self, pod)

    def _startable(self, pod: PodFacts) -> bool:
        """A pod seen for the first time gets a process if it is scheduled and alive. One first
        seen terminating or in a terminal phase never does: after a runner restart that is a
        completed Job pod, and running it again would duplicate its work."""
        return (
            bool(pod.node)
            and not pod.deleting
            and pod.phase not in TERMINAL_PHASES
            and not self._shutdown.is_set()
        )

    async def _relist(self) -> str:
        """Bring ``pods`` in line with a fresh list; return the list's resourceVersion."""
        listing = self.api.list(
            Pod, namespace=self.config.namespace or ALL_NS, labels=self.labels or None, fields=self._fields
        )
        seen: set[str] = set()
        async for pod in listing:
            if await self._private(pod):
                continue
            uid = (pod.metadata or ObjectMeta()).uid or ""
            seen.add(uid)
            self._on_event("MODIFIED" if uid in self.pods else "ADDED", pod)
        for uid, entry in list(self.pods.items()):
            if uid not in seen and not entry.gone:
                entry.vanish(None)
        return listing.resourceVersion

    async def _private(self, pod: Pod) -> bool:
        """Whether ``pod`` is in a namespace with a runner of its own (and this one is not it)."""
        if self.config.namespace:
            return False
        namespace = (pod.metadata or ObjectMeta()).namespace or ""
        if namespace not in self._private_namespaces:
            try:
                labels = ((await self.api.get(Namespace, namespace)).metadata or ObjectMeta()).labels or {}
            except ApiError:  # gone already: its pods are going too
                labels = {}
            self._private_namespaces[namespace] = PRIVATE_NAMESPACE_LABEL in labels
        return self._private_namespaces[namespace]

    @property
    def _fields(self) -> FieldSelector:
        return {"spec.nodeName": operators.not_equal("")}  # unscheduled pods are of no interest

    async def watch(self, ready: Callable[[], None]) -> None:
        first, failures = True, 0
        while True:
            try:
                version = await self._relist()
                if first:
                    self.log(
                        f"watching pods ({self.config.selector or 'all pods'}) in "
                        f"{self.config.namespace or 'all namespaces'}; logs in {self.config.state_dir}"
                    )
                    ready()
                    first = False
                elif failures:
                    self.log(f"watching again after {failures} failed attempt(s)")
                failures = 0
                async for kind, pod in self.api.watch(
                    Pod,
                    namespace=self.config.namespace or ALL_NS,
                    labels=self.labels or None,
                    fields=self._fields,
                    resource_version=version,
                    server_timeout=WATCH_SERVER_TIMEOUT,
                ):
                    if not await self._private(pod):
                        self._on_event(kind, pod)
            except Exception as e:  # API server restarting, 410 Gone, a dropped connection
                if first:
                    raise
                if not failures:
                    self.log(f"watch interrupted ({e!r}): re-listing until the API server answers")
                low, high = WATCH_RETRY_SECONDS
                await asyncio.sleep(min(high, low * 2**failures))
                failures += 1

    # -- Services (container mode)

    def service_hosts(self, namespace: str) -> list[str]:
        return self.services.hosts(namespace) if self.services is not None else []

    def _backends(
        self, namespace: str, selector: Mapping[str, str], port: Mapping[str, Any]
    ) -> list[tuple[str, int]]:
        """The ready backends of a Service port: running pods of ``namespace`` it selects."""
        out: list[tuple[str, int]] = []
        for entry in self.pods.values():
            meta = entry.pod.raw.metadata or ObjectMeta()
            if entry.namespace != namespace or entry.state != "running" or entry.pod.container is None:
                continue
            if not services.selects(selector, meta.labels):
                continue
            target = services.target_port(port, entry.pod.container.to_dict())
            if target is not None:
                out.append(entry.address(target))
        return out

    def _refresh_hosts(self) -> None:
        for entry in self.pods.values():
            if entry.volumes is not None and self.containers is not None:
                entry.volumes.write_hosts(self.containers.service.ip, self.service_hosts(entry.namespace))

    async def watch_services(self) -> None:
        """Follow the Services (list, then watch; re-list after a failure) into :attr:`services`."""
        assert self.services is not None
        namespace = self.config.namespace or ALL_NS
        failures = 0
        while True:
            try:
                listing = self.api.list(Service, namespace=namespace)
                seen: set[tuple[str, str]] = set()
                changed = False
                async for svc in listing:
                    meta = svc.metadata or ObjectMeta()
                    seen.add((meta.namespace or "", meta.name or ""))
                    changed = await self.services.apply(svc.to_dict()) or changed
                if self.services.keep_only(seen) or changed:
                    self._refresh_hosts()
                failures = 0
                async for kind, svc in self.api.watch(
                    Service,
                    namespace=namespace,
                    resource_version=listing.resourceVersion,
                    server_timeout=WATCH_SERVER_TIMEOUT,
                ):
                    meta = svc.metadata or ObjectMeta()
                    if kind == "DELETED":
                        changed = self.services.remove(meta.namespace or "", meta.name or "")
                    else:
                        changed = await self.services.apply(svc.to_dict())
                    if changed:
                        self._refresh_hosts()
            except Exception as e:  # as the pod watch: re-list until the API server answers
                if not failures:
                    self.log(f"service watch interrupted ({e!r}): re-listing")
                low, high = WATCH_RETRY_SECONDS
                await asyncio.sleep(min(high, low * 2**failures))
                failures += 1

    async def run(self, ready: Callable[[], None] = lambda: None) -> None:
        """Run until :meth:`shutdown` is called, then stop every process."""
        background: list[asyncio.Task[None]] = []
        if self.containers is not None:
            await self.containers.service.start()
            background.append(asyncio.create_task(self.watch_services(), name="services"))
        watcher = asyncio.create_task(self.watch(ready), name="watch")
        stopping = asyncio.create_task(self._shutdown.wait())
        try:
            await asyncio.wait([watcher, stopping], return_when=asyncio.FIRST_COMPLETED)
            if watcher.done():
                watcher.result()  # the first list failed: report why
        finally:
            watcher.cancel()
            stopping.cancel()
            for task in background:
                task.cancel()
            await self._stop_all()
            if self.containers is not None:
                self.containers.service.close()
            if self.services is not None:
                self.services.close()
            await self.api.close()

    def shutdown(self, *, force: bool = False) -> None:
        """Stop watching and stop every process (``force``: SIGKILL at once)."""
        self._shutdown.set()
        if force:
            for entry in list(self.pods.values()):
                entry.stop(0, "runner shutdown")

    async def _stop_all(self) -> None:
        entries = list(self.pods.values())
        for entry in entries:
            # the pod's own grace period, not grace_seconds(): kwok's immediate second
            # deletion of a terminating pod reads as 0 and would SIGKILL a process that is
            # still finishing (stop() keeps an earlier deadline, e.g. a forced deletion's)
            own = entry.pod.termination_grace
            grace = float(own if own is not None else DEFAULT_GRACE_SECONDS)
            if self.config.shutdown_grace is not None:
                grace = min(grace, self.config.shutdown_grace)
            entry.stop(grace, "runner shutdown")
        if entries:
            await asyncio.gather(*(e.task for e in entries), return_exceptions=True)
        for cred in list(self._credentials.values()):
            cred.close()

    def snapshot(self) -> list[ProcessInfo]:
        return [entry.info() for entry in self.pods.values()]


# --------------------------------------------------------------------------------------
# Library entry points


class PodRunner:
    """The runner in a background thread of this process, e.g. for a pytest fixture::

        with podrunner.PodRunner(podrunner.Config(kubeconfig=path, namespace=ns)) as runner:
            ...  # pods created here run as local processes
            runner.snapshot()

    :meth:`start` returns once the initial list of pods is processed; :meth:`stop` (also
    at interpreter exit) stops every process, each within its pod's grace period.
    """

    def __init__(self, config: Config, *, log: TextIO | None = None) -> None:
        self.config = config
        self._log = log
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Runner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 60.0) -> PodRunner:
        self._thread = threading.Thread(target=self._main, name="podrunner", daemon=True)
        self._thread.start()
        self._ready.wait(timeout)
        if self._error is not None:
            raise RuntimeError(f"pod runner failed to start: {self._error!r}") from self._error
        if not self._ready.is_set():
            self.stop()
            raise TimeoutError(f"pod runner not watching after {timeout:.0f}s")
        atexit.register(self.stop)
        return self

    def _main(self) -> None:
        async def body() -> None:
            self._loop = asyncio.get_running_loop()
            self._runner = Runner(self.config, log=self._log)
            await self._runner.run(ready=self._ready.set)

        try:
            asyncio.run(body())
        except BaseException as e:  # reported by start(); a thread must not raise
            self._error = e
        finally:
            self._ready.set()

    def stop(self, *, force: bool = False) -> None:
        """Stop every process and the watch; returns when all processes are gone."""
        atexit.unregister(self.stop)
        thread, loop, runner = self._thread, self._loop, self._runner
        if thread is None or not thread.is_alive() or loop is None or runner is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop may have just closed
            loop.call_soon_threadsafe(lambda: runner.shutdown(force=force))
        thread.join()

    def snapshot(self) -> list[ProcessInfo]:
        """Every selected pod the runner knows, with its process state."""
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return []

        async def take() -> list[ProcessInfo]:
            return runner.snapshot()

        return asyncio.run_coroutine_threadsafe(take(), loop).result(10)

    def __enter__(self) -> PodRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn(config: Config, *, log_file: Path | None = None, timeout: float = 60.0) -> subprocess.Popen[bytes]:
    """The runner as a subprocess (the CLI), returned once it is watching.

    Stop it with ``proc.send_signal(signal.SIGTERM)`` (graceful) and ``proc.wait()``.
    """
    ready = Path(tempfile.mkdtemp(prefix="podrunner-")) / "ready"
    out = open(log_file, "ab") if log_file else None  # noqa: SIM115 (the child keeps it)
    try:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *cli_args(config), "--ready-file", str(ready)],
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
        )
    finally:
        if out:
            out.close()
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"pod runner exited with {proc.returncode} before watching")
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"pod runner not watching after {timeout:.0f}s")
        time.sleep(0.05)
    ready.unlink()
    ready.parent.rmdir()
    return proc


@atexit.register
def _kill_leftovers() -> None:
    """Backstop at interpreter exit: SIGKILL the groups of children never seen to exit."""
    with _LIVE_GROUPS_LOCK:
        groups = list(_LIVE_GROUPS)
        kills = list(_LIVE_CONTAINERS.values())
    for kill in kills:
        kill()
    for pgid in groups:
        _killpg(pgid, signal.SIGKILL)


# --------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str]) -> tuple[Config, Path | None]:
    p = argparse.ArgumentParser(
        prog="hack/podrunner.py", description="Run the dev cluster's pods as local processes."
    )
    p.add_argument(
        "--kubeconfig",
        type=Path,
        default=os.environ.get("KUBECONFIG"),
        help="the cluster (default: $KUBECONFIG)",
    )
    p.add_argument(
        "--selector",
        "-l",
        default=DEFAULT_SELECTOR,
        help=f"label selector of the pods to run (default: {DEFAULT_SELECTOR}; '' for all)",
    )
    p.add_argument("--namespace", "-n", help="only this namespace (default: all)")
    p.add_argument(
        "--pythonpath",
        type=Path,
        action="append",
        default=[],
        help="prepend to the processes' PYTHONPATH (repeatable)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra base environment (repeatable; the pod's own env wins)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="pod logs <dir>/<namespace>/<pod>.log, credentials <dir>/.credentials",
    )
    p.add_argument("--workdir", type=Path, default=ROOT, help="the processes' working directory")
    p.add_argument("--venv", type=Path, default=ROOT / ".venv", help="its bin/ goes first on PATH")
    p.add_argument(
        "--backoff-initial", type=float, default=BACKOFF_INITIAL, help="crash-loop backoff start (s)"
    )
    p.add_argument("--backoff-max", type=float, default=BACKOFF_MAX, help="crash-loop backoff cap (s)")
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=None,
        help="cap on the grace period given to processes when the runner stops",
    )
    p.add_argument("--all-nodes", action="store_true", help="also run pods on nodes that are not kwok's")
    p.add_argument("--token-seconds", type=int, default=TOKEN_SECONDS, help="service-account token lifetime")
    p.add_argument(
        "--token-refresh",
        type=float,
        default=TOKEN_REFRESH_FRACTION,
        help="replace a token after this fraction of its lifetime",
    )
    p.add_argument(
        "--mode",
        choices=("auto", "container", "process"),
        default="auto",
        help="container: pods run from their images under runc; process: their commands run "
        "on the host; auto (default): container where runc works here",
    )
    p.add_argument(
        "--images",
        type=Path,
        default=images.DEFAULT_STORE,
        help="the images container mode runs (make image builds them)",
    )
    p.add_argument("--ready-file", type=Path, help="create this file once the initial pods are handled")
    a = p.parse_args(argv)
    if not a.kubeconfig:
        p.error("--kubeconfig (or $KUBECONFIG) is required")
    extra = dict(kv.split("=", 1) for kv in a.env)
    parse_selector(a.selector)  # fail early on a typo
    config = Config(
        kubeconfig=a.kubeconfig.resolve(),
        selector=a.selector,
        namespace=a.namespace,
        pythonpath=tuple(p.resolve() for p in a.pythonpath),
        extra_env=extra,
        state_dir=a.state_dir.resolve(),
        workdir=a.workdir.resolve(),
        venv=a.venv.resolve(),
        backoff_initial=a.backoff_initial,
        backoff_max=a.backoff_max,
        shutdown_grace=a.shutdown_grace,
        all_nodes=a.all_nodes,
        token_seconds=a.token_seconds,
        token_refresh=a.token_refresh,
        mode=a.mode,
        images=a.images.resolve(),
    )
    return config, a.ready_file


async def _main(config: Config, ready_file: Path | None) -> None:
    runner = Runner(config)
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        force = signals > 1
        runner.log(
            f"{signal.Signals(signum).name}: stopping every process"
            + (" now (SIGKILL)" if force else " (again to SIGKILL at once)")
        )
        runner.shutdown(force=force)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig)
    await runner.run(ready=lambda: ready_file.touch() if ready_file else None)
    runner.log("stopped")


def main(argv: Iterable[str] | None = None) -> None:
    config, ready_file = parse_args(list(sys.argv[1:] if argv is None else argv))
    asyncio.run(_main(config, ready_file))


if __name__ == "__main__":
    main()
