"""The pod runner's container mode: each pod's container runs from its image under runc.

``hack/podrunner.py`` decides *when* a pod's container starts, stops and restarts; this
module decides *what* starts: an OCI bundle per container start, run in the foreground by
``runc run``, so the runner supervises the runc process exactly as it supervises a plain
process (SIGTERM is forwarded by runc to the container's PID 1; nothing is forwarded
to the rest, as with CRI's StopContainer).

* **Image**: the pod's ``image`` reference is looked up among the images built here
  (``make image``: ``hack/images.py``'s store). An unknown reference fails like an image pull
  (:class:`ImageError`: the pod waits, a ``Failed`` Event names the images there are).
* **Root filesystem**: an overlay mount per container start — the image's unpacked root
  filesystem below, a fresh writable layer above (a restarted container starts clean, as on
  a node); ``readOnlyRootFilesystem`` makes runc mount it read-only.
* **Volumes** (per pod, kept across container restarts, removed with the pod): ``emptyDir``
  (a directory, or a tmpfs for ``medium: Memory``), ``configMap``, ``secret``, ``downwardAPI``,
  ``projected`` (service-account token, ConfigMaps, Secrets, downward API) and ``hostPath``;
  the token is the runner's TokenRequest token of the pod's ServiceAccount, rewritten in place
  when refreshed. ``/etc/resolv.conf`` is the host's (host network); ``/etc/hosts`` is written
  per pod, as the kubelet writes it.
* **In-cluster API access** both ways clients find it: ``KUBERNETES_SERVICE_HOST``/``_PORT``
  name the API server's real address (127.0.0.1: its certificate's IP), and the name
  ``kubernetes.default.svc`` (what kopf's service-account login dials, port 443) resolves — in
  the pod's /etc/hosts, standing in for cluster DNS — to a loopback address of this runner's
  own, where :class:`ServiceProxy` forwards port 443 to the API server, as the ``kubernetes``
  Service's virtual IP does (the certificate names ``kubernetes.default.svc``).
* **Cleanup**: bundles live under :data:`RUNC_ROOT`, named after the runner's pid; a runner
  that starts reaps what a runner that is gone (SIGKILLed) left: containers, mounts, bundles.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import json
import os
import random
import re
import resource
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import images
import podrunner_oci as oci

RUNC_ROOT = Path(os.environ.get("JOBQUEUE_RUNC_ROOT", "/run/jobqueue-podrunner"))
"""runc's state (``state/``) and the bundles (``bundles/<id>``), machine-wide so that any
runner can reap what a dead one left."""

CGROUP_PARENT = "jobqueue-podrunner"
"""Containers' cgroups: ``<the runner's cgroup>/jobqueue-podrunner/<container id>``, per controller."""

_ID = re.compile(r"^jq(\d+)-")
_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)

#: how a volume source reads the API: (kind, name, namespace, optional) -> data or None
DataSource = Callable[[str, "str | None", str, "bool | None"], Awaitable["dict[str, str] | None"]]
#: writes the pod's service-account token to a path with a mode, and keeps it fresh there
TokenSink = Callable[[Path, int], Awaitable[None]]


class ImageError(oci.ContainerConfigError):
    """The pod's image is not among the images built here (the analogue of ``ErrImagePull``)."""


def problem() -> str | None:
    """Why the container mode cannot work on this machine, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (runc, overlay mounts and cgroups are not set up for rootless use here)"
    if shutil.which("runc") is None:
        return "runc is not installed (hack/system-deps.sh installs it)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlay filesystem"
    return None


@dataclass
class Launch:
    """How to start one run of a pod's container, and how to end and clean up after it."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    #: what to do when the grace period is over (besides SIGKILL to the process group)
    kill: Callable[[], None] = lambda: None
    #: after the process has exited
    cleanup: Callable[[], None] = lambda: None
    description: str = ""
    #: container mode: the runc container id
    container: str | None = None


# --------------------------------------------------------------------------------------
# Volumes


class PodVolumes:
    """The volumes of one pod on the host: ``<state dir>/.volumes/<namespace>/<pod uid>/<volume>``."""

    def __init__(self, root: Path, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        self.pod = pod
        self.dir = root / meta.get("namespace", "") / meta.get("uid", "")
        self.namespace = meta.get("namespace", "")
        self.pod_ip = ""
        #: the kubelet gives the pod's volumes to this group (``securityContext.fsGroup``)
        self.fs_group: int | None = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")

    async def prepare(
        self,
        data: DataSource,
        token: TokenSink,
        field_ref: Callable[[str], str],
        service_ip: str,
        services: Sequence[str] = (),
    ) -> None:
        """Write every volume of the pod (again: ConfigMaps and Secrets are re-read on each start)
        and the /etc files the kubelet manages."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            await self._volume(volume, data, token, field_ref)
        name = (self.pod.get("metadata") or {}).get("name", "")
        (self.dir / ".etc-hostname").write_text(f"{name}\n")
        self.pod_ip = field_ref("status.podIP")
        self.write_hosts(service_ip, services)

    def write_hosts(self, service_ip: str, services: Sequence[str]) -> None:
        """(Re)write the pod's /etc/hosts in place: a running container's bind mount keeps
        the file's inode, so a new file renamed over it would go unseen."""
        path = self.dir / ".etc-hosts"
        if not self.dir.is_dir():  # the pod is gone
            return
        name = (self.pod.get("metadata") or {}).get("name", "")
        with open(path, "r+" if path.exists() else "w") as f:
            f.write(hosts_file(name, self.pod_ip, service_ip, services))
            f.truncate()

    async def _volume(
        self, volume: Mapping[str, Any], data: DataSource, token: TokenSink, field_ref: Callable[[str], str]
    ) -> None:
        name = volume["name"]
        target = self.dir / name
        if "emptyDir" in volume:
            if not target.exists():
                target.mkdir()
                target.chmod(0o777)  # the kubelet's mode: any uid of the pod may write
                self._own(target)
            return
        if "hostPath" in volume:
            return
        target.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume or "secret" in volume:
            kind = "ConfigMap" if "configMap" in volume else "Secret"
            src = volume.get("configMap") or volume.get("secret") or {}
            mode = src.get("defaultMode", 0o644)
            files = await self._keys(kind, src.get("name") or src.get("secretName"), src, data, mode)
        elif "downwardAPI" in volume:
            src = volume["downwardAPI"]
            files = self._fields(src.get("items") or [], field_ref, src.get("defaultMode", 0o644))
        elif "projected" in volume:
            files = await self._projected(
                name, volume["projected"], target, data=data, token=token, field_ref=field_ref
            )
        else:
            kinds = ", ".join(sorted(k for k in volume if k != "name"))
            raise oci.ContainerConfigError(
                f"volume {name!r}: {kinds} volumes are not supported by the pod "
                "runner (emptyDir, configMap, secret, downwardAPI, projected and "
                "hostPath are)"
            )
        for rel, (content, file_mode) in files.items():
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(content)
            tmp.chmod(file_mode)
            self._own(tmp)
            tmp.replace(path)

    def _own(self, path: Path) -> None:
        if self.fs_group is not None:
            os.chown(path, -1, self.fs_group)

    async def _projected(
        self,
        name: str,
        src: Mapping[str, Any],
        target: Path,
        *,
        data: DataSource,
        token: TokenSink,
        field_ref: Callable[[str], str],
    ) -> dict[str, tuple[bytes, int]]:
        mode = src.get("defaultMode", 0o644)
        files: dict[str, tuple[bytes, int]] = {}
        for source in src.get("sources") or []:
            if "serviceAccountToken" in source:
                await token(target / source["serviceAccountToken"]["path"], mode)
            elif "configMap" in source or "secret" in source:
                kind = "ConfigMap" if "configMap" in source else "Secret"
                ref = source.get("configMap") or source.get("secret") or {}
                files.update(await self._keys(kind, ref.get("name"), ref, data, mode))
            elif "downwardAPI" in source:
                files.update(self._fields(source["downwardAPI"].get("items") or [], field_ref, mode))
            else:
                raise oci.ContainerConfigError(
                    f"volume {name!r}: projected source {sorted(source)} is not supported by the pod runner"
                )
        return files

    async def _keys(
        self, kind: str, name: str | None, src: Mapping[str, Any], data: DataSource, mode: int
    ) -> dict[str, tuple[bytes, int]]:
        values = await data(kind, name, self.namespace, src.get("optional"))
        if values is None:
            return {}
        items = src.get("items")
        if not items:
            return {k: (v.encode(errors="surrogateescape"), mode) for k, v in values.items()}
        out: dict[str, tuple[bytes, int]] = {}
        for item in items:
            if item["key"] not in values:
                if src.get("optional"):
                    continue
                raise oci.ContainerConfigError(f"{kind.lower()} {name!r} has no key {item['key']!r}")
            out[item["path"]] = (values[item["key"]].encode(errors="surrogateescape"), item.get("mode", mode))
        return out

    @staticmethod
    def _fields(
        items: list[Mapping[str, Any]], field_ref: Callable[[str], str], mode: int
    ) -> dict[str, tuple[bytes, int]]:
        out: dict[str, tuple[bytes, int]] = {}
        for item in items:
            if "fieldRef" not in item:
                raise oci.ContainerConfigError(
                    f"downward API file {item.get('path')!r}: only fieldRef is supported by the pod runner"
                )
            out[item["path"]] = (field_ref(item["fieldRef"]["fieldPath"]).encode(), item.get("mode", mode))
        return out

    def mounts(self, container: Mapping[str, Any]) -> list[oci.Mount]:
        """The container's ``volumeMounts`` as bind mounts (or tmpfs), then the files the kubelet
        manages (/etc/hosts, /etc/hostname, /etc/resolv.conf)."""
        volumes = {v["name"]: v for v in (self.pod.get("spec") or {}).get("volumes") or []}
        out: list[oci.Mount] = []
        for vm in container.get("volumeMounts") or []:
            volume = volumes.get(vm["name"])
            if volume is None:
                raise oci.ContainerConfigError(f"volumeMount {vm['name']!r}: the pod has no such volume")
            read_only = bool(vm.get("readOnly"))
            empty = volume.get("emptyDir")
            if empty is not None and empty.get("medium") == "Memory":
                size = oci.quantity(empty["sizeLimit"]) if empty.get("sizeLimit") else None
                out.append(oci.Mount(vm["mountPath"], size=int(size) if size else None))
                continue
            if "hostPath" in volume:
                source = Path(volume["hostPath"]["path"])
            else:
                source = self.dir / vm["name"]
                # the kubelet mounts these read-only, whatever the mount says
                read_only = read_only or not ({"emptyDir"} & set(volume))
            if vm.get("subPath"):
                source = source / vm["subPath"]
                if not source.exists():
                    source.mkdir(parents=True)
            out.append(oci.Mount(vm["mountPath"], str(source), read_only))
        for etc, host in (
            ("/etc/hosts", str(self.dir / ".etc-hosts")),
            ("/etc/resolv.conf", "/etc/resolv.conf"),
            ("/etc/hostname", str(self.dir / ".etc-hostname")),
        ):
            if Path(host).exists():
                out.append(oci.Mount(etc, host, read_only=True))
        return out

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def hosts_file(pod_name: str, pod_ip: str, service_ip: str, services: Sequence[str] = ()) -> str:
    """The pod's /etc/hosts: the kubelet's lines, and the API server's Service names (what
    cluster DNS would answer) at the runner's stand-in for the Service's virtual IP; then
    ``services``, the lines of the other Services (podrunner_services)."""
    names = " ".join(
        f"kubernetes{suffix}" for suffix in ("", ".default", ".default.svc", ".default.svc.cluster.local")
    )
    lines = [
        "# Kubernetes-managed hosts file (the pod runner's).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    if pod_ip:
        lines.append(f"{pod_ip}\t{pod_name}")
    lines.append(f"{service_ip}\t{names}")
    lines.extend(services)
    return "\n".join(lines) + "\n"


class ServiceProxy:
    """The ``kubernetes`` Service's virtual IP, port 443, forwarding to the API server.

    The address is a loopback address of this runner's own, drawn from 127.64.0.0/10 until one
    is free, so the runners of several clusters on one machine (or in one test process) never
    share one."""

    def __init__(self, api_host: str, api_port: int) -> None:
        self.ip = ""  # set by start()
        self.api = (api_host, api_port)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.ip, (self._server,) = await listen_on_loopback(
            lambda _port: self._forward, [443], "the kubernetes Service"
        )

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.api)
        except OSError:
            writer.close()
            return
        await splice(reader, writer, up_reader, up_writer)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def listen_on_loopback(
    handler: Callable[[int], Handler], ports: Sequence[int], what: str
) -> tuple[str, list[asyncio.Server]]:
    """Listen on ``ports`` of one loopback address of this runner's own (a Service's virtual
    IP), drawn from 127.64.0.0/10 until one has every port free, so the runners of several
    clusters on one machine (or in one test process) never share one. ``handler(port)``
    serves the connections to ``port``."""
    rng = random.Random()
    for _ in range(50):
        ip = f"127.{rng.randrange(64, 128)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        servers: list[asyncio.Server] = []
        try:
            for port in ports:
                servers.append(await asyncio.start_server(handler(port), ip, port))
        except OSError as e:
            for server in servers:
                server.close()
            if e.errno != errno.EADDRINUSE:
                raise
            continue
        return ip, servers
    raise OSError(errno.EADDRINUSE, f"no free address for {what} in 127.64.0.0/10")


async def splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways between a client and its upstream until both sides are done."""
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


# --------------------------------------------------------------------------------------
# Bundles and runc


class Runtime:
    """runc for one runner: images from ``store``, bundles and state under :data:`RUNC_ROOT`."""

    def __init__(self, store: images.Store, api_server: str, log: Callable[[str], None]) -> None:
        self.store = store
        self.log = log
        self.state = RUNC_ROOT / "state"
        self.bundles = RUNC_ROOT / "bundles"
        host, _, port = api_server.removeprefix("https://").removeprefix("http://").partition(":")
        self.service = ServiceProxy(host.strip("[]"), int(port or 443))
        self.service_env = {
            "KUBERNETES_SERVICE_HOST": host.strip("[]"),
            "KUBERNETES_SERVICE_PORT": port or "443",
            "KUBERNETES_SERVICE_PORT_HTTPS": port or "443",
            "KUBERNETES_PORT": f"tcp://{host}:{port or 443}",
        }
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)

    def runc(self, *args: str) -> list[str]:
        return ["runc", "--root", str(self.state), *args]

    def image(self, ref: str) -> images.StoredImage:
        stored = self.store.lookup(ref)
        if stored is None:
            known = ", ".join(self.store.refs()) or "none: run `make image`"
            raise ImageError(
                f'Failed to pull image "{ref}": not built on this machine (images here: {known})'
            )
        return stored

    def launch(
        self,
        container_id: str,
        *,
        pod: Mapping[str, Any],
        container: Mapping[str, Any],
        command: list[str] | None,
        args: list[str] | None,
        pod_env: Mapping[str, str],
        base_env: Mapping[str, str],
        volumes: PodVolumes,
    ) -> Launch:
        """Prepare the bundle of one run of ``container``; the Launch runs it with ``runc run``."""
        stored = self.image(container.get("image") or "")
        config = stored.config()
        security = oci.Security.of(
            (pod.get("spec") or {}).get("securityContext"), container.get("securityContext")
        )
        rootfs = stored.rootfs
        spec = oci.Container(
            argv=oci.argv(command, args, config),
            env=oci.merged_env(config.get("Env") or [], {**self.service_env, **base_env}, pod_env),
            user=oci.user(
                security, config.get("User") or "", _read(rootfs / "etc/passwd"), _read(rootfs / "etc/group")
            ),
            security=security,
            hostname=(pod.get("metadata") or {}).get("name", ""),
            cwd=container.get("workingDir") or config.get("WorkingDir") or "/",
            mounts=volumes.mounts(container),
            limits=(container.get("resources") or {}).get("limits") or {},
            cgroup=f"{CGROUP_PARENT}/{container_id}",
            nofile=self.nofile,
            annotations={
                "io.kubernetes.pod.uid": (pod.get("metadata") or {}).get("uid", ""),
                "org.opencontainers.image.ref.name": stored.ref,
                "io.jobqueue.podrunner.image.digest": stored.digest,
            },
        )
        runtime_config = oci.runtime_config(spec)  # before any mount: a config error leaves nothing behind
        bundle = self.bundles / container_id
        self._mount(bundle, rootfs)
        (bundle / "config.json").write_text(json.dumps(runtime_config, indent=1))
        return Launch(
            argv=self.runc("run", "--bundle", str(bundle), container_id),
            env=_runc_env(),
            cwd=bundle,
            kill=lambda: self._kill(container_id),
            cleanup=lambda: self._remove(container_id),
            container=container_id,
            description=f"{stored.ref} ({stored.digest[:19]}) as uid {spec.user['uid']}: "
            f"{' '.join(spec.argv)}",
        )

    def _mount(self, bundle: Path, lower: Path) -> None:
        """The container's root: the image below, a fresh writable layer above (overlayfs)."""
        with contextlib.suppress(FileNotFoundError):
            self._unmount(bundle)
            shutil.rmtree(bundle)
        for d in ("rootfs", "upper", "work"):
            (bundle / d).mkdir(parents=True)
        options = f"lowerdir={lower},upperdir={bundle / 'upper'},workdir={bundle / 'work'}"
        if _libc.mount(b"overlay", str(bundle / "rootfs").encode(), b"overlay", 0, options.encode()) != 0:
            err = ctypes.get_errno()
            shutil.rmtree(bundle, ignore_errors=True)
            raise oci.ContainerConfigError(
                f"cannot mount the container's root filesystem (overlay): {os.strerror(err)}"
            )

    @staticmethod
    def _unmount(bundle: Path) -> None:
        _libc.umount2(str(bundle / "rootfs").encode(), _MNT_DETACH)

    def _kill(self, container_id: str) -> None:
        """SIGKILL the container's PID 1: the kernel then kills the rest of its pid namespace."""
        subprocess.run(self.runc("kill", container_id, "KILL"), capture_output=True, check=False)

    def _remove(self, container_id: str) -> None:
        subprocess.run(self.runc("delete", "--force", container_id), capture_output=True, check=False)
        bundle = self.bundles / container_id
        self._unmount(bundle)
        shutil.rmtree(bundle, ignore_errors=True)

    def reap(self) -> list[str]:
        """Remove the containers, mounts and bundles of runners that are gone; their ids."""
        reaped: list[str] = []
        ids = set(list_containers(self.state.parent)) | {p.name for p in self.bundles.glob("jq*")}
        for container_id in sorted(ids):
            m = _ID.match(container_id)
            if m and not Path(f"/proc/{m[1]}").exists():  # its runner is gone
                self._kill(container_id)
                self._remove(container_id)
                reaped.append(container_id)
        return reaped


def list_containers(root: Path = RUNC_ROOT) -> list[str]:
    """The ids of the containers runc knows under ``root`` (running or not)."""
    listed = subprocess.run(
        ["runc", "--root", str(root / "state"), "list", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    return listed.stdout.split()


def init_pid(container_id: str, root: Path = RUNC_ROOT) -> int | None:
    """The host pid of a running container's PID 1 (``/proc/<pid>`` shows its uid, mounts, root)."""
    state = subprocess.run(
        ["runc", "--root", str(root / "state"), "state", container_id],
        capture_output=True,
        text=True,
        check=False,
    )
    if state.returncode != 0:
        return None
    pid: int = json.loads(state.stdout).get("pid") or 0
    return pid or None


def exec_argv(container_id: str, argv: Sequence[str], root: Path = RUNC_ROOT) -> list[str]:
    """The command that runs ``argv`` in a running container, as ``kubectl exec`` would (the
    dev cluster has no kubelet to serve it): ``runc exec`` starts it with the container's own
    environment, user, capabilities and root filesystem."""
    return ["runc", "--root", str(root / "state"), "exec", container_id, *argv]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _runc_env() -> dict[str, str]:
    """runc's own environment (not the container's: that is in config.json)."""
    return {"PATH": os.environ.get("PATH", oci.DEFAULT_PATH)}


def container_id(runner_pid: int, pod_uid: str, start: int) -> str:
    """``jq<runner pid>-<pod uid>-<start>``: unique per run, and names its owner for :meth:`Runtime.reap`."""
    return f"jq{runner_pid}-{pod_uid}-{start}"
