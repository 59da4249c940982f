"""Hiding the secrets of Redis URLs: every output of the project goes through this module.

A Redis URL may carry a user name and password (``redis://user:secret@host:6379/0``) or a
password in its query (``?password=secret``), and people write passwords unencoded, with
``@``, ``/``, ``:``, ``?`` or ``#`` in them. Text built from such a URL reaches places that
many people can read: CLI errors (in pod logs), JobQueue status conditions, Kubernetes
Events, the operator's log and its metric labels. So those places never format a URL
themselves; they show :func:`redact` of it, and pass any error text that might quote it
through :func:`scrub`.

:func:`redact` keeps only what identifies the server — scheme, host, port and database
number — and errs on the side of hiding: everything up to the *last* ``@`` may be
credentials (a password may contain ``@`` or ``/``), the query and fragment may hold a
password, and a host, port or path that does not look like one is replaced by a mark.
It never raises and never echoes text it cannot parse.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Final

#: What replaces a part that cannot be shown.
HIDDEN: Final = "<hidden>"

_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]{0,15})://")
_HOST = re.compile(r"[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
_PORT = re.compile(r"[0-9]{1,5}")
_DB = re.compile(r"[0-9]{1,6}")
#: Sentinel URLs (``redis+sentinel://s1:26379,s2/service/db``, see :mod:`jobqueue._redis`): the
#: path is the name the Sentinels monitor the primary under, then the database.
SENTINEL_SCHEMES: Final = ("redis+sentinel", "rediss+sentinel")
_SENTINEL_PATH = re.compile(r"[A-Za-z0-9_.-]{1,128}(/[0-9]{1,6})?")
#: A Redis URL inside free text: from its scheme to the next white space or quote.
_EMBEDDED = re.compile(r"(?i)\b(?:rediss?(?:\+sentinel)?|unix)://[^\s'\"<>]+")
#: Credentials shorter than this are not searched for in free text: ``a`` would match
#: everywhere, and URL parts this short are not secrets worth the name.
_MIN_SECRET = 3


def redact(url: str) -> str:
    """``url`` reduced to ``scheme://host:port/db`` (``unix://path`` for a socket,
    ``scheme://host:port,host:port/service/db`` for Sentinels): no user name, password, query
    or fragment. Text that is not a URL gives ``<hidden>``."""
    match = _SCHEME.match(url)
    if match is None:
        return HIDDEN
    scheme = match.group(1).lower()
    rest = url[match.end() :]
    credentials, at, rest = rest.rpartition("@")
    if at and ("?" in credentials or "#" in credentials):
        # the '@' may sit in a query (``?password=a@b``): what follows it may be a password
        return f"{scheme}://{HIDDEN}"
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    if scheme == "unix":
        path = rest if re.fullmatch(r"/[A-Za-z0-9_./-]{0,200}", rest) else HIDDEN
        return f"unix://{path}"
    authority, _, path = rest.partition("/")
    if scheme in SENTINEL_SCHEMES:  # host[:port],host[:port]…/service[/db]
        shown = ",".join(_address(a) for a in authority.split(","))
        if path:
            shown += f"/{path}" if _SENTINEL_PATH.fullmatch(path) else f"/{HIDDEN}"
        return f"{scheme}://{shown}"
    shown = _address(authority)
    if path:
        shown += f"/{path}" if _DB.fullmatch(path) else f"/{HIDDEN}"
    return f"{scheme}://{shown}"


def _address(authority: str) -> str:
    """``host[:port]`` as it may be shown."""
    host, port = authority, ""
    if not authority.endswith("]") and ":" in authority:
        host, _, port = authority.rpartition(":")
    shown = host if _HOST.fullmatch(host) else HIDDEN
    if port:
        shown += f":{port}" if _PORT.fullmatch(port) else f":{HIDDEN}"
    return shown


def check(url: str) -> None:
    """Raise ValueError (with a message that quotes nothing of ``url``) if clients would read
    ``url`` differently from :func:`redact`: an unencoded ``@``, ``/``, ``?`` or ``#`` in a
    password makes redis-py take part of it for the host or port, and then connect to the
    wrong place and quote the password in its errors."""
    match = _SCHEME.match(url)
    if match is None:
        raise ValueError("no scheme: expected redis://[user:password@]host[:port][/db]")
    scheme = match.group(1).lower()
    if scheme == "unix":
        return
    try:
        parts = urllib.parse.urlsplit(url.strip())
        if scheme not in SENTINEL_SCHEMES:  # (several host:port, read by jobqueue._redis)
            _ = parts.port
    except ValueError:
        raise ValueError(
            "the port is not a number (percent-encode ':', '/', '@', '?' and '#' in the "
            "user name and password)"
        ) from None
    credentials, at, _ = url[match.end() :].rpartition("@")
    netloc_credentials, netloc_at, _ = parts.netloc.rpartition("@")
    if (credentials, at) != (netloc_credentials, netloc_at):
        raise ValueError(
            "the user name or password contains '@', '/', '?' or '#': percent-encode them "
            "(e.g. %40 for '@', %2F for '/')"
        )


_NEXT_PARAMETER: Final = re.compile(r"&(?=[A-Za-z_][A-Za-z0-9_]*=)")


def secrets_of(url: str) -> list[str]:
    """The parts of ``url`` that must never be shown: its user info (as written and decoded),
    each of its components, and every query value; longest first."""
    match = _SCHEME.match(url)
    rest = url[match.end() :] if match else url
    found: set[str] = set()
    credentials, at, tail = rest.rpartition("@")
    if at:
        # the whole, and every piece between delimiters: an error may quote a piece of it
        # (redis-py reads ``user:12345/xyz@host`` as host ``user``, port ``12345``)
        for part in (credentials, *credentials.split(":", 1), *re.split(r"[:/@?#&=;]", credentials)):
            found.update((part, urllib.parse.unquote(part)))
    for text in (tail, rest):
        _, _, query = text.partition("?")
        for value in re.split(r"[&;=#]", query):
            found.update((value, urllib.parse.unquote(value)))
        # and each value whole, up to the next parameter: a password may hold the delimiters
        # itself (``?password=00&``: the pieces are too short to count, the value is not)
        for equals in re.finditer("=", query):
            value = _NEXT_PARAMETER.split(query[equals.end() :], maxsplit=1)[0]
            found.update((value, urllib.parse.unquote(value)))
    return sorted((s for s in found if len(s) >= _MIN_SECRET), key=len, reverse=True)


def scrub(text: str, url: str | None = None) -> str:
    """``text`` (an error message, a log line) with every Redis URL in it redacted and, when
    ``url`` is given, every credential of ``url`` replaced by ``<hidden>`` wherever it
    appears (an error may quote a piece of it, e.g. a password taken for a port)."""
    if url:
        text = text.replace(url, redact(url))
        for secret in secrets_of(url):
            text = text.replace(secret, HIDDEN)
    return _EMBEDDED.sub(_redact_embedded, text)


def _redact_embedded(match: re.Match[str]) -> str:
    url = match.group(0)
    core = url.rstrip(".,:;)]")  # punctuation of the sentence around it
    return redact(core) + url[len(core) :]
