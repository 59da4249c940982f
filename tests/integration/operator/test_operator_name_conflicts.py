"""The operator never takes over an object it did not make (issue 20).

Regression: the worker Deployment, a RecurringJob's CronJob and the autoscaler's scale all
went to whatever object had the name — a forced server-side apply took over someone else's
Deployment or CronJob, and a missing queue merge-suspended a CronJob of that name. Now an
object is applied, scaled or suspended only if it carries our labels and the right
controller reference; otherwise the JobQueue/RecurringJob says ``NameConflict`` (condition
and Event) and the object stays exactly as it was. Real API server, real operator.
"""

from __future__ import annotations

import time
from typing import Any

from opkit import RunningOperator, apply, condition, events, get, jobqueue, wait_condition, wait_for
from recurring.rjkit import recurringjob, wait_ready

import devenv
from jobqueue_operator.builders import names

#: Pods of these stand-in Deployments must never start (no node has this label).
NOWHERE = {"nodeSelector": {"example.com/no-such-node": "true"}}


def deployment(name: str, namespace: str, labels: dict[str, str], replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {**NOWHERE, "containers": [{"name": "app", "image": "registry.invalid/theirs:1"}]},
            },
        },
    }


def unchanged(before: dict[str, Any], after: dict[str, Any] | None) -> bool:
    """Nobody but the object's own controller wrote it: the same spec (a Secret's data),
    generation, labels and field managers. (The Deployment or CronJob controller's status
    writes do not count: they change resourceVersion whenever its pods come and go, slower or
    faster with the machine's load.)"""
    assert after is not None

    def written(obj: dict[str, Any]) -> tuple[Any, ...]:
        managers = sorted(
            (m["manager"], m.get("operation"))
            for m in obj["metadata"].get("managedFields") or []
            if m.get("subresource") != "status"
        )
        content = obj.get("spec", obj.get("data"))
        return obj["metadata"].get("generation"), content, obj["metadata"].get("labels"), managers

    return written(before) == written(after)


def test_someone_elses_deployment_is_reported_not_taken_over(
    cluster: devenv.Cluster,
    namespace: str,
    operator: RunningOperator,
) -> None:
    apply(cluster, deployment("billing-worker", namespace, {"app": "billing"}, replicas=0))
    before = get(cluster, "deployment", "billing-worker", namespace)
    assert before is not None
    apply(cluster, jobqueue("billing", namespace))
    body = wait_condition(cluster, "billing", namespace, "Ready", status="False", reason="NameConflict")
    message = condition(body, "Ready")["message"]
    assert "a Deployment named billing-worker already exists" in message
    wait_for(
        "the NameConflict Event",
        lambda: any(e[:2] == ("Warning", "NameConflict") for e in events(cluster, namespace, "billing")),
    )
    assert unchanged(before, get(cluster, "deployment", "billing-worker", namespace))

    # once it is gone, the JobQueue gets its own (a retry: nothing changed in the JobQueue)
    cluster.kubectl("delete", "deployment", "billing-worker", "-n", namespace)
    ours = wait_for(
        "our Deployment",
        lambda: (
            (d := get(cluster, "deployment", "billing-worker", namespace))
            and names.jobqueue_of(d["metadata"].get("labels")) == "billing"
            and d
        ),
        timeout=60,
    )
    assert ours["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]


def test_a_deployment_with_copied_labels_is_neither_applied_nor_scaled(
    cluster: devenv.Cluster,
    namespace: str,
    operator: RunningOperator,
) -> None:
    """Labels alone can be copied: without the JobQueue's controller reference the Deployment
    is not ours (the autoscaler indexes Deployments by those labels and scaled it)."""
    forged = deployment("forged-worker", namespace, names.worker_labels("forged"), replicas=3)
    apply(cluster, forged)
    before = get(cluster, "deployment", "forged-worker", namespace)
    assert before is not None
    apply(cluster, jobqueue("forged", namespace, scaling={"minReplicas": 1, "maxReplicas": 1}))
    wait_condition(cluster, "forged", namespace, "Ready", status="False", reason="NameConflict")
    time.sleep(5)  # five autoscaler passes: it would have scaled 3 -> 1
    after = get(cluster, "deployment", "forged-worker", namespace)
    assert unchanged(before, after)
    assert after is not None
    assert after["spec"]["replicas"] == 3
    assert not any(reason.startswith("Scaled") for _, reason, _ in events(cluster, namespace, "forged"))


def test_someone_elses_cronjob_is_reported_not_taken_over_nor_suspended(
    cluster: devenv.Cluster,
    namespace: str,
    operator: RunningOperator,
) -> None:
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": namespace},
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            **NOWHERE,
                            "restartPolicy": "Never",
                            "containers": [{"name": "backup", "image": "registry.invalid/backup:1"}],
                        }
                    }
                }
            },
        },
    }
    apply(cluster, cron)
    before = get(cluster, "cronjob", "nightly", namespace)
    assert before is not None

    # its queue is missing: a CronJob of ours would be suspended; this one is not touched
    apply(cluster, recurringjob("nightly", namespace, queue="analytics"))
    wait_ready(cluster, "nightly", namespace, status="False", reason="QueueMissing")
    time.sleep(2)
    assert unchanged(before, get(cluster, "cronjob", "nightly", namespace))

    # the queue exists: the CronJob would be applied; it is reported instead
    apply(cluster, jobqueue("analytics", namespace))
    body = wait_ready(cluster, "nightly", namespace, status="False", reason="NameConflict")
    assert "a CronJob named nightly already exists" in condition(body, "Ready")["message"]
    after = get(cluster, "cronjob", "nightly", namespace)
    assert unchanged(before, after)
    assert after is not None
    assert not after["spec"].get("suspend")

    cluster.kubectl("delete", "cronjob", "nightly", "-n", namespace)
    wait_ready(cluster, "nightly", namespace, status="True", reason="Scheduled", timeout=60)


def test_a_default_redis_secret_with_copied_labels_is_not_ours(
    cluster: devenv.Cluster,
    namespace: str,
    operator: RunningOperator,
) -> None:
    labels = {names.MANAGED_BY_LABEL: names.MANAGED_BY, names.COMPONENT_LABEL: "default-redis"}
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "jobqueue-default-redis", "namespace": namespace, "labels": labels},
            "stringData": {"url": "redis://their-redis:6379/0"},
        },
    )
    before = get(cluster, "secret", "jobqueue-default-redis", namespace)
    assert before is not None
    apply(cluster, jobqueue("mailer", namespace))
    wait_condition(cluster, "mailer", namespace, "Ready", status="False", reason="RedisSecretConflict")
    assert unchanged(before, get(cluster, "secret", "jobqueue-default-redis", namespace))
    assert get(cluster, "deployment", "mailer-worker", namespace) is None
