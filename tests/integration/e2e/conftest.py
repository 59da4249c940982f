"""Fixtures of the end-to-end and chaos tests.

* ``product`` — the chart (helm/jobqueue-operator) installed in the test's namespace with the
  test's Redis database, watching that namespace (other chart values: ``@pytest.mark.parametrize(
  "product", [values], indirect=True)``); its operator pods (two: a leader and a standby), the
  worker pods and the CronJob pods all run as local processes of the session's pod runner, the
  operator with a
  token of the chart's ServiceAccount (so the chart's RBAC is what it gets). The namespace
  enforces the ``restricted`` Pod Security Standard, as a careful platform team would set
  it. Uninstalled at teardown; the operator's log is printed when the test fails.

Helpers (shared with ``benchmarks/e2e_*.py`` and ``benchmarks/chaos_*.py``) are in
``e2ekit.py``, ``e2edrain.py`` and ``chaoskit.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2ekit import Product

import devenv
import podrunner


@pytest.fixture
def product(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    redis_url: str,
    pod_runner: podrunner.PodRunner,
    crds: None,
    request: pytest.FixtureRequest,
) -> Iterator[Product]:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    # (cluster-scoped objects of the chart carry the release name: one per test); chart values
    # beyond the defaults come from indirect parametrisation
    installed = Product.install(
        cluster,
        namespace,
        pod_runner,
        redis_url=redis_url,
        release=f"jq-{namespace[-5:]}",
        values=getattr(request, "param", None),
    )
    yield installed
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(installed.logs())
    installed.uninstall()
