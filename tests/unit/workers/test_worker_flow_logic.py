"""Flows' pure logic (issue 21, item 4): the dependency-cycle check and the checks of
``depends_on`` (the rest runs against Redis in tests/integration/workers/test_worker_flows.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobqueue import InvalidJobError, JobSpec
from jobqueue.client import MAX_DEPENDENCIES, _Builder, _dependencies, find_cycle
from jobqueue.settings import QueueSettings

IDS = st.sampled_from("abcdefg")
GRAPHS = st.dictionaries(IDS, st.lists(IDS, max_size=4), max_size=7)


def _acyclic(graph: dict[str, list[str]]) -> bool:
    """Kahn's algorithm: every node can be removed once its dependencies are."""
    nodes = set(graph) | {d for deps in graph.values() for d in deps}
    done: set[str] = set()
    while True:
        ready = {n for n in nodes - done if set(graph.get(n, ())) <= done}
        if not ready:
            return done == nodes
        done |= ready


@given(GRAPHS)
def test_find_cycle_finds_one_exactly_when_there_is_one(graph: dict[str, list[str]]) -> None:
    cycle = find_cycle(graph)
    assert (cycle is None) == _acyclic(graph)
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        assert len(set(cycle[:-1])) == len(cycle) - 1
        for waiter, waited in itertools.pairwise(cycle):
            assert waited in graph[waiter]


def test_find_cycle_names_the_loop() -> None:
    assert find_cycle({"p": ["a", "b"], "a": [], "b": ["c"], "c": ["b"]}) == ["b", "c", "b"]
    assert find_cycle({"p": ["p"]}) == ["p", "p"]
    assert find_cycle({"p": ["a", "b"], "a": ["b"], "b": ["x"]}) is None


def test_depends_on_is_checked() -> None:
    assert _dependencies("j", ["a", "b", "a"]) == ["a", "b"]  # each once, in order
    assert _dependencies("j", "a") == ["a"]  # a bare id, as RQ takes it
    with pytest.raises(InvalidJobError, match="cannot depend on itself"):
        _dependencies("j", ["j"])
    with pytest.raises(InvalidJobError, match="'a:b' is not a job id"):
        _dependencies("j", ["a:b"])
    with pytest.raises(InvalidJobError, match=f"at most {MAX_DEPENDENCIES}"):
        _dependencies("j", [f"d{i}" for i in range(MAX_DEPENDENCIES + 1)])


def test_a_job_with_dependencies_is_deferred_and_takes_no_delay() -> None:
    b = _Builder(QueueSettings.model_validate({"queueName": "q"}))
    job_id, kind, argv = b.build(JobSpec("m.f", job_id="p", depends_on=["a", "b"], allow_failure=True))
    assert (job_id, kind, argv[7:]) == ("p", "d", ["1", 2, "a", "b"])
    assert b.build(JobSpec("m.f", job_id="x"))[2][7:] == []  # (a plain job: no extra arguments)
    with pytest.raises(InvalidJobError, match="cannot have a delay"):
        b.build(JobSpec("m.f", depends_on=["a"], delay=5))
