"""What `helm uninstall` leaves behind, with and without ``crds.keep`` (issue 22).

Deleting the CRDs deletes every JobQueue of the cluster, so this runs on a throw-away cluster
of its own (``devenv.session_cluster(suffix=…)``), never the session's shared one. No operator
runs here (kwok marks the pods Ready, so ``helm install --wait`` completes): what is checked is
what Helm and the garbage collector do with the chart's objects. The ordered uninstall with a
running operator (JobQueues first) is tests/integration/e2e/test_e2e_uninstall.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import devenv
from integration.chart import clusterkit
from integration.chart.clusterkit import exists, release_objects
from unit.chart import chartkit

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.slow]

CRDS = ("jobqueues.jobqueue.glec.io", "recurringjobs.jobqueue.glec.io")
NAMESPACE = "jobqueue-system"
#: a sample JobQueue (the seed's report queue), in the default namespace
SAMPLES = chartkit.load_all((chartkit.ROOT / "manifests/samples/jobqueues.yaml").read_text())
QUEUE = {
    **next(d for d in SAMPLES if d["metadata"]["name"] == "report-generate"),
    "metadata": {"name": "reports", "namespace": "default"},
}


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[devenv.Cluster]:
    with devenv.session_cluster(nodes=1, suffix="-uninstall") as c:
        c.create_namespace(NAMESPACE)
        yield c


def install_with_a_queue(cluster: devenv.Cluster, release: str, keep: bool) -> clusterkit.Helm:
    helm = clusterkit.Helm(cluster)
    helm.install(
        release,
        NAMESPACE,
        values={
            "crds": {"keep": keep},
            "priorityClasses": {"enabled": True},
            "redis": {"url": "redis://redis.example:6379/0"},
        },
    )
    for name in CRDS:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s", timeout=70)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(QUEUE))
    assert release_objects(cluster, release)  # (the selector finds what the chart made)
    return helm


def test_uninstall_keeps_the_crds_and_the_queues_only_with_crds_keep(own_cluster: devenv.Cluster) -> None:
    cluster = own_cluster
    # crds.keep: true (the default): the CRDs and the user's JobQueues survive, nothing else
    helm = install_with_a_queue(cluster, "kept", keep=True)
    helm.uninstall("kept", NAMESPACE)
    devenv.wait_until("the release's objects gone", lambda: not release_objects(cluster, "kept"), timeout=60)
    for name in CRDS:
        crd = clusterkit.get_json(cluster, "crd", name)
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert exists(cluster, "jobqueue", "reports", "-n", "default")
    assert not exists(cluster, "secret", "kept-jobqueue-operator-redis", "-n", NAMESPACE)

    # crds.keep: false: the uninstall deletes the CRDs, and with them every JobQueue
    helm = install_with_a_queue(cluster, "gone", keep=False)  # adopts the kept CRDs (--take-ownership)
    for name in CRDS:
        assert "helm.sh/resource-policy" not in clusterkit.get_json(cluster, "crd", name)["metadata"].get(
            "annotations", {}
        )
    helm.uninstall("gone", NAMESPACE)
    devenv.wait_until("the release's objects gone", lambda: not release_objects(cluster, "gone"), timeout=60)
    devenv.wait_until(
        "the CRDs deleted", lambda: not any(exists(cluster, "crd", n) for n in CRDS), timeout=60
    )
    assert cluster.kubectl("get", "jobqueues", "-A", check=False).returncode != 0  # no such resource
    # the chart's own objects in the release namespace: none
    left = json.loads(
        cluster.kubectl(
            "get", "all,secrets,configmaps,roles,rolebindings,serviceaccounts", "-n", NAMESPACE, "-o", "json"
        ).stdout
    )["items"]
    assert [o for o in left if o["metadata"]["name"].startswith(("gone-", "kept-"))] == []
