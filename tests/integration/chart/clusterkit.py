"""Helpers of the chart's integration tests; import as ``from integration.chart import clusterkit``."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import devenv
from unit.chart import chartkit


@dataclass
class Helm:
    """helm bound to the session cluster."""

    cluster: devenv.Cluster
    releases: list[tuple[str, str]] = field(default_factory=list)

    def run(
        self, *args: str, values: dict[str, Any] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return chartkit.run_helm(
            self.cluster.binaries.path("helm"),
            "--kubeconfig",
            str(self.cluster.kubeconfig),
            *args,
            values=values,
            check=check,
            timeout=300,
        )

    def install(
        self,
        release: str,
        namespace: str,
        *args: str,
        chart: Path = chartkit.CHART,
        values: dict[str, Any] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        self.releases.append((release, namespace))
        return self.run(
            "install",
            release,
            str(chart),
            "--namespace",
            namespace,
            "--wait",
            "--timeout",
            "150s",
            "--take-ownership",
            *args,
            values=values,
        )

    def uninstall(self, release: str, namespace: str) -> None:
        self.run("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "120s")
        self.releases.remove((release, namespace))


def get_json(cluster: devenv.Cluster, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return out


def exists(cluster: devenv.Cluster, *args: str) -> bool:
    return cluster.kubectl("get", *args, check=False).returncode == 0


def can_i(
    cluster: devenv.Cluster,
    service_account: str,
    verb: str,
    resource: str,
    *,
    namespace: str | None = None,
    subresource: str | None = None,
) -> bool:
    """`kubectl auth can-i` as the ServiceAccount (``namespace:name``): a real
    SubjectAccessReview against the cluster's RBAC authorizer."""
    args = ["auth", "can-i", verb, resource, f"--as=system:serviceaccount:{service_account}"]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    if subresource:
        args.append(f"--subresource={subresource}")
    answer = cluster.kubectl(*args, check=False).stdout.strip()
    assert answer in ("yes", "no"), answer
    return answer == "yes"


def release_objects(cluster: devenv.Cluster, release: str) -> list[str]:
    """``Kind/name`` of every object labelled with ``release``, of every kind the chart makes
    (and the worker pods' ReplicaSets and pods its Deployment makes)."""
    selector = f"app.kubernetes.io/instance={release}"
    found = get_json(
        cluster,
        "deployments,replicasets,pods,services,serviceaccounts,secrets,configmaps,"
        "roles,rolebindings,poddisruptionbudgets,networkpolicies",
        "-A",
        "-l",
        selector,
    )["items"]
    found += get_json(cluster, "clusterroles,clusterrolebindings,priorityclasses", "-l", selector)["items"]
    return [f"{o['kind']}/{o['metadata']['name']}" for o in found]
