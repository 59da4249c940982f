"""How failures become Events: at once, then at most one aggregated Event per window.

Pure. A queue whose jobs all fail (a downstream outage) would otherwise post an Event per
job — thousands, each an etcd write. The first failure of a quiet queue is posted at once;
further failures within :data:`WINDOW_SECONDS` are collected and posted as one Event when the
window ends (``12 more jobs failed for good in 30 s: …``, the first few named), so a queue
costs at most one Event per window however many jobs fail.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Final

from jobqueue.failures import Exhausted

#: Seconds between two Events of one queue about failed jobs.
WINDOW_SECONDS: Final = 30.0
#: Jobs an aggregated Event names (the rest are counted).
NAMED: Final = 3
#: Characters of one job's error an Event quotes.
ERROR_CHARS: Final = 200
REASON: Final = "JobFailed"


def describe(failure: Exhausted) -> str:
    error = failure.error if len(failure.error) <= ERROR_CHARS else failure.error[:ERROR_CHARS] + "…"
    return (
        f"job {failure.job_id} ({failure.function}) failed after {failure.attempts} of "
        f"{failure.max_attempts} attempts: {error}"
    )


@dataclass
class _Window:
    last_post: float
    held: list[Exhausted] = field(default_factory=list)


class Throttle:
    """Which Event messages to post, per key (a JobQueue), and when."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self._window = window
        self._keys: dict[Hashable, _Window] = {}

    def add(self, key: Hashable, failure: Exhausted, now: float) -> str | None:
        """The message to post now for ``failure``, or None (held for the window's Event)."""
        w = self._keys.get(key)
        if w is None or (not w.held and now - w.last_post >= self._window):
            self._keys[key] = _Window(last_post=now)
            return describe(failure)
        w.held.append(failure)
        return None

    def due(self, now: float) -> list[tuple[Hashable, str]]:
        """Aggregated messages whose window has ended; forgets keys quiet for a whole window."""
        out = []
        for key, w in list(self._keys.items()):
            if now - w.last_post < self._window:
                continue
            if not w.held:
                del self._keys[key]
                continue
            named = "; ".join(describe(f) for f in w.held[:NAMED])
            more = f"; and {len(w.held) - NAMED} more" if len(w.held) > NAMED else ""
            out.append(
                (key, f"{len(w.held)} more job(s) failed for good in {now - w.last_post:.0f}s: {named}{more}")
            )
            self._keys[key] = _Window(last_post=now)
        return out
