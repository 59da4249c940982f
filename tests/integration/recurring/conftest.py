"""RecurringJob tests run the real operator exactly as the operator tests do: this folder
reuses tests/integration/operator's fixtures (``crds``, ``start_operator``, ``operator``) and
helpers (``opkit``) instead of copying them.

pytest only loads a conftest.py on the path of the collected tests, so the operator
folder's is imported here by module path; its folder goes on ``sys.path`` first because it
imports ``opkit`` as a top-level module (as it does when pytest collects that folder).
"""

from __future__ import annotations

import sys
from pathlib import Path

OPERATOR_TESTS = Path(__file__).resolve().parent.parent / "operator"
if str(OPERATOR_TESTS) not in sys.path:
    sys.path.insert(0, str(OPERATOR_TESTS))

from integration.operator.conftest import (  # noqa: E402
    crds,
    operator,
    pytest_runtest_makereport,
    start_operator,
)

__all__ = ["crds", "operator", "pytest_runtest_makereport", "start_operator"]
