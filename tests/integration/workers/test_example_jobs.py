"""The demo's job module (examples/glec_jobs.py): the seed's two newest kinds, DTG data sync
and report generation, run by a real worker against real Redis, with the queue settings of
manifests/samples/ as the operator would publish them."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from integration.workers.whelpers import ROOT, thread_worker, wait_status
from jobqueue import enqueue, get_job, settings, stats

sys.path.insert(0, str(ROOT / "examples"))
import glec_jobs

SAMPLES = yaml.safe_load_all((ROOT / "manifests" / "samples" / "jobqueues.yaml").read_text())
SPECS = {doc["spec"]["queueName"]: doc["spec"] for doc in SAMPLES}


def publish_sample(conn: redis.Redis, queue: str) -> None:
    spec = SPECS[queue]
    settings.publish(
        conn,
        settings.QueueSettings.model_validate(
            {
                "queueName": queue,
                "priority": spec["priority"],
                "concurrency": spec["concurrency"],
                "imports": spec["worker"]["imports"],
                "jobDefaults": spec["jobDefaults"],
            }
        ),
    )


@pytest.fixture
def glec(
    redis_url: str, redis_conn: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """The sample queues published; the jobs' Redis and report folder pointed at this test's."""
    for queue in ("ei:update", "data:dtg-sync", "report:generate"):
        publish_sample(redis_conn, queue)
    monkeypatch.setenv("JOBQUEUE_REDIS_URL", redis_url)
    monkeypatch.setenv(glec_jobs.REPORT_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(glec_jobs, "DTG_TIMEOUT_RATE", 0.0)  # the flaky gateway, switched off
    glec_jobs._redis.cache_clear()
    yield tmp_path
    glec_jobs._redis.cache_clear()


def run_one(
    redis_url: str,
    conn: redis.Redis,
    queue: str,
    function: Any,
    *args: Any,
    status: str = "finished",
    options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    res = enqueue(queue, function, *args, kwargs=kwargs, connection=conn, **(options or {}))
    with thread_worker(redis_url, queue, imports=("glec_jobs",), concurrency=2):
        return wait_status(conn, queue, res.id, status, timeout=30)


def test_dtg_sync_hands_the_fleet_ei_on_once(glec: Path, redis_url: str, redis_conn: redis.Redis) -> None:
    first = run_one(
        redis_url,
        redis_conn,
        "data:dtg-sync",
        glec_jobs.sync_dtg_data,
        "vehicle-7",
        "fleet-3",
        "2026-11-26T00:00Z",
        records=250,
    )
    assert first.attempts == 3  # the sample's attempts reached the job
    assert first.progress == 100
    result = first.result
    assert result["records"] == 250
    assert result["distance_km"] > 0
    assert 0 < result["ei"] <= 200
    handed = get_job("ei:update", result["ei_job"], connection=redis_conn)
    assert (handed.function, handed.args) == ("glec_jobs.update_ei", ["fleet-3", result["ei"]])
    assert handed.status == "queued"

    # the same window synced again (a retry, a duplicate tick): the EI update is not added twice
    again = run_one(
        redis_url,
        redis_conn,
        "data:dtg-sync",
        glec_jobs.sync_dtg_data,
        "vehicle-7",
        "fleet-3",
        "2026-11-26T00:00Z",
        records=250,
    )
    assert again.result == result
    assert stats.snapshot(redis_conn, ["ei:update"])["ei:update"].queued == 1


def test_report_is_written_to_disk_whole(glec: Path, redis_url: str, redis_conn: redis.Redis) -> None:
    info = run_one(
        redis_url,
        redis_conn,
        "report:generate",
        glec_jobs.generate_report,
        "emissions",
        "2026-W48",
        rows=5_000,
    )
    assert info.timeout_seconds == 60  # the seed's 60 s timeout
    report = Path(info.result["report"])
    assert report.parent == glec / "glec-reports"
    content = report.read_bytes()
    assert info.result["bytes"] == len(content)
    assert info.result["sha256"] == hashlib.sha256(content).hexdigest()
    lines = content.decode().splitlines()
    assert lines[0] == "trip_id,fleet_id,distance_km,co2_kg,ei"
    assert len(lines) == 5_001
    assert [p.name for p in report.parent.iterdir()] == [report.name]  # no partial file left


def test_report_refuses_a_path_in_its_name(glec: Path, redis_url: str, redis_conn: redis.Redis) -> None:
    info = run_one(
        redis_url,
        redis_conn,
        "report:generate",
        glec_jobs.generate_report,
        "../../etc",
        "x",
        status="failed",
        options={"attempts": 1},
    )
    assert "report_type must be 1-64 characters" in (info.failed_reason or "")
    assert not (glec / "glec-reports").exists() or not any((glec / "glec-reports").iterdir())
