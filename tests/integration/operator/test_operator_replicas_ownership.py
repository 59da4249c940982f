"""What the real API server does with ``spec.replicas`` of a worker Deployment, on which the
reconciler's hand-over to the autoscaler relies (``jobqueue_operator.reconcile``, "Replicas
and the first apply"), checked through the operator's own ``k8s.Kube``:

* a scale through the subresource may leave ``spec.replicas`` owned by nobody; the
  operator's apply (which never has replicas) then leaves the value alone;
* the autoscaler's claim is conditional on the Deployment as read: after a scale made since
  the read it is refused (409) and the scale stands — an unconditional claim of the value
  read once undid a new leader's first scale (benchmarks/chaos_leader_failover.py)."""

from __future__ import annotations

from typing import Any

import pytest

from jobqueue_operator import k8s, models
from jobqueue_operator.builders import deployment, names

pytestmark = [pytest.mark.integration, pytest.mark.k8s]


def worker(namespace: str) -> dict[str, Any]:
    """A worker Deployment as the builder makes it, without its owner (no JobQueue here: the
    garbage collector would delete a Deployment whose owner does not exist)."""
    spec = models.JobQueueSpec.model_validate({"worker": {"image": "registry.invalid/w:1", "imports": ["m"]}})
    body = deployment.build(
        namespace=namespace,
        name="q",
        uid="0",
        spec=spec,
        queue_name="q",
        defaults=deployment.WorkerDefaults(),
    )
    del body["metadata"]["ownerReferences"]
    return body


async def test_a_claim_of_a_stale_read_is_refused_and_an_unowned_replica_count_stands(
    kube: k8s.Kube, namespace: str
) -> None:
    body = worker(namespace)
    name = body["metadata"]["name"]
    created = await kube.apply(deployment.with_replicas(body, 0), field_manager=names.OPERATOR_MANAGER)
    assert deployment.replicas_managers(created) == {names.OPERATOR_MANAGER}
    stale = created["metadata"]["resourceVersion"]
    await kube.scale_deployment(namespace, name, 2, field_manager=names.AUTOSCALER_MANAGER)
    with pytest.raises(k8s.ApiError) as refused:
        await kube.apply(
            deployment.replicas_claim(namespace=namespace, name=name, replicas=0, resource_version=stale),
            field_manager=names.AUTOSCALER_MANAGER,
        )
    assert k8s.is_conflict(refused.value)
    for replicas in (0, 2):
        await kube.scale_deployment(namespace, name, replicas, field_manager=names.AUTOSCALER_MANAGER)
    live = await kube.get_deployment(namespace, name)
    assert live is not None
    assert live["spec"]["replicas"] == 2
    assert names.OPERATOR_MANAGER not in deployment.replicas_managers(live)
    after = await kube.apply(body, field_manager=names.OPERATOR_MANAGER)
    assert after["spec"]["replicas"] == 2
