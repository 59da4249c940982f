"""The wire records' round trips through Redis's own Lua (cjson, tostring): the encoder on
one side and the decoder on the other are the ones the worker and the SYNC script use.

* SyncArgs (and the Defaults, Ack, Progress, Release and Unanswered it carries): encoded by
  ``SyncArgs.encode``, named back by the script's rendered ``named`` tables, returned field
  by field by name;
* Claim: packed by the script's rendered ``pack_claim``, read back by ``decode_claims``.
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

# The SYNC script's decoding of its argument, then every field back by its name (cjson.encode
# writes an empty Lua table as {}).
_NAMED_BACK = _lua._SYNC_RECORDS + """
local a = named(cjson.decode(ARGV[1]), SYNC_ARGS)
a.defaults = named(a.defaults, DEFAULTS)
local function each(rows, fields)
  local out = {}
  for i, row in ipairs(rows) do out[i] = named(row, fields) end
  return out
end
a.acks = each(a.acks, ACK)
a.progress = each(a.progress, PROGRESS)
a.releases = each(a.releases, RELEASE)
a.unanswered = each(a.unanswered, UNANSWERED)
return cjson.encode(a)
"""


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


# Each claim's fields as ARGV (numbers through tonumber, as the script holds them), packed.
_HINTS = typing.get_type_hints(protocol.Claim)
_PACK = (
    _lua._SYNC_RECORDS
    + "local out, n = {}, "
    + str(len(protocol.Claim._fields))
    + "\nfor i = 0, #ARGV / n - 1 do\n  out[#out + 1] = pack_claim({"
    + ", ".join(
        f"{f} = " + (f"tonumber(ARGV[i * n + {j}])" if _HINTS[f] in (int, float) else f"ARGV[i * n + {j}]")
        for j, f in enumerate(protocol.Claim._fields, 1)
    )
    + "})\nend\nreturn table.concat(out)\n"
)


@SETTINGS
@given(st.lists(records(protocol.Claim, claim=True), max_size=4))
def test_claims_packed_by_the_script_decode_to_the_same_records(
    redis_conn: redis.Redis, claims: list[protocol.Claim]
) -> None:
    argv = [v if isinstance(v, bytes | str) else repr(v) for c in claims for v in c]
    packed = redis_conn.eval(_PACK, 0, *argv) if claims else b""
    assert protocol.decode_claims(packed) == claims
