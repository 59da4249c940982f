"""The ordered uninstall of docs/upgrading.md, with the operator running (issue 22): JobQueues
first, then the release; what is left is exactly what the page says stays.

The CRDs are kept (``crds.keep``, the default) — the session's cluster is shared, so the path
without keep runs on a cluster of its own (tests/integration/chart/test_chart_uninstall.py).
"""

from __future__ import annotations

import json

import pytest
import redis
from e2ekit import Product, apply_queue, queue_body

import devenv
from integration.chart.clusterkit import exists, get_json, release_objects

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis]


def test_ordered_uninstall_leaves_only_the_crds_and_the_lease(
    cluster: devenv.Cluster, namespace: str, product: Product, redis_conn: redis.Redis
) -> None:
    queue = apply_queue(cluster, redis_conn, queue_body("leaving", namespace, concurrency=1, per_pod=1))
    assert exists(cluster, "secret", "jobqueue-default-redis", "-n", namespace)

    # 1. the JobQueues, while the operator still runs
    cluster.kubectl("delete", "jobqueues", "--all", "-n", namespace, "--wait", "--timeout=60s", timeout=70)
    devenv.wait_until(
        "the queue's settings withdrawn from Redis",
        lambda: not redis_conn.exists(f"jobqueue:settings:{queue}"),
        timeout=60,
    )
    owned = (("deployment", "leaving-worker"), ("secret", "jobqueue-default-redis"))
    devenv.wait_until(
        "the worker Deployment and the default-Redis Secret collected",
        lambda: not any(exists(cluster, *args, "-n", namespace) for args in owned),
        timeout=60,
    )
    # 2. the release
    product.uninstall()
    devenv.wait_until(
        "every object of the release gone", lambda: not release_objects(cluster, product.release), timeout=90
    )
    # what stays: the CRDs (crds.keep) and the leader Lease, which the operator made, not the chart
    for name in ("jobqueues.jobqueue.glec.io", "recurringjobs.jobqueue.glec.io"):
        assert get_json(cluster, "crd", name)["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    leases = [lease["metadata"]["name"] for lease in get_json(cluster, "leases", "-n", namespace)["items"]]
    assert leases == [product.deployment], leases
    keys = [k.decode() for k in redis_conn.scan_iter("jobqueue:settings*")]
    assert keys == [], json.dumps(keys)
