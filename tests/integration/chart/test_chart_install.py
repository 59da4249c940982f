"""The chart on a real control plane: install, upgrade, uninstall, RBAC, Pod Security, samples.

Most checks share one release installed with the default values into a namespace that
enforces the "restricted" Pod Security Standard (``default_release``); the other tests make
their own releases for what they change (upgrade, uninstall, the ci/ scenarios).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import devenv
import podrunner
from integration.chart import clusterkit
from integration.chart.clusterkit import can_i, exists, get_json
from unit.chart import chartkit

CRDS = ("jobqueues.jobqueue.glec.io", "recurringjobs.jobqueue.glec.io")


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str

    @property
    def fullname(self) -> str:
        return f"{self.name}-jobqueue-operator"

    @property
    def service_account(self) -> str:
        return f"{self.namespace}:{self.fullname}"


@pytest.fixture(scope="module")
def default_release(cluster: devenv.Cluster) -> Iterator[Release]:
    """The chart with default values, in a namespace that enforces Pod Security "restricted"."""
    namespace = f"t-chart-default-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    helm = clusterkit.Helm(cluster)
    release = Release("jq", namespace)
    try:
        helm.install(release.name, namespace)
        yield release
    finally:
        for name, ns in list(helm.releases):
            helm.run("uninstall", name, "--namespace", ns, "--wait", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# --- default install -------------------------------------------------------------------------


def test_default_install_runs_the_operator(cluster: devenv.Cluster, default_release: Release) -> None:
    deploy = get_json(cluster, "deployment", default_release.fullname, "-n", default_release.namespace)
    assert deploy["status"]["readyReplicas"] == 2
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"
    pods = get_json(
        cluster, "pods", "-n", default_release.namespace, "-l", "app.kubernetes.io/component=operator"
    )["items"]
    assert [p["status"]["phase"] for p in pods] == ["Running", "Running"]
    assert {p["spec"]["serviceAccountName"] for p in pods} == {default_release.fullname}
    # spread over the two nodes (preferred anti-affinity), and a budget keeps one through a drain
    assert len({p["spec"]["nodeName"] for p in pods}) == 2
    pdb = get_json(cluster, "poddisruptionbudget", default_release.fullname, "-n", default_release.namespace)
    devenv.wait_until(
        "the disruption budget counting both pods",
        lambda: (
            get_json(
                cluster,
                "poddisruptionbudget",
                default_release.fullname,
                "-n",
                default_release.namespace,
            )["status"].get("currentHealthy")
            == 2
        ),
        timeout=30,
    )
    assert pdb["spec"]["maxUnavailable"] == 1
    assert exists(cluster, "service", f"{default_release.fullname}-metrics", "-n", default_release.namespace)


def test_one_operator_pod_holds_the_leader_lease(
    cluster: devenv.Cluster, default_release: Release, pod_runner: podrunner.PodRunner
) -> None:
    """The operator pods (run by the session's pod runner) elect a leader on the chart's Lease,
    with the chart's RBAC: its holder is one of them."""
    items = get_json(
        cluster, "pods", "-n", default_release.namespace, "-l", "app.kubernetes.io/component=operator"
    )["items"]
    pods = {p["metadata"]["name"] for p in items}

    def holder() -> str | None:
        if not exists(cluster, "lease", default_release.fullname, "-n", default_release.namespace):
            return None
        lease = get_json(cluster, "lease", default_release.fullname, "-n", default_release.namespace)
        who = str(lease["spec"].get("holderIdentity") or "").rsplit("_", 1)[0]
        return who if who in pods else None

    devenv.wait_until("an operator pod holding the Lease", holder, timeout=60)


def test_operator_pod_is_admitted_by_a_restricted_namespace(
    cluster: devenv.Cluster, default_release: Release
) -> None:
    labels = get_json(cluster, "namespace", default_release.namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # the pod exists (test above), so admission let it in; prove admission is really on by
    # showing the same pod template without its security contexts is refused there
    template = get_json(cluster, "deployment", default_release.fullname, "-n", default_release.namespace)[
        "spec"
    ]["template"]
    spec = {k: v for k, v in template["spec"].items() if k != "securityContext"}
    spec["containers"] = [{k: v for k, v in c.items() if k != "securityContext"} for c in spec["containers"]]
    bare = {
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": spec,
        "metadata": {"name": "no-security-context", "namespace": default_release.namespace},
    }
    refused = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(bare), check=False)
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr


def test_helm_test_pod_is_admitted_by_a_restricted_namespace(
    cluster: devenv.Cluster, default_release: Release
) -> None:
    # `helm test` itself would wait forever under kwok (bare pods never complete), so the
    # test pod is checked by a server-side dry run through the real admission chain
    helm = clusterkit.Helm(cluster)
    manifest = helm.run("get", "hooks", default_release.name, "-n", default_release.namespace).stdout
    (pod,) = [o for o in chartkit.load_all(manifest) if o["kind"] == "Pod"]
    cluster.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod))


def test_crds_are_installed_established_and_owned_by_the_release(
    cluster: devenv.Cluster, default_release: Release
) -> None:
    for name in CRDS:
        crd = get_json(cluster, "crd", name)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_samples_are_accepted_by_the_api_server(
    cluster: devenv.Cluster, default_release: Release, make_namespace: Callable[..., str]
) -> None:
    """The seed's queues and recurring jobs pass the real CRD schema and CEL rules, with no
    unknown field (strict validation), and `kubectl get jq` shows them."""
    namespace = make_namespace()
    samples = str(chartkit.ROOT / "manifests" / "samples")
    dry = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", samples)
    assert dry.stdout.count("(server dry run)") == 13, dry.stdout
    cluster.kubectl("apply", "--server-side", "--validate=strict", "-n", namespace, "-f", samples)
    queues = get_json(cluster, "jobqueues", "-n", namespace)["items"]
    assert len(queues) == 11
    assert {q["spec"]["queueName"] for q in queues} >= {"ei:update", "data:dtg-sync", "report:generate"}
    assert len(get_json(cluster, "recurringjobs", "-n", namespace)["items"]) == 2
    table = cluster.kubectl("get", "jq", "-n", namespace).stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "PRIORITY", "CONCURRENCY", "WORKERS"]


# --- RBAC, checked by the API server's authorizer ---------------------------------------------


def test_cluster_wide_rbac_allows_what_the_operator_does(
    cluster: devenv.Cluster, default_release: Release
) -> None:
    sa = default_release.service_account
    anywhere = "some-team"  # any namespace: the ClusterRoleBinding covers them all
    for verb, resource, sub in [
        ("watch", "jobqueues.jobqueue.glec.io", None),
        ("patch", "jobqueues.jobqueue.glec.io", None),
        ("patch", "jobqueues.jobqueue.glec.io", "status"),
        ("patch", "recurringjobs.jobqueue.glec.io", "status"),
        ("create", "deployments.apps", None),
        ("delete", "deployments.apps", None),
        ("patch", "deployments.apps", "scale"),
        ("create", "cronjobs.batch", None),
        ("patch", "pods", None),
        ("create", "events", None),
        ("get", "secret/jobqueue-redis", None),
    ]:
        assert can_i(cluster, sa, verb, resource, namespace=anywhere, subresource=sub), (verb, resource, sub)
    assert can_i(cluster, sa, "watch", "jobqueues.jobqueue.glec.io")  # --all-namespaces
    assert can_i(cluster, sa, "list", "customresourcedefinitions.apiextensions.k8s.io")
    assert can_i(cluster, sa, "watch", "namespaces")
    # the leader Lease: that one by name, in the release namespace only
    home, lease = default_release.namespace, f"lease.coordination.k8s.io/{default_release.fullname}"
    for verb in ("get", "create", "update", "patch"):
        assert can_i(cluster, sa, verb, lease, namespace=home), verb
    for verb, what in (
        ("create", "leases.coordination.k8s.io"),
        ("delete", lease),
        ("update", "lease.coordination.k8s.io/other"),
        ("list", "leases.coordination.k8s.io"),
    ):
        assert not can_i(cluster, sa, verb, what, namespace=home), (verb, what)
    assert not can_i(cluster, sa, "get", lease, namespace=anywhere)


def test_cluster_wide_rbac_refuses_what_the_operator_must_not_do(
    cluster: devenv.Cluster, default_release: Release
) -> None:
    sa = default_release.service_account
    for verb, resource in [
        ("get", "secrets"),
        ("list", "secrets"),
        ("get", "secret/other-app-db"),
        ("watch", "secrets"),
        ("create", "pods"),
        ("delete", "pods"),
        ("get", "statefulsets.apps"),
        ("patch", "daemonsets.apps"),
        ("delete", "replicasets.apps"),
        ("get", "configmaps"),
        ("patch", "services"),
        ("create", "jobqueues.jobqueue.glec.io"),
        ("delete", "recurringjobs.jobqueue.glec.io"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
        ("bind", "clusterroles.rbac.authorization.k8s.io"),
        ("impersonate", "serviceaccounts"),
        ("create", "serviceaccounts/token"),
        # nothing the code calls (tests/unit/chart/test_chart_rbac.py): no Jobs, no events.k8s.io,
        # the scale subresource only patched
        ("watch", "jobs.batch"),
        ("create", "events.events.k8s.io"),
        ("patch", "events"),
    ]:
        assert not can_i(cluster, sa, verb, resource, namespace="some-team"), (verb, resource)
    assert not can_i(cluster, sa, "update", "deployments.apps", namespace="some-team", subresource="scale")
    assert not can_i(cluster, sa, "delete", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i(cluster, sa, "delete", "namespaces")
    assert not can_i(cluster, sa, "create", "priorityclasses.scheduling.k8s.io")


def test_namespace_users_get_queue_permissions_through_aggregation(
    cluster: devenv.Cluster, default_release: Release, make_namespace: Callable[..., str]
) -> None:
    namespace = make_namespace()
    cluster.kubectl("create", "serviceaccount", "dev", "-n", namespace)
    cluster.kubectl(
        "create",
        "rolebinding",
        "dev-edit",
        "--clusterrole=edit",
        f"--serviceaccount={namespace}:dev",
        "-n",
        namespace,
    )
    cluster.kubectl("create", "serviceaccount", "auditor", "-n", namespace)
    cluster.kubectl(
        "create",
        "rolebinding",
        "auditor-view",
        "--clusterrole=view",
        f"--serviceaccount={namespace}:auditor",
        "-n",
        namespace,
    )
    devenv.wait_until(
        "aggregation into edit",
        lambda: can_i(
            cluster, f"{namespace}:dev", "create", "jobqueues.jobqueue.glec.io", namespace=namespace
        ),
        timeout=30,
    )
    assert can_i(cluster, f"{namespace}:dev", "delete", "recurringjobs.jobqueue.glec.io", namespace=namespace)
    assert can_i(cluster, f"{namespace}:auditor", "list", "jobqueues.jobqueue.glec.io", namespace=namespace)
    assert not can_i(
        cluster, f"{namespace}:auditor", "create", "jobqueues.jobqueue.glec.io", namespace=namespace
    )


# --- upgrade and uninstall ---------------------------------------------------------------------


def test_upgrade_applies_crd_changes_and_new_values_then_uninstall_cleans_up(
    cluster: devenv.Cluster, helm: clusterkit.Helm, make_namespace: Callable[..., str], tmp_path: Path
) -> None:
    namespace = make_namespace()
    release = Release("up", namespace)
    helm.install(release.name, namespace)
    env = chartkit.container_env(get_json(cluster, "deployment", release.fullname, "-n", namespace))
    assert env["JOBQUEUE_LOG_LEVEL"] == "INFO"

    # the next chart version changes a CRD (as a new field would): a chart whose CRDs lived
    # in Helm's crds/ folder would never apply that on upgrade
    chart = tmp_path / "jobqueue-operator"
    shutil.copytree(chartkit.CHART, chart)
    crd_file = chart / "templates" / "crds" / f"{CRDS[0]}.yaml"
    text = crd_file.read_text()
    assert "\n  labels:\n" in text
    crd_file.write_text(
        text.replace("\n  labels:\n", "\n  labels:\n    jobqueue.glec.io/upgrade-test: applied\n", 1)
    )
    chart_yaml = chart / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("version: 0.1.0", "version: 0.1.1"))
    try:
        helm.run(
            "upgrade",
            release.name,
            str(chart),
            "--namespace",
            namespace,
            "--wait",
            "--timeout",
            "150s",
            values={"operator": {"logLevel": "DEBUG"}},
        )
        labels = get_json(cluster, "crd", CRDS[0])["metadata"]["labels"]
        assert labels["jobqueue.glec.io/upgrade-test"] == "applied"
        env = chartkit.container_env(get_json(cluster, "deployment", release.fullname, "-n", namespace))
        assert env["JOBQUEUE_LOG_LEVEL"] == "DEBUG"
        history = yaml.safe_load(helm.run("history", release.name, "-n", namespace, "-o", "yaml").stdout)
        assert [h["revision"] for h in history] == [1, 2]
        assert history[-1]["status"] == "deployed"
        assert history[-1]["chart"] == "jobqueue-operator-0.1.1"

        helm.uninstall(release.name, namespace)
        for args in (
            ("deployment", release.fullname, "-n", namespace),
            ("serviceaccount", release.fullname, "-n", namespace),
            ("clusterrole", release.fullname),
            ("clusterrolebinding", release.fullname),
            ("clusterrole", f"{release.fullname}-edit"),
        ):
            assert not exists(cluster, *args), args
        # the CRDs, and with them every user's queues, survive an uninstall
        for name in CRDS:
            assert exists(cluster, "crd", name)
    finally:
        cluster.kubectl("label", "crd", CRDS[0], "jobqueue.glec.io/upgrade-test-", check=False)


# --- the ci/ scenarios ----------------------------------------------------------------------------


def prepare_scenario(
    cluster: devenv.Cluster, values_file: Path, namespace: str, make_namespace: Callable[..., str]
) -> None:
    """What each scenario needs to exist before its install."""
    values = yaml.safe_load(values_file.read_text())
    for ns in values.get("watchNamespaces", []):
        if not exists(cluster, "namespace", ns):
            make_namespace(ns)
    secret = values.get("redis", {}).get("existingSecret")
    if secret:
        key = values["redis"].get("existingSecretKey", "url")
        cluster.kubectl(
            "create",
            "secret",
            "generic",
            secret,
            "-n",
            namespace,
            f"--from-literal={key}=redis://redis.jobqueue-ci.svc:6379/3",
        )


@pytest.mark.parametrize("values_file", chartkit.CI_VALUES, ids=lambda p: p.name.removesuffix("-values.yaml"))
def test_ci_scenario_installs_and_uninstalls(
    cluster: devenv.Cluster, helm: clusterkit.Helm, make_namespace: Callable[..., str], values_file: Path
) -> None:
    namespace = make_namespace()
    prepare_scenario(cluster, values_file, namespace, make_namespace)
    release = Release("ci", namespace)
    out = helm.install(release.name, namespace, "-f", str(values_file)).stdout
    assert "STATUS: deployed" in out
    values = yaml.safe_load(values_file.read_text())
    deploy = get_json(cluster, "deployment", release.fullname, "-n", namespace)
    assert deploy["status"]["readyReplicas"] == values.get("replicaCount", 2)
    env = chartkit.container_env(deploy)
    assert env["JOBQUEUE_NAMESPACES"] == ",".join(values.get("watchNamespaces", []))
    if values.get("watchNamespaces"):
        for ns in values["watchNamespaces"]:
            assert exists(cluster, "role", release.fullname, "-n", ns)
        assert not exists(cluster, "clusterrole", release.fullname)
    if values.get("priorityClasses", {}).get("enabled"):
        prefix = values["priorityClasses"]["namePrefix"]
        assert env["JOBQUEUE_PRIORITY_CLASS_PREFIX"] == prefix
        assert get_json(cluster, "priorityclass", f"{prefix}1")["value"] == 400
    autoscaler = values.get("autoscaler", {})
    assert env["JOBQUEUE_POLL_INTERVAL"] == str(autoscaler.get("pollInterval", 1))
    assert env.get("JOBQUEUE_WORKER_BUDGET") == (
        None if autoscaler.get("workerBudget") is None else str(autoscaler["workerBudget"])
    )
    if values.get("grafanaDashboard", {}).get("enabled"):
        assert exists(cluster, "configmap", f"{release.fullname}-dashboard", "-n", namespace)
    if values.get("networkPolicy", {}).get("enabled"):
        assert exists(cluster, "networkpolicy", release.fullname, "-n", namespace)
    if values.get("metrics", {}).get("serviceMonitor", {}).get("enabled") and not exists(
        cluster, "crd", "servicemonitors.monitoring.coreos.com"
    ):
        # no Prometheus Operator here: the objects are skipped, and the notes say so
        assert "ServiceMonitor is enabled but this cluster does not serve" in out
    helm.uninstall(release.name, namespace)
    assert not exists(cluster, "deployment", release.fullname, "-n", namespace)
    if values.get("priorityClasses", {}).get("enabled"):
        assert not exists(cluster, "priorityclass", f"{values['priorityClasses']['namePrefix']}1")


def test_namespaced_rbac_stays_inside_the_watched_namespaces(
    cluster: devenv.Cluster, helm: clusterkit.Helm, make_namespace: Callable[..., str]
) -> None:
    namespace = make_namespace()
    team_a, team_b, outsider = make_namespace(), make_namespace(), make_namespace()
    release = Release("ns", namespace)
    helm.install(release.name, namespace, values={"watchNamespaces": [team_a, team_b]})
    sa = release.service_account
    for ns in (team_a, team_b):
        assert can_i(cluster, sa, "watch", "jobqueues.jobqueue.glec.io", namespace=ns)
        assert can_i(cluster, sa, "create", "deployments.apps", namespace=ns)
        assert can_i(cluster, sa, "patch", "deployments.apps", namespace=ns, subresource="scale")
        assert can_i(cluster, sa, "get", "secret/jobqueue-redis", namespace=ns)
        assert not can_i(cluster, sa, "get", "secret/other-app-db", namespace=ns)
        # the Secret of the default Redis URL: written by the operator, under its one name
        for verb in ("get", "create", "patch", "delete"):
            assert can_i(cluster, sa, verb, "secret/jobqueue-default-redis", namespace=ns), verb
        for verb in ("create", "patch", "delete"):
            assert not can_i(cluster, sa, verb, "secret/other-app-db", namespace=ns), verb
            assert not can_i(cluster, sa, verb, "secret/jobqueue-redis", namespace=ns), verb
        assert not can_i(cluster, sa, "create", "secrets", namespace=ns)  # a POST names no Secret
        assert not can_i(cluster, sa, "list", "secrets", namespace=ns)
    for ns in (outsider, "kube-system", namespace):
        assert not can_i(cluster, sa, "list", "jobqueues.jobqueue.glec.io", namespace=ns), ns
        assert not can_i(cluster, sa, "create", "deployments.apps", namespace=ns), ns
        assert not can_i(cluster, sa, "patch", "pods", namespace=ns), ns
        assert not can_i(cluster, sa, "get", "secret/jobqueue-redis", namespace=ns), ns
        assert not can_i(cluster, sa, "create", "secret/jobqueue-default-redis", namespace=ns), ns
    assert not can_i(cluster, sa, "watch", "jobqueues.jobqueue.glec.io")  # not cluster-wide
    # read-only discovery is all it has cluster-wide
    assert can_i(cluster, sa, "list", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i(cluster, sa, "patch", "customresourcedefinitions.apiextensions.k8s.io")


# --- Prometheus Operator objects --------------------------------------------------------------

MONITORING_KINDS = {
    "ServiceMonitor": "servicemonitors",
    "PodMonitor": "podmonitors",
    "PrometheusRule": "prometheusrules",
}


@pytest.fixture
def monitoring_api(cluster: devenv.Cluster) -> Iterator[None]:
    """Register the monitoring.coreos.com/v1 kinds, unless the cluster already has them.

    A stand-in for the Prometheus Operator's CRDs (their schemas are not vendored here): it
    makes the API server serve the kinds, which is what the chart's capability check and the
    install need; the objects' fields are checked by the unit tests, not by these schemas."""
    created = []
    for kind, plural in MONITORING_KINDS.items():
        name = f"{plural}.monitoring.coreos.com"
        if exists(cluster, "crd", name):
            continue
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": "monitoring.coreos.com",
                "scope": "Namespaced",
                "names": {
                    "kind": kind,
                    "plural": plural,
                    "singular": kind.lower(),
                    "listKind": f"{kind}List",
                },
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(crd))
        created.append(name)
    for name in created:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    yield
    for name in created:
        cluster.kubectl("delete", "crd", name, "--wait=false", check=False)


@pytest.mark.usefixtures("monitoring_api")
def test_monitoring_objects_are_created_where_the_prometheus_operator_api_is_served(
    cluster: devenv.Cluster, helm: clusterkit.Helm, make_namespace: Callable[..., str]
) -> None:
    namespace = make_namespace()
    release = Release("mon", namespace)
    values_file = chartkit.CHART / "ci" / "cluster-monitoring-values.yaml"
    out = helm.install(release.name, namespace, "-f", str(values_file)).stdout
    for kind in MONITORING_KINDS:
        assert f"A {kind} was created." in out
    monitor = get_json(cluster, "servicemonitor", release.fullname, "-n", namespace)
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    assert exists(cluster, "podmonitor", f"{release.fullname}-workers", "-n", namespace)
    rule = get_json(cluster, "prometheusrule", release.fullname, "-n", namespace)
    generated = yaml.safe_load(
        (chartkit.ROOT / "manifests" / "monitoring" / "jobqueue-alerts.yaml").read_text()
    )
    assert rule["spec"] == generated
