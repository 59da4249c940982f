"""A pod's container as an OCI runtime configuration (``config.json``): pure, no I/O.

The pod runner's container mode (``podrunner_containers``) hands what this module builds to
runc. Each rule below is the kubelet's (and containerd's, for what Kubernetes leaves to the
runtime), so a container that would fail on a real node fails here the same way:

* **Command**: ``command`` replaces the image's ENTRYPOINT and drops its CMD; ``args`` alone
  replaces CMD; neither: ENTRYPOINT + CMD.
* **User**: ``runAsUser``/``runAsGroup`` (the container's over the pod's) over the image's
  USER; ``runAsNonRoot`` refuses uid 0 — and a non-numeric image user it cannot check — with
  the kubelet's message (``CreateContainerConfigError``).
* **Capabilities**: containerd's default set, minus ``drop`` (``ALL`` empties it), plus
  ``add``; ``allowPrivilegeEscalation: false`` sets ``noNewPrivileges``. A non-root process
  keeps none of them across exec, as on a node.
* **Root filesystem** read-only with ``readOnlyRootFilesystem``.
* **seccomp**: ``RuntimeDefault`` is a deny-list of the syscalls Docker's and containerd's
  default profiles refuse a container without ``CAP_SYS_ADMIN`` (mount, unshare, setns,
  ptrace, bpf, kexec, module loading, keyctl, …): EPERM. Approximate (those profiles are
  allow-lists with argument filters); ``Unconfined`` or no profile: none; ``Localhost``
  profiles are refused as unsupported.
* **Resources**: ``limits.memory`` and ``limits.cpu`` become the cgroup's memory limit and CFS
  quota (100 ms period), as the kubelet sets them; requests only order scheduling and are
  not enforced by a node either.
* **Namespaces**: pid, ipc, uts (hostname = pod name), mount, cgroup — not network: pods share
  the host's loopback, as in the process mode.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""containerd's PATH for an image that sets none."""

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
"""containerd's default capability set for a container (what ``drop``/``add`` start from)."""

RUNTIME_DEFAULT_DENIED = (
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
)
"""What ``RuntimeDefault`` refuses (EPERM): the syscalls that Docker's and containerd's
default profiles allow only with CAP_SYS_ADMIN or never."""

CFS_PERIOD_US = 100_000
MIN_CFS_QUOTA_US = 1_000
"""The kubelet's CFS period and the smallest quota it sets (1 ms)."""

MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
"""containerd's (and runc's example's) masked and read-only paths."""


class ContainerConfigError(Exception):
    """The container cannot be created as specified (the kubelet's ``CreateContainerConfigError``)."""


# --------------------------------------------------------------------------------------
# Quantities


_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX = {
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    None: Decimal(1),
}


def quantity(text: str | int | float) -> Decimal:
    """A Kubernetes resource quantity (``128Mi``, ``500m``, ``1.5``, ``1e3``) as a number."""
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise ContainerConfigError(f"invalid resource quantity {text!r}")
    try:
        return Decimal(m[1]) * _SUFFIX[m[2]]
    except InvalidOperation as e:
        raise ContainerConfigError(f"invalid resource quantity {text!r}") from e


def resources(limits: Mapping[str, Any] | None) -> dict[str, Any]:
    """``linux.resources`` for a container's ``resources.limits``."""
    out: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    limits = limits or {}
    if "memory" in limits:
        out["memory"] = {"limit": math.ceil(quantity(limits["memory"]))}
    if "cpu" in limits:
        quota = max(MIN_CFS_QUOTA_US, math.ceil(quantity(limits["cpu"]) * CFS_PERIOD_US))
        out["cpu"] = {"quota": quota, "period": CFS_PERIOD_US}
    return out


# --------------------------------------------------------------------------------------
# Command, user, security


def argv(command: Sequence[str] | None, args: Sequence[str] | None, image: Mapping[str, Any]) -> list[str]:
    """The process's argv from the container's (already ``$(VAR)``-expanded) command and args
    and the image's ENTRYPOINT and CMD, by Kubernetes' rules."""
    entrypoint = list(image.get("Entrypoint") or [])
    cmd = list(image.get("Cmd") or [])
    if command:
        result = [*command, *(args or [])]
    elif args:
        result = [*entrypoint, *args]
    else:
        result = [*entrypoint, *cmd]
    if not result:
        raise ContainerConfigError(
            "no command specified: the container has no command and the image no ENTRYPOINT or CMD"
        )
    return result


def merged_env(image_env: Sequence[str], base: Mapping[str, str], pod: Mapping[str, str]) -> list[str]:
    """The process environment: the image's ENV, then ``base`` (HOSTNAME, service variables),
    then the container's own env; later wins. PATH defaults to containerd's."""
    env: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        env[key] = value
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(base)
    env.update(pod)
    return [f"{k}={v}" for k, v in env.items()]


@dataclass(frozen=True)
class Security:
    """The effective security settings of one container (container over pod context)."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool = False
    read_only_root: bool = False
    allow_privilege_escalation: bool = True
    privileged: bool = False
    drop: tuple[str, ...] = ()
    add: tuple[str, ...] = ()
    seccomp: str | None = None  # RuntimeDefault | Unconfined | Localhost | None
    supplemental_groups: tuple[int, ...] = ()
    fs_group: int | None = None

    @classmethod
    def of(
        cls, pod_context: Mapping[str, Any] | None, container_context: Mapping[str, Any] | None
    ) -> Security:
        """From the pod's and the container's ``securityContext`` (as plain dicts)."""
        pod = pod_context or {}
        ctr = container_context or {}

        def pick(key: str) -> Any:
            return ctr[key] if ctr.get(key) is not None else pod.get(key)

        caps = ctr.get("capabilities") or {}
        profile = pick("seccompProfile") or {}
        return cls(
            run_as_user=pick("runAsUser"),
            run_as_group=pick("runAsGroup"),
            run_as_non_root=bool(pick("runAsNonRoot")),
            read_only_root=bool(ctr.get("readOnlyRootFilesystem")),
            allow_privilege_escalation=ctr.get("allowPrivilegeEscalation") is not False,
            privileged=bool(ctr.get("privileged")),
            drop=tuple(caps.get("drop") or ()),
            add=tuple(caps.get("add") or ()),
            seccomp=profile.get("type"),
            supplemental_groups=tuple(pod.get("supplementalGroups") or ()),
            fs_group=pod.get("fsGroup"),
        )


def user(security: Security, image_user: str, passwd: str = "", group: str = "") -> dict[str, Any]:
    """``process.user``: uid and gid by Kubernetes' precedence over the image's USER (names
    resolved in the image's /etc/passwd and /etc/group), extra gids from the pod."""
    name, _, group_name = (image_user or "").partition(":")
    uid: int | None = security.run_as_user
    gid: int | None = security.run_as_group
    if uid is None and name:
        uid = _lookup(name, passwd, 2)
        if uid is None:
            if security.run_as_non_root:
                raise ContainerConfigError(
                    f"container has runAsNonRoot and image has non-numeric user "
                    f"({name}), cannot verify user is non-root"
                )
            raise ContainerConfigError(f"unable to find user {name}: no matching entries in passwd file")
    uid = uid or 0
    if gid is None and group_name:
        gid = _lookup(group_name, group, 2)
        if gid is None:
            raise ContainerConfigError(
                f"unable to find group {group_name}: no matching entries in group file"
            )
    if gid is None:  # the user's primary group, else 0 (containerd's rule)
        gid = next((int(f[3]) for f in _entries(passwd) if len(f) > 3 and f[2] == str(uid)), 0)
    if security.run_as_non_root and uid == 0:
        raise ContainerConfigError("container has runAsNonRoot and image will run as root")
    groups = {*security.supplemental_groups}
    if security.fs_group is not None:
        groups.add(security.fs_group)
    extra = sorted(groups - {gid})
    out: dict[str, Any] = {"uid": uid, "gid": gid}
    if extra:
        out["additionalGids"] = extra
    return out


def _entries(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _lookup(name: str, table: str, column: int) -> int | None:
    if name.isdigit():
        return int(name)
    return next((int(f[column]) for f in _entries(table) if f[0] == name and len(f) > column), None)


def capabilities(security: Security) -> dict[str, list[str]]:
    if security.privileged:
        raise ContainerConfigError("privileged containers are not run by the pod runner")
    drop = {c.upper().removeprefix("CAP_") for c in security.drop}
    caps = [] if "ALL" in drop else [c for c in DEFAULT_CAPABILITIES if c.removeprefix("CAP_") not in drop]
    caps += [
        f"CAP_{c.upper().removeprefix('CAP_')}"
        for c in security.add
        if f"CAP_{c.upper().removeprefix('CAP_')}" not in caps
    ]
    return {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []}


def seccomp(profile: str | None) -> dict[str, Any] | None:
    if profile in (None, "Unconfined"):
        return None
    if profile == "RuntimeDefault":
        return {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": list(RUNTIME_DEFAULT_DENIED), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
        }
    raise ContainerConfigError(
        f"seccompProfile type {profile!r} is not supported by the pod runner "
        "(RuntimeDefault and Unconfined are)"
    )


# --------------------------------------------------------------------------------------
# The whole configuration


@dataclass(frozen=True)
class Mount:
    """A bind mount of a host path (or a tmpfs when ``source`` is empty) into the container."""

    destination: str
    source: str = ""
    read_only: bool = False
    #: tmpfs size in bytes (``emptyDir.medium: Memory`` with a ``sizeLimit``)
    size: int | None = None

    def spec(self) -> dict[str, Any]:
        if not self.source:
            options = ["nosuid", "nodev", "mode=1777", *([f"size={self.size}"] if self.size else [])]
            return {"destination": self.destination, "type": "tmpfs", "source": "tmpfs", "options": options}
        options = ["rbind", "rprivate", "ro" if self.read_only else "rw"]
        return {"destination": self.destination, "type": "bind", "source": self.source, "options": options}


@dataclass(frozen=True)
class Container:
    """Everything the runtime configuration is made of, resolved by the caller."""

    argv: Sequence[str]
    env: Sequence[str]
    user: Mapping[str, Any]
    security: Security
    hostname: str
    cwd: str = "/"
    mounts: Sequence[Mount] = ()
    limits: Mapping[str, Any] = field(default_factory=dict)
    #: cgroup path relative to the runtime's own cgroup
    cgroup: str = ""
    #: (soft, hard) RLIMIT_NOFILE, inherited from the runner as a container inherits its runtime's
    nofile: tuple[int, int] = (1024, 1024)
    annotations: Mapping[str, str] = field(default_factory=dict)


def runtime_config(c: Container) -> dict[str, Any]:
    """The OCI runtime ``config.json`` (root is the bundle's ``rootfs``)."""
    linux: dict[str, Any] = {
        "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")],
        "resources": resources(c.limits),
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if c.cgroup:
        linux["cgroupsPath"] = c.cgroup
    profile = seccomp(c.security.seccomp)
    if profile is not None:
        linux["seccomp"] = profile
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": dict(c.user),
            "args": list(c.argv),
            "env": list(c.env),
            "cwd": c.cwd or "/",
            "capabilities": capabilities(c.security),
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": c.nofile[0], "hard": c.nofile[1]}],
            "noNewPrivileges": not c.security.allow_privilege_escalation,
        },
        "root": {"path": "rootfs", "readonly": c.security.read_only_root},
        "hostname": c.hostname,
        # parents before children, as containerd orders them: an emptyDir at /tmp must not
        # hide a volume mounted at /tmp/x
        "mounts": [*_SYSTEM_MOUNTS, *(m.spec() for m in sorted(c.mounts, key=_depth))],
        "linux": linux,
        "annotations": dict(c.annotations),
    }


def _depth(mount: Mount) -> int:
    return len([p for p in mount.destination.split("/") if p])


_SYSTEM_MOUNTS: tuple[dict[str, Any], ...] = (
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/dev/shm",  # noqa: S108 (the container's own)
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
        "destination": "/dev/mqueue",
        "type": "mqueue",
        "source": "mqueue",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
    {
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
    },
)
"""What every container gets (runc's example configuration, as containerd mounts them)."""
