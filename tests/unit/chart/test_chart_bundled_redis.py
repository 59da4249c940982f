"""`redis.bundled`: the Redis for trying the chart out — off by default; when on, a Deployment
and a Service of one Redis, its generated password kept only in the chart's Redis Secret, and
the operator's default Redis URL pointing at the Service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from unit.chart.chartkit import NAMESPACE, Render, assert_restricted, container_env, kinds, one

BUNDLED = {"redis": {"bundled": True}}
NAME = "t-jobqueue-operator-redis"


def _component(objects: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    found = [
        o
        for o in kinds(objects, kind)
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, found
    return found[0]


def _secret(objects: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = one(objects, "Secret", NAME)["stringData"]
    return data


def test_off_by_default_nothing_of_it_renders(render: Render) -> None:
    objects = render()
    assert [d["metadata"]["name"] for d in kinds(objects, "Deployment")] == ["t-jobqueue-operator"]
    assert not [s for s in kinds(objects, "Service") if s["metadata"]["name"] == NAME]
    assert not [s for s in kinds(objects, "Secret") if s["metadata"]["name"] == NAME]


def test_bundled_renders_one_redis_and_a_service_selecting_only_it(render: Render) -> None:
    objects = render(BUNDLED)
    redis = _component(objects, "Deployment", "redis")
    operator = _component(objects, "Deployment", "operator")
    service = one(objects, "Service", NAME)
    assert redis["metadata"]["name"] == NAME
    assert redis["spec"]["replicas"] == 1
    assert redis["spec"]["strategy"] == {"type": "Recreate"}
    redis_labels = redis["spec"]["template"]["metadata"]["labels"]
    operator_labels = operator["spec"]["template"]["metadata"]["labels"]
    assert redis_labels["app.kubernetes.io/part-of"] == "jobqueue"
    # each selector picks its own pods and never the other's
    assert redis["spec"]["selector"]["matchLabels"].items() <= redis_labels.items()
    assert not operator["spec"]["selector"]["matchLabels"].items() <= redis_labels.items()
    assert service["spec"]["selector"].items() <= redis_labels.items()
    assert not service["spec"]["selector"].items() <= operator_labels.items()
    container = redis["spec"]["template"]["spec"]["containers"][0]
    assert service["spec"]["ports"] == [
        {"name": "redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}
    ]
    assert container["ports"] == [{"name": "redis", "containerPort": 6379, "protocol": "TCP"}]
    assert container["image"] == "registry.example/jobqueue-redis:7"
    assert container["command"] == ["redis-server"]
    # no persistence: nothing is saved, whatever the image's defaults
    assert container["args"][container["args"].index("--save") + 1] == ""
    assert container["args"][container["args"].index("--appendonly") + 1] == "no"


def test_the_bundled_redis_pod_meets_the_restricted_pod_security_standard(render: Render) -> None:
    pod = _component(render(BUNDLED), "Deployment", "redis")["spec"]["template"]["spec"]
    assert_restricted(pod)
    assert pod["automountServiceAccountToken"] is False  # Redis never calls the API server


def test_the_operator_default_redis_is_the_service_with_the_generated_password(render: Render) -> None:
    objects = render(BUNDLED)
    secret = _secret(objects)
    url = urlsplit(secret["url"])
    assert (url.scheme, url.hostname, url.port, url.path) == ("redis", f"{NAME}.{NAMESPACE}.svc", 6379, "/0")
    assert url.password == secret["password"]
    assert len(secret["password"]) == 32
    assert secret["password"].isalnum()
    assert secret["redis.conf"].splitlines() == [f"requirepass {secret['password']}"]
    env = container_env(_component(objects, "Deployment", "operator"))
    assert env["JOBQUEUE_REDIS_URL"] == {"secretKeyRef": {"name": NAME, "key": "url"}}  # not optional


def test_the_password_is_only_in_the_secret(render: Render) -> None:
    objects = render(BUNDLED)
    password = _secret(objects)["password"]
    elsewhere = [o["kind"] for o in objects if o["kind"] != "Secret" and password in str(o)]
    assert elsewhere == []
    pod = _component(objects, "Deployment", "redis")["spec"]["template"]["spec"]
    config = next(v for v in pod["volumes"] if v["name"] == "config")
    assert config["secret"] == {"secretName": NAME, "items": [{"key": "redis.conf", "path": "redis.conf"}]}
    assert pod["containers"][0]["args"][0] == "/etc/redis/redis.conf"


def test_any_redis_image_can_be_bundled(render: Render) -> None:
    objects = render(
        {
            "redis": {
                "bundled": True,
                "bundledRedis": {
                    "image": {"repository": "docker.io/library/redis", "tag": "7.4", "pullPolicy": "Always"},
                    "resources": {"limits": {"memory": "1Gi"}},
                },
            }
        }
    )
    container = _component(objects, "Deployment", "redis")["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["imagePullPolicy"]) == ("docker.io/library/redis:7.4", "Always")
    assert container["resources"]["limits"] == {"memory": "1Gi"}


def test_bundled_with_a_url_or_an_existing_secret_is_refused(
    render_error: Callable[[dict[str, Any]], str],
) -> None:
    for other in ({"url": "redis://r:6379/0"}, {"existingSecret": "mine"}):
        message = render_error({"redis": {"bundled": True, **other}})
        assert "redis.bundled runs a Redis of the release" in message
        assert "leave redis.url and redis.existingSecret empty" in message


def test_unknown_bundled_redis_values_are_refused(render_error: Callable[[dict[str, Any]], str]) -> None:
    message = render_error({"redis": {"bundled": True, "bundledRedis": {"persistence": True}}})
    assert "persistence" in message
