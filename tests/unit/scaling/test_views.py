"""The in-memory views the autoscaler keeps of worker Deployments, pods and JobQueue status."""

from __future__ import annotations

from typing import Any

from jobqueue_operator.builders import names, status
from jobqueue_operator.scaling import views


def body(kind_name: str, **extra: Any) -> dict[str, Any]:
    meta = {"name": kind_name, "namespace": "ns", "labels": names.worker_labels("emails")}
    return {"metadata": {**meta, **extra.pop("metadata", {})}, **extra}


def test_deployment_view_defaults_replicas_like_kubernetes() -> None:
    three, unset = body("emails-worker", spec={"replicas": 3}), body("emails-worker", spec={})
    assert views.deployment_entry(three) == {
        ("ns", "emails"): views.DeploymentView("emails-worker", 3, summary=status.DeploymentSummary.of(three))
    }
    assert views.deployment_entry(unset) == {
        ("ns", "emails"): views.DeploymentView("emails-worker", 1, summary=status.DeploymentSummary.of(unset))
    }


def test_deployment_view_keeps_the_digest_it_was_applied_from() -> None:
    applied = body("emails-worker", metadata={"annotations": {names.APPLIED_ANNOTATION: "abc"}})
    assert views.deployment_entry(applied)[("ns", "emails")].applied == "abc"  # type: ignore[index]
    assert views.deployment_entry(body("emails-worker"))[("ns", "emails")].applied is None  # type: ignore[index]


def test_objects_without_our_label_are_not_indexed() -> None:
    assert views.deployment_entry({"metadata": {"name": "x", "namespace": "ns", "labels": {}}}) is None
    assert views.pod_entry({"metadata": {"name": "x", "namespace": "ns"}}) is None


def test_pod_view_reads_cost_deletion_and_phase() -> None:
    pod = body(
        "emails-worker-1",
        status={"phase": "Running"},
        metadata={
            "annotations": {views.DELETION_COST_ANNOTATION: "-1000"},
            "deletionTimestamp": "2026-01-01T00:00:00Z",
        },
    )
    assert views.pod_entry(pod) == {("ns", "emails"): views.PodView("emails-worker-1", -1000, True, False)}
    evicted = body(
        "emails-worker-2",
        metadata={"annotations": {views.DELETION_COST_ANNOTATION: "x"}},
        status={"phase": "Failed"},
    )
    assert views.pod_entry(evicted) == {("ns", "emails"): views.PodView("emails-worker-2", None, False, True)}


def test_status_view_keeps_only_the_autoscalers_fields() -> None:
    jq = {
        "metadata": {"name": "emails", "namespace": "ns"},
        "status": {"queued": 3, "desiredReplicas": 1, "observedGeneration": 4, "conditions": []},
    }
    assert views.status_entry(jq) == {("ns", "emails"): {"queued": 3, "desiredReplicas": 1}}
