"""Which Redis servers a JobQueue may point the operator at (``spec.redis`` URLs).

A ``spec.redis.urlSecretRef`` URL is written by whoever may create JobQueues, and the
operator connects to it from inside the cluster, with its own network position: without a
rule, a JobQueue author could make the operator connect anywhere (a port scan through the
conditions it reports) or open a local socket of the operator's pod. So:

* ``unix://`` URLs are refused for ``spec.redis`` (the operator's own default Redis,
  configured by the cluster admin, may still be a socket);
* when the admin lists allowed hosts (chart value ``redis.allowedHosts`` →
  ``JOBQUEUE_REDIS_ALLOWED_HOSTS``), the URL's host must match one: a host name with ``*``
  globs (``*.redis.svc.cluster.local``), optionally with ``:port``, or an IP network
  (``10.20.0.0/16``) that an IP-literal host must fall in. Names are matched as written,
  never resolved (a resolver answer can change after the check). Sentinel URLs are refused
  then: the Sentinels, not the URL, name the server the operator would connect to.

A refusal says which rule refused the URL and nothing about the target: no connection is
attempted, so there is nothing to reveal.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import urllib.parse
from collections.abc import Sequence
from typing import Final

DEFAULT_PORT: Final = 6379
_NAME = re.compile(r"[a-z0-9*]([a-z0-9*.-]{0,251}[a-z0-9*])?")

UNIX_REFUSED: Final = (
    "unix:// sockets are refused for spec.redis (they would be the operator's own "
    "files); use a redis:// or rediss:// URL"
)
SENTINEL_REFUSED: Final = (
    "Sentinel URLs are refused for spec.redis while the cluster admin limits its "
    "hosts (operator setting redis.allowedHosts): the primary's address would come "
    "from the Sentinels, unchecked; use a redis:// or rediss:// URL, or the default "
    "Redis"
)
HOST_REFUSED: Final = (
    "its host is not among the Redis hosts the cluster admin allows for spec.redis "
    "(operator setting redis.allowedHosts); ask them, or use the default Redis"
)


def _network(pattern: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(pattern.strip("[]"), strict=False)
    except ValueError:
        return None


def _split(pattern: str) -> tuple[str, int | None]:
    host, sep, port = pattern.rpartition(":")
    if sep and port.isdigit() and not host.endswith(":"):
        return host.lower(), int(port)
    return pattern.lower(), None


def valid_pattern(pattern: str) -> bool:
    """Whether ``pattern`` is an allowed-hosts entry this module understands."""
    if _network(pattern) is not None:
        return True
    host, port = _split(pattern)
    return bool(_NAME.fullmatch(host.rstrip("."))) and (port is None or 0 < port < 65536)


def _matches(pattern: str, host: str, port: int) -> bool:
    network = _network(pattern)
    if network is not None:
        try:
            return ipaddress.ip_address(host) in network
        except ValueError:
            return False  # a name is never taken for an address
    name, wanted = _split(pattern)
    return fnmatch.fnmatchcase(host, name.rstrip(".")) and (wanted is None or wanted == port)


def refusal(url: str, allowed: Sequence[str]) -> str | None:
    """Why the operator must not connect to ``url`` for a JobQueue's ``spec.redis`` (None: it may).
    ``url`` has passed :func:`jobqueue.redaction.check`."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme.lower() == "unix":
        return UNIX_REFUSED
    if not allowed:
        return None
    if "+sentinel" in parts.scheme.lower():
        return SENTINEL_REFUSED
    host = (parts.hostname or "").rstrip(".").lower()
    port = parts.port or DEFAULT_PORT
    if any(_matches(p, host, port) for p in allowed):
        return None
    return HOST_REFUSED
