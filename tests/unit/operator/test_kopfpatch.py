"""kopf's start-up readiness, counted (:mod:`jobqueue_operator.kopfpatch`): kopf's semantics, linear wake-ups."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kopf._cogs.aiokits import aiotoggles
from kopf._core.reactor import orchestration

from jobqueue_operator import kopfpatch

# one step of a schedule: ("make", on?), ("drop", which), ("turn", which, on?), ("drop_many", which…)
Step = tuple[object, ...]
steps = st.one_of(
    st.tuples(st.just("make"), st.booleans()),
    st.tuples(st.just("drop"), st.integers(0, 30)),
    st.tuples(st.just("turn"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("drop_many"), st.lists(st.integers(0, 30), max_size=4)),
)


async def _observe(
    cls: type[aiotoggles.ToggleSet], fn: Callable[[Iterable[bool]], bool], schedule: list[Step]
) -> list[tuple[bool, int]]:
    toggle_set = cls(fn)
    made: list[aiotoggles.Toggle] = []
    seen = [(toggle_set.is_on(), len(toggle_set))]
    for step in schedule:
        if step[0] == "make":
            made.append(await toggle_set.make_toggle(bool(step[1])))
        elif made and step[0] == "drop":
            await toggle_set.drop_toggle(made[int(step[1]) % len(made)])  # type: ignore[call-overload]
        elif made and step[0] == "turn":
            await made[int(step[1]) % len(made)].turn_to(bool(step[2]))  # type: ignore[call-overload]
        elif made and step[0] == "drop_many":
            await toggle_set.drop_toggles([made[int(i) % len(made)] for i in step[1]])  # type: ignore[attr-defined]
        seen.append((toggle_set.is_on(), len(toggle_set)))
    return seen


@settings(max_examples=300, deadline=None)
@given(fn=st.sampled_from([all, any]), schedule=st.lists(steps, max_size=40))
def test_the_counting_set_answers_as_kopfs_own_after_every_step(
    fn: Callable[[Iterable[bool]], bool], schedule: list[Step]
) -> None:
    # dropped toggles turned afterwards, toggles dropped twice, made on or off: all as kopf answers
    ours = asyncio.run(_observe(kopfpatch.CountingToggleSet, fn, schedule))
    kopfs = asyncio.run(_observe(kopfpatch.KOPF_TOGGLE_SET, fn, schedule))
    assert ours == kopfs


class _Counting:
    """Counts the evaluations of a set's state (what each woken waiter does)."""

    def __init__(self, toggle_set: aiotoggles.ToggleSet) -> None:
        self.calls = 0
        inner = toggle_set.is_on

        def is_on() -> bool:
            self.calls += 1
            return inner()

        toggle_set.is_on = is_on  # type: ignore[method-assign]


async def _start_up(cls: type[aiotoggles.ToggleSet], objects: int) -> tuple[int, int]:
    """kopf's start-up in miniature: a toggle per object, a waiter per object, the toggles
    dropped one by one; returns (state evaluations, waiters released)."""
    readiness = cls(all)
    counter = _Counting(readiness)
    toggles = [await readiness.make_toggle(name=f"object {i}") for i in range(objects)]
    waiters = [asyncio.create_task(readiness.wait_for(True)) for _ in range(objects)]
    await asyncio.sleep(0)
    for toggle in toggles:
        await readiness.drop_toggle(toggle)
        await asyncio.sleep(0)  # let the woken waiters look, as the event loop would
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=30)
    return counter.calls, sum(w.done() for w in waiters)


def test_a_start_up_with_many_objects_wakes_each_waiter_about_once() -> None:
    objects = 400
    ours, released = asyncio.run(_start_up(kopfpatch.CountingToggleSet, objects))
    kopfs, kopf_released = asyncio.run(_start_up(kopfpatch.KOPF_TOGGLE_SET, objects))
    assert released == kopf_released == objects
    # a few looks per object: each waiter when it starts and when the set flips, each drop's own
    assert ours <= 8 * objects
    # the quadratic this replaces: every drop woke every waiter (the test would not see a regression otherwise)
    assert kopfs >= objects * objects // 4


def test_a_waiter_for_one_toggle_still_wakes_when_it_turns() -> None:
    async def scenario() -> bool:
        toggle_set = kopfpatch.CountingToggleSet(any)
        toggle = await toggle_set.make_toggle(False)
        waiter = asyncio.create_task(toggle.wait_for(True))
        await asyncio.sleep(0)
        await toggle_set.make_toggle(False)  # no flip of the set: must not matter to the waiter
        await toggle.turn_to(True)
        await asyncio.wait_for(waiter, timeout=5)
        return toggle_set.is_on()

    assert asyncio.run(scenario())


def test_install_replaces_kopfs_set_where_kopf_builds_its_readiness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiotoggles, "ToggleSet", kopfpatch.KOPF_TOGGLE_SET)
    assert kopfpatch.install(), "the installed kopf no longer has the ToggleSet internals kopfpatch relies on"
    assert kopfpatch.install()  # twice is harmless
    # kopf's orchestration builds its readiness set through the module attribute at run time
    assert orchestration.aiotoggles.ToggleSet is kopfpatch.CountingToggleSet


def test_install_keeps_kopfs_set_when_its_internals_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    class Reshaped(kopfpatch.KOPF_TOGGLE_SET):  # type: ignore[misc,valid-type]
        def __init__(self, fn: Callable[[Iterable[bool]], bool]) -> None:
            super().__init__(fn)
            del self._toggles

    monkeypatch.setattr(kopfpatch, "KOPF_TOGGLE_SET", Reshaped)
    monkeypatch.setattr(aiotoggles, "ToggleSet", Reshaped)
    assert not kopfpatch.install()
    assert aiotoggles.ToggleSet is Reshaped
