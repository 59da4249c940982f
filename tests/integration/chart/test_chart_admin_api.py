"""The admin API as the chart deploys it (api.enabled): its pod passes "restricted" Pod
Security admission, runs (pod runner) with its own ServiceAccount, whose ClusterRole — able
only to create TokenReviews and SubjectAccessReviews — is all it needs to authorize callers;
the Service selects it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import redis

import devenv
import podrunner
from integration.api.apikit import OPERATOR_RULES, service_account
from integration.chart import clusterkit
from unit.chart import chartkit

RELEASE = "adm"
API = f"{RELEASE}-jobqueue-operator-api"


def call(port: int, path: str, token: str, method: str = "GET") -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_chart_deploys_a_working_api(
    *,
    cluster: devenv.Cluster,
    helm: clusterkit.Helm,
    make_namespace: Callable[..., str],
    redis_url: str,
    redis_conn: redis.Redis,
    tmp_path: Path,
) -> None:
    namespace = make_namespace(
        labels={"pod-security.kubernetes.io/enforce": "restricted", podrunner.PRIVATE_NAMESPACE_LABEL: "true"}
    )
    # isolation none: the test's Redis has no password, and the admin API reads the queues of
    # the operator's own database (with namespace isolation they live in one per namespace)
    helm.install(
        RELEASE,
        namespace,
        values={
            "watchNamespaces": [namespace],
            "redis": {"url": redis_url, "isolation": "none"},
            "api": {"enabled": True},
        },
    )
    service = clusterkit.get_json(cluster, "service", API, "-n", namespace)
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "api"
    # the ReplicaSet's pod was admitted under "restricted" Pod Security
    pods = clusterkit.get_json(cluster, "pods", "-n", namespace, "-l", "app.kubernetes.io/component=api")
    assert len(pods["items"]) == 1
    assert pods["items"][0]["spec"]["serviceAccountName"] == API

    queue = next(
        d
        for d in chartkit.load_all((chartkit.ROOT / "manifests" / "samples" / "jobqueues.yaml").read_text())
        if d["metadata"]["name"] == "audit-log"
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(queue))
    ops = service_account(cluster, namespace, "ops", OPERATOR_RULES)
    nobody = service_account(cluster, namespace, "nobody", None)
    config = podrunner.Config(
        kubeconfig=cluster.kubeconfig, namespace=namespace, state_dir=tmp_path / "pods", shutdown_grace=10.0
    )
    with podrunner.PodRunner(config) as runner:

        def port() -> int | None:
            info = next(
                (i for i in runner.snapshot() if i.name.startswith(API) and i.state == "running"), None
            )
            return info.ports.get("JOBQUEUE_API_PORT") if info else None

        api_port: int = devenv.wait_until("the API pod running", port, timeout=90)
        devenv.wait_until(
            "settings published by the operator pod",
            lambda: redis_conn.exists("jobqueue:settings:audit:log"),
            timeout=90,
        )

        def listed() -> object:
            try:
                status, body = call(api_port, "/api/v1/queues", ops)
            except OSError:
                return None
            return status == 200 and body["queues"]

        queues = devenv.wait_until("the API answering", listed, timeout=60)
        assert [q["queue"] for q in queues] == ["audit:log"]  # type: ignore[index]
        assert queues[0]["jobqueue"] == "audit-log"  # type: ignore[index]
        status, body = call(api_port, "/api/v1/queues/audit:log/pause", nobody, method="POST")
        assert status == 403, body
        assert f"serviceaccount:{namespace}:nobody may not update jobqueues/pause" in str(body["detail"])
        status, body = call(api_port, "/api/v1/queues/audit:log/pause", ops, method="POST")
        assert (status, body["paused"]) == (200, True)
