"""Shared fixtures: real components only.

* ``cluster`` — one real control plane per test session (hack/devenv.py), started lazily
  the first time a test asks for it. ``JOBQUEUE_TEST_KUBECONFIG`` points the suite at an
  existing cluster instead (kind, a cloud cluster), which is then never deleted.
* ``namespace`` — a fresh namespace per test, deleted afterwards.
* ``pod_runner`` — one pod runner per session (hack/podrunner.py): the cluster's project pods
  (label ``app.kubernetes.io/part-of=jobqueue``) run as local processes.
* ``redis_server`` — one redis-server per session; ``redis_url`` / ``redis_conn`` give each
  test its own, flushed, logical database, so tests never see each other's keys.
* ``prometheus`` — one Prometheus per session; tests add scrape targets at run time.

A component that cannot start makes the test *fail*, never skip: a skipped integration
test would hide exactly the breakage these tests exist to catch.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import devenv
import images
import podrunner
import podrunner_containers
import testimages

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under tests/integration talks to real servers; mark it so `-m "not
    # integration"` gives the fast unit run.
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
    # The `keda` tests need KEDA's binaries (~15 min to build once): they run only when the
    # marker expression names them (`pytest -m keda`, `make test-keda`). Deselected, not
    # skipped: pytest reports them as "deselected", and once selected nothing skips them.
    if "keda" not in (config.getoption("markexpr") or ""):
        keda_tests = [item for item in items if item.get_closest_marker("keda")]
        if keda_tests:
            config.hook.pytest_deselected(items=keda_tests)
            items[:] = [item for item in items if not item.get_closest_marker("keda")]


# --------------------------------------------------------------------------------------
# Kubernetes


@pytest.fixture(scope="session")
def cluster() -> Iterator[devenv.Cluster]:
    existing = os.environ.get("JOBQUEUE_TEST_KUBECONFIG")
    if existing:
        yield ExistingCluster(Path(existing))
        return
    with devenv.session_cluster(nodes=2) as c:
        yield c


class ExistingCluster(devenv.Cluster):
    """A cluster someone else runs (JOBQUEUE_TEST_KUBECONFIG): used as is, never deleted."""

    def __init__(self, kubeconfig: Path) -> None:
        super().__init__("external", devenv.Binaries.locate().ensure())
        self._kubeconfig = kubeconfig

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    def delete(self) -> None:  # never delete a cluster we did not create
        pass


@pytest.fixture(scope="session")
def kubeconfig(cluster: devenv.Cluster) -> str:
    return str(cluster.kubeconfig)


@pytest.fixture(scope="session")
def binaries(cluster: devenv.Cluster) -> devenv.Binaries:
    return cluster.binaries


@pytest.fixture(scope="session")
def built_images() -> images.Store:
    """The images ``make image`` builds and the test workers' image (testimages.py), each
    built only if its inputs changed since the last build (a few seconds' hashing when not)."""
    store = images.Store()
    images.Builder(store).build(list(testimages.ALL), specs=testimages.ALL)
    return store


@pytest.fixture(scope="session")
def pod_runner(
    cluster: devenv.Cluster, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[podrunner.PodRunner]:
    """Worker, CronJob and operator pods run as ``devenv.py up`` runs them: in their images
    under runc (container mode) where the runtime works here, else as local processes.

    Pod logs go to ``<pytest's tmp dir>/podrunner/<namespace>/<pod>.log`` (pytest keeps the
    last three sessions'). At the end every process gets at most 10 s after SIGTERM.
    """
    store = request.getfixturevalue("built_images") if podrunner_containers.problem() is None else None
    config = podrunner.Config(
        kubeconfig=cluster.kubeconfig,
        pythonpath=(ROOT / "examples", ROOT / "tests"),
        state_dir=tmp_path_factory.mktemp("podrunner", numbered=False),
        shutdown_grace=10.0,
        images=store.root if store else images.DEFAULT_STORE,
    )
    with podrunner.PodRunner(config) as runner:
        yield runner


@pytest.fixture
def namespace(cluster: devenv.Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:5]}"
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# --------------------------------------------------------------------------------------
# Redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[devenv.RedisServer]:
    server = devenv.RedisServer().start()
    yield server
    server.stop()


_redis_dbs = itertools.cycle(range(1, 64))


@pytest.fixture
def redis_url(redis_server: devenv.RedisServer) -> str:
    """A flushed logical database of the session's Redis, for this test alone."""
    db = next(_redis_dbs)
    url = f"redis://127.0.0.1:{redis_server.port}/{db}"
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    conn.close()
    return url


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


# --------------------------------------------------------------------------------------
# Prometheus


@pytest.fixture(scope="session")
def prometheus() -> Iterator[devenv.PrometheusServer]:
    server = devenv.PrometheusServer().start()
    yield server
    server.stop()
