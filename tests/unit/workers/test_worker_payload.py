"""Payload encoding is RQ's JSON format; decoding refuses anything else, readably."""

from __future__ import annotations

import json
import pickle
import zlib

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from jobqueue import payload


def test_roundtrip() -> None:
    data = payload.encode("pkg.mod.fn", [1, "two", [3]], {"k": {"v": None}})
    assert payload.decode(data) == ("pkg.mod.fn", [1, "two", [3]], {"k": {"v": None}})


def test_same_bytes_as_rq_json_serializer_payload() -> None:
    # what rq.Job stores: zlib(JSONSerializer.dumps((func_name, instance, args, kwargs)))
    rq_data = zlib.compress(JSONSerializer.dumps(("pkg.mod.fn", None, (1, 2), {"a": 1})))
    assert payload.decode(rq_data) == ("pkg.mod.fn", [1, 2], {"a": 1})
    big = "x" * payload.COMPRESS_ABOVE
    assert json.loads(zlib.decompress(payload.encode("pkg.mod.fn", (1, big), {"a": 1}))) == [
        "pkg.mod.fn",
        None,
        [1, big],
        {"a": 1},
    ]


def test_a_short_payload_is_plain_json_and_rq_reads_both() -> None:
    small = payload.encode("pkg.mod.fn", (1, 2), {"a": 1})
    assert json.loads(small) == ["pkg.mod.fn", None, [1, 2], {"a": 1}]  # (zlib would not shrink it)
    big = payload.encode("pkg.mod.fn", ("x" * payload.COMPRESS_ABOVE,), {})
    assert len(big) < payload.COMPRESS_ABOVE
    for data, args in ((small, [1, 2]), (big, ["x" * payload.COMPRESS_ABOVE])):
        job = Job("j", connection=redis.Redis(), serializer=JSONSerializer)  # (never connects)
        job.restore({b"data": data})  # how RQ (rq info, rq-dashboard) loads a job's call
        assert (job.func_name, list(job.args)) == ("pkg.mod.fn", args)
        assert payload.decode(data)[1] == args


def test_uncompressed_json_is_accepted_like_rq_does() -> None:
    assert payload.decode(b'["a.b", null, [], {}]') == ("a.b", [], {})


def test_pickles_are_refused_and_never_loaded() -> None:
    evil = zlib.compress(pickle.dumps(("os.system", None, ("echo pwned",), {})))
    with pytest.raises(payload.PayloadError, match="pickled, not JSON"):
        payload.decode(evil)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe not json", "not valid JSON"),
        (b'{"func": "a.b"}', "must be a JSON array"),
        (b'["a.b", null, []]', "must be a JSON array"),
        (b"[1, null, [], {}]", "not a string"),
        (b'["a.b", {"self": 1}, [], {}]', "bound method"),
        (b'["a.b", null, {}, []]', "args must be a JSON array"),
    ],
)
def test_malformed_payloads_say_what_is_wrong(raw: bytes, message: str) -> None:
    with pytest.raises(payload.PayloadError, match=message):
        payload.decode(zlib.compress(raw))


def test_decompression_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payload, "MAX_PAYLOAD_BYTES", 1000)
    bomb = zlib.compress(b'["a.b", null, ["' + b"x" * 10_000 + b'"], {}]')
    with pytest.raises(payload.PayloadError, match="larger than 1000 bytes"):
        payload.decode(bomb)


def test_non_json_arguments_are_refused_at_encode() -> None:
    with pytest.raises(TypeError):
        payload.encode("a.b", [object()], {})
    with pytest.raises(ValueError, match="Out of range float"):
        payload.encode("a.b", [float("nan")], {})


def test_results() -> None:
    assert payload.encode_result(None) is None
    assert payload.encode_result({"a": [1]}) == b'{"a":[1]}'
    assert payload.encode_result({1, 2}) == b'"Unserializable return value"'


def test_rq_timestamps() -> None:
    ts = 1767225600.123456  # 2026-01-01T00:00:00.123456Z
    text = payload.utcformat(ts)
    assert text == "2026-01-01T00:00:00.123456Z"
    assert payload.utcparse(text) == pytest.approx(ts)
    assert payload.utcparse("2026-01-01T00:00:00Z") == 1767225600.0
    assert payload.utcparse("") is None
    assert payload.utcparse("yesterday") is None


def test_a_payload_nested_deeper_than_the_decoder_goes_is_refused() -> None:
    deep = zlib.compress(b'["a.b", null, [' + b"[" * 20_000 + b"]" * 20_000 + b"], {}]")
    with pytest.raises(payload.PayloadError, match="nests arrays/objects deeper than the JSON decoder"):
        payload.decode(deep)


def test_a_return_value_that_cannot_be_encoded_gets_rqs_placeholder() -> None:
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    for value in (deep, object(), float("nan"), {("tuple", "key"): 1}):
        assert payload.encode_result(value) == b'"Unserializable return value"'
