"""Helpers for the pod runner's tests: a namespace-bound manifest kit and process probes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import devenv
import images
import podrunner

RUN_LABEL = {"podrunner.test/run": "yes"}
SELECTOR = "podrunner.test/run=yes"

#: Waits are generous: the machine has two shared cores and the tests assert behaviour,
#: never speed.
WAIT = 90.0


def alive(pid: int) -> bool:
    """Running, i.e. exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Lab:
    """One test's namespace, evidence directory and manifest helpers."""

    cluster: devenv.Cluster
    namespace: str
    out: Path

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> str:
        return self.cluster.kubectl("-n", self.namespace, *args, check=check, input=input).stdout

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl(
            "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
        )

    def pod_spec(
        self, command: list[str], *, env: list[dict[str, Any]] | None = None, **spec: Any
    ) -> dict[str, Any]:
        """A pod spec whose one container runs ``command``, with ``OUT`` and ``POD_NAME`` set."""
        base_env = [
            {"name": "OUT", "value": str(self.out)},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ]
        container = {
            "name": "main",
            "image": "registry.invalid/ignored:1",
            "command": command,
            "env": base_env + (env or []),
        }
        container.update(spec.pop("container", {}))
        return {"containers": [container], **spec}

    def deployment(
        self,
        name: str,
        command: list[str],
        *,
        replicas: int = 1,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {
                        "labels": {"app": name, **RUN_LABEL, **(labels or {})},
                        "annotations": annotations or {},
                    },
                    "spec": self.pod_spec(command, **spec),
                },
            },
        }

    def pod(
        self, name: str, command: list[str], *, labels: dict[str, str] | None = None, **spec: Any
    ) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {**RUN_LABEL, **(labels or {})}},
            "spec": self.pod_spec(command, **spec),
        }

    def in_image(
        self,
        name: str,
        script: str,
        *,
        image: str = images.OPERATOR.ref,
        restart: str = "Never",
        container: dict[str, Any] | None = None,
        volumes: list[dict[str, Any]] | None = None,
        mounts: list[dict[str, Any]] | None = None,
        labels: dict[str, str] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        """A pod running ``sh -c script`` in ``image`` (built by ``make image``), with the
        evidence folder mounted at its own path (a hostPath volume, writable by any uid), so
        ``$OUT`` is the same path in container mode and in process mode."""
        self.out.chmod(0o777)
        out = {"name": "out", "hostPath": {"path": str(self.out), "type": "Directory"}}
        return self.pod(
            name,
            ["sh", "-c", script],
            labels=labels,
            restartPolicy=restart,
            **spec,
            volumes=[out, *(volumes or [])],
            container={
                "image": image,
                "volumeMounts": [{"name": "out", "mountPath": str(self.out)}, *(mounts or [])],
                **(container or {}),
            },
        )

    def wait(self, what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
        return devenv.wait_until(what, check, timeout=timeout, interval=0.1)

    def files(self, suffix: str) -> dict[str, str]:
        """``{pod name: content}`` of every ``<pod>.<suffix>`` evidence file."""
        return {
            p.name.removesuffix(f".{suffix}"): p.read_text().strip() for p in self.out.glob(f"*.{suffix}")
        }

    def pod_names(self, app: str) -> set[str]:
        out = self.kubectl("get", "pods", "-l", f"app={app}", "-o", "jsonpath={.items[*].metadata.name}")
        return set(out.split())


def state_of(runner: podrunner.PodRunner, pod: str) -> podrunner.ProcessInfo | None:
    return next((p for p in runner.snapshot() if p.name == pod), None)
