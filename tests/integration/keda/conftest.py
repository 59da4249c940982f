"""The real KEDA (hack/keda.py) against the session's cluster, for the ``keda`` tests.

These tests are opt-in (``make test-keda``, i.e. ``pytest -m keda``): KEDA's binaries take
~15 min to build the first time. Once opted in, nothing is skipped: missing binaries are
built, and a KEDA that cannot start fails the test with its log.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import devenv
import keda


@pytest.fixture(scope="session")
def running_keda(cluster: devenv.Cluster) -> Iterator[keda.Keda]:
    with keda.Keda(cluster) as running:
        yield running
