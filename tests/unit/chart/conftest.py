"""Render the chart with the real ``helm`` binary (``helm template``): no cluster needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import devenv
from unit.chart import chartkit


@pytest.fixture(scope="session")
def helm() -> str:
    try:
        return devenv.Binaries.locate().path("helm")
    except FileNotFoundError:
        pytest.fail("helm is missing: run `make bins` (it fetches helm and kubectl)")


@pytest.fixture(scope="session")
def render(helm: str) -> chartkit.Render:
    """``render(values, api_versions=(...), files=(...))``: the objects `helm template` makes."""

    def _render(
        values: dict[str, Any] | None = None,
        *,
        api_versions: tuple[str, ...] = (),
        files: tuple[Path, ...] = (),
    ) -> list[chartkit.Manifest]:
        args = ["template", "t", str(chartkit.CHART), "--namespace", chartkit.NAMESPACE]
        for api in api_versions:
            args += ["--api-versions", api]
        for file in files:
            args += ["-f", str(file)]
        return chartkit.load_all(chartkit.run_helm(helm, *args, values=values).stdout)

    return _render


@pytest.fixture(scope="session")
def render_error(helm: str) -> Callable[[dict[str, Any]], str]:
    """Render values that must be refused; return helm's error message."""

    def _error(values: dict[str, Any]) -> str:
        proc = chartkit.run_helm(helm, "template", "t", str(chartkit.CHART), values=values, check=False)
        assert proc.returncode != 0, f"helm accepted {values}"
        return proc.stderr

    return _error
