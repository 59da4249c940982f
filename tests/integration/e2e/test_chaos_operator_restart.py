"""Chaos: the operator (one replica) restarted in the middle of a burst — first crashed (its
pod force-deleted: SIGKILL), then restarted the way ``helm upgrade`` does (``kubectl rollout
restart``: the new pod stands by until the old one, SIGTERMed, releases the Lease) — with work
arriving and a spec change made meanwhile.

Asserted: it converges — exactly one Deployment per JobQueue and one CronJob per RecurringJob
(counted by owner uid), the queue that got work while the operator was down is scaled up,
the lowered maxReplicas is applied, every job ran exactly once, both queues end at zero
replicas with their status caught up. Timings (how soon after a restart) are reported by
``benchmarks/chaos_operator_restart.py`` (the same ``chaoskit.operator_restarts``) and printed
here (``pytest -s``).
"""

from __future__ import annotations

import chaoskit
import pytest
import redis
from e2ekit import Product
from opkit import condition, get

import devenv

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis, pytest.mark.slow]


# One replica: no standby to take over, so the restarts are really restarts (the Lease still
# hands over to the new pod of the rolling restart). Two replicas: test_chaos_leader_failover.py
@pytest.mark.parametrize("product", [{"replicaCount": 1}], indirect=True)
def test_operator_restarted_mid_burst_converges_without_duplicates_or_lost_scaling(
    cluster: devenv.Cluster, namespace: str, product: Product, redis_conn: redis.Redis
) -> None:
    run = chaoskit.operator_restarts(product, redis_conn)
    print(run.report())
    assert run.children == {"deployments": [1, 1], "cronjobs": [1]}, run.children
    steady, late = run.replicas["steady"], run.replicas["latecomer"]
    # up for the burst, 3 once maxReplicas was lowered, then 0
    assert steady.index(3) > steady.index(4), steady
    assert steady[-1] == 0, steady
    # the work that came while the operator was down was scaled for, then back to 0
    assert late[:2] == [0, 2], late
    assert late[-1] == 0, late
    # the operator never kills a busy worker: even the pod removed for maxReplicas drained
    assert run.audit.exactly_once(), run.audit
    for name in ("steady", "latecomer"):
        body = get(cluster, "jobqueue", name, namespace) or {}
        assert body["status"]["observedGeneration"] == body["metadata"]["generation"], body["status"]
        assert condition(body, "Ready").get("status") == "True", body["status"]
        assert condition(body, "RedisReachable").get("status") == "True", body["status"]
