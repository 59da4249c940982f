"""Redis plumbing shared by the producer API, the worker, the stats, the CLI and the operator.

:class:`Script` keeps a Lua script's SHA1 so each call is one ``EVALSHA`` (loading the
script once per server on ``NOSCRIPT``), without redis-py's per-client ``register_script``
objects. :func:`connect` is the one place that turns ``--redis-url`` /
``JOBQUEUE_REDIS_URL`` (and the operator's URLs) into a client.

The URL forms: redis-py's own (``redis://``, ``rediss://`` for TLS, ``unix://``), and, for a
Redis watched by Sentinel, the form Python tools agree on (Redis-Sentinel-Url, LangChain,
Prefect) — redis-py has none::

    redis+sentinel://[user:password@]host[:port][,host[:port]…]/service[/db][?options]
    rediss+sentinel://…    TLS to the Redis servers and to the Sentinels

The hosts are the Sentinels (port 26379 by default), ``service`` the name they monitor the
primary under (``sentinel monitor <service> …``), ``db`` the database (0). The user and
password are those of the Redis servers (an ACL user, or ``:password`` for ``requirepass``);
``sentinel_username``/``sentinel_password`` authenticate to the Sentinels, other
``sentinel_*`` options (``sentinel_socket_timeout`` …) go to the Sentinel connections, and the
remaining options are redis-py's usual URL options for the Redis connections; with TLS the
``ssl_*`` options serve both. Every connection asks the Sentinels for the current primary,
so after a failover the next command reaches the new one (a connection to a demoted primary
is dropped on its first ``READONLY`` answer).
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

import redis
import redis.connection
import redis.sentinel

from jobqueue import redaction

URL_ENV: Final = "JOBQUEUE_REDIS_URL"
SENTINEL_SCHEMES: Final = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT: Final = 26379
#: Sentinel connections time out after this unless the URL says otherwise: an unreachable
#: Sentinel must not hang a client's connect (the next Sentinel is asked instead).
SENTINEL_TIMEOUT: Final = 2.0
_SENTINEL_EXAMPLE: Final = "redis+sentinel://[user:password@]host:26379[,host:26379…]/service[/db]"
_HOST: Final = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+")


def connect(url: str | None = None, **options: Any) -> redis.Redis:
    """A client for ``url``, or for ``$JOBQUEUE_REDIS_URL``; ValueError if neither is set, or
    if a Sentinel URL is malformed. ``options`` (redis-py connection options, e.g.
    ``socket_timeout``) win over the URL's; ``socket_*`` ones apply to Sentinels too."""
    url = url or os.environ.get(URL_ENV)
    if not url:
        raise ValueError(f"no Redis URL: pass --redis-url / connection=, or set {URL_ENV}")
    redaction.check(url)
    if is_sentinel(url):
        return parse_sentinel(url).client(**options)
    return redis.Redis.from_url(url, **options)


def is_sentinel(url: str) -> bool:
    return url.strip().lower().startswith(tuple(f"{s}://" for s in SENTINEL_SCHEMES))


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    tls: bool = False
    #: options of the Redis connections (redis-py's URL options, parsed; credentials)
    redis_options: dict[str, Any] = field(default_factory=dict)
    #: options of the Sentinel connections
    sentinel_options: dict[str, Any] = field(default_factory=dict)

    def client(self, **options: Any) -> redis.Redis:
        """A client of the service's current primary (asked of the Sentinels at each connect)."""
        tls = {k: v for k, v in self.redis_options.items() if k.startswith("ssl_")}
        on_sentinels = {
            "socket_timeout": SENTINEL_TIMEOUT,
            "socket_connect_timeout": SENTINEL_TIMEOUT,
            **{k: v for k, v in options.items() if k.startswith("socket_")},
            **({"ssl": True, **tls} if self.tls else {}),
            **self.sentinel_options,
        }
        manager = redis.sentinel.Sentinel(list(self.sentinels), sentinel_kwargs=on_sentinels)
        on_redis: dict[str, Any] = {
            "db": self.db,
            **({"ssl": True} if self.tls else {}),
            **self.redis_options,
            **options,
        }
        return cast(redis.Redis, manager.master_for(self.service, **on_redis))


def parse_sentinel(url: str) -> SentinelURL:
    """Read a ``redis+sentinel://`` / ``rediss+sentinel://`` URL; ValueError naming what is wrong
    (and quoting no credential)."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        raise ValueError(f"not a Sentinel URL: expected {_SENTINEL_EXAMPLE}")
    credentials, _, rest = rest.rpartition("@")  # (a password may contain '@' only encoded)
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    hosts, _, path = rest.partition("/")
    sentinels = tuple(_sentinel_address(h) for h in hosts.split(","))
    parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise ValueError(
            f"a Sentinel URL's path is the service name and, optionally, the database: {_SENTINEL_EXAMPLE}"
        )
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError("the database (after the service name) must be a number")
    options: dict[str, Any] = {}
    sentinel_options: dict[str, Any] = {}
    redis_query = []
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key.startswith("sentinel_"):
            sentinel_options[key.removeprefix("sentinel_")] = _option(key.removeprefix("sentinel_"), value)
        elif key in ("db", "service"):
            raise ValueError(f"{key} belongs in the URL's path: {_SENTINEL_EXAMPLE}")
        else:
            redis_query.append((key, value))
    user, _, password = credentials.partition(":")
    if user:
        options["username"] = urllib.parse.unquote(user)
    if password:
        options["password"] = urllib.parse.unquote(password)
    # redis-py parses (and types) its own URL options; only the placeholder host is ours
    parse_url = cast(Callable[[str], dict[str, Any]], redis.connection.parse_url)  # (untyped in redis-py)
    parsed = parse_url(f"redis://placeholder/0?{urllib.parse.urlencode(redis_query)}")
    options |= {k: v for k, v in parsed.items() if k not in ("host", "port", "db", "path")}
    return SentinelURL(
        sentinels=sentinels,
        service=parts[0],
        db=int(parts[1]) if len(parts) == 2 else 0,
        tls=scheme.lower() == "rediss+sentinel",
        redis_options=options,
        sentinel_options=sentinel_options,
    )


def _sentinel_address(text: str) -> tuple[str, int]:
    host, port = text, ""
    if not text.endswith("]") and ":" in text:
        host, _, port = text.rpartition(":")
    if not _HOST.fullmatch(host):
        raise ValueError(f"a Sentinel host is missing or malformed: expected {_SENTINEL_EXAMPLE}")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError("a Sentinel port is not a number from 1 to 65535")
    return host.strip("[]"), int(port) if port else SENTINEL_PORT


def _option(key: str, value: str) -> Any:
    """A Sentinel connection option from the URL, typed the way redis-py types its own."""
    parser = cast(Callable[[str], Any] | None, redis.connection.URL_QUERY_ARGUMENT_PARSERS.get(key))
    try:
        return parser(value) if parser else value
    except ValueError:
        raise ValueError(f"sentinel_{key} has an invalid value") from None


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
        """Several calls on one connection, one round trip's wait, each script still short.

        Each call is sent as soon as it is packed and the replies are read after the last, so
        Redis runs one call while the client packs the next: for a bulk enqueue both take about
        as long (a pipeline would pack everything before sending anything, then wait for
        Redis to run it all). The first error reply is raised, as a pipeline raises it; when
        every call answered NOSCRIPT (none ran) the script is loaded and the calls sent again."""
        for attempt in (1, 2):
            replies = _streamed(conn, [("EVALSHA", self.sha, 0, *args) for args in calls])
            errors = [r for r in replies if isinstance(r, redis.ResponseError)]
            if not errors:
                return replies
            none_ran = len(errors) == len(replies) and all(
                isinstance(e, redis.exceptions.NoScriptError) for e in errors
            )
            if attempt == 2 or not none_ran:
                raise errors[0]
            conn.script_load(self.source)
        raise AssertionError("unreachable")


def _streamed(conn: redis.Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Each command's reply (an error reply as its ResponseError), the commands sent one by
    one on one pooled connection before any reply is read; a lost connection is retried as
    the client's retry policy says, as redis-py retries a pipeline."""

    def send_all() -> list[Any]:
        for n, command in enumerate(commands):
            # (a health check between two sends would read a reply meant for us as its PONG)
            c.send_command(*command, check_health=n == 0)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(c.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies

    pool = conn.connection_pool
    c: Any = pool.get_connection()  # (redis-py's Connection methods are untyped)
    try:
        replies: list[Any] = c.retry.call_with_retry(send_all, lambda _: c.disconnect())
        return replies
    except BaseException:
        c.disconnect()  # (replies may be left unread: the connection must not be reused as is)
        raise
    finally:
        pool.release(c)


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
