"""Fixtures of every integration folder that runs the real operator (``python -m
jobqueue_operator``) against the session's real cluster: operator/, recurring/, scaling/, e2e/.

* ``crds`` — the generated CRDs, applied once per session (they are cluster-scoped; other
  test folders may have installed them already, through the chart: server-side apply with
  ``--force-conflicts`` takes them over, the content is the same);
* ``start_operator(namespaces=…, redis_url=…, env=…, **settings)`` — an operator process of
  this test, configured through its ``JOBQUEUE_*`` environment (``settings``; ``env``: other
  variables, e.g. ``POD_NAME``) like a Deployment would, watching only
  the test's namespaces so that concurrent tests never share an operator; it is stopped
  (SIGTERM) at teardown and its log is printed when the test fails;
* ``operator`` — one such operator for ``namespace`` and ``redis_url``.

Helpers for the tests themselves are in ``opkit.py``.

Every assertion is on real objects (``kubectl get -o json``) and real Redis keys.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opkit import RunningOperator, StartOperator

import devenv
import podrunner_containers

ROOT = Path(__file__).resolve().parents[2]
#: Fast sweeps so that recovery tests take seconds (production default: 30 s).
TEST_RESYNC_SECONDS = "2"


@pytest.fixture(scope="session", autouse=True)
def current_images(request: pytest.FixtureRequest) -> None:
    """Where the pod runner runs images (container mode), every runner of the session — the
    session's and the tests' own — runs images built from this tree, never a stale build left
    in ``.cache/images`` (a few seconds' hashing when nothing changed)."""
    if podrunner_containers.problem() is None:
        request.getfixturevalue("built_images")


@pytest.fixture(scope="session")
def crds(cluster: devenv.Cluster) -> None:
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=jobqueue-tests",
        "-f",
        str(ROOT / "crds"),
    )
    for name in ("jobqueues.jobqueue.glec.io", "recurringjobs.jobqueue.glec.io"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s", timeout=70)


@pytest.fixture
def start_operator(
    kubeconfig: str, crds: None, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StartOperator]:
    started: list[RunningOperator] = []

    def start(
        *, namespaces: list[str], redis_url: str | None, env: dict[str, str] | None = None, **settings: str
    ) -> RunningOperator:
        metrics_port, health_port = devenv.free_port(), devenv.free_port()
        extra = env or {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBQUEUE_")}
        # the code of this checkout, whatever the virtualenv has installed
        code = [str(ROOT / "operator"), str(ROOT / "workers"), env.get("PYTHONPATH", "")]
        env |= extra
        env |= {
            "PYTHONPATH": os.pathsep.join(p for p in code if p),
            "KUBECONFIG": kubeconfig,
            "JOBQUEUE_NAMESPACES": ",".join(namespaces),
            "JOBQUEUE_METRICS_PORT": str(metrics_port),
            "JOBQUEUE_HEALTH_PORT": str(health_port),
            "JOBQUEUE_LOG_FORMAT": "json",
            "JOBQUEUE_RESYNC_SECONDS": TEST_RESYNC_SECONDS,
            **{f"JOBQUEUE_{k.upper()}": v for k, v in settings.items()},
        }
        if redis_url:
            env["JOBQUEUE_REDIS_URL"] = redis_url
        log = tmp_path / f"operator-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jobqueue_operator"],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        op = RunningOperator(proc, log, metrics_port, health_port, env)
        started.append(op)

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"operator exited with {proc.returncode}:\n{op.logs()}")
            return op.get("/healthz", health_port)[0] == 200

        devenv.wait_until("operator liveness endpoint", healthy, timeout=60)
        return op

    yield start
    for op in started:
        op.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for op in started:
            print(f"--- operator log {op.log}:\n{op.logs()[-20000:]}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


@pytest.fixture
def operator(start_operator: StartOperator, namespace: str, redis_url: str) -> RunningOperator:
    return start_operator(namespaces=[namespace], redis_url=redis_url)
