"""Redis Sentinel: workers, producers and the operator's Redis module all on a
``redis+sentinel://`` URL, the primary SIGKILLed in the middle of a burst (three real Sentinels,
a primary and a replica, on loopback: :mod:`redisfarm`).

Asserted: the Sentinels promote the replica and everyone follows it — the workers finish the
burst on the new primary, the producer's batches all arrive (those a replica had not
confirmed are sent again), the operator's poll of the queue succeeds again; no job is lost.
Jobs completed more than once are allowed and printed (``pytest -s``): with asynchronous
replication, the last results a worker wrote to the old primary may never have reached the
replica, and such a job runs again once its claim expires. Timings and the duplicate count
are reported by ``benchmarks/chaos_redis_failover.py`` (the same ``failoverkit``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import failoverkit
import pytest

import redisfarm

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def sentinels() -> Iterator[redisfarm.SentinelGroup]:
    with redisfarm.SentinelGroup().start() as group:
        yield group


def test_everyone_follows_the_new_primary_and_no_job_is_lost(
    sentinels: redisfarm.SentinelGroup, tmp_path: Path
) -> None:
    run = failoverkit.sentinel_failover(sentinels, tmp_path, jobs=1200, job_seconds=0.05)
    print(run.report())
    assert run.promoted_at > run.failed_at
    assert run.first_completion_after is not None  # workers recorded results on the new primary
    assert run.operator_polls_back_after is not None  # and the operator read it
    assert run.lost == 0, (run.figures(), run.worker_logs)
    assert run.statuses == {"finished": run.jobs}, run.statuses
    assert sum(run.completions.values()) == run.jobs
