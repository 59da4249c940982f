"""The autoscaler's integration tests: the real operator, the real cluster, real workers.

Reuses the operator tests' fixtures (``crds``, ``start_operator``) and helpers (``opkit``);
worker pods are run by the session's pod runner as real ``jobqueue worker`` processes, so a
backlog really becomes replicas, replicas become processes, and processes drain the queue.
"""

from __future__ import annotations

import sys
from pathlib import Path

_OPERATOR_TESTS = Path(__file__).resolve().parents[1] / "operator"
if str(_OPERATOR_TESTS) not in sys.path:
    sys.path.insert(0, str(_OPERATOR_TESTS))

from integration.operator.conftest import (  # noqa: E402
    crds,
    operator,
    pytest_runtest_makereport,
    start_operator,
)

__all__ = ["crds", "operator", "pytest_runtest_makereport", "start_operator"]
