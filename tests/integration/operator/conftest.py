"""Fixtures of the operator's integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from jobqueue_operator import k8s


@pytest_asyncio.fixture
async def kube(kubeconfig: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[k8s.Kube]:
    """The operator's own Kubernetes client, on the session's cluster."""
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    client = k8s.Kube.connect()
    yield client
    await client.close()
