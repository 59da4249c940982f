"""The operator turns each RecurringJob into one CronJob, keeps it in line, and reports what
the API server cannot check — on the real control plane, with the real operator and Redis."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import opkit
import rjkit
from opkit import RunningOperator, StartOperator

import devenv
from jobqueue_operator import models
from jobqueue_operator.builders import cronjob, deployment

QUEUE_WORKER = {
    "image": "registry.example/glec-jobs:1.4.2",
    "imports": ["glec_jobs"],
    "serviceAccountName": "default",
    "securityContext": {"runAsUser": 1000},
}
FULL: dict[str, Any] = {
    "schedule": "0 0 * * *",
    "timeZone": "Asia/Seoul",
    "args": ["kr", None],
    "kwargs": {"aggregation_type": "daily", "note": "costs $(HOME)"},
    "jobOptions": {"attempts": 2, "timeoutSeconds": 600},
    "priority": 4,
    "concurrencyPolicy": "Replace",
    "startingDeadlineSeconds": 300,
    "successfulJobsHistoryLimit": 5,
    "failedJobsHistoryLimit": 2,
}


def queue(cluster: devenv.Cluster, namespace: str, name: str = "analytics", **spec: Any) -> None:
    spec.setdefault("worker", QUEUE_WORKER)
    opkit.apply(cluster, opkit.jobqueue(name, namespace, **spec))


def wait_cronjob(
    cluster: devenv.Cluster,
    name: str,
    namespace: str,
    *,
    what: str = "exists",
    check: Any = lambda cj: True,
    timeout: float = 60,
) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        cj = rjkit.get(cluster, "cronjob", name, namespace)
        return cj if cj is not None and check(cj) else None

    result: dict[str, Any] = opkit.wait_for(f"CronJob {namespace}/{name} {what}", found, timeout)
    return result


def test_the_cronjob_is_built_as_specified(
    cluster: devenv.Cluster, namespace: str, operator: RunningOperator, redis_url: str
) -> None:
    queue(cluster, namespace)
    opkit.apply(cluster, rjkit.recurringjob("daily-analytics", namespace, **FULL))
    rj = rjkit.wait_ready(cluster, "daily-analytics", namespace, status="True", reason="Scheduled")
    live = wait_cronjob(cluster, "daily-analytics", namespace)
    jq = rjkit.get(cluster, "jobqueue", "analytics", namespace)
    assert jq is not None

    expected = cronjob.build(
        namespace=namespace,
        name="daily-analytics",
        uid=rj["metadata"]["uid"],
        spec=models.RecurringJobSpec.model_validate(rj["spec"]),
        queue=cronjob.target(
            namespace=namespace, name="analytics", spec=models.JobQueueSpec.model_validate(jq["spec"])
        ),
        defaults=deployment.WorkerDefaults(default_redis=True),
    )
    assert rjkit.is_subset(expected["metadata"], live["metadata"]), json.dumps(live["metadata"])
    assert rjkit.is_subset(expected["spec"], live["spec"]), json.dumps(live["spec"])
    # the parts that matter, spelled out
    assert (live["spec"]["schedule"], live["spec"]["timeZone"], live["spec"]["concurrencyPolicy"]) == (
        "0 0 * * *",
        "Asia/Seoul",
        "Replace",
    )
    assert (
        live["spec"]["startingDeadlineSeconds"],
        live["spec"]["successfulJobsHistoryLimit"],
        live["spec"]["failedJobsHistoryLimit"],
        live["spec"]["suspend"],
    ) == (300, 5, 2, False)
    (owner,) = live["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("RecurringJob", rj["metadata"]["uid"], True)
    enqueue = rjkit.container(live)
    assert enqueue["image"] == "registry.example/glec-jobs:1.4.2"
    assert enqueue["command"][:4] == [
        "jobqueue",
        "enqueue",
        f"{namespace}.analytics",
        "glec_jobs.daily_aggregate",
    ]
    assert enqueue["command"][-2:] == ["--job-id", f"rj_{namespace}_$(JOB_NAME)"]
    # the operator's default Redis, by reference to the Secret it keeps for the queue's pods
    assert {
        "name": "JOBQUEUE_REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "jobqueue-default-redis", "key": "url"}},
    } in enqueue["env"]
    assert redis_url not in json.dumps(live)
    secret = rjkit.get(cluster, "secret", "jobqueue-default-redis", namespace)
    assert secret is not None
    assert base64.b64decode(secret["data"]["url"]).decode() == redis_url

    status = rj["status"]
    assert (status["cronJobName"], status["queueName"], status["observedGeneration"]) == (
        "daily-analytics",
        f"{namespace}.analytics",
        1,
    )
    next_tick = datetime.datetime.fromisoformat(status["nextScheduleTime"].replace("Z", "+00:00"))
    assert (next_tick.hour, next_tick.minute) == (15, 0)  # midnight in Seoul
    assert opkit.condition(rj, "RedisReachable")["status"] == "True"
    assert "lastScheduleTime" not in status  # no tick yet
    assert rjkit.wait_event(cluster, namespace, "daily-analytics", "CronJobCreated")[0] == "Normal"
    assert rj["metadata"].get("finalizers") is None  # deletion never waits for the operator


def test_changes_propagate(cluster: devenv.Cluster, namespace: str, operator: RunningOperator) -> None:
    queue(cluster, namespace)
    opkit.apply(cluster, rjkit.recurringjob("cleanup", namespace, **FULL))
    rjkit.wait_ready(cluster, "cleanup", namespace, status="True", reason="Scheduled")

    cluster.kubectl(
        "patch",
        "rj",
        "cleanup",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps(
            [
                {"op": "replace", "path": "/spec/schedule", "value": "30 1 * * mon-fri"},
                {"op": "replace", "path": "/spec/suspend", "value": True},
                {"op": "replace", "path": "/spec/concurrencyPolicy", "value": "Allow"},
                {"op": "replace", "path": "/spec/kwargs", "value": {"retention_days": {"api_logs": 90}}},
                {"op": "remove", "path": "/spec/startingDeadlineSeconds"},
                {"op": "remove", "path": "/spec/priority"},
            ]
        ),
    )
    rjkit.wait_ready(cluster, "cleanup", namespace, status="True", reason="Suspended", generation=2)
    live = wait_cronjob(
        cluster,
        "cleanup",
        namespace,
        what="follows the new spec",
        check=lambda cj: cj["spec"]["schedule"] == "30 1 * * mon-fri",
    )
    assert (live["spec"]["suspend"], live["spec"]["concurrencyPolicy"]) == (True, "Allow")
    assert "startingDeadlineSeconds" not in live["spec"]  # a field the spec dropped is dropped
    command = rjkit.container(live)["command"]
    assert command[command.index("--kwargs-json") + 1] == '{"retention_days":{"api_logs":90}}'
    assert "--priority" not in command
    suspended = rjkit.get(cluster, "rj", "cleanup", namespace)
    assert suspended is not None
    assert "nextScheduleTime" not in suspended["status"]

    # the CronJob follows its JobQueue too: worker image, RQ queue name
    queue(
        cluster,
        namespace,
        queueName="jobs:cleanup",
        worker={**QUEUE_WORKER, "image": "registry.example/glec-jobs:1.5.0"},
    )
    live = wait_cronjob(
        cluster,
        "cleanup",
        namespace,
        what="follows the JobQueue",
        check=lambda cj: rjkit.container(cj)["image"] == "registry.example/glec-jobs:1.5.0",
    )
    assert rjkit.container(live)["command"][2] == "jobs:cleanup"
    rj = rjkit.wait_ready(cluster, "cleanup", namespace, status="True", reason="Suspended")
    opkit.wait_for(
        "status.queueName follows",
        lambda: (
            (rjkit.get(cluster, "rj", "cleanup", namespace) or {}).get("status", {}).get("queueName")
            == "jobs:cleanup"
        ),
    )
    assert rjkit.wait_event(cluster, namespace, "cleanup", "CronJobUpdated")[0] == "Normal"
    assert rj["metadata"]["generation"] == 2


def test_deleting_the_recurring_job_removes_its_cronjob(
    cluster: devenv.Cluster, namespace: str, operator: RunningOperator
) -> None:
    queue(cluster, namespace)
    opkit.apply(cluster, rjkit.recurringjob("cleanup", namespace))
    rjkit.wait_ready(cluster, "cleanup", namespace, status="True", reason="Scheduled")
    first = wait_cronjob(cluster, "cleanup", namespace)

    # someone deletes the CronJob: the operator puts it back
    cluster.kubectl("delete", "cronjob", "cleanup", "-n", namespace)
    wait_cronjob(
        cluster,
        "cleanup",
        namespace,
        what="recreated",
        check=lambda cj: cj["metadata"]["uid"] != first["metadata"]["uid"],
    )

    cluster.kubectl("delete", "rj", "cleanup", "-n", namespace, "--wait=true", "--timeout=30s")
    opkit.wait_for(
        "the CronJob garbage-collected", lambda: rjkit.get(cluster, "cronjob", "cleanup", namespace) is None
    )


def test_a_missing_queue_is_reported_and_the_cronjob_waits_for_it(
    cluster: devenv.Cluster, namespace: str, operator: RunningOperator
) -> None:
    opkit.apply(cluster, rjkit.recurringjob("daily-analytics", namespace))
    rj = rjkit.wait_ready(cluster, "daily-analytics", namespace, status="False", reason="QueueMissing")
    ready = opkit.condition(rj, "Ready")
    assert ready["message"] == f"JobQueue 'analytics' does not exist in namespace {namespace}"
    event = rjkit.wait_event(cluster, namespace, "daily-analytics", "QueueMissing")
    assert event == ("Warning", "QueueMissing", ready["message"])
    assert rjkit.get(cluster, "cronjob", "daily-analytics", namespace) is None
    assert "nextScheduleTime" not in rj["status"]

    queue(cluster, namespace)  # the queue arrives later (e.g. applied in the wrong order)
    rjkit.wait_ready(cluster, "daily-analytics", namespace, status="True", reason="Scheduled")
    assert wait_cronjob(cluster, "daily-analytics", namespace)["spec"]["suspend"] is False
    assert rjkit.wait_event(cluster, namespace, "daily-analytics", "Ready")[0] == "Normal"

    cluster.kubectl("delete", "jobqueue", "analytics", "-n", namespace)  # and goes away again
    rj = rjkit.wait_ready(cluster, "daily-analytics", namespace, status="False", reason="QueueMissing")
    assert opkit.condition(rj, "Ready")["message"].endswith(
        "CronJob daily-analytics is suspended until it exists"
    )
    assert wait_cronjob(
        cluster,
        "daily-analytics",
        namespace,
        what="suspended",
        check=lambda cj: cj["spec"]["suspend"] is True,
    )

    queue(cluster, namespace)
    rjkit.wait_ready(cluster, "daily-analytics", namespace, status="True", reason="Scheduled")
    wait_cronjob(
        cluster, "daily-analytics", namespace, what="resumed", check=lambda cj: cj["spec"]["suspend"] is False
    )


def test_an_unknown_time_zone_is_reported(
    cluster: devenv.Cluster, namespace: str, operator: RunningOperator
) -> None:
    queue(cluster, namespace)
    opkit.apply(cluster, rjkit.recurringjob("martian", namespace, timeZone="Mars/Olympus"))
    rj = rjkit.wait_ready(cluster, "martian", namespace, status="False", reason="UnknownTimeZone")
    assert "'Mars/Olympus' is not in the IANA time zone database" in opkit.condition(rj, "Ready")["message"]
    assert rjkit.wait_event(cluster, namespace, "martian", "UnknownTimeZone")[0] == "Warning"
    assert rjkit.get(cluster, "cronjob", "martian", namespace) is None

    rjkit.merge_patch(cluster, "rj", "martian", namespace, {"spec": {"timeZone": "Europe/Berlin"}})
    rjkit.wait_ready(cluster, "martian", namespace, status="True", reason="Scheduled", generation=2)
    assert wait_cronjob(cluster, "martian", namespace)["spec"]["timeZone"] == "Europe/Berlin"


def test_a_schedule_that_never_fires_is_reported(
    cluster: devenv.Cluster, namespace: str, operator: RunningOperator
) -> None:
    queue(cluster, namespace)
    opkit.apply(cluster, rjkit.recurringjob("leap", namespace, schedule="0 0 30 2 *"))
    rj = rjkit.wait_ready(cluster, "leap", namespace, status="False", reason="ScheduleNeverFires")
    assert "never creates a Job" in opkit.condition(rj, "Ready")["message"]


def test_an_unreachable_redis_is_reported_until_it_answers(
    cluster: devenv.Cluster, namespace: str, operator: RunningOperator, redis_url: str
) -> None:
    """The queue's Redis comes from a Secret that does not exist yet: every tick would fail."""
    queue(cluster, namespace, redis={"urlSecretRef": {"name": "queue-redis", "key": "url"}})
    opkit.apply(cluster, rjkit.recurringjob("daily-analytics", namespace))
    rj = rjkit.wait_ready(cluster, "daily-analytics", namespace, status="False", reason="RedisUnreachable")
    reachable = opkit.condition(rj, "RedisReachable")
    assert (reachable["status"], reachable["reason"]) == ("False", "SecretNotFound")
    assert f"Secret {namespace}/queue-redis not found" in reachable["message"]
    assert rjkit.wait_event(cluster, namespace, "daily-analytics", "SecretNotFound")[0] == "Warning"
    # the CronJob exists all the same: its pods read the URL from the Secret when they run
    env = rjkit.container(wait_cronjob(cluster, "daily-analytics", namespace))["env"]
    assert {
        "name": "JOBQUEUE_REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "queue-redis", "key": "url"}},
    } in env

    cluster.kubectl(
        "create", "secret", "generic", "queue-redis", "-n", namespace, f"--from-literal=url={redis_url}"
    )
    rj = rjkit.wait_ready(
        cluster, "daily-analytics", namespace, status="True", reason="Scheduled", timeout=90
    )
    assert opkit.condition(rj, "RedisReachable")["status"] == "True"
    assert rjkit.wait_event(cluster, namespace, "daily-analytics", "RedisReachable")[0] == "Normal"


def test_a_restarted_operator_writes_nothing_when_nothing_changed(
    cluster: devenv.Cluster, namespace: str, redis_url: str, start_operator: StartOperator
) -> None:
    first = start_operator(namespaces=[namespace], redis_url=redis_url)
    queue(cluster, namespace)
    opkit.apply(cluster, rjkit.recurringjob("daily-analytics", namespace))
    rjkit.wait_ready(cluster, "daily-analytics", namespace, status="True", reason="Scheduled")
    wait_cronjob(cluster, "daily-analytics", namespace)
    # kopf marks an object handled (an annotation patch) after the status is written: read the
    # "before" objects once the first operator has finished with both and stopped
    opkit.wait_for(
        "the first operator done with the JobQueue and the RecurringJob",
        lambda: first.logs().count("Creation is processed") >= 2,
        timeout=60,
    )
    first.stop()
    before = rjkit.get(cluster, "rj", "daily-analytics", namespace)
    cron_before = rjkit.get(cluster, "cronjob", "daily-analytics", namespace)
    assert before is not None
    assert cron_before is not None

    second = start_operator(namespaces=[namespace], redis_url=redis_url)
    opkit.wait_for(
        "the new operator resumed the RecurringJob",
        lambda: "Handler 'reconcile_recurringjob' succeeded" in second.logs(),
        timeout=60,
    )
    # the resume's reconcile (CronJob apply, Redis check, status) has completed: nothing was written
    after = rjkit.get(cluster, "rj", "daily-analytics", namespace)
    cron_after = rjkit.get(cluster, "cronjob", "daily-analytics", namespace)
    assert after is not None
    assert cron_after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert cron_after["metadata"]["resourceVersion"] == cron_before["metadata"]["resourceVersion"]
