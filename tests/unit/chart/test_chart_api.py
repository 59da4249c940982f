"""The chart's admin API (api.enabled): off by default; a restricted pod with probes, a
Service, and RBAC that may only ask the API server who a caller is and what they may do."""

from __future__ import annotations

from unit.chart.chartkit import Render, assert_restricted, container_env, kinds, one

ON = {"api": {"enabled": True}, "redis": {"url": "redis://redis.jq-system:6379/0"}}
NAME = "t-jobqueue-operator-api"


def test_off_by_default(render: Render) -> None:
    objects = render()
    assert [o["metadata"]["name"] for o in kinds(objects, "Deployment")] == ["t-jobqueue-operator"]
    assert not [o for o in objects if o["metadata"]["name"].startswith(NAME)]


def test_api_deployment_serves_the_command_with_probes_and_redis_from_the_secret(render: Render) -> None:
    deploy = one(render(ON), "Deployment", NAME)
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["jobqueue", "api", "--host", "0.0.0.0", "--log-level", "INFO"]
    assert container_env(deploy)["JOBQUEUE_API_PORT"] == "8000"
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container_env(deploy)["JOBQUEUE_REDIS_URL"] == {
        "secretKeyRef": {"name": "t-jobqueue-operator-redis", "key": "url"}
    }
    assert pod["serviceAccountName"] == NAME
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "api"
    assert deploy["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "api"


def test_api_pod_meets_the_restricted_pod_security_standard(render: Render) -> None:
    assert_restricted(one(render(ON), "Deployment", NAME)["spec"]["template"]["spec"])


def test_service_selects_only_the_api_pods(render: Render) -> None:
    objects = render({**ON, "api": {"enabled": True, "service": {"port": 8080}}})
    service = one(objects, "Service", NAME)
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "api"


def test_api_rbac_can_only_ask_the_api_server(render: Render) -> None:
    objects = render(ON)
    role = one(objects, "ClusterRole", NAME)
    assert role["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ]
    binding = one(objects, "ClusterRoleBinding", NAME)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": "jq-system"}]
    operate = one(objects, "ClusterRole", f"{NAME}-operate")
    assert operate["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert {r["resources"][0]: r["verbs"] for r in operate["rules"]} == {
        "jobqueues/jobs": ["create", "update"],
        "jobqueues/pause": ["update"],
    }
    plain = render({**ON, "api": {"enabled": True, "aggregateToDefaultRoles": False}})
    assert not [r for r in kinds(plain, "ClusterRole") if r["metadata"]["name"] == f"{NAME}-operate"]
