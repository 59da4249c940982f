"""The only module of the operator that calls webhooks (HTTP POSTs of failure notices).

aiohttp (already kopf's HTTP client): one session, a short timeout, a few tries with a
growing pause. The URL usually carries a token (Slack, PagerDuty …), so errors name only its
scheme and host.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

import aiohttp

#: Seconds one POST may take.
TIMEOUT_SECONDS: Final = 5.0
#: POSTs per notice before giving up (pauses of 1 s, 2 s between them).
TRIES: Final = 3


class WebhookError(Exception):
    """The webhook refused the notice or could not be reached; the message is safe to show."""


def where(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: enough to say which webhook, never its secret path."""
    try:
        parts = urllib.parse.urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    except ValueError:
        return "<malformed URL>"


def check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"the webhook URL must be http:// or https:// with a host, not {where(url)!r}")


class Webhooks:
    def __init__(self, *, timeout: float = TIMEOUT_SECONDS, tries: int = TRIES, pause: float = 1.0) -> None:
        self._timeout, self._tries, self._pause = timeout, tries, pause
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, document: Mapping[str, Any]) -> None:
        check_url(url)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        problem = ""
        for attempt in range(self._tries):
            if attempt:
                await asyncio.sleep(self._pause * 2 ** (attempt - 1))
            try:
                async with self._session.post(url, json=document) as reply:
                    if reply.status < 300:
                        return
                    problem = f"HTTP {reply.status}"
                    if reply.status < 500 and reply.status != 429:
                        break  # the webhook refuses this notice: trying again will not help
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}".replace(url, where(url))
        raise WebhookError(f"webhook {where(url)} did not take the notice ({problem})")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
