"""Helpers of the operator's integration tests: real objects through kubectl, and waiting."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import devenv


@dataclass
class RunningOperator:
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    health_port: int
    env: dict[str, str] = field(repr=False)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str, port: int | None = None) -> tuple[int, str]:
        url = f"http://127.0.0.1:{port or self.metrics_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


StartOperator = Callable[..., RunningOperator]


def kubectl_json(cluster: devenv.Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def get(cluster: devenv.Cluster, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = cluster.kubectl(
        "get", kind, name, "-n", namespace, "-o", "json", "--show-managed-fields", check=False
    )
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(result.stderr)
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def apply(cluster: devenv.Cluster, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def jobqueue(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A JobQueue body; ``worker`` defaults to a minimal valid one."""
    spec.setdefault("worker", {"image": "registry.invalid/glec-jobs:1", "imports": ["glec.jobs"]})
    return {
        "apiVersion": "jobqueue.glec.io/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def condition(body: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((body or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    return devenv.wait_until(what, check, timeout=timeout, interval=0.25)


def wait_condition(
    cluster: devenv.Cluster,
    name: str,
    namespace: str,
    type_: str,
    *,
    status: str,
    reason: str | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = get(cluster, "jobqueue", name, namespace)
        cond = condition(body, type_)
        if cond.get("status") == status and (reason is None or cond.get("reason") == reason):
            return body
        return None

    result: dict[str, Any] = wait_for(f"{namespace}/{name} {type_}={status} ({reason})", check, timeout)
    return result


def events(cluster: devenv.Cluster, namespace: str, name: str) -> list[tuple[str, str, str]]:
    selector = f"involvedObject.kind=JobQueue,involvedObject.name={name}"
    items = kubectl_json(cluster, "get", "events", "-n", namespace, "--field-selector", selector)["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items]


# --------------------------------------------------------------------------------------
# Spec mutations, for corpora of invalid objects (JobQueue and RecurringJob alike)

Mutation = Callable[[dict[str, Any]], None]


def at(path: str, value: Any) -> Mutation:
    """Set ``a.b.c`` (creating maps on the way)."""

    def mutate(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return mutate


def without(path: str) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node[key]
        del node[last]

    return mutate
