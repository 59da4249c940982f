"""The worker <-> SYNC script wire protocol: one typed record per message, one layout each.

A worker's loop is one SYNC call (see :mod:`jobqueue._lua`): it sends :class:`SyncArgs`
(with its :class:`Ack` s, :class:`Progress`, :class:`Release` s and :class:`Unanswered`
calls) and gets back, among the reply's fields, the jobs it claimed packed as
:class:`Claim` records. Each record's field order *is* its wire layout:

* the records the worker sends are NamedTuples, which ``json`` encodes as arrays (no keys on
  the wire, no conversion on the worker's hot path); the SYNC script's template reads them by
  name, and :mod:`jobqueue._lua` renders the names from the records: those the call carries
  once through a table of field names (:func:`lua_fields`: ``a.queue``), those that come per
  job as positions (``k[ACK.reason]`` becomes ``k[12]``, no table per job);
* the script packs each claim with the expression :func:`lua_pack_claim` renders from
  :class:`Claim` 's fields, which :func:`decode_claims` reads back.

So adding, removing or reordering a field changes both sides at once; the tests check that
the script reads no field a record lacks and supplies every field a claim has.
"""

from __future__ import annotations

import json
from typing import Final, Literal, NamedTuple

#: How an attempt ended: succeeded, failed with a retry due, failed for good, canceled.
Outcome = Literal["ok", "retry", "fail", "cancel"]


class Defaults(NamedTuple):
    """The queue's job defaults, for jobs whose record lacks the field (settings.JobOptions)."""

    attempts: int
    timeout: float
    backoff: str  # JSON of settings.Backoff (camelCase), written to jq_backoff as it is
    keep_completed: int
    keep_failed: int


class Ack(NamedTuple):
    """One attempt that ended."""

    id: str
    exec: str
    outcome: Outcome
    started_iso: str  # RQ's started_at / ended_at
    ended_iso: str
    started: str  # unix time, repr(float): jq_start / jq_end
    ended: str
    keep: float  # ok / fail: seconds to keep the job (RQ's result_ttl / failure_ttl); retry: the delay
    result: str  # ok: base64 of the serialized return value ('' for None)
    trace: str  # RQ's exc_info
    trace_z: str  # base64 of the zlib of the trace: the results stream's exc_string
    reason: str  # one line: jq_reason


class Progress(NamedTuple):
    """A running job's last progress report (0..100)."""

    id: str
    exec: str
    value: float


class Release(NamedTuple):
    """A claimed job handed back unstarted (the worker is stopping): its attempt is refunded."""

    id: str
    exec: str


class Unanswered(NamedTuple):
    """A claiming call that failed without a reply: Redis may have run it anyway. The next call
    hands its claims back, found by their lease score and exec prefix."""

    lease: float
    exec_prefix: str


class SyncArgs(NamedTuple):
    """Everything one SYNC call carries (its one argument)."""

    queue: str
    now: float
    iso: str  # `now` as RQ writes times
    lease: float  # the claimed jobs' lease deadline (rq:wip score)
    worker: str  # the worker's name (rq:worker:<name>)
    pod: str
    n: int  # jobs to claim
    free: int  # of which for free slots (n less the prefetch): all a claim takes under the cap
    exec_prefix: str  # unique to this call: the claims' execution ids are this + a sequence
    busy: int  # slots running a job
    slots: int
    current: str  # a running job's id, for RQ's current_job
    ok: int  # jobs succeeded / failed and seconds worked since the last call (worker counters)
    ko: int
    work_time: float
    defaults: Defaults | None  # None until the queue's settings are read (then n is 0)
    promote_limit: int  # due scheduled jobs promoted per call at most
    acks: list[Ack]
    progress: list[Progress]
    releases: list[Release]
    unanswered: list[Unanswered]

    def encode(self) -> str:
        return json.dumps(self)


class Claim(NamedTuple):
    """A job the SYNC script claimed for this worker; every field checked by the script."""

    exec: str
    timeout: float  # seconds; -1: no limit (RQ's)
    attempts: int
    made: int  # attempts made, this one included
    keep_completed: int
    keep_failed: int
    level: int
    ready: float  # unix time since which the job could run (queued, or due)
    id: str
    data: bytes  # the payload (RQ's `data`)
    backoff: bytes  # jq_backoff, or RQ's retry_intervals (a JSON list)


#: Claim's fields the packed form carries as bytes after the header (any bytes: by length).
_BODY: Final = ("data", "backoff")
_HEADER: Final = tuple(f for f in Claim._fields if f not in _BODY)
# A packed claim: ``len(data)|len(backoff)|<the header fields, in order>`` (the id last, so
# the header splits into a fixed number of fields whatever it holds), a newline, the bodies.
assert _HEADER[-1] == "id", "Claim's id must be its last header field"


def decode_claims(packed: bytes) -> list[Claim]:
    """The jobs one SYNC call claimed, from its one packed string (see :func:`lua_pack_claim`).

    Written out rather than driven by Claim's field list: this runs for every job, and the
    round-trip test through the script's packer fails if the two part ways."""
    out = []
    pos, end = 0, len(packed)
    while pos < end:
        nl = packed.index(b"\n", pos)
        f = packed[pos:nl].decode("utf-8", "surrogateescape").split("|", 10)
        start = nl + 1
        mid = start + int(f[0])
        pos = mid + int(f[1])
        # (numbers as Lua's tostring writes them: a whole one may come as "1e+15")
        out.append(
            Claim(f[2], float(f[3]), int(float(f[4])), int(float(f[5])), int(float(f[6])), int(float(f[7])),
                  int(float(f[8])), float(f[9]), f[10], packed[start:mid], packed[mid:pos])
        )  # fmt: skip
    return out


def lua_fields(name: str, record: type[tuple[object, ...]]) -> str:
    """A Lua table of a record's field names in wire order (see ``named`` in the SYNC script)."""
    fields: tuple[str, ...] = record._fields  # type: ignore[attr-defined]
    return f"local {name} = {{{', '.join(repr(f) for f in fields)}}}  -- jobqueue.protocol.{record.__name__}"


def lua_pack_claim(exprs: dict[str, str]) -> str:
    """The Lua expression that packs one claim as :func:`decode_claims` reads it, from a Lua
    expression per Claim field (the SYNC template's ``CLAIM{field = expr, ...}``)."""
    fields = set(Claim._fields)
    if set(exprs) != fields:
        raise ValueError(
            f"a packed claim takes exactly Claim's fields: missing {sorted(fields - set(exprs))}, "
            f"unknown {sorted(set(exprs) - fields)}"
        )
    parts = [f"#{exprs[f]}" for f in _BODY] + [f"tostring({exprs[f]})" for f in _HEADER]
    bodies = " .. ".join(exprs[f] for f in _BODY)
    return f"table.concat({{{', '.join(parts)}}}, '|') .. '\\n' .. {bodies}"
