"""One source for the worker <-> Lua contract: key names from jobqueue.keys, records from
jobqueue.protocol. The round trips through Redis's own Lua are in
tests/integration/workers/test_worker_protocol_roundtrip.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobqueue import _lua, keys, protocol
from protocolrecords import records

NAMES = ("ENQUEUE", "SYNC", "HEARTBEAT", "REAP", "RECOVER_POD", "SNAPSHOT", "RETRY", "REMOVE", "BULK",
         "CANCEL")  # fmt: skip
PER_JOB = {"ACK": protocol.Ack, "PROGRESS": protocol.Progress, "RELEASE": protocol.Release,
           "UNANSWERED": protocol.Unanswered}  # fmt: skip
KEY_LITERAL = re.compile(rf"'((?:{keys.RQ}|{keys.OURS})[^']*)'")


def _code(lua: str) -> str:
    """Lua source without its comments (none of the scripts has '--' inside a string)."""
    return re.sub(r"--[^\n]*", "", lua)


def test_every_script_is_its_rendered_template() -> None:
    assert set(_lua.TEMPLATES) == set(NAMES)
    for name in NAMES:
        assert _lua._render(_lua.TEMPLATES[name]) == getattr(_lua, name)


@pytest.mark.parametrize("name", NAMES)
def test_no_script_spells_a_key_name_itself(name: str) -> None:
    template = _code(_lua.TEMPLATES[name])
    for prefix in (keys.RQ, keys.OURS):
        where = template.find(prefix)
        assert where < 0, f"{name} spells a key: {template[where - 40 :][:100]!r}"
    # rendered, every key name in it is one of keys.py's, and nothing is left to render
    rendered = _code(getattr(_lua, name))
    assert set(KEY_LITERAL.findall(rendered)) <= set(_lua.LUA_KEYS.values())
    assert not re.search(r"\b(K|ACK|PROGRESS|RELEASE|UNANSWERED)\.\w|CLAIM\{", rendered)
    assert rendered.count(keys.RQ) + rendered.count(keys.OURS) == len(KEY_LITERAL.findall(rendered))


def test_the_key_names_are_keys_py() -> None:
    # every key name keys.py defines reaches the scripts (the job-hash fields are not keys)
    defined = {v for k, v in vars(keys).items() if k.isupper() and isinstance(v, str) and k[:2] != "F_"}
    assert defined - {keys.RQ, keys.OURS} <= set(_lua.LUA_KEYS.values())
    used = {m for t in _lua.TEMPLATES.values() for m in re.findall(r"\bK\.(\w+)", _code(t))}
    assert used == set(_lua.LUA_KEYS)


def test_an_unknown_key_or_field_fails_at_rendering() -> None:
    with pytest.raises(KeyError):
        _lua._render("return K.nope")
    with pytest.raises(KeyError):
        _lua._render("return k[ACK.nope]")
    with pytest.raises(ValueError, match=r"missing .*'backoff'"):
        _lua._render("return CLAIM{id = id}")


def test_the_priority_weights_come_from_keys_py() -> None:
    weights = [keys.PRIORITY_WEIGHTS[level] for level in keys.PRIORITY_LEVELS]
    for name in ("SYNC", "ENQUEUE", "SNAPSHOT", "CANCEL"):
        lua = getattr(_lua, name)
        assert f"local WEIGHTS = {{{', '.join(map(str, weights))}}}" in lua
        assert f"local DEFAULT_LEVEL = {keys.DEFAULT_PRIORITY}\n" in lua
    assert "16, 8" not in _sync_code()


# --- the SYNC script reads exactly the records' fields


def _sync_code() -> str:
    """SYNC's template code, after the prelude and the tables of field names."""
    return _code(_lua.TEMPLATES["SYNC"].split(_lua._SYNC_RECORDS, 1)[1])


@pytest.mark.parametrize(
    ("var", "record", "table"), [("a", protocol.SyncArgs, "SYNC_ARGS"), ("d", protocol.Defaults, "DEFAULTS")]
)
def test_the_script_names_the_calls_records_by_their_fields_and_reads_every_one(
    var: str, record: type[tuple[Any, ...]], table: str
) -> None:
    fields: tuple[str, ...] = record._fields  # type: ignore[attr-defined]
    assert f"local {table} = {{{', '.join(repr(f) for f in fields)}}}" in _lua._SYNC_RECORDS
    code = _sync_code()
    assert re.search(rf"local {var} = named\(.*, {table}\)", code)
    assert set(re.findall(rf"(?<![\w.]){var}\.(\w+)", code)) == set(fields)


@pytest.mark.parametrize("table", PER_JOB)
def test_the_script_reads_every_field_of_the_per_job_records_at_its_position(table: str) -> None:
    record = PER_JOB[table]
    assert set(re.findall(rf"\b{table}\.(\w+)", _sync_code())) == set(record._fields)
    assert _lua._render(f"return r[{table}.{record._fields[-1]}]") == f"return r[{len(record._fields)}]"


def test_the_script_packs_every_claim_field_in_the_records_order() -> None:
    call = re.search(r"CLAIM\{(.*?)\}", _sync_code(), re.S)
    assert call is not None
    assert set(re.findall(r"(\w+) =", call[1])) == set(protocol.Claim._fields)
    packed = protocol.lua_pack_claim({f: f"v_{f}" for f in protocol.Claim._fields})
    order = re.findall(r"v_(\w+)", packed.split("'|'")[0])
    assert order == ["data", "backoff", *[f for f in protocol.Claim._fields if f not in ("data", "backoff")]]


@given(records(protocol.SyncArgs))
def test_sync_args_travel_as_json_arrays_in_field_order(args: protocol.SyncArgs) -> None:
    sent = json.loads(args.encode())
    assert len(sent) == len(protocol.SyncArgs._fields)
    named = dict(zip(protocol.SyncArgs._fields, sent, strict=True))
    assert named["queue"] == args.queue
    assert named["now"] == args.now
    assert named["defaults"] == (None if args.defaults is None else list(args.defaults))
    for field in ("acks", "progress", "releases", "unanswered"):
        assert named[field] == [list(row) for row in getattr(args, field)]


def test_decode_claims_reads_the_documented_layout() -> None:
    packed = b"3|2|x1.1|180|3|1|3600|-1|2|1733590000.5|job-1\nabc{}" + b"0|2|x1.2|-1|1|1|0|0|3|5|j|2\n[]"
    assert protocol.decode_claims(packed) == [
        protocol.Claim("x1.1", 180.0, 3, 1, 3600, -1, 2, 1733590000.5, "job-1", b"abc", b"{}"),
        protocol.Claim("x1.2", -1.0, 1, 1, 0, 0, 3, 5.0, "j|2", b"", b"[]"),
    ]
    assert protocol.decode_claims(b"") == []


def _pack(c: protocol.Claim) -> bytes:
    """The packed layout, derived here from Claim's field order (as lua_claim_packer does):
    the body lengths, the other fields as Lua's tostring writes them, a newline, the bodies."""
    bodies = [v for v in c if isinstance(v, bytes)]
    header = [v if isinstance(v, str) else f"{v:.14g}" for v in c if not isinstance(v, bytes)]
    return "|".join([*(str(len(b)) for b in bodies), *header]).encode() + b"\n" + b"".join(bodies)


@given(st.lists(records(protocol.Claim, claim=True), max_size=4))
def test_decode_claims_reads_claims_packed_in_the_records_field_order(claims: list[protocol.Claim]) -> None:
    assert protocol.decode_claims(b"".join(_pack(c) for c in claims)) == claims
