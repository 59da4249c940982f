"""Fixtures for the pod runner's tests (hack/podrunner.py) against the session's real cluster.

Each test gets a runner of its own that watches only the test's namespace and only pods
labelled ``podrunner.test/run=yes``: it never runs another test's pods, and a session-wide
runner (default selector ``app.kubernetes.io/part-of=jobqueue``) never runs these. The
processes leave their evidence (pid files, environment dumps) in ``lab.out``, a per-test
directory; nothing here inspects the runner's internals except through ``snapshot()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from podrunner_lab import SELECTOR, Lab

import devenv
import images
import podrunner


@pytest.fixture
def lab(cluster: devenv.Cluster, namespace: str, tmp_path: Path) -> Lab:
    out = tmp_path / "out"
    out.mkdir()
    return Lab(cluster, namespace, out)


@pytest.fixture
def runner_config(cluster: devenv.Cluster, namespace: str, tmp_path: Path) -> podrunner.Config:
    return podrunner.Config(
        kubeconfig=cluster.kubeconfig,
        selector=SELECTOR,
        namespace=namespace,
        pythonpath=(tmp_path / "pylib",),
        state_dir=tmp_path / "state",
        backoff_initial=1.0,
        backoff_max=4.0,  # the kubelet's 10 s → 300 s would make tests slow
        shutdown_grace=5.0,  # a failed test's leftovers need not get their full 30 s
        mode="process",  # these tests are about the process mode (test_pod_containers: the other)
    )


@pytest.fixture
def runner(runner_config: podrunner.Config) -> Iterator[podrunner.PodRunner]:
    with podrunner.PodRunner(runner_config) as r:
        yield r


@pytest.fixture
def containers(
    cluster: devenv.Cluster, namespace: str, tmp_path: Path, built_images: images.Store
) -> Iterator[podrunner.PodRunner]:
    """A runner of the test's namespace in container mode (the images ``make image`` builds)."""
    config = podrunner.Config(
        kubeconfig=cluster.kubeconfig,
        selector=SELECTOR,
        namespace=namespace,
        state_dir=tmp_path / "state",
        backoff_initial=1.0,
        backoff_max=4.0,
        shutdown_grace=5.0,
        mode="container",
        images=built_images.root,
    )
    with podrunner.PodRunner(config) as runner:
        yield runner
