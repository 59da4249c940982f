"""The worker Deployment builder: the golden manifest and the properties that must always hold."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobqueue_operator import handlers, models
from jobqueue_operator.builders import cronjob, deployment, names
from jobqueue_operator.settings import Settings

GOLDEN = Path(__file__).parent / "golden"
DEFAULTS = deployment.WorkerDefaults(
    default_redis=True,
    priority_class_prefix="jobqueue-priority-",
    image_pull_policy="IfNotPresent",
)

FULL_SPEC: dict[str, Any] = {
    "queueName": "ei:update",
    "priority": 1,
    "concurrency": 20,
    "worker": {
        "image": "registry.example/glec-jobs:1.4.2",
        "imports": ["glec.jobs", "glec.more"],
        "concurrencyPerPod": 4,
        "mode": "thread",
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}},
        "env": [
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "api", "key": "key"}}},
        ],
        "envFrom": [{"configMapRef": {"name": "glec-config"}}],
        "nodeSelector": {"pool": "jobs"},
        "tolerations": [{"key": "jobs", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "preference": {
                            "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]
                        },
                    }
                ]
            }
        },
        "serviceAccountName": "glec-jobs",
        "podLabels": {"team": "logistics", "app.kubernetes.io/component": "not-the-selector"},
        "podAnnotations": {"example.com/owner": "platform"},
        "imagePullSecrets": [{"name": "registry"}],
        "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
    },
    "jobDefaults": {
        "attempts": 3,
        "backoff": {"type": "exponential", "delaySeconds": 1},
        "timeoutSeconds": 600,
    },
    "redis": {"urlSecretRef": {"name": "jq-redis", "key": "url"}},
}


def build(
    spec: dict[str, Any],
    defaults: deployment.WorkerDefaults = DEFAULTS,
    name: str = "ei-update",
    queue: str | None = None,
    redis_revision: int | None = 1,
) -> dict[str, Any]:
    parsed = models.JobQueueSpec.model_validate(spec)
    return deployment.build(
        namespace="glec",
        name=name,
        uid="uid-1",
        spec=parsed,
        queue_name=queue or parsed.effective_queue_name("glec", name),
        defaults=defaults,
        redis_revision=redis_revision,
    )


def minimal(**worker: Any) -> dict[str, Any]:
    return {"worker": {"image": "img:1", "imports": ["app.jobs"], **worker}}


@pytest.mark.parametrize(
    ("golden_name", "spec"),
    [
        ("worker-deployment.yaml", FULL_SPEC),
        # a queue on the operator's default Redis: the namespace's Secret, and its revision
        ("worker-deployment-default-redis.yaml", {k: v for k, v in FULL_SPEC.items() if k != "redis"}),
    ],
)
def test_full_spec_matches_the_golden_manifest(golden_name: str, spec: dict[str, Any]) -> None:
    golden = GOLDEN / golden_name
    built = build(spec, redis_revision=3)
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(yaml.safe_dump(built, sort_keys=False))
    assert built == yaml.safe_load(golden.read_text()), "set UPDATE_GOLDEN=1 to accept an intended change"


def test_replicas_are_never_in_the_apply_body() -> None:
    assert "replicas" not in build(FULL_SPEC)["spec"]
    assert "replicas" not in build(minimal())["spec"]


def test_names_selector_and_owner_follow_the_contract() -> None:
    body = build(minimal(podLabels={"team": "x"}), name="reports")
    assert body["metadata"]["name"] == "reports-worker"
    assert body["spec"]["selector"]["matchLabels"] == {
        "jobqueue.glec.io/jobqueue": "reports",
        "app.kubernetes.io/component": "worker",
    }
    labels = body["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "jobqueue-operator"
    assert labels["app.kubernetes.io/part-of"] == "jobqueue"
    assert labels["app.kubernetes.io/instance"] == "reports"
    assert labels["team"] == "x"
    (owner,) = body["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "jobqueue.glec.io/v1alpha1",
        "kind": "JobQueue",
        "name": "reports",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_user_pod_labels_cannot_break_the_selector() -> None:
    labels = build(FULL_SPEC)["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "worker"


def test_the_container_runs_the_worker_contract_command() -> None:
    (container,) = build(FULL_SPEC)["spec"]["template"]["spec"]["containers"]
    assert container["command"] == [
        "jobqueue",
        "worker",
        "--queue",
        "ei:update",
        "--import",
        "glec.jobs",
        "--import",
        "glec.more",
        "--concurrency",
        "4",
        "--mode",
        "thread",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["JOBQUEUE_METRICS_PORT"]["value"] == "9100"
    assert env["JOBQUEUE_REDIS_URL"] == {
        "name": "JOBQUEUE_REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "jq-redis", "key": "url"}},
    }
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # the workers take jobs only from a queue whose settings their own JobQueue published
    assert env["JOBQUEUE_NAME"] == {"name": "JOBQUEUE_NAME", "value": "ei-update"}
    # the user's own env comes last (the CRD refuses the operator's names in it)
    assert [e["name"] for e in container["env"]][5:] == ["LOG_LEVEL", "API_KEY"]


def test_default_redis_url_reaches_workers_without_spec_redis_through_the_namespace_secret() -> None:
    template = build(minimal(), redis_revision=4)["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert container["env"][0] == {
        "name": "JOBQUEUE_REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "jobqueue-default-redis", "key": "url"}},
    }
    # a new URL is a new revision of the Secret, and a new pod template: the workers roll
    assert template["metadata"]["annotations"]["jobqueue.glec.io/redis-revision"] == "4"
    assert build(minimal(), redis_revision=5)["spec"]["template"] != template
    # no default Redis configured: no variable, no annotation
    template = build(minimal(), deployment.WorkerDefaults(), redis_revision=None)["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert [e["name"] for e in container["env"]] == [
        "POD_NAME",
        "POD_NAMESPACE",
        "JOBQUEUE_NAME",
        "JOBQUEUE_METRICS_PORT",
    ]
    assert "jobqueue.glec.io/redis-revision" not in template["metadata"]["annotations"]


def test_queues_with_their_own_redis_do_not_follow_the_default_secret() -> None:
    spec = {**minimal(), "redis": {"urlSecretRef": {"name": "jq-redis", "key": "url"}}}
    template = build(spec, redis_revision=7)["spec"]["template"]
    assert "jobqueue.glec.io/redis-revision" not in template["metadata"]["annotations"]
    assert build(spec, redis_revision=8)["spec"]["template"] == template


#: URLs of every shape the operator accepts, with credentials in them
URLS = [
    "redis://:s3cret-pw@redis.jobqueue:6379/0",
    "rediss://app-user:s3cret-pw@redis:6380/2",
    "unix://:s3cret-pw@/run/redis.sock?db=1",
]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize(
    "spec",
    [FULL_SPEC, minimal(), {k: v for k, v in FULL_SPEC.items() if k != "redis"}],
    ids=["own-redis", "minimal", "full-default-redis"],
)
def test_no_redis_url_ever_appears_in_a_pod_spec(url: str, spec: dict[str, Any]) -> None:
    """From the operator's settings to the Deployment and CronJob bodies, the way the operator
    wires them (handlers.worker_defaults): the default URL is never in either."""
    defaults = handlers.worker_defaults(Settings.from_env({"JOBQUEUE_REDIS_URL": url}))
    assert defaults.default_redis
    parsed = models.JobQueueSpec.model_validate(spec)
    bodies = [
        build(spec, defaults),
        cronjob.build(
            namespace="glec",
            name="nightly",
            uid="u",
            defaults=defaults,
            spec=models.RecurringJobSpec.model_validate(
                {"queue": "ei-update", "schedule": "@daily", "function": "glec.jobs.f"}
            ),
            queue=cronjob.target(namespace="glec", name="ei-update", spec=parsed),
        ),
    ]
    for body in bodies:
        text = json.dumps(body)
        assert "s3cret" not in text
        assert url.rsplit("@", maxsplit=1)[-1] not in text  # not even the host
        (container,) = (
            body["spec"]["template"]["spec"]
            if body["kind"] == "Deployment"
            else body["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        )["containers"]
        (redis,) = [e for e in container["env"] if e["name"] == "JOBQUEUE_REDIS_URL"]
        assert redis.keys() == {"name", "valueFrom"}
        assert redis["valueFrom"].keys() == {"secretKeyRef"}


def test_unset_optional_fields_are_absent() -> None:
    pod = build(minimal(), deployment.WorkerDefaults())["spec"]["template"]["spec"]
    for field in (
        "nodeSelector",
        "tolerations",
        "affinity",
        "serviceAccountName",
        "priorityClassName",
        "imagePullSecrets",
        "topologySpreadConstraints",
    ):
        assert field not in pod, field
    (container,) = pod["containers"]
    for field in ("resources", "envFrom", "imagePullPolicy"):
        assert field not in container, field


def test_pod_passes_the_restricted_pod_security_standard() -> None:
    pod = build(FULL_SPEC)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }
    assert all(set(volume) <= {"name", "emptyDir"} for volume in pod["volumes"])
    assert build(minimal())["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 65532


@pytest.mark.parametrize(
    ("job_defaults", "override", "expected"),
    [
        (None, None, 180 + 30),  # RQ's default timeout
        ({"timeoutSeconds": 600}, None, 630),
        ({"timeoutSeconds": 600}, 3600, 3600),
        ({"timeoutSeconds": 600}, 10, 630),  # never below the job timeout
    ],
)
def test_grace_period_outlasts_a_job(
    job_defaults: dict[str, Any] | None, override: int | None, expected: int
) -> None:
    spec = minimal(**({"terminationGracePeriodSeconds": override} if override is not None else {}))
    if job_defaults:
        spec["jobDefaults"] = job_defaults
    assert build(spec)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == expected


def test_priority_class_comes_from_the_prefix_or_the_override() -> None:
    pod = build({**minimal(), "priority": 2})["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "jobqueue-priority-2"
    pod = build({**minimal(priorityClassName="critical"), "priority": 2})["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "critical"
    pod = build(minimal(), deployment.WorkerDefaults())["spec"]["template"]["spec"]
    assert "priorityClassName" not in pod


def test_pull_policy_falls_back_to_the_operators_setting() -> None:
    (container,) = build(minimal())["spec"]["template"]["spec"]["containers"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    (container,) = build(minimal(imagePullPolicy="Always"))["spec"]["template"]["spec"]["containers"]
    assert container["imagePullPolicy"] == "Always"


def test_queue_name_reaches_command_and_annotations() -> None:
    body = build(minimal(), queue="custom:q")
    assert body["metadata"]["annotations"][names.QUEUE_ANNOTATION] == "custom:q"
    assert body["spec"]["template"]["metadata"]["annotations"][names.QUEUE_ANNOTATION] == "custom:q"
    assert body["spec"]["template"]["spec"]["containers"][0]["command"][3] == "custom:q"


def test_creation_and_replica_hand_over_bodies() -> None:
    body = build(minimal())
    created = deployment.with_replicas(body, 2)
    assert created["spec"]["replicas"] == 2
    assert "replicas" not in body["spec"]  # not mutated
    claim = deployment.replicas_claim(namespace="glec", name="x-worker", replicas=2)
    assert claim == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x-worker", "namespace": "glec"},
        "spec": {"replicas": 2},
    }


def test_replicas_managers_reads_managed_fields() -> None:
    live = {
        "metadata": {
            "managedFields": [
                {"manager": "jobqueue-operator", "fieldsV1": {"f:spec": {"f:template": {}}}},
                {"manager": "jobqueue-autoscaler", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                {"manager": "kube-controller-manager", "fieldsV1": {"f:status": {}}},
            ]
        }
    }
    assert deployment.replicas_managers(live) == {"jobqueue-autoscaler"}
    assert deployment.replicas_managers({"metadata": {}}) == set()


def test_the_applied_digest_is_of_the_body_itself() -> None:
    body = build(FULL_SPEC, redis_revision=3)
    annotations = body["metadata"]["annotations"]
    stamped = annotations.pop(names.APPLIED_ANNOTATION)
    assert stamped == deployment.digest(body)
    # any difference in what would be applied gives another digest (a restart then applies it)
    assert build(minimal())["metadata"]["annotations"][names.APPLIED_ANNOTATION] != stamped
    labelled = build(minimal(podLabels={"team": "x"}))["metadata"]["annotations"][names.APPLIED_ANNOTATION]
    assert build(minimal())["metadata"]["annotations"][names.APPLIED_ANNOTATION] != labelled
    assert deployment.digest({"b": 1, "a": [1, 2]}) == deployment.digest({"a": [1, 2], "b": 1})
