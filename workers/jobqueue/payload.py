"""Job payloads: RQ's JSON wire format, encoded fast and decoded defensively.

RQ stores a job's call in the hash field ``data`` as ``zlib(serializer((func, instance, args,
kwargs)))``. With RQ's ``JSONSerializer`` that is ``zlib(json([name, null, [...], {...}]))``,
so a job enqueued by plain RQ with ``-S json`` is byte-compatible with ours, and ``rq info``
/ rq-dashboard can read ours.

Decoding never unpickles and never imports: a payload is bytes from Redis, i.e. from anyone
who can write there. :func:`decode` bounds the decompressed size, accepts exactly the
four-element JSON shape, and raises :class:`PayloadError` with a message that ends up as
the job's failure reason.
"""

from __future__ import annotations

import functools
import json
import time
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

#: A payload that decompresses beyond this is refused (a zlib bomb would otherwise take the
#: worker's memory); 64 MiB is far above any sane job argument list.
MAX_PAYLOAD_BYTES: Final = 64 * 1024 * 1024
_ISO: Final = "%Y-%m-%dT%H:%M:%S.%fZ"  # RQ's utcformat


class PayloadError(ValueError):
    """The job's payload cannot be run; the message explains why, for a person."""


def encode(func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bytes:
    """``data`` field of a job hash. Raises TypeError/ValueError for non-JSON arguments."""
    return encode_call(func_name, args, kwargs)[0]


def encode_call(func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[bytes, str]:
    """(``data``, a short readable call for RQ's ``description``) of a job.

    A payload of up to COMPRESS_ABOVE bytes is stored as its JSON, uncompressed: RQ reads it
    as such (it falls back to the raw bytes when they are not zlib, as :func:`decode` does),
    and zlib would cost a bulk enqueue more time (a few µs per job) than it saves bytes."""
    a_list, k_dict = list(args), dict(kwargs)
    a = _JSON.encode(a_list) if a_list else "[]"
    k = _JSON.encode(k_dict) if k_dict else "{}"
    raw = f"[{_name_json(func_name)},null,{a},{k}]".encode()
    call = a[1:-1] + ("," if len(a) > 2 and len(k) > 2 else "") + (k[1:-1] if len(k) > 2 else "")
    return zlib.compress(raw, 1) if len(raw) > COMPRESS_ABOVE else raw, f"{func_name}({call[:200]})"


#: One encoder for every payload (``json.dumps`` with options builds a new one per call).
_JSON: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
#: Payloads longer than this (bytes of JSON) are zlib-compressed, as RQ stores them; shorter
#: ones would hardly shrink (zlib adds 6 bytes of its own).
COMPRESS_ABOVE: Final = 256


@functools.lru_cache(maxsize=1024)
def _name_json(func_name: str) -> str:
    # (a bulk enqueue names one function 20,000 times)
    return json.dumps(func_name)


def decode(data: bytes) -> tuple[str, list[Any], dict[str, Any]]:
    """(function name, args, kwargs) of a stored payload, or PayloadError."""
    raw = data
    # (plain JSON, as short payloads are stored, starts with '['; no zlib stream does: its
    # first byte would name compression method 11, which does not exist)
    if data[:1] != b"[":
        try:
            d = zlib.decompressobj()
            raw = d.decompress(data, MAX_PAYLOAD_BYTES)
            if d.unconsumed_tail:
                raise PayloadError(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes uncompressed")
        except zlib.error:
            raw = data  # RQ falls back to uncompressed data too
    if raw[:1] == b"\x80":
        raise PayloadError(
            "payload is pickled, not JSON (was it enqueued with RQ's default serializer? "
            "use rq.serializers.JSONSerializer); pickles are never loaded"
        )
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"payload is not valid JSON: {exc}") from None
    except RecursionError:
        raise PayloadError(
            "payload nests arrays/objects deeper than the JSON decoder allows (about 1,000 levels)"
        ) from None
    if not (isinstance(value, list) and len(value) == 4):
        raise PayloadError("payload must be a JSON array [function, null, args, kwargs]")
    name, instance, args, kwargs = value
    if not isinstance(name, str):
        raise PayloadError("payload's function name is not a string")
    if instance is not None:
        raise PayloadError("payload names a bound method (instance is not null); only @job functions run")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise PayloadError("payload's args must be a JSON array and kwargs a JSON object")
    return name, args, kwargs


def encode_result(value: Any) -> bytes | None:
    """JSON of a return value (None for None); RQ's placeholder text if not JSON-able."""
    if value is None:
        return None
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    except Exception:  # (not JSON, nested too deep, or a type whose encoding raises)
        return json.dumps("Unserializable return value").encode()


def utcformat(ts: float) -> str:
    """RQ's timestamp format (``2026-01-31T12:00:00.123456Z``) of a unix time."""
    whole = int(ts)
    micros = round((ts - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return f"{_utc_second(whole)}.{micros:06d}Z"


@functools.lru_cache(maxsize=8)
def _utc_second(whole: int) -> str:
    # (a busy worker formats two timestamps per job, nearly all within the same second)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def utcparse(text: str) -> float | None:
    """Unix time of an RQ timestamp; None for an empty or malformed field."""
    if not text:
        return None
    for fmt in (_ISO, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None
