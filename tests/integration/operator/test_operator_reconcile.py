"""The operator turns JobQueues into worker Deployments, settings and status — on the real
control plane, with real Redis, through the real ``python -m jobqueue_operator``."""

from __future__ import annotations

import json
from typing import Any

import redis
from opkit import (
    RunningOperator,
    StartOperator,
    apply,
    condition,
    events,
    get,
    jobqueue,
    kubectl_json,
    wait_condition,
    wait_for,
)

import devenv
from jobqueue import settings as qsettings
from jobqueue_operator.builders import status


def deployment(cluster: devenv.Cluster, name: str, namespace: str) -> dict[str, Any]:
    body: dict[str, Any] = wait_for(f"Deployment {name}", lambda: get(cluster, "deployment", name, namespace))
    return body


def replicas_owners(dep: dict[str, Any]) -> set[str]:
    return {
        m["manager"]
        for m in dep["metadata"]["managedFields"]
        if "f:replicas" in m.get("fieldsV1", {}).get("f:spec", {})
    }


def test_a_jobqueue_becomes_a_running_worker_deployment(
    cluster: devenv.Cluster,
    namespace: str,
    redis_conn: redis.Redis,
    redis_url: str,
    operator: RunningOperator,
) -> None:
    apply(
        cluster,
        jobqueue(
            "ei-update",
            namespace,
            queueName="ei:update",
            priority=1,
            concurrency=8,
            worker={
                "image": "registry.invalid/glec-jobs:1.4.2",
                "imports": ["glec.jobs"],
                "concurrencyPerPod": 4,
                "env": [{"name": "LOG_LEVEL", "value": "debug"}],
                "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
            },
            scaling={"minReplicas": 2},
            jobDefaults={
                "attempts": 3,
                "backoff": {"type": "exponential", "delaySeconds": 1},
                "timeoutSeconds": 30,
            },
        ),
    )
    jq = wait_condition(
        cluster, "ei-update", namespace, "Ready", status="True", reason="WorkersReady", timeout=90
    )

    dep = deployment(cluster, "ei-update-worker", namespace)
    assert dep["spec"]["replicas"] == 2  # created at minReplicas, never at Kubernetes' default of 1
    assert "jobqueue-autoscaler" in replicas_owners(dep)  # handed over at creation: no fight later
    (owner,) = dep["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "JobQueue",
        "ei-update",
        jq["metadata"]["uid"],
        True,
    )
    assert dep["spec"]["selector"]["matchLabels"] == {
        "jobqueue.glec.io/jobqueue": "ei-update",
        "app.kubernetes.io/component": "worker",
    }
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == [
        "jobqueue",
        "worker",
        "--queue",
        "ei:update",
        "--import",
        "glec.jobs",
        "--concurrency",
        "4",
        "--mode",
        "process",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["JOBQUEUE_METRICS_PORT"]["value"] == "9100"
    # the operator's default Redis, through the namespace's Secret (docs/operator.md)
    assert env["JOBQUEUE_REDIS_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "jobqueue-default-redis", "key": "url"}
    }
    assert redis_url not in json.dumps(dep)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["LOG_LEVEL"]["value"] == "debug"
    assert container["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}
    assert pod["terminationGracePeriodSeconds"] == 60  # job timeout 30 s + 30 s margin
    assert pod["securityContext"]["runAsNonRoot"] is True

    # status, as `kubectl get jq` shows it
    assert jq["status"]["observedGeneration"] == jq["metadata"]["generation"]
    assert jq["status"]["workers"] == "2/2"
    assert (jq["status"]["replicas"], jq["status"]["readyReplicas"], jq["status"]["queueName"]) == (
        2,
        2,
        "ei:update",
    )
    assert condition(jq, "RedisReachable")["status"] == "True"
    table = cluster.kubectl("get", "jq", "-n", namespace).stdout.split("\n")
    assert table[0].split() == [
        "NAME",
        "PRIORITY",
        "CONCURRENCY",
        "WORKERS",
        "QUEUED",
        "RUNNING",
        "FAILED",
        "AGE",
    ]
    assert table[1].split()[:4] == ["ei-update", "1", "8", "2/2"]

    # the queue's settings, for producers and workers
    published = qsettings.load(redis_conn, "ei:update")
    assert (published.namespace, published.jobqueue, published.priority, published.concurrency) == (
        namespace,
        "ei-update",
        1,
        8,
    )
    assert published.imports == ("glec.jobs",)
    assert published.effective().attempts == 3
    assert published.generation == jq["metadata"]["generation"]

    # one Event says both: the Deployment created, the settings published
    created = [m for _, reason, m in events(cluster, namespace, "ei-update") if reason == "DeploymentCreated"]
    assert created == [
        "created worker Deployment ei-update-worker with 2 replicas; settings of queue "
        "'ei:update' published (generation 1)"
    ]
    assert not jq["metadata"].get("finalizers")  # deletion never waits for the operator


def test_spec_changes_roll_out_and_removed_fields_disappear(
    cluster: devenv.Cluster, namespace: str, redis_conn: redis.Redis, operator: RunningOperator
) -> None:
    worker = {
        "image": "registry.invalid/jobs:1",
        "imports": ["glec.jobs"],
        "env": [{"name": "FEATURE", "value": "on"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "jobs", "operator": "Exists"}],
    }
    apply(cluster, jobqueue("reports", namespace, concurrency=4, scaling={"minReplicas": 1}, worker=worker))
    wait_condition(cluster, "reports", namespace, "Ready", status="True", timeout=90)
    # the autoscaler's move: replicas through the scale subresource
    cluster.kubectl("scale", "deployment/reports-worker", "-n", namespace, "--replicas=3")
    wait_for(
        "3 replicas", lambda: get(cluster, "deployment", "reports-worker", namespace)["spec"]["replicas"] == 3
    )

    # kubectl apply of the new manifest: env, nodeSelector and tolerations are gone, the image changed
    apply(
        cluster,
        jobqueue(
            "reports",
            namespace,
            concurrency=4,
            scaling={"minReplicas": 1},
            worker={"image": "registry.invalid/jobs:2", "imports": ["glec.jobs", "glec.reports"]},
        ),
    )

    def rolled_out() -> dict[str, Any] | None:
        dep = get(cluster, "deployment", "reports-worker", namespace)
        pod = dep["spec"]["template"]["spec"] if dep else {}
        return dep if pod and pod["containers"][0]["image"] == "registry.invalid/jobs:2" else None

    dep = wait_for("the new image in the Deployment", rolled_out)
    pod = dep["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod
    assert [e["name"] for e in pod["containers"][0]["env"]] == [
        "JOBQUEUE_REDIS_URL",
        "POD_NAME",
        "POD_NAMESPACE",
        "JOBQUEUE_NAME",
        "JOBQUEUE_METRICS_PORT",
    ]
    assert pod["containers"][0]["command"].count("--import") == 2
    assert dep["spec"]["replicas"] == 3  # the spec change did not touch the autoscaler's replicas
    assert replicas_owners(dep) == {"kubectl"}  # the scaler (here: kubectl scale) alone owns them
    jq = wait_condition(
        cluster, "reports", namespace, "Ready", status="True", reason="WorkersReady", timeout=90
    )
    assert jq["status"]["observedGeneration"] == 2
    assert jq["status"]["workers"] == "3/3"
    assert qsettings.load(redis_conn, f"{namespace}.reports").generation == 2
    assert qsettings.load(redis_conn, f"{namespace}.reports").imports == ("glec.jobs", "glec.reports")
    assert "DeploymentUpdated" in {reason for _, reason, _ in events(cluster, namespace, "reports")}


def test_deleting_a_jobqueue_removes_its_deployment_and_settings(
    cluster: devenv.Cluster, namespace: str, redis_conn: redis.Redis, operator: RunningOperator
) -> None:
    apply(cluster, jobqueue("cleanup", namespace, scaling={"minReplicas": 1}))
    wait_condition(cluster, "cleanup", namespace, "Ready", status="True", timeout=90)
    assert qsettings.published_queue_names(redis_conn) == {f"{namespace}.cleanup"}

    cluster.kubectl(
        "delete", "jobqueue", "cleanup", "-n", namespace, "--wait=true", "--timeout=30s", timeout=40
    )
    wait_for(
        "garbage collection of the worker Deployment",
        lambda: get(cluster, "deployment", "cleanup-worker", namespace) is None,
    )
    wait_for("the settings withdrawn", lambda: not qsettings.published_queue_names(redis_conn))


def test_settings_of_a_queue_deleted_while_the_operator_was_down_are_swept(
    cluster: devenv.Cluster,
    namespace: str,
    redis_conn: redis.Redis,
    redis_url: str,
    start_operator: StartOperator,
) -> None:
    operator = start_operator(namespaces=[namespace], redis_url=redis_url)
    apply(cluster, jobqueue("nightly", namespace))
    apply(cluster, jobqueue("kept", namespace))
    wait_for("both published", lambda: len(qsettings.published_queue_names(redis_conn)) == 2)
    # settings of another operator's namespace in the same Redis: never ours to remove
    foreign = qsettings.QueueSettings(queue_name="other.q", namespace="not-served-here", jobqueue="q")
    qsettings.publish(redis_conn, foreign)

    operator.stop()
    # no finalizer: the object goes at once, although no operator is running
    cluster.kubectl("delete", "jobqueue", "nightly", "-n", namespace, "--timeout=20s", timeout=30)
    assert get(cluster, "jobqueue", "nightly", namespace) is None
    assert f"{namespace}.nightly" in qsettings.published_queue_names(redis_conn)

    start_operator(namespaces=[namespace], redis_url=redis_url)
    wait_for(
        "the orphaned settings swept",
        lambda: qsettings.published_queue_names(redis_conn) == {f"{namespace}.kept", "other.q"},
    )


def test_a_restart_writes_nothing_when_nothing_changed(
    cluster: devenv.Cluster, namespace: str, redis_url: str, start_operator: StartOperator
) -> None:
    operator = start_operator(namespaces=[namespace], redis_url=redis_url)
    apply(cluster, jobqueue("steady", namespace, scaling={"minReplicas": 1}))
    before = wait_condition(
        cluster, "steady", namespace, "Ready", status="True", reason="WorkersReady", timeout=90
    )
    dep_before = get(cluster, "deployment", "steady-worker", namespace)
    assert dep_before is not None
    secret_before = get(cluster, "secret", "jobqueue-default-redis", namespace)
    assert secret_before is not None
    operator.stop()

    restarted = start_operator(namespaces=[namespace], redis_url=redis_url)
    # resume handlers ran and at least two settings sweeps passed
    wait_for("the resume reconcile", lambda: "Resuming is processed" in restarted.logs(), timeout=60)
    wait_for("two settings sweeps", lambda: _sweeps(restarted) >= 2, timeout=60)
    after = get(cluster, "jobqueue", "steady", namespace)
    dep_after = get(cluster, "deployment", "steady-worker", namespace)
    assert after is not None
    assert dep_after is not None
    # the operator's part of the status is the same and was not written again (the autoscaler,
    # when it runs, may have written its own fields meanwhile)
    assert status.operator_fields(after["status"]) == status.operator_fields(before["status"])
    assert operator_writes(after) == operator_writes(before)
    assert operator_writes(dep_after) == operator_writes(dep_before)
    assert dep_after["metadata"]["generation"] == dep_before["metadata"]["generation"]
    secret_after = get(cluster, "secret", "jobqueue-default-redis", namespace)
    assert secret_after is not None
    assert secret_after["metadata"]["resourceVersion"] == secret_before["metadata"]["resourceVersion"]


def operator_writes(body: dict[str, Any]) -> list[tuple[str | None, str]]:
    """When the operator's field manager last changed the object (and its status)."""
    return sorted(
        (m.get("subresource"), m["time"])
        for m in body["metadata"]["managedFields"]
        if m["manager"] == "jobqueue-operator"
    )


def _sweeps(operator: RunningOperator) -> float:
    _, text = operator.get("/metrics")
    for line in text.splitlines():
        if line.startswith('jobqueue_reconcile_total{kind="sweep",result="ok"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_deleted_worker_deployment_is_recreated(
    cluster: devenv.Cluster, namespace: str, operator: RunningOperator
) -> None:
    apply(cluster, jobqueue("fragile", namespace, scaling={"minReplicas": 1}))
    wait_condition(cluster, "fragile", namespace, "Ready", status="True", timeout=90)
    first = get(cluster, "deployment", "fragile-worker", namespace)
    assert first is not None
    cluster.kubectl("delete", "deployment", "fragile-worker", "-n", namespace)

    def recreated() -> bool:
        dep = get(cluster, "deployment", "fragile-worker", namespace)
        return dep is not None and dep["metadata"]["uid"] != first["metadata"]["uid"]

    wait_for("the Deployment recreated", recreated)
    assert get(cluster, "deployment", "fragile-worker", namespace)["spec"]["replicas"] == 1


def test_a_suspended_queue_starts_with_no_workers_and_publishes_the_flag(
    cluster: devenv.Cluster, namespace: str, redis_conn: redis.Redis, operator: RunningOperator
) -> None:
    apply(cluster, jobqueue("paused", namespace, suspend=True, scaling={"minReplicas": 1}))
    jq = wait_condition(cluster, "paused", namespace, "Ready", status="True", reason="Suspended", timeout=60)
    assert get(cluster, "deployment", "paused-worker", namespace)["spec"]["replicas"] == 0
    assert jq["status"]["workers"] == "0/0"
    assert qsettings.load(redis_conn, f"{namespace}.paused").suspend is True


def test_metrics_and_liveness_endpoints(
    cluster: devenv.Cluster, namespace: str, operator: RunningOperator
) -> None:
    apply(cluster, jobqueue("observed", namespace, scaling={"minReplicas": 1}))
    wait_condition(cluster, "observed", namespace, "Ready", status="True", reason="WorkersReady", timeout=90)

    def scraped() -> str | None:
        _, text = operator.get("/metrics")
        labels = f'jobqueue="observed",namespace="{namespace}",queue="{namespace}.observed"'
        want = f"jobqueue_ready_replicas{{{labels}}} 1.0"
        # (counted when the handler ends, which may be after Ready: the status is written
        # beside the replicas claim, and the handler waits for the claim)
        counted = 'jobqueue_reconcile_total{kind="JobQueue",result="ok"} '
        return text if want in text and counted in text else None

    text = wait_for("the ready replicas gauge and the reconcile counted", scraped)
    assert 'jobqueue_operator_info{version="0.1.0"} 1.0' in text
    status, body = operator.get("/healthz", operator.health_port)
    assert status == 200
    assert json.loads(body).keys() >= {"sweep", "autoscaler"}
    # every liveness check runs both probes; their success is not logged (one line per probe
    # per check would drown the log), failures would be
    logs = operator.logs()
    assert "Activity 'startup' succeeded" in logs  # kopf's wording, once per process
    assert "Activity 'sweep' succeeded" not in logs
    assert "Activity 'autoscaler' succeeded" not in logs


def test_operator_logs_are_json_lines(
    cluster: devenv.Cluster, namespace: str, operator: RunningOperator
) -> None:
    apply(cluster, jobqueue("logged", namespace))
    wait_condition(cluster, "logged", namespace, "Ready", status="True", timeout=60)
    # the status is written before the handler ends (its replicas claim runs beside it): wait
    # for kopf's line about the handler rather than read the log the moment Ready shows
    wait_for("kopf's line about the handler", lambda: "Handler 'reconcile_jobqueue'" in operator.logs())
    records = [json.loads(line) for line in operator.logs().splitlines() if line.startswith("{")]
    assert records, operator.logs()
    assert all({"message", "severity", "timestamp"} <= r.keys() for r in records), records[0]
    about = [r for r in records if (r.get("k8s") or {}).get("name") == "logged"]
    assert about, "kopf's per-object messages carry the object reference"
    assert kubectl_json(cluster, "get", "jq", "logged", "-n", namespace)["status"]["observedGeneration"] == 1
