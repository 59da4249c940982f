"""Who may do what: Kubernetes decides.

A caller sends a bearer token (a ServiceAccount token from ``kubectl create token``, or any
token the cluster's authenticators accept). The API server says whose it is
(``TokenReview``) and whether that user may do the operation (``SubjectAccessReview``), so
RBAC — Roles and bindings the platform team already manages — decides, and this service
stores no user or password of its own.

Each operation is a verb on the ``JobQueue`` the queue belongs to (the queue's published
settings name it), in the JobQueue's namespace:

==========================  ==========================================================
operation                   permission (``jobqueue.glec.io``)
==========================  ==========================================================
read stats, list, status    ``get jobqueues`` (listing: ``list jobqueues`` in the namespace
                            also shows all of its queues, with one review)
enqueue                     ``create jobqueues/jobs``
retry, remove a job         ``update jobqueues/jobs``
pause, resume               ``update jobqueues/pause``
==========================  ==========================================================

``jobqueues/jobs`` and ``jobqueues/pause`` are not real subresources of the CRD: RBAC rules
and access reviews match resource/subresource strings as given, which is exactly what makes
them a permission of their own that ``get`` or ``update`` on the JobQueue itself does not
grant (kubectl's ``pods/exec`` is the model).

Answers are cached for :data:`CACHE_SECONDS` (the web UI polls every few seconds; two API
server calls per poll would be waste), so a revoked token or binding takes effect within
that time. A failure to reach the API server is never cached and answers 503.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

GROUP: Final = "jobqueue.glec.io"
RESOURCE: Final = "jobqueues"
#: How long a token's identity and an access decision are reused.
CACHE_SECONDS: Final = 10.0
#: Cache entries at most (then expired ones are dropped, and if need be all).
CACHE_LIMIT: Final = 10_000


@dataclass(frozen=True)
class Permission:
    verb: str
    subresource: str | None = None

    def describe(self) -> str:
        return f"{self.verb} {RESOURCE}{'/' + self.subresource if self.subresource else ''}"


READ: Final = Permission("get")
LIST: Final = Permission("list")  # every JobQueue of a namespace: one review for all its queues
ENQUEUE: Final = Permission("create", "jobs")
MANAGE_JOBS: Final = Permission("update", "jobs")
PAUSE: Final = Permission("update", "pause")


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class AuthError(Exception):
    """Refused (401: who are you; 403: not allowed) or unable to ask (503)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Authorizer(Protocol):
    def authenticate(self, token: str | None) -> User: ...

    def allowed(self, user: User, permission: Permission, namespace: str, name: str) -> bool: ...


class NoAuth:
    """``jobqueue api --auth none``: everyone may do everything (a developer's loopback only)."""

    USER: Final = User("anonymous (authentication disabled)")

    def authenticate(self, token: str | None) -> User:
        return self.USER

    def allowed(self, user: User, permission: Permission, namespace: str, name: str) -> bool:
        return True


class _Cache:
    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self._ttl, self._clock = ttl, clock
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is None or hit[0] <= self._clock():
                return None
            return hit[1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            now = self._clock()
            if len(self._items) >= CACHE_LIMIT:
                self._items = {k: v for k, v in self._items.items() if v[0] > now}
                if len(self._items) >= CACHE_LIMIT:
                    self._items.clear()
            self._items[key] = (now + self._ttl, value)


class KubernetesAuthorizer:
    """TokenReview and SubjectAccessReview through lightkube (in-cluster or $KUBECONFIG)."""

    def __init__(
        self, client: Any = None, *, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if client is None:
            import lightkube  # noqa: PLC0415 (only this authorizer needs a Kubernetes client)

            client = lightkube.Client()
        self._client = client
        self._users = _Cache(ttl, clock)
        self._decisions = _Cache(ttl, clock)

    def authenticate(self, token: str | None) -> User:
        if not token:
            raise AuthError(
                401,
                "no bearer token: send 'Authorization: Bearer <token>' "
                "(e.g. from `kubectl create token <serviceaccount>`)",
            )
        key = hashlib.sha256(token.encode()).digest()  # never keep the token itself
        user = self._users.get(key)
        if user is not None:
            return user  # type: ignore[no-any-return]
        from lightkube.models.authentication_v1 import TokenReviewSpec  # noqa: PLC0415
        from lightkube.resources.authentication_v1 import TokenReview  # noqa: PLC0415

        review = self._call(lambda: self._client.create(TokenReview(spec=TokenReviewSpec(token=token))))
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            why = (status.error if status is not None else None) or "not accepted by the cluster"
            raise AuthError(401, f"the bearer token is not valid: {why}")
        info = status.user
        user = User(
            name=info.username or "",
            uid=info.uid or "",
            groups=tuple(info.groups or ()),
            extra=tuple(sorted((k, tuple(v)) for k, v in (info.extra or {}).items())),
        )
        self._users.put(key, user)
        return user

    def allowed(self, user: User, permission: Permission, namespace: str, name: str) -> bool:
        key = (user, permission, namespace, name)
        decision = self._decisions.get(key)
        if decision is not None:
            return bool(decision)
        from lightkube.models.authorization_v1 import (  # noqa: PLC0415
            ResourceAttributes,
            SubjectAccessReviewSpec,
        )
        from lightkube.resources.authorization_v1 import SubjectAccessReview  # noqa: PLC0415

        spec = SubjectAccessReviewSpec(
            user=user.name,
            uid=user.uid or None,
            groups=list(user.groups) or None,
            extra={k: list(v) for k, v in user.extra} or None,
            resourceAttributes=ResourceAttributes(
                group=GROUP,
                resource=RESOURCE,
                subresource=permission.subresource,
                verb=permission.verb,
                namespace=namespace or None,
                name=name or None,
            ),
        )
        review = self._call(lambda: self._client.create(SubjectAccessReview(spec=spec)))
        allowed = bool(review.status is not None and review.status.allowed)
        self._decisions.put(key, allowed)
        return allowed

    @staticmethod
    def _call(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # ApiError, a connection error: the cluster could not answer
            raise AuthError(
                503, f"cannot check the request with the Kubernetes API: {type(exc).__name__}: {exc}"
            ) from None
