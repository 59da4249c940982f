"""Chaos: Redis gone for 30 s while worker pods run jobs — frozen (SIGSTOP: every client
waits, as in a network partition).

Asserted: the replicas never move while the demand is unknown (no scale-down, let alone to
zero, although the queue's delays are 2 and 4 s); the JobQueue says so
(``RedisReachable=False``, reason ``RedisUnavailable``, a message); afterwards the condition
is back to True, the same worker pods — no restart — take jobs again, every job ends finished
with one result, and the queue goes back to zero. Timings are reported by
``benchmarks/chaos_redis_outage.py`` (the same ``chaoskit.redis_outage``, frozen and stopped),
and printed here (``pytest -s``).
"""

from __future__ import annotations

import chaoskit
import pytest
import redis
from e2ekit import Product

import devenv

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis, pytest.mark.slow]


def test_redis_frozen_for_30s_holds_replicas_says_so_and_everything_recovers(
    product: Product, redis_server: devenv.RedisServer, redis_conn: redis.Redis
) -> None:
    jobs = 120
    run = chaoskit.redis_outage(product, redis_server, redis_conn, how="pause", seconds=30, jobs=jobs)
    print(run.report())
    assert run.seconds >= 30
    # nothing scaled on unknown demand
    assert run.replicas_before == 2
    assert set(run.replicas_during) == {2}, run.replicas_during
    # the JobQueue reported it while it lasted
    assert run.reported_after is not None, run.figures()
    assert run.condition_down["reason"] == "RedisUnavailable", run.condition_down
    assert run.condition_down.get("message"), run.condition_down
    # and everything recovered: the same workers took jobs again, every job ended once
    assert run.restarts == 0, run.figures()
    assert run.pods_after == run.pods_before, run.figures()
    assert run.audit.statuses == {"finished": jobs}, run.audit
    # one success each; a job whose function was running when Redis froze may have run twice:
    # its own Redis write timed out, so that attempt failed and was retried, as it should be
    assert run.audit.results == {1: jobs}, run.audit
    assert run.history[-1] == 0, run.history
