"""Which database and credentials of the default Redis each namespace has (isolation mode).

The rules and URLs are :mod:`jobqueue_operator.builders.redisacl`; this module keeps what
the operator learnt (a namespace's database never changes once given, so it is cached for
the life of the process) and asks :class:`~jobqueue_operator.redisq.RedisHub` for the rest.
With ``JOBQUEUE_REDIS_ISOLATION=none`` it is inert: every namespace uses the operator's URL.
"""

from __future__ import annotations

import secrets
from typing import Final

from jobqueue_operator import errors, redisq
from jobqueue_operator.builders import redisacl

#: Bytes of randomness in a namespace's password (URL-safe text, ~43 characters).
PASSWORD_BYTES: Final = 32


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


class Tenancy:
    def __init__(self, hub: redisq.RedisHub, admin_url: str | None, *, isolated: bool) -> None:
        self._hub = hub
        self._admin = admin_url
        self.isolated = isolated and admin_url is not None
        self._databases: dict[str, int] = {}

    async def operator_url(self, namespace: str) -> str:
        """The URL the operator uses for the queues of ``namespace`` on the default Redis."""
        assert self._admin is not None
        if not self.isolated:
            return self._admin
        database = self._databases.get(namespace)
        if database is None:
            database = await self._hub.tenant_database(self._admin, namespace)
            if database is None:
                raise errors.RedisConfigError(
                    "CredentialsNotReady",
                    f"namespace {namespace} has no credentials for the default "
                    "Redis yet (the operator sets them up before the first worker Deployment)",
                )
            self._databases[namespace] = database
        return redisacl.operator_url(self._admin, database)

    async def credentials(self, namespace: str, password: str | None) -> str:
        """Set up (or repair: a restarted Redis forgets its ACL users) the namespace's user with
        ``password`` (None: a new one) and return the URL its pods get."""
        assert self._admin is not None
        assert self.isolated
        password = password or new_password()
        database = await self._hub.ensure_tenant(self._admin, namespace, password)
        self._databases[namespace] = database
        return redisacl.tenant_url(self._admin, namespace, password, database)

    async def revoke(self, namespace: str) -> None:
        """The namespace no longer uses the default Redis: its user goes (its data stays)."""
        assert self._admin is not None
        assert self.isolated
        await self._hub.drop_tenant_user(self._admin, namespace)
