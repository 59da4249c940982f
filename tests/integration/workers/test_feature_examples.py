"""The runnable examples of the feature pages in docs/ (examples/features.py) run as the pages
say, against real Redis with real workers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from integration.workers.whelpers import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def run_example(redis_url: str, name: str) -> str:
    env = {**os.environ, "JOBQUEUE_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT / "examples")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "features.py"), name],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_bulk_operations_example(redis_url: str) -> None:
    out = run_example(redis_url, "bulk").splitlines()
    assert out[0].startswith("failed: 1000; first: ")
    assert "ConnectionError: mail relay down" in out[0]
    assert out[1:] == [
        "dry run: 1000 would be retried",
        "retried 1000 (skipped 0)",
        "finished: 1000; purged 1000; left 0",
    ]


def test_cancel_example(redis_url: str) -> None:
    out = run_example(redis_url, "cancel").splitlines()
    assert out[0] == "process: cancel a scheduled job -> scheduled -> canceled"
    assert out[1].startswith("process: running job stopped ")
    assert out[1].endswith(
        "canceled (canceled by example; stopped: its process was killed); attempts used 1 of 3"
    )
    assert out[2] == "thread: cancel a scheduled job -> scheduled -> canceled"
    assert "(current_job().cancel_requested)); attempts used 1 of 3" in out[3]


def test_wait_example(redis_url: str) -> None:
    (line,) = run_example(redis_url, "wait").splitlines()
    assert line.startswith("200 quotes; job end -> wait() returned: p50 ")
    assert line.endswith("; last total 328.9")


def test_rate_limit_example(redis_url: str) -> None:
    (line,) = run_example(redis_url, "rate").splitlines()
    assert line.startswith("limit 10/s, pods ['pod-a', 'pod-b', 'pod-c']: ")
    assert "at most 10 in any 0.95 s;" in line


def test_flow_example(redis_url: str) -> None:
    assert run_example(redis_url, "flow").splitlines() == [
        "enqueued: report-strict deferred ['queued', 'queued', 'queued']",
        "without allow_failure: failed (not run: its dependency co2-truck-3 failed (RQ's depends_on without "
        "allow_failure))",
        "with allow_failure: finished {'fleet': 'north', 'kg': 247.3, 'missing': ['co2-truck-3-2']}",
    ]
