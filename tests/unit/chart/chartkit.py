"""Helpers shared by the chart's unit tests (``helm template``) and integration tests
(``helm install`` into the real control plane). Import as ``from unit.chart import chartkit``
(``tests/`` is on the pytest ``pythonpath``)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "jobqueue-operator"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
#: What `--api-versions` adds to make the Prometheus Operator kinds "served".
MONITORING_APIS = (
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PodMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
)

Manifest = dict[str, Any]
#: ``render(values, api_versions=(...), files=(...))`` → the objects `helm template` makes
Render = Callable[..., list[Manifest]]
#: the release namespace of the unit tests' renderings
NAMESPACE = "jq-system"


def run_helm(
    helm: str, *args: str, values: dict[str, Any] | None = None, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run helm, with ``values`` (if given) passed as one more ``-f`` file."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        json.dump(values or {}, f)
        f.flush()
        extra = ["-f", f.name] if values is not None else []
        proc = subprocess.run(
            [helm, *args, *extra], capture_output=True, text=True, timeout=timeout, check=False
        )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def load_all(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kinds(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [o for o in kinds(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} among {[o['kind'] for o in objects]}"
    return found[0]


def container_env(deployment: Manifest) -> dict[str, Any]:
    """The operator container's env as ``{name: value or valueFrom}`` (the API server drops an
    empty ``value``, so a missing one reads as "")."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["valueFrom"] if "valueFrom" in e else e.get("value", "") for e in container["env"]}


def assert_restricted(pod: Manifest) -> None:
    """A pod spec meets the "restricted" Pod Security Standard (as the chart's pods must)."""
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
