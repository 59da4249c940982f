"""The wire records' round trips through Redis's own Lua (cjson, tostring): the encoder on
one side and the decoder on the other are the ones the worker and the SYNC script use.

* SyncArgs (and the Defaults, Ack, Progress, Release and Unanswered it carries): encoded by
  ``SyncArgs.encode``, read by Lua rendered as the SYNC script's is (``named`` tables for the
  call's records, positions for the per-job ones), returned field by field by name;
* Claim: packed by the SYNC template's ``CLAIM{...}`` rendering, read back by
  ``decode_claims``.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from jobqueue import _lua, protocol
from protocolrecords import records

SETTINGS = hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _each(table: str, record: type) -> str:
    """Lua that names every row of a per-job record back, reading it as SYNC does (by position)."""
    fields = ", ".join(f"{f} = row[{table}.{f}]" for f in record._fields)
    return f"local out = {{}} for i, row in ipairs(rows) do out[i] = {{{fields}}} end return out"


# The SYNC script's decoding of its argument, then every field back by its name (cjson.encode
# writes an empty Lua table as {}).
_NAMED_BACK = _lua._render(
    _lua._SYNC_RECORDS
    + f"""
local a = named(cjson.decode(ARGV[1]), SYNC_ARGS)
a.defaults = named(a.defaults, DEFAULTS)
a.acks = (function(rows) {_each("ACK", protocol.Ack)} end)(a.acks)
a.progress = (function(rows) {_each("PROGRESS", protocol.Progress)} end)(a.progress)
a.releases = (function(rows) {_each("RELEASE", protocol.Release)} end)(a.releases)
a.unanswered = (function(rows) {_each("UNANSWERED", protocol.Unanswered)} end)(a.unanswered)
return cjson.encode(a)
"""
)


def _by_name(value: Any) -> Any:
    """A record as the script names it back: a dict by field name ({} for None or empty)."""
    if value is None or value == []:
        return {}
    if isinstance(value, tuple):
        return {k: _by_name(v) for k, v in value._asdict().items()}  # type: ignore[attr-defined]
    if isinstance(value, list):
        return [_by_name(v) for v in value]
    return value


@SETTINGS
@given(records(protocol.SyncArgs))
def test_sync_args_reach_the_script_field_by_field(redis_conn: redis.Redis, args: protocol.SyncArgs) -> None:
    back = json.loads(redis_conn.eval(_NAMED_BACK, 0, args.encode()))
    assert back == _by_name(args)


# Each claim's fields as ARGV, packed by the rendering of CLAIM{...} that SYNC's template uses.
_HINTS = typing.get_type_hints(protocol.Claim)
_N = len(protocol.Claim._fields)
_ARGS = {  # (numbers through tonumber, as the script holds them)
    f: f"ARGV[i * {_N} + {j}]" if _HINTS[f] in (str, bytes) else f"tonumber(ARGV[i * {_N} + {j}])"
    for j, f in enumerate(protocol.Claim._fields, 1)
}
_PACK = _lua._render(
    f"local out = {{}}\nfor i = 0, #ARGV / {_N} - 1 do\n  out[#out + 1] = CLAIM{{"
    + ", ".join(f"{f} = {a}" for f, a in _ARGS.items())
    + "}\nend\nreturn table.concat(out)\n"
)


@SETTINGS
@given(st.lists(records(protocol.Claim, claim=True), max_size=4))
def test_claims_packed_by_the_script_decode_to_the_same_records(
    redis_conn: redis.Redis, claims: list[protocol.Claim]
) -> None:
    argv = [v if isinstance(v, bytes | str) else repr(v) for c in claims for v in c]
    packed = redis_conn.eval(_PACK, 0, *argv) if claims else b""
    assert protocol.decode_claims(packed) == claims
