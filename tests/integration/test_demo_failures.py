"""`make demo` on a machine that lacks something: one line says what failed and where the
details are, no traceback, and nothing it started is left running.

The demo runs for real (hack/demo.py) against a throw-away cache directory that shares only
the control-plane binaries; every process it starts inherits a marker in its environment, so
"nothing left running" is checked over every process on the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import devenv

ROOT = Path(__file__).resolve().parents[2]


def path_without(tool: str, farm: Path) -> str:
    """PATH as it is, minus ``tool``: a directory of links to every other command."""
    farm.mkdir()
    for d in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for entry in os.scandir(d):
            link = farm / entry.name
            if entry.name != tool and not link.exists() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    return str(farm)


def marked_processes(marker: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if marker.encode() in environ:
            found.append(f"{pid}: {cmdline}")
    return found


@pytest.fixture
def run_demo(tmp_path: Path) -> Callable[[str], subprocess.CompletedProcess[str]]:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "bin").symlink_to(devenv.Binaries.locate().bin_dir.parent)
    marker = f"JQ_DEMO_TEST_{uuid.uuid4().hex}"

    def run(path: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": path, "JOBQUEUE_CACHE": str(cache), marker: "1"}
        return subprocess.run(
            [sys.executable, str(ROOT / "hack" / "demo.py")],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )

    yield run
    left = marked_processes(marker)
    assert not left, f"left running by the failed demo: {left}"
    assert not (cache / "kwok" / "clusters" / devenv.DEV_CLUSTER_NAME).exists(), "cluster left behind"
    assert not (cache / "devenv" / "state.json").exists()


def failure_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc.stderr.strip().splitlines()[-1]


def test_without_redis_server_the_demo_starts_nothing_and_says_so(run_demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = run_demo(path_without("redis-server", tmp_path / "path"))
    line = failure_line(proc)
    log = tmp_path / "cache" / "demo" / "demo.log"
    assert line == (
        "make demo, step 1/6 (Local cluster, Redis, Prometheus and the pod runner) failed: "
        f"redis-server not found on PATH: run `make deps` (hack/system-deps.sh installs it) "
        f"(details: {log})"
    )
    assert "Traceback" in log.read_text()  # the whole story is in the log
    assert not (tmp_path / "cache" / "kwok").exists()  # checked before anything started


def test_a_server_failing_mid_start_up_stops_what_was_started(run_demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "prometheus").write_text("#!/bin/sh\necho 'err=\"opening storage failed\"' >&2\nexit 3\n")
    (fake / "prometheus").chmod(0o755)
    proc = run_demo(f"{fake}{os.pathsep}{os.environ['PATH']}")
    line = failure_line(proc)
    step = "make demo, step 1/6 (Local cluster, Redis, Prometheus and the pod runner)"
    assert line.startswith(f"{step} failed: prometheus on :"), line
    assert line.endswith(
        f'exited with code 3 at start-up: err="opening storage failed" '
        f"(details: {tmp_path / 'cache' / 'demo' / 'demo.log'})"
    ), line
    # it did get as far as starting the control plane and Redis (stopped again: see the fixture)
    assert "control plane up" in proc.stderr
