"""The package's public surface is small and deliberate (everything else is internal)."""

from __future__ import annotations

import jobqueue_operator


def test_exported_members() -> None:
    assert jobqueue_operator.__all__ == ["__version__"]
    assert jobqueue_operator.__version__
