"""Install the chart into the session's real control plane with the real helm (v4).

The session cluster is shared by every integration test, so:

* the CRDs may already exist when these tests run (applied by another test with kubectl):
  installs pass ``--take-ownership`` so the release adopts them, as a user adopting CRDs they
  applied by hand would; on a fresh cluster the flag changes nothing;
* the CRDs carry ``helm.sh/resource-policy: keep`` (crdgen), so an uninstall leaves them for
  the tests that come later;
* every release is uninstalled at teardown, so no cluster-scoped object (ClusterRoles,
  PriorityClasses) outlives its test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

import devenv
from integration.chart import clusterkit


@pytest.fixture
def helm(cluster: devenv.Cluster) -> Iterator[clusterkit.Helm]:
    h = clusterkit.Helm(cluster)
    yield h
    for release, namespace in list(h.releases):
        h.run("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "120s", check=False)


@pytest.fixture
def make_namespace(cluster: devenv.Cluster) -> Iterator[Callable[..., str]]:
    """``make_namespace(name=None, labels={})``: a namespace deleted after the test."""
    made: list[str] = []

    def _make(name: str | None = None, labels: dict[str, str] | None = None) -> str:
        name = name or f"t-chart-{uuid.uuid4().hex[:6]}"
        cluster.kubectl("create", "namespace", name)
        made.append(name)
        for key, value in (labels or {}).items():
            cluster.kubectl("label", "namespace", name, f"{key}={value}", "--overwrite")
        return name

    yield _make
    for name in made:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
