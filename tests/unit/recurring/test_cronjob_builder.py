"""The CronJob builder: the golden manifest, and the properties every CronJob must have."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobqueue_operator import models
from jobqueue_operator.builders import cronjob, deployment

GOLDEN = Path(__file__).parent / "golden"
DEFAULTS = deployment.WorkerDefaults(default_redis=True, image_pull_policy="IfNotPresent")

QUEUE: dict[str, Any] = {
    "worker": {
        "image": "registry.example/glec-jobs:1.4.2",
        "imports": ["glec.jobs"],
        "serviceAccountName": "glec-jobs",
        "imagePullSecrets": [{"name": "registry"}],
        "securityContext": {"runAsUser": 1000, "runAsGroup": 3000},
        "nodeSelector": {"pool": "gpu"},
    },
    "redis": {"urlSecretRef": {"name": "jq-redis", "key": "url"}},
}
FULL: dict[str, Any] = {
    "queue": "analytics",
    "schedule": "0 0 * * *",
    "timeZone": "Asia/Seoul",
    "function": "glec.jobs.daily_aggregate",
    "args": ["2026", {"region": "kr"}],
    "kwargs": {"aggregation_type": "daily", "limits": {"b": 2, "a": 1}},
    "jobOptions": {"attempts": 2, "timeoutSeconds": 600, "keepCompleted": {"ageSeconds": 604800}},
    "priority": 4,
    "concurrencyPolicy": "Replace",
    "startingDeadlineSeconds": 300,
    "successfulJobsHistoryLimit": 5,
    "failedJobsHistoryLimit": 2,
}
MINIMAL: dict[str, Any] = {"queue": "analytics", "schedule": "@daily", "function": "glec.jobs.cleanup"}


def build(
    spec: dict[str, Any],
    queue: dict[str, Any] | None = None,
    *,
    name: str = "daily-analytics",
    suspend: bool = False,
    defaults: deployment.WorkerDefaults = DEFAULTS,
) -> dict[str, Any]:
    queue_spec = models.JobQueueSpec.model_validate(queue or QUEUE)
    return cronjob.build(
        namespace="glec",
        name=name,
        uid="uid-7",
        spec=models.RecurringJobSpec.model_validate(spec),
        queue=cronjob.target(namespace="glec", name="analytics", spec=queue_spec),
        defaults=defaults,
        suspend=suspend,
    )


def pod(body: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = body["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize(
    ("golden_name", "queue"),
    [
        ("cronjob.yaml", QUEUE),
        # a queue on the operator's default Redis: its pods read the namespace's Secret
        ("cronjob-default-redis.yaml", {"worker": QUEUE["worker"]}),
    ],
)
def test_full_spec_matches_the_golden_manifest(golden_name: str, queue: dict[str, Any]) -> None:
    golden = GOLDEN / golden_name
    built = build(FULL, queue)
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(yaml.safe_dump(built, sort_keys=False))
    assert built == yaml.safe_load(golden.read_text()), "set UPDATE_GOLDEN=1 to accept an intended change"


def test_the_cronjob_carries_the_schedule_and_the_policies() -> None:
    spec = build(FULL)["spec"]
    assert {k: spec[k] for k in spec if k != "jobTemplate"} == {
        "schedule": "0 0 * * *",
        "timeZone": "Asia/Seoul",
        "suspend": False,
        "concurrencyPolicy": "Replace",
        "startingDeadlineSeconds": 300,
        "successfulJobsHistoryLimit": 5,
        "failedJobsHistoryLimit": 2,
    }
    minimal = build(MINIMAL)["spec"]
    assert "startingDeadlineSeconds" not in minimal  # unset means "no deadline", not 0
    assert (minimal["timeZone"], minimal["concurrencyPolicy"]) == ("UTC", "Forbid")


def test_the_operator_can_suspend_whatever_the_spec_says() -> None:
    assert build(MINIMAL, suspend=True)["spec"]["suspend"] is True
    assert build({**MINIMAL, "suspend": True})["spec"]["suspend"] is True


def test_the_pod_enqueues_one_job_with_the_tick_id() -> None:
    (container,) = pod(build(FULL))["containers"]
    assert container["command"] == [
        "jobqueue",
        "enqueue",
        "glec.analytics",
        "glec.jobs.daily_aggregate",
        "--args-json",
        '["2026",{"region":"kr"}]',
        "--kwargs-json",
        '{"aggregation_type":"daily","limits":{"a":1,"b":2}}',
        "--options-json",
        '{"attempts":2,"keepCompleted":{"ageSeconds":604800},"timeoutSeconds":600}',
        "--priority",
        "4",
        "--job-id",
        "rj_glec_$(JOB_NAME)",
    ]
    (minimal,) = pod(build(MINIMAL))["containers"]
    assert minimal["command"] == [
        "jobqueue",
        "enqueue",
        "glec.analytics",
        "glec.jobs.cleanup",
        "--job-id",
        "rj_glec_$(JOB_NAME)",
    ]


def test_the_job_name_comes_from_the_downward_api() -> None:
    (container,) = pod(build(MINIMAL))["containers"]
    (job_name,) = [e for e in container["env"] if e["name"] == "JOB_NAME"]
    assert job_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['batch.kubernetes.io/job-name']"


def test_dollars_in_arguments_are_not_expanded_by_the_kubelet() -> None:
    spec = {**MINIMAL, "kwargs": {"text": "$(JOB_NAME) costs $5 and $$"}, "args": ["$(HOME)"]}
    (container,) = pod(build(spec))["containers"]
    command = container["command"]
    assert command[command.index("--kwargs-json") + 1] == '{"text":"$$(JOB_NAME) costs $$5 and $$$$"}'
    assert command[command.index("--args-json") + 1] == '["$$(HOME)"]'
    assert command[-1] == "rj_glec_$(JOB_NAME)"  # the one reference meant to be expanded


def test_the_redis_url_reaches_the_pod_exactly_as_it_reaches_the_workers() -> None:
    for queue in (QUEUE, {"worker": {"image": "img:1", "imports": ["glec.jobs"]}}):
        queue_spec = models.JobQueueSpec.model_validate(queue)
        workers = deployment.build(
            namespace="glec",
            name="analytics",
            uid="u",
            spec=queue_spec,
            queue_name="glec.analytics",
            defaults=DEFAULTS,
        )
        (worker,) = workers["spec"]["template"]["spec"]["containers"]
        (container,) = pod(build(MINIMAL, queue))["containers"]
        redis = [e for e in container["env"] if e["name"] == "JOBQUEUE_REDIS_URL"]
        assert redis == [e for e in worker["env"] if e["name"] == "JOBQUEUE_REDIS_URL"]
        assert len(redis) == 1
        # by reference: the queue's own Secret, or the namespace's Secret of the default Redis
        secret = "jq-redis" if "redis" in queue else "jobqueue-default-redis"
        assert redis[0]["valueFrom"] == {"secretKeyRef": {"name": secret, "key": "url"}}


def test_the_image_and_identity_are_the_workers() -> None:
    spec = pod(build(MINIMAL))
    (container,) = spec["containers"]
    assert (container["image"], container["imagePullPolicy"]) == (
        "registry.example/glec-jobs:1.4.2",
        "IfNotPresent",
    )
    assert spec["serviceAccountName"] == "glec-jobs"
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (1000, 3000)
    assert "nodeSelector" not in spec  # a worker pool (GPU nodes …) is no place for a tiny enqueue pod
    bare = pod(
        build(
            MINIMAL,
            {"worker": {"image": "img:1", "imports": ["glec.jobs"]}},
            defaults=deployment.WorkerDefaults(),
        )
    )
    assert bare["securityContext"]["runAsUser"] == deployment.DEFAULT_RUN_AS_USER
    assert "serviceAccountName" not in bare
    assert "imagePullPolicy" not in bare["containers"][0]


def test_the_pod_passes_the_restricted_pod_security_standard() -> None:
    spec = pod(build(FULL))
    (container,) = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    assert "hostNetwork" not in spec
    assert "volumes" not in spec


def test_the_pod_asks_for_little() -> None:
    (container,) = pod(build(FULL))["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "10m", "memory": "64Mi"},
        "limits": {"memory": "128Mi"},
    }


def test_labels_and_owner() -> None:
    body = build(MINIMAL)
    template = body["spec"]["jobTemplate"]["spec"]["template"]
    for labels in (
        body["metadata"]["labels"],
        body["spec"]["jobTemplate"]["metadata"]["labels"],
        template["metadata"]["labels"],
    ):
        assert labels["app.kubernetes.io/part-of"] == "jobqueue"
        assert labels["app.kubernetes.io/component"] == "recurring-job"
        assert labels["jobqueue.glec.io/recurringjob"] == "daily-analytics"
        assert "jobqueue.glec.io/jobqueue" not in labels  # never selected as a worker of the queue
    assert template["metadata"]["annotations"] == {"jobqueue.glec.io/queue": "glec.analytics"}
    (owner,) = body["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "jobqueue.glec.io/v1alpha1",
        "kind": "RecurringJob",
        "name": "daily-analytics",
        "uid": "uid-7",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert cronjob.recurringjob_of(body["metadata"]["labels"]) == "daily-analytics"


def test_a_usage_error_fails_the_job_at_once() -> None:
    job = build(MINIMAL)["spec"]["jobTemplate"]["spec"]
    fail, ignore = job["podFailurePolicy"]["rules"]
    assert fail == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "enqueue", "operator": "In", "values": [2]},
    }
    assert ignore["action"] == "Ignore"
    assert job["backoffLimit"] >= 1


@pytest.mark.parametrize("name", ["a", "daily-analytics", "x" * 52])
def test_short_names_are_kept(name: str) -> None:
    assert cronjob.cronjob_name(name) == name


def test_long_names_are_shortened_deterministically_and_distinctly() -> None:
    names = ["a" * 63, "a" * 62 + "b", "a" * 53, "daily-analytics-for-every-fleet-in-the-region-" + "x" * 16]
    short = [cronjob.cronjob_name(n) for n in names]
    assert all(len(s) <= cronjob.MAX_CRONJOB_NAME for s in short)
    assert len(set(short)) == len(names)
    assert short == [cronjob.cronjob_name(n) for n in names]
    assert all(s[-1].isalnum() and s[0].isalnum() for s in short)
    assert cronjob.cronjob_name("ab-" * 21)[:43] == ("ab-" * 21)[:43].rstrip("-")  # a readable prefix


def test_the_tick_job_id_is_the_namespace_and_the_job_the_cronjob_controller_names() -> None:
    tick = datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.UTC)
    job = cronjob.scheduled_job_name("daily-analytics", tick)
    assert job == f"daily-analytics-{int(tick.timestamp()) // 60}" == "daily-analytics-29453760"
    assert cronjob.job_id("glec", job) == "rj_glec_daily-analytics-29453760"
    # a Job name that is 63 characters long (the most Kubernetes allows) still makes a valid RQ id
    longest = cronjob.job_id("n" * 63, cronjob.scheduled_job_name("x" * 52, tick))
    assert len(longest) <= 200
    assert longest.replace("_", "").replace("-", "").isalnum()
