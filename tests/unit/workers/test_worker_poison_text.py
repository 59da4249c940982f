"""Text that comes from job code or job records: described, cleaned and read without raising."""

from __future__ import annotations

import json
import math

import pytest

from jobqueue import _redis, executors, settings
from jobqueue.client import _job_info


class Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("no")


class Meta(type):
    @property
    def __name__(cls) -> str:  # type: ignore[override]
        raise RuntimeError("no name")


class Nameless(Exception, metaclass=Meta):
    pass


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (Unprintable(), "Unprintable: <its message could not be read: str() raised ValueError>"),
        (Nameless("hi"), "Exception: hi"),
        (SystemExit(3), "SystemExit: 3"),
        (KeyError("\ud800"), "KeyError: '\\ud800'"),
        (ValueError("two\nlines"), "ValueError: two lines"),
    ],
)
def test_describe_never_raises(exc: BaseException, line: str) -> None:
    got, trace = executors.describe(exc)
    assert got == line
    assert trace


def test_describe_cuts_long_messages() -> None:
    line, _ = executors.describe(ValueError("x" * 5000))
    assert len(line) == executors.MAX_REASON + 1
    assert line.endswith("…")


def test_clean_makes_any_text_encodable() -> None:
    assert _redis.clean("plain é") == "plain é"
    assert _redis.clean("a\ud800b\udcff") == "a\\ud800b\\udcff"
    _redis.clean("a\ud800").encode()  # (would raise before)


def test_backoff_delay_stays_a_float_for_any_attempt() -> None:
    b = settings.Backoff(type="exponential", delaySeconds=1)
    assert math.isfinite(b.delay_for_retry(9999))
    assert b.delay_for_retry(3) == 4


def test_job_info_reads_a_record_of_garbage() -> None:
    raw = {
        b"status": b"fai\xffled",
        b"data": b"\x80\x04pickle",
        b"jq_made": b"abc",
        b"jq_attempts": b"1e999",
        b"retries_left": b"-3",
        b"jq_prio": b"9",
        b"jq_progress": b"nan",
        b"jq_created": b"1e400",
        b"jq_start": b"99999999999999",
        b"created_at": b"yesterday",
        b"timeout": "\u00b2".encode(),
        b"jq_reason": b"[/bold] \xff",
        b"exc_info": b"x\x9cnot zlib",
    }
    info = _job_info("q", "id\udcff", raw, [(b"1-0", {b"type": b"1", b"return_value": b"%%%"})])
    assert info.status == "fai\ufffdled"
    assert info.function.startswith("<undecodable payload: payload is pickled")
    assert (info.attempts_made, info.attempts, info.priority, info.progress) == (0, 1, 3, 0)
    assert (info.created_at, info.started_at, info.timeout_seconds) == (None, None, None)
    assert info.result == "<undecodable result>"
    assert info.failed_reason == "[/bold] \ufffd"
    assert info.id == "id\\udcff"
    json.dumps(info.to_dict(), default=str).encode()  # what `jobqueue status --json` prints
