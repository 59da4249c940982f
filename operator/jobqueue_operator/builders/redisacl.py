"""Namespace isolation on the default Redis: each namespace's database, ACL user and URL.

With ``JOBQUEUE_REDIS_ISOLATION=namespace`` the operator does not hand its own URL to every
namespace. Each namespace whose JobQueues use the default Redis gets:

* **its own logical database** (``SELECT n``), chosen by the operator and recorded in the
  operator's database under :data:`DATABASES_KEY`. RQ's keys are global by design —
  ``rq:job:<id>`` for any id, ``rq:workers``, ``rq:queues``, ``rq:suspended`` — so key
  patterns alone cannot keep namespaces apart (a neighbour could read or overwrite a job
  whose id it guesses, suspend every worker, or claim a tick id first); one database per
  namespace does, with RQ and every Lua script unchanged;
* **its own ACL user**, :func:`user_name`, whose only database is that one (``-select``
  then ``+select|<n>``: ``SELECT`` of any other number is refused, in Lua scripts too), who
  may not move or copy keys between databases, flush, or run administrative, server-wide
  or cross-database commands, has no pub/sub channel, and may only *read* the settings the
  operator publishes (:func:`rules`);
* **a URL with those credentials**, :func:`tenant_url`, which goes into that namespace's
  ``jobqueue-default-redis`` Secret, and nowhere else.

A client that authenticates starts in database 0 like every Redis client; so database 0
(and the operator's own database) is never given to a namespace, and nothing a namespace
may read is kept there (the operator's bookkeeping lives under ``jobqueue-operator:``, which
no namespace key pattern matches). The operator itself keeps using its own URL, with the
namespace's database number in place of its own (:func:`operator_url`).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from typing import Final

#: Hash in the operator's own database: namespace -> its database number.
DATABASES_KEY: Final = "jobqueue-operator:databases"
USER_PREFIX: Final = "jobqueue-ns-"

#: Keys a namespace may read and write: RQ's, and ours beside them (docs/jobs.md) — every
#: ``jobqueue:`` key but the settings, whatever keys are added later (``[^s]``: not starting
#: with an s, so ``jobqueue:signal:*`` is named on its own).
READ_WRITE_KEYS: Final = ("rq:*", "jobqueue:[^s]*", "jobqueue:signal:*")
#: Keys a namespace may only read: the settings the operator publishes from its JobQueues.
READ_ONLY_KEYS: Final = ("jobqueue:settings*",)
#: Commands a namespace may not run, beyond the administrative and dangerous categories:
#: everything that reaches another database or the whole server.
DENIED_COMMANDS: Final = (
    "move",
    "copy",
    "function",
    "fcall",
    "fcall_ro",
    "script|flush",
    "script|kill",
    "client|tracking",
    "pubsub",
    "select",
)


def user_name(namespace: str) -> str:
    return f"{USER_PREFIX}{namespace}"


def password_hash(password: str) -> str:
    """The form in which Redis stores (and ``ACL SETUSER #...`` takes) a password."""
    return hashlib.sha256(password.encode()).hexdigest()


def rules(database: int, password: str) -> list[str]:
    """``ACL SETUSER`` arguments for a namespace confined to ``database`` (replacing whatever
    the user had: ``reset`` first; connections already open stay open)."""
    return [
        "reset",
        "on",
        f"#{password_hash(password)}",
        *(f"~{k}" for k in READ_WRITE_KEYS),
        *(f"%R~{k}" for k in READ_ONLY_KEYS),
        "resetchannels",
        # RQ producers ask INFO for the server version; it shows figures, no keys or values
        "+@all",
        "-@admin",
        "-@dangerous",
        "+info",
        *(f"-{c}" for c in DENIED_COMMANDS),
        f"+select|{database}",
    ]


def _is_sentinel(parts: urllib.parse.SplitResult) -> bool:
    return parts.scheme.lower().endswith("+sentinel")


def _servers(parts: urllib.parse.SplitResult) -> str:
    """``host[:port]``, or a Sentinel URL's ``host:port,host:port…`` (credentials left out)."""
    if _is_sentinel(parts):
        return parts.netloc.rpartition("@")[2]
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def _path(parts: urllib.parse.SplitResult, database: int) -> str:
    """The URL's path with ``database``: ``/n``, or a Sentinel URL's ``/service/n``."""
    if _is_sentinel(parts):
        return f"/{parts.path.strip('/').split('/')[0]}/{database}"
    return f"/{database}"


def tenant_url(admin_url: str, namespace: str, password: str, database: int) -> str:
    """The URL the pods of ``namespace`` get: the operator's server, the namespace's user,
    password and database. The operator URL's query (it may hold a password) is not copied,
    but for a Sentinel URL's ``sentinel_*`` options: the pods need them to find the primary
    (so a Sentinel password is every namespace's; docs/security.md)."""
    parts = urllib.parse.urlsplit(admin_url)
    credentials = f"{user_name(namespace)}:{urllib.parse.quote(password, safe='')}"
    query = ""
    if _is_sentinel(parts):
        query = urllib.parse.urlencode(
            [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k.startswith("sentinel_")]
        )
    return urllib.parse.urlunsplit(
        (parts.scheme, f"{credentials}@{_servers(parts)}", _path(parts, database), query, "")
    )


def operator_url(admin_url: str, database: int) -> str:
    """The operator's own URL, on ``database``."""
    parts = urllib.parse.urlsplit(admin_url)
    query = urllib.parse.urlencode([(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "db"])
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, _path(parts, database), query, ""))


def database_of(url: str) -> int:
    parts = urllib.parse.urlsplit(url)
    path = parts.path.strip("/")
    if _is_sentinel(parts):
        path = path.partition("/")[2]
    return int(path) if path.isdigit() else 0


def password_of(url: str | None, namespace: str) -> str | None:
    """The password in ``url`` if it is this namespace's user's URL (from its Secret)."""
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.username != user_name(namespace) or not parts.password:
        return None
    return urllib.parse.unquote(parts.password)
