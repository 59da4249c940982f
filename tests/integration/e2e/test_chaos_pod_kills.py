"""Chaos: worker pods deleted with grace period 0 (SIGKILL at once) at random while 5,000 jobs
run through the installed product. Nothing may be lost and no result recorded twice; a job
whose run was cut by a kill runs again (at least once), and such repeats are counted.

Asserted: every job ended finished (or failed with every attempt used, none here in
practice), every job a killed pod held was taken back (re-queued, started elsewhere or
failed), no job has two success results, the operator recorded its recoveries. Not asserted:
how fast (two noisy shared cores) — ``benchmarks/chaos_pod_kills.py`` runs the same scenario
(``chaoskit.pod_kills``) and reports the time from each kill to each held job being back
(goal: p99 <= 30 s) and the repeats. This run's figures are printed (``pytest -s``).
"""

from __future__ import annotations

import chaoskit
import pytest
import redis
from e2ekit import Product

import devenv
import podrunner

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis, pytest.mark.slow]


def test_worker_pods_killed_at_random_lose_no_job_and_record_no_result_twice(
    cluster: devenv.Cluster,
    namespace: str,
    product: Product,
    redis_conn: redis.Redis,
    pod_runner: podrunner.PodRunner,
) -> None:
    run = chaoskit.pod_kills(
        cluster,
        namespace,
        redis_conn,
        pod_runner,
        jobs=5000,
        job_seconds=0.1,
        concurrency=20,
        per_pod=2,
        every=(2.0, 4.0),
        seed=8,
    )
    print(run.report())
    held = [h for k in run.kills for h in k.held]
    assert len(run.kills) >= 3, run.figures()  # the chaos happened, and hit running jobs
    assert held, run.figures()
    # every job a killed pod held was taken back: re-queued, claimed elsewhere, or failed
    assert all(h.back_at is not None and h.how for h in held), run.figures()
    # zero lost: every job ended, finished or failed for good with its reason
    a = run.audit
    assert set(a.statuses) <= {"finished", "failed"}, a
    assert all("none left" in why for why in a.unfinished.values()), a
    # each ran to its end at least once; no result recorded twice
    assert a.starts.get(0, 0) == 0, a
    assert a.completions.get(0, 0) == 0, a
    assert a.results.get(1, 0) == a.statuses.get("finished", 0), a
    assert not [n for n in a.results if n > 1], a
    # the operator's recovery did it (and said so), not only the workers' lease reaping
    assert run.lost_events >= 1, run.figures()
