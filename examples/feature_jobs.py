"""The jobs of examples/features.py (the runnable examples of the feature pages in docs/)."""

from __future__ import annotations

import os

from jobqueue import job


@job
def send_email(to: str) -> str:
    """Fails while the (pretend) mail relay is down: ``RELAY_DOWN`` is set."""
    if os.environ.get("RELAY_DOWN"):
        raise ConnectionError(f"mail relay down, cannot send to {to}")
    return f"sent to {to}"
