"""The test environment is real: these prove each component does what production ones do.

They stay as regression tests — if a version bump of the control plane, Redis or Prometheus
breaks one of these behaviours, every test built on top of it would be meaningless.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

import devenv


def kubectl_json(cluster: devenv.Cluster, *args: str) -> dict:  # type: ignore[type-arg]
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------
# Kubernetes


def test_nodes_are_ready_and_version_is_stamped(cluster: devenv.Cluster) -> None:
    nodes = kubectl_json(cluster, "get", "nodes")["items"]
    ready = [
        n["metadata"]["name"]
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    ]
    assert len(ready) >= 2, nodes
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    # Helm's kubeVersion checks need a real semver here: a source build without the version
    # ldflags reports v0.0.0-master, and charts with a kubeVersion constraint are refused
    assert version["gitVersion"].startswith("v1.36."), version


def test_deployment_gets_ready_pods_on_a_kwok_node(cluster: devenv.Cluster, namespace: str) -> None:
    cluster.kubectl(
        "create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=2", "-n", namespace
    )
    cluster.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=90s", timeout=100)
    pods = kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", "app=web")["items"]
    assert len(pods) == 2
    nodes = {n["metadata"]["name"]: n for n in kubectl_json(cluster, "get", "nodes")["items"]}
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        node = nodes[pod["spec"]["nodeName"]]
        assert node["metadata"]["annotations"].get("kwok.x-k8s.io/node") == "fake"


def test_deleting_an_owner_garbage_collects_its_dependents(cluster: devenv.Cluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = kubectl_json(cluster, "get", "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(dependent))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    devenv.wait_until(
        "garbage collection of the dependent",
        lambda: (
            cluster.kubectl("get", "configmap", "dependent", "-n", namespace, check=False).returncode != 0
        ),
        timeout=60,
    )


def test_controller_manager_runs_at_the_asked_api_rate() -> None:
    # benchmarks with thousands of Deployments raise it (devenv.Cluster.controller_qps)
    with devenv.session_cluster(nodes=1, suffix="-qps", controller_qps=120) as cluster:
        argvs = []
        for p in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):  # a process that ended meanwhile
                argvs.append(p.read_bytes().split(b"\0"))
        argv = next(
            a for a in argvs if a[0].endswith(f"/{cluster.name}/bin/kube-controller-manager".encode())
        )
        assert b"--kube-api-qps=120" in argv
        assert b"--kube-api-burst=180" in argv


def test_aggregation_layer_publishes_front_proxy_settings(cluster: devenv.Cluster) -> None:
    # An aggregated API server (KEDA's metrics server, hack/keda.py) authenticates the API
    # server's proxied requests from these; kwokctl alone sets no --requestheader-* flags.
    data = kubectl_json(
        cluster, "get", "configmap", "extension-apiserver-authentication", "-n", "kube-system"
    )["data"]
    assert data["requestheader-client-ca-file"] == data["client-ca-file"]
    assert json.loads(data["requestheader-allowed-names"]) == ["kwok-admin"]
    assert json.loads(data["requestheader-username-headers"]) == ["X-Remote-User"]
    assert json.loads(data["requestheader-group-headers"]) == ["X-Remote-Group"]


def test_restricted_namespace_rejects_a_privileged_pod(cluster: devenv.Cluster, namespace: str) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "priv", "namespace": namespace},
        "spec": {
            "containers": [
                {"name": "c", "image": "registry.invalid/x:1", "securityContext": {"privileged": True}}
            ]
        },
    }
    result = cluster.kubectl("apply", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr, result.stderr
    assert "privileged" in result.stderr, result.stderr


def test_crd_cel_rule_rejects_a_bad_object_with_its_message(cluster: devenv.Cluster, namespace: str) -> None:
    crd = textwrap.dedent("""
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {name: ranges.envtest.jobqueue.invalid}
        spec:
          group: envtest.jobqueue.invalid
          scope: Namespaced
          names: {plural: ranges, singular: range, kind: Range}
          versions:
            - name: v1
              served: true
              storage: true
              schema:
                openAPIV3Schema:
                  type: object
                  properties:
                    spec:
                      type: object
                      properties:
                        min: {type: integer}
                        max: {type: integer}
                      x-kubernetes-validations:
                        - rule: self.min <= self.max
                          message: min must not exceed max
    """)
    cluster.kubectl("apply", "-f", "-", input=crd)
    try:
        devenv.wait_until(
            "CRD established",
            lambda: (
                cluster.kubectl(
                    "wait",
                    "--for=condition=Established",
                    "crd/ranges.envtest.jobqueue.invalid",
                    "--timeout=5s",
                    check=False,
                ).returncode
                == 0
            ),
            timeout=60,
        )
        good = {
            "apiVersion": "envtest.jobqueue.invalid/v1",
            "kind": "Range",
            "metadata": {"name": "ok", "namespace": namespace},
            "spec": {"min": 1, "max": 2},
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(good))
        bad = {**good, "metadata": {"name": "bad", "namespace": namespace}, "spec": {"min": 3, "max": 2}}
        result = cluster.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
        assert result.returncode != 0
        assert "min must not exceed max" in result.stderr, result.stderr
    finally:
        cluster.kubectl("delete", "crd", "ranges.envtest.jobqueue.invalid", "--wait=false", check=False)


def test_helm_install_and_uninstall_a_tiny_chart(
    cluster: devenv.Cluster, namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: tiny\nversion: 0.1.0\nkubeVersion: '>=1.30.0-0'\n"
    )
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n"
        "data:\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    helm = [cluster.binaries.path("helm"), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace]
    subprocess.run(
        [*helm, "install", "tiny", str(chart), "--wait", "--timeout", "60s"],
        check=True,
        capture_output=True,
        text=True,
    )
    cm = kubectl_json(cluster, "get", "configmap", "tiny-cm", "-n", namespace)
    assert cm["data"]["kube"].startswith("v1.36.")
    subprocess.run([*helm, "uninstall", "tiny", "--wait"], check=True, capture_output=True, text=True)
    assert cluster.kubectl("get", "configmap", "tiny-cm", "-n", namespace, check=False).returncode != 0


# --------------------------------------------------------------------------------------
# Redis and Prometheus


def test_redis_answers_and_databases_are_isolated(redis_conn: redis.Redis, redis_url: str) -> None:
    assert redis_conn.ping() is True
    assert redis_conn.dbsize() == 0  # flushed for this test
    redis_conn.set("k", "v")
    assert redis_conn.get("k") == b"v"


@pytest.fixture
def metrics_target() -> Iterator[str]:
    body = b"# TYPE envtest_answer gauge\nenvtest_answer 42\n"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_prometheus_scrapes_a_target_and_a_query_returns_its_sample(
    prometheus: devenv.PrometheusServer, metrics_target: str
) -> None:
    prometheus.add_target("envtest", metrics_target)
    try:
        result = prometheus.wait_for_sample('envtest_answer{job="envtest"}', timeout=30)
        assert float(result[0]["value"][1]) == 42.0
    finally:
        prometheus.remove_job("envtest")
