"""What admission thinks of the worker pods: Pod Security ``restricted``, PriorityClasses."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opkit import StartOperator, apply, condition, jobqueue, kubectl_json, wait_condition, wait_for

import devenv


def pods(cluster: devenv.Cluster, namespace: str, jobqueue_name: str) -> list[dict[str, Any]]:
    selector = f"jobqueue.glec.io/jobqueue={jobqueue_name}"
    items: list[dict[str, Any]] = kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", selector)[
        "items"
    ]
    return items


def test_worker_pods_run_in_a_restricted_namespace(
    cluster: devenv.Cluster, namespace: str, redis_url: str, start_operator: StartOperator
) -> None:
    cluster.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
    start_operator(namespaces=[namespace], redis_url=redis_url)
    apply(
        cluster,
        jobqueue(
            "strict",
            namespace,
            concurrency=4,
            scaling={"minReplicas": 2},
            worker={
                "image": "registry.invalid/jobs:1",
                "imports": ["glec.jobs"],
                "concurrencyPerPod": 2,
                "securityContext": {"runAsUser": 1000, "fsGroup": 1000},
            },
        ),
    )
    wait_condition(cluster, "strict", namespace, "Ready", status="True", reason="WorkersReady", timeout=90)
    running = [p for p in pods(cluster, namespace, "strict") if p["status"]["phase"] == "Running"]
    assert len(running) == 2


def test_a_privileged_variant_of_the_same_pod_is_refused_there(
    cluster: devenv.Cluster, namespace: str
) -> None:
    """The control for the test above: the namespace really enforces ``restricted``."""
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root", "namespace": namespace},
        "spec": {"containers": [{"name": "worker", "image": "registry.invalid/jobs:1"}]},
    }
    result = cluster.kubectl("apply", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr


@pytest.fixture
def priority_classes(cluster: devenv.Cluster) -> Iterator[str]:
    prefix = f"jqt-{uuid.uuid4().hex[:6]}-p"
    for priority, value in ((1, 1000), (5, 100)):
        cluster.kubectl("create", "priorityclass", f"{prefix}{priority}", f"--value={value}")
    yield prefix
    for priority in (1, 5):
        cluster.kubectl("delete", "priorityclass", f"{prefix}{priority}", check=False)


def test_priority_class_follows_the_queue_priority(
    cluster: devenv.Cluster,
    namespace: str,
    redis_url: str,
    start_operator: StartOperator,
    priority_classes: str,
) -> None:
    start_operator(namespaces=[namespace], redis_url=redis_url, priority_class_prefix=priority_classes)
    apply(cluster, jobqueue("urgent", namespace, priority=1, scaling={"minReplicas": 1}))
    apply(cluster, jobqueue("whenever", namespace, priority=5, scaling={"minReplicas": 1}))
    for name, priority, value in (("urgent", 1, 1000), ("whenever", 5, 100)):
        wait_condition(cluster, name, namespace, "Ready", status="True", reason="WorkersReady", timeout=90)
        (pod,) = pods(cluster, namespace, name)
        assert pod["spec"]["priorityClassName"] == f"{priority_classes}{priority}"
        assert pod["spec"]["priority"] == value


def test_pods_refused_by_admission_make_the_queue_not_ready(
    cluster: devenv.Cluster, namespace: str, redis_url: str, start_operator: StartOperator
) -> None:
    """No PriorityClass of that name: the ReplicaSet cannot create pods, and the queue says why."""
    start_operator(namespaces=[namespace], redis_url=redis_url, priority_class_prefix="jqt-no-such-class-")
    apply(cluster, jobqueue("orphan", namespace, priority=2, scaling={"minReplicas": 1}))
    jq = wait_condition(
        cluster, "orphan", namespace, "Ready", status="False", reason="PodsRejected", timeout=90
    )
    assert "jqt-no-such-class-2" in condition(jq, "Ready")["message"]
    wait_for("no pod", lambda: not pods(cluster, namespace, "orphan"))
