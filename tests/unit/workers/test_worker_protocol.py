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

SCRIPTS = {
    name: getattr(_lua, name)
    for name in ("ENQUEUE", "SYNC", "HEARTBEAT", "REAP", "RECOVER_POD", "SNAPSHOT", "RETRY", "REMOVE", "BULK",
                 "CANCEL")
}  # fmt: skip


def _code(lua: str) -> str:
    """Lua source without its comments (none of the scripts has '--' inside a string)."""
    return re.sub(r"--[^\n]*", "", lua)


def _body(lua: str) -> str:
    """A script's own code: what follows the rendered key table."""
    assert lua.count(_lua.KEYS_PREAMBLE) == 1
    assert lua.startswith(_lua.KEYS_PREAMBLE)
    return _code(lua[len(_lua.KEYS_PREAMBLE):])


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_script_spells_a_key_name_itself(name: str) -> None:
    body = _body(SCRIPTS[name])
    for prefix in (keys.RQ, keys.OURS):
        assert prefix not in body, f"{name} spells a key itself: {body[body.index(prefix) - 40:][:100]!r}"


def test_the_rendered_key_table_is_keys_py() -> None:
    table = re.search(r"local K = \{(.*)\}", _lua.KEYS_PREAMBLE)
    assert table is not None
    rendered = dict(re.findall(r"(\w+) = '([^']*)'", table.group(1)))
    assert rendered == _lua.LUA_KEYS
    # every key name keys.py defines reaches the scripts (the job-hash fields are not keys)
    defined = {v for k, v in vars(keys).items() if k.isupper() and isinstance(v, str) and k[:2] != "F_"}
    assert defined - {keys.RQ, keys.OURS} <= set(_lua.LUA_KEYS.values())


def test_every_key_the_scripts_use_is_rendered_and_every_rendered_key_is_used() -> None:
    used = {m for lua in SCRIPTS.values() for m in re.findall(r"\bK\.(\w+)", _body(lua))}
    assert used == set(_lua.LUA_KEYS)


def test_the_priority_weights_come_from_keys_py() -> None:
    weights = [keys.PRIORITY_WEIGHTS[level] for level in keys.PRIORITY_LEVELS]
    assert f"local WEIGHTS = {{{', '.join(map(str, weights))}}}" in _lua.KEYS_PREAMBLE
    assert f"local DEFAULT_LEVEL = {keys.DEFAULT_PRIORITY}\n" in _lua.KEYS_PREAMBLE
    assert "16, 8" not in _body(_lua.SYNC)


# --- the SYNC script reads exactly the records' fields


def _sync_code() -> str:
    """SYNC's own code, after the prelude and the rendered records."""
    return _code(_lua.SYNC.split(_lua._SYNC_RECORDS, 1)[1])


@pytest.mark.parametrize(
    ("var", "record", "table"),
    [
        ("a", protocol.SyncArgs, "SYNC_ARGS"),
        ("d", protocol.Defaults, "DEFAULTS"),
        ("k", protocol.Ack, "ACK"),
        ("p", protocol.Progress, "PROGRESS"),
        ("r", protocol.Release, "RELEASE"),
        ("c", protocol.Unanswered, "UNANSWERED"),
    ],
)
def test_the_script_names_each_record_by_its_fields_and_reads_every_one(
    var: str, record: type[tuple[Any, ...]], table: str
) -> None:
    fields: tuple[str, ...] = record._fields  # type: ignore[attr-defined]
    assert f"local {table} = {{{', '.join(repr(f) for f in fields)}}}" in _lua._SYNC_RECORDS
    code = _sync_code()
    assert re.search(rf"local {var} = named\(.*, {table}\)", code)
    assert set(re.findall(rf"(?<![\w.]){var}\.(\w+)", code)) == set(fields)


def test_the_script_packs_every_claim_field_and_the_packer_follows_the_record() -> None:
    code = _sync_code()
    call = re.search(r"pack_claim\(\{(.*?)\}\)", code, re.S)
    assert call is not None
    assert set(re.findall(r"(\w+) =", call.group(1))) == set(protocol.Claim._fields)
    packer = protocol.lua_claim_packer()
    order = re.findall(r"c\.(\w+)", packer.split("table.concat", 1)[1].split("'|'")[0])
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
