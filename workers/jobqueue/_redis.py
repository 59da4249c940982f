"""Redis plumbing shared by the producer API, the worker, the stats and the CLI.

:class:`Script` keeps a Lua script's SHA1 so each call is one ``EVALSHA`` (loading the
script once per server on ``NOSCRIPT``), without redis-py's per-client ``register_script``
objects. :func:`connect` is the one place that turns ``--redis-url`` /
``JOBQUEUE_REDIS_URL`` into a client.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Final

import redis

from jobqueue import redaction

URL_ENV: Final = "JOBQUEUE_REDIS_URL"


def connect(url: str | None = None) -> redis.Redis:
    """A client for ``url``, or for ``$JOBQUEUE_REDIS_URL``; ValueError if neither is set."""
    url = url or os.environ.get(URL_ENV)
    if not url:
        raise ValueError(f"no Redis URL: pass --redis-url / connection=, or set {URL_ENV}")
    redaction.check(url)
    return redis.Redis.from_url(url)


class Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __call__(self, conn: redis.Redis, *args: Any) -> Any:
        try:
            return conn.evalsha(self.sha, 0, *args)
        except redis.exceptions.NoScriptError:
            conn.script_load(self.source)
            return conn.evalsha(self.sha, 0, *args)

    def many(self, conn: redis.Redis, calls: list[tuple[Any, ...]]) -> list[Any]:
        """Several calls in one pipeline: one network round trip, each script still short."""
        for attempt in (1, 2):
            pipe = conn.pipeline(transaction=False)
            for args in calls:
                pipe.evalsha(self.sha, 0, *args)
            try:
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                conn.script_load(self.source)
        raise AssertionError("unreachable")


def text(value: Any) -> str:
    """A Redis reply (bytes or str, or None) as text (invalid UTF-8 replaced)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def clean(value: str) -> str:
    """``value`` made encodable as UTF-8: lone surrogates (from JSON escapes like ``"\\ud800"``,
    or ``surrogateescape``) become ``\\udXXX`` text. Redis, Lua's cjson and a UTF-8 terminal
    all refuse them, so any text that came from a job goes through this on its way out."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode()
    return value
