"""Drain time, end to end: 10,000 jobs of 50 ms into an empty queue of concurrency 20 at zero
replicas, through the installed product — every job must finish exactly once.

No timing is asserted (two noisy shared cores); ``benchmarks/e2e_drain.py`` runs the same
scenario (``e2edrain.run``) and reports the drain time against the ideal 25 s with its
breakdown. The figures of this run are printed (``pytest -s``).
"""

from __future__ import annotations

import e2edrain
import pytest
import redis
from e2ekit import Product

import devenv

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis, pytest.mark.slow]


def test_ten_thousand_jobs_from_zero_replicas_each_finish_exactly_once(
    cluster: devenv.Cluster, namespace: str, product: Product, redis_conn: redis.Redis
) -> None:
    drain = e2edrain.run(
        cluster,
        namespace,
        redis_conn,
        jobs=10_000,
        job_seconds=0.05,
        concurrency=20,
        per_pod=5,
        idle_seconds=5,
    )
    print(drain.report())
    # every job finished; its function started once and completed once; one result recorded
    assert drain.audit.exactly_once(), drain.audit
    # from zero, straight to the 4 pods of concurrency 20 at 5 per pod, and back to zero
    values = [r for _, r in drain.replicas]
    assert values[0] == 4, drain.replicas
    assert values[-1] == 0, drain.replicas
    assert len(drain.workers) == 4, drain.workers
