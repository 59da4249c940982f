"""handlers.DiffBase: kopf's diff base without kopf's deep copy of the whole body. The essence
it builds (what kopf compares to detect a spec change, and stores in the annotation) must be
exactly kopf's own."""

from __future__ import annotations

import copy
from typing import Any

import kopf
import pytest

from jobqueue_operator import handlers, models

KEY = "last-handled-configuration"


def jobqueue() -> dict[str, Any]:
    """A JobQueue as the watch delivers it after a few writes: kopf's annotations, a
    kubectl annotation, labels, managedFields of three managers, a status of two."""
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.JOBQUEUE_KIND,
        "metadata": {
            "name": "mailer",
            "namespace": "shop",
            "uid": "0b1c",
            "resourceVersion": "812",
            "generation": 2,
            "creationTimestamp": "2026-12-07T23:00:00Z",
            "labels": {"team": "mail"},
            "annotations": {
                f"{models.GROUP}/{KEY}": '{"spec":{"worker":{"image":"registry.invalid/m:1"}}}\n',
                f"{models.GROUP}/kopf-managed": "yes",
                "other.kopf.dev/last-handled-configuration": "{}",
                "other.kopf.dev/kopf-managed": "yes",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "example.com/owner": "team-mail",
            },
            "managedFields": [
                {"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {"f:worker": {}}}},
                {"manager": "jobqueue-operator", "operation": "Apply", "subresource": "status"},
                {"manager": "jobqueue-autoscaler", "operation": "Update", "subresource": "status"},
            ],
        },
        "spec": {
            "worker": {"image": "registry.invalid/m:2", "imports": ["glec.jobs"], "env": [{"name": "A"}]},
            "scaling": {"minReplicas": 1, "maxReplicas": 4},
        },
        "status": {
            "observedGeneration": 1,
            "queued": 3,
            "conditions": [{"type": "Ready", "status": "True", "reason": "WorkersReady"}],
        },
    }


def kopfs() -> kopf.AnnotationsDiffBaseStorage:
    return kopf.AnnotationsDiffBaseStorage(prefix=models.GROUP, key=KEY)


@pytest.mark.parametrize(
    "extra_fields",
    [None, [], [("spec",)], ["spec.worker"], [("status", "queued")], ["metadata.generation"]],
)
def test_the_essence_is_kopfs_own(extra_fields: Any) -> None:
    raw = jobqueue()
    mine = handlers.DiffBase(prefix=models.GROUP, key=KEY).build(
        body=kopf.Body(raw), extra_fields=extra_fields
    )
    assert mine == kopfs().build(body=kopf.Body(jobqueue()), extra_fields=extra_fields)
    assert "status" not in mine or extra_fields == [("status", "queued")]
    assert raw == jobqueue()  # the body is left as it was


def test_the_essence_shares_nothing_with_the_body() -> None:
    """kopf keeps the essence while the body lives on: a change of one must not be one of the other."""
    raw = jobqueue()
    essence: Any = handlers.DiffBase(prefix=models.GROUP, key=KEY).build(
        body=kopf.Body(raw), extra_fields=[("spec",)]
    )
    before = copy.deepcopy(essence)
    raw["spec"]["worker"]["env"].append({"name": "B"})
    raw["metadata"]["labels"]["team"] = "other"
    assert essence == before


def test_the_operator_uses_it() -> None:
    settings = kopf.OperatorSettings()
    handlers.tune(settings)
    assert isinstance(settings.persistence.diffbase_storage, handlers.DiffBase)
