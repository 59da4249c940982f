"""A linear start-up for kopf: its "all objects indexed" readiness, counted instead of rescanned.

On its first listing of each watched kind, kopf (1.45) makes one toggle per object in one
``ToggleSet(all)`` and drops it once the object's index handlers ran; every per-object worker
then waits on that set's condition until all toggles are gone
(``kopf/_core/reactor/processing.py``: ``await operator_indexed.wait_for(True)``). kopf's set
notifies its condition on every toggle made or dropped, and every waiter woken re-evaluates
``all()`` over every toggle left: with N objects that is N notifications × up to N waiters ×
up to N toggles. At 10,000 JobQueues (and their 10,000 Deployments) a restarted operator spent
more than seven minutes at a full core in it (docs/performance.md).

:class:`CountingToggleSet` keeps the same semantics with a count of the toggles that are on:
``is_on()`` is O(1) and the waiters of the set are woken only when the set's own state flips
(making or dropping a toggle cannot change any single toggle's state, so nobody waiting on one
toggle misses anything; turning a toggle still wakes everybody, as in kopf). :func:`install`
puts it in place of kopf's class before kopf starts; kopf builds its sets through the module
attribute, so every set made afterwards is a counting one. The fix belongs upstream; until
kopf has it, a unit test runs both classes through the same random schedules and checks that
the installed kopf still has the internals this relies on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from kopf._cogs.aiokits import aiotoggles

logger = logging.getLogger(__name__)

#: kopf's own class, kept for the tests and for :func:`install` to know what it replaces.
KOPF_TOGGLE_SET: type[aiotoggles.ToggleSet] = aiotoggles.ToggleSet


class _CountedToggle(aiotoggles.Toggle):
    """A toggle of a :class:`CountingToggleSet`: it tells its set when it turns."""

    def __init__(self, state: bool, *, name: str | None, owner: CountingToggleSet) -> None:
        super().__init__(state, name=name, condition=owner._condition)
        self._owner = owner

    async def turn_to(self, __state: bool) -> None:
        async with self._condition:
            if self._state != bool(__state) and self in self._owner._toggles:
                self._owner._on_count += 1 if __state else -1
            self._state = bool(__state)
            self._condition.notify_all()


class CountingToggleSet(aiotoggles.ToggleSet):
    """kopf's ``ToggleSet`` for ``all`` and ``any`` with O(1) state and wake-ups only on a flip.

    Any other aggregating function gets kopf's behaviour unchanged (kopf uses only these two).
    """

    def __init__(self, fn: Callable[[Iterable[bool]], bool]) -> None:
        super().__init__(fn)
        self._on_count = 0
        self._counted = fn is all or fn is any

    def is_on(self) -> bool:
        if not self._counted:
            return super().is_on()
        if self._fn is all:
            return self._on_count == len(self._toggles)
        return self._on_count > 0

    async def make_toggle(self, __val: bool = False, *, name: str | None = None) -> aiotoggles.Toggle:
        toggle = _CountedToggle(__val, name=name, owner=self)
        async with self._condition:
            before = self.is_on()
            self._toggles.add(toggle)
            self._on_count += toggle.is_on()
            self._notify_if(before)
        return toggle

    async def drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
        await self.drop_toggles([toggle])

    async def drop_toggles(self, toggles: Iterable[aiotoggles.Toggle]) -> None:
        async with self._condition:
            before = self.is_on()
            for toggle in toggles:
                if toggle in self._toggles:
                    self._toggles.discard(toggle)
                    self._on_count -= toggle.is_on()
            self._notify_if(before)

    def _notify_if(self, before: bool) -> None:
        # kopf's set notifies on every change; only a flip of the set's own state can matter to
        # its waiters, and a toggle's own waiters are unaffected by other toggles coming and going
        if not self._counted or self.is_on() != before:
            self._condition.notify_all()


def _fits(cls: type[aiotoggles.ToggleSet]) -> bool:
    """Whether the installed kopf's ``ToggleSet`` still has the internals this module relies on."""
    probe = cls(all)
    return (
        isinstance(getattr(probe, "_condition", None), asyncio.Condition)
        and isinstance(getattr(probe, "_toggles", None), set)
        and getattr(probe, "_fn", None) is all
        and hasattr(aiotoggles.Toggle(False), "_state")
    )


def install() -> bool:
    """Put :class:`CountingToggleSet` in place of kopf's ``ToggleSet``; False (and kopf's own
    class kept, with a warning) if the installed kopf is not the one this was written for."""
    if aiotoggles.ToggleSet is CountingToggleSet:
        return True
    if not _fits(KOPF_TOGGLE_SET):
        logger.warning(
            "kopf's ToggleSet is not shaped as expected; its start-up stays quadratic in the "
            "number of objects (see jobqueue_operator.kopfpatch)"
        )
        return False
    aiotoggles.ToggleSet = CountingToggleSet  # type: ignore[misc]
    return True
