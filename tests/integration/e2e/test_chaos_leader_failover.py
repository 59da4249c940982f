"""Chaos: two operator replicas, the leader killed in the middle of a burst — its process
SIGKILLed (a crash: nothing released, the standby waits out the Lease) and its pod deleted
(SIGTERM: the Lease is released) — then the chart upgraded with a rolling update of the
operator pods while work arrives.

Asserted: after every kill another pod runs the operator and scales the work that arrived
with the kill; the rolling upgrade ends with a new pod leading; no scaling decision is carried
out twice (every scale Event matches a replica change the watch saw); one Deployment per
JobQueue; every job ran exactly once. Timings (p50/p99 of the takeover) are reported by
``benchmarks/chaos_leader_failover.py`` (the same ``chaoskit.leader_failovers``) and printed
here (``pytest -s``).
"""

from __future__ import annotations

import chaoskit
import pytest
import redis
from e2ekit import Product

import devenv

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis, pytest.mark.slow]


def test_a_killed_leader_is_replaced_without_lost_work_or_double_scaling(
    cluster: devenv.Cluster, namespace: str, product: Product, redis_conn: redis.Redis
) -> None:
    run = chaoskit.leader_failovers(product, redis_conn, kills=(("sigkill", 2), ("delete", 2)))
    print(run.report())
    assert [r.how for r in run.runs] == ["sigkill", "sigkill", "delete", "delete"]
    for r in run.runs:
        assert r.successor != r.killed, r
        # (fresh only gets work with the kill: the scale-up is the successor's)
        assert r.scaled_after > 0, r
    assert len(run.upgrade_leaders) >= 2, run.upgrade_leaders  # leadership moved to a new pod
    assert run.decided_twice == 0, (run.events, run.transitions)
    assert run.transitions["fresh"].count((0, 2)) == len(run.runs) + 1, run.transitions
    assert run.children == {"deployments": [1, 1]}, run.children
    assert run.audit.exactly_once(), run.audit
