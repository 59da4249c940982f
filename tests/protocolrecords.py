"""Hypothesis strategies for the records of jobqueue.protocol, built from their type hints
(a field added to a record is generated without touching the tests).

Values stay within what both sides keep exactly: Lua numbers print with 14 significant
digits (cjson.encode, tostring), so numbers here have at most 13; strings are any text
but lone surrogates (the worker cleans those out of what it sends)."""

from __future__ import annotations

import types
import typing
from typing import Any

from hypothesis import strategies as st

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
#: what the SYNC script and Python's header split can carry: an RQ job id's characters
WORD = st.from_regex(r"[A-Za-z0-9_.-]{1,40}", fullmatch=True)
INTS = st.integers(-(10**9), 10**12)
FLOATS = st.integers(-(10**12), 10**13).map(lambda n: n / 1000)


def records(cls: type, *, claim: bool = False) -> st.SearchStrategy[Any]:
    """Any instance of a protocol record. ``claim``: strings the packed claim can hold."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name in cls._fields:  # type: ignore[attr-defined]
        fields[name] = _values(hints[name], claim)
    return st.builds(cls, **fields)


def _values(hint: Any, claim: bool) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(hint))
    if origin is list:
        return st.lists(_values(typing.get_args(hint)[0], claim), max_size=3)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_values(a, claim) for a in typing.get_args(hint)))
    if hint is type(None):
        return st.none()
    if isinstance(hint, type) and issubclass(hint, tuple):
        return records(hint, claim=claim)
    return {str: WORD if claim else TEXT, int: INTS, float: FLOATS, bytes: st.binary(max_size=60)}[hint]
