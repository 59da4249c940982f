"""Which Redis a JobQueue lives in: ``spec.redis.urlSecretRef``, else the operator's default.

A JobQueue's own URL must pass the admin's rules (:mod:`jobqueue_operator.hostpolicy`:
no ``unix://``, only allowed hosts) before the operator ever connects to it. The default
Redis is the admin's own choice; with namespace isolation its URL is the operator's, on the
namespace's database (:mod:`jobqueue_operator.tenancy`).

Resolution reads the Secret through the API (RBAC ``get secrets``) and caches it briefly:
the autoscaler resolves every queue every second and must not turn that into Secret
reads, while a reconcile asks for a fresh read so that a Secret created (or fixed) just
before is seen at once. Failures are :class:`~jobqueue_operator.errors.RedisConfigError`
with the ``RedisReachable`` condition reason the user will see.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Sequence
from typing import Final

from jobqueue_operator import errors, hostpolicy, index, k8s, models, redisq, tenancy

#: Seconds a Secret read is reused by non-fresh lookups.
CACHE_SECONDS: Final = 10.0


class RedisAddresses:
    def __init__(
        self,
        kube: k8s.KubeApi,
        default_url: str | None,
        *,
        ttl: float = CACHE_SECONDS,
        tenants: tenancy.Tenancy | None = None,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        self._kube = kube
        self._default = default_url
        self._ttl = ttl
        self._tenants = tenants if tenants is not None and tenants.isolated else None
        self._allowed = tuple(allowed_hosts)
        self._secrets: dict[tuple[str, str], tuple[float, dict[str, bytes] | None]] = {}

    async def url(self, namespace: str, redis: models.RedisSpec | None, *, fresh: bool = False) -> str:
        """The Redis URL of a queue in ``namespace`` with ``spec.redis`` = ``redis``."""
        if redis is None:
            if not self._default:
                raise errors.RedisConfigError(
                    "NoRedisConfigured",
                    "spec.redis is not set and the operator has no default Redis (JOBQUEUE_REDIS_URL)",
                )
            redisq.check_url(self._default)
            if self._tenants is not None:
                return await self._tenants.operator_url(namespace)
            return self._default
        ref = redis.url_secret_ref
        url = await self._value(
            namespace, ref, "spec.redis.urlSecretRef", fresh=fresh, not_text="InvalidRedisURL"
        )
        redisq.check_url(url)
        refused = hostpolicy.refusal(url, self._allowed)
        if refused:
            raise errors.RedisConfigError(
                "RedisURLRefused",
                f"spec.redis.urlSecretRef: Secret {namespace}/{ref.name} key {ref.key!r}: {refused}",
            )
        return url

    async def by_url(self, refs: Iterable[index.QueueRef]) -> dict[str, list[index.QueueRef]]:
        """Queues by Redis URL. A queue whose Redis cannot even be addressed (no URL, Secret
        missing) is left out (the reconcile reports the problem)."""
        by_url: dict[str, list[index.QueueRef]] = collections.defaultdict(list)
        resolved: dict[tuple[str, tuple[str, str] | None], str | None] = {}
        for ref in refs:
            # (with namespace isolation, each namespace has its own database of the default Redis)
            shared = ref.redis_secret is None and self._tenants is None
            where = ("", None) if shared else (ref.namespace, ref.redis_secret)
            if where not in resolved:
                try:
                    resolved[where] = await self.url(ref.namespace, ref.redis_spec)
                except errors.RedisConfigError:
                    resolved[where] = None
            url = resolved[where]
            if url is not None:
                by_url[url].append(ref)
        return by_url

    async def secret_value(
        self, namespace: str, ref: models.SecretKeyRef | models.WebhookSecretRef, field: str
    ) -> str:
        """The text under ``ref`` (a key of a Secret in ``namespace``); RedisConfigError naming
        ``field`` (e.g. ``spec.failureNotification.webhook.urlSecretRef``) if it cannot be read."""
        return await self._value(namespace, ref, field, fresh=False, not_text="SecretUnreadable")

    async def _value(
        self,
        namespace: str,
        ref: models.SecretKeyRef | models.WebhookSecretRef,
        field: str,
        *,
        fresh: bool,
        not_text: str,
    ) -> str:
        data = await self._secret(namespace, ref.name, fresh=fresh)
        where = f"{field}: Secret {namespace}/{ref.name}"
        if data is None:
            raise errors.RedisConfigError("SecretNotFound", f"{where} not found")
        if ref.key not in data:
            raise errors.RedisConfigError("SecretKeyNotFound", f"{where} has no key {ref.key!r}")
        try:
            return data[ref.key].decode().strip()
        except UnicodeDecodeError:
            raise errors.RedisConfigError(not_text, f"{where} key {ref.key!r} is not text") from None

    async def _secret(self, namespace: str, name: str, *, fresh: bool) -> dict[str, bytes] | None:
        key = (namespace, name)
        cached = self._secrets.get(key)
        now = time.monotonic()
        if cached and not fresh and cached[0] > now:
            return cached[1]
        try:
            data = await self._kube.read_secret(namespace, name)
        except k8s.ApiError as e:
            raise errors.RedisConfigError(
                "SecretUnreadable", f"Secret {namespace}/{name}: {k8s.message(e)}"
            ) from None
        self._secrets[key] = (now + self._ttl, data)
        return data
