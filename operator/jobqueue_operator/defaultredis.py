"""Each namespace's Secret of the operator's default Redis URL, kept in line with the JobQueues.

What the Secret is and why it looks the way it does: :mod:`jobqueue_operator.builders.redissecret`.
This module decides, per namespace, whether it should exist and with which owners, and
makes it so:

* it exists while the operator has a default URL and at least one JobQueue of the
  namespace (not being deleted) has no ``spec.redis``; those JobQueues are its owners;
* it is applied (server-side, field manager ``jobqueue-operator``) *before* the worker
  Deployment that references it, and deleted when its last owner moves to ``spec.redis``
  (the garbage collector deletes it when its last owner is deleted);
* a Secret of that name that the operator did not make is never touched:
  :class:`~jobqueue_operator.errors.RedisSecretConflict`.

The owners come from the in-memory JobQueue index, plus the JobQueue being reconciled as
its body says (its index entry may lag by an event). One lock per namespace serialises the
decisions, and what was last read or written is remembered, so a reconcile costs no API
call while the Secret already has the right URL and the JobQueue among its owners; after a
restart the first one per namespace reads the Secret once, and a write always carries every
owner the index knows (a burst of new JobQueues costs a few writes, not one each). The
settings sweep calls :meth:`DefaultRedisSecrets.sweep`, which re-reads every Secret and
makes it exact: one deleted by hand, or by the garbage collector in a race with a new
owner, is back within ``JOBQUEUE_RESYNC_SECONDS``.

Size: an owner reference takes ~150 bytes, so one namespace can hold several thousand
JobQueues on the default Redis before the Secret nears the API server's object size limit
(~1.5 MB).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from jobqueue_operator import errors, index, k8s
from jobqueue_operator.builders import names, redissecret

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _State:
    """The Secret of one namespace as last read or written (``url`` None: it does not exist)."""

    url: str | None
    revision: int
    owners: frozenset[redissecret.Owner]


_ABSENT = _State(None, 0, frozenset())


class DefaultRedisSecrets:
    def __init__(self, kube: k8s.Kube, url: str | None,
                 queues: Callable[[], Iterable[index.QueueRef]]) -> None:
        self._kube = kube
        self._url = url
        self._queues = queues
        self._locks: dict[str, asyncio.Lock] = {}
        self._known: dict[str, _State] = {}
        #: the last revision of each namespace's URL, kept when the Secret goes: recreating
        #: it (deleted by hand) must not look like a new URL and roll every worker again
        self._revisions: dict[str, tuple[str, int]] = {}

    def _owners(self, namespace: str, jobqueue: redissecret.Owner | None,
                uses_default: bool) -> frozenset[redissecret.Owner]:
        if self._url is None:
            return frozenset()
        owners = {redissecret.Owner(ref.name, ref.uid) for ref in self._queues()
                  if ref.namespace == namespace and ref.redis_secret is None and not ref.deleting
                  and (jobqueue is None or ref.uid != jobqueue.uid)}
        if jobqueue is not None and uses_default:
            owners.add(jobqueue)
        return frozenset(owners)

    async def ensure(self, namespace: str, jobqueue: redissecret.Owner | None = None, *,
                     uses_default: bool = True, verify: bool = False) -> int | None:
        """Make the namespace's Secret what it should be and return its revision (None: it
        should not exist). ``jobqueue``: the JobQueue being reconciled, and whether it uses
        the default Redis now. ``verify``: re-read the Secret even if nothing seems to have
        changed. Raises :class:`~jobqueue_operator.errors.RedisSecretConflict` and
        :class:`~jobqueue_operator.k8s.ApiError`."""
        async with self._locks.setdefault(namespace, asyncio.Lock()):
            owners = self._owners(namespace, jobqueue, uses_default)
            url = self._url if owners else None
            known = self._known.get(namespace)
            if not verify and known is not None and self._settled(known, url, owners, jobqueue, uses_default):
                return known.revision if url is not None else None
            self._known.pop(namespace, None)  # unknown until the API has answered
            body = await self._kube.get_secret(namespace, redissecret.SECRET_NAME)
            live = None if body is None else redissecret.Live.of(body)
            if live is not None and not live.ours:
                raise errors.RedisSecretConflict(namespace, redissecret.SECRET_NAME)
            if url is None:
                if live is not None:
                    await self._kube.delete_secret(namespace, redissecret.SECRET_NAME)
                    logger.info("deleted Secret %s/%s: no JobQueue there uses the default Redis any more",
                                namespace, redissecret.SECRET_NAME)
                self._known[namespace] = _ABSENT
                return None
            remembered = self._revisions.get(namespace)
            revision = redissecret.revision(
                live, url, known=remembered[1] if remembered and remembered[0] == url else 0)
            if live is None or (live.url, live.revision, live.owners) != (
                    url, revision, frozenset(o.uid for o in owners)):
                await self._kube.apply(
                    redissecret.build(namespace=namespace, url=url, revision=revision, owners=owners),
                    field_manager=names.OPERATOR_MANAGER)
                # a new Secret or URL is news; a new owner list (every JobQueue created) is not
                news = live is None or live.url != url
                logger.log(logging.INFO if news else logging.DEBUG,
                           "%s Secret %s/%s (revision %d, %d JobQueues on the default Redis)",
                           "created" if live is None else "updated", namespace, redissecret.SECRET_NAME,
                           revision, len(owners))
            self._known[namespace] = _State(url, revision, owners)
            self._revisions[namespace] = (url, revision)
            return revision

    @staticmethod
    def _settled(known: _State, url: str | None, owners: frozenset[redissecret.Owner],
                 jobqueue: redissecret.Owner | None, uses_default: bool) -> bool:
        """Whether the Secret as known is good enough for this caller: the right URL, and the
        JobQueue being reconciled among its owners (or not, if it left). Other owners may be
        missing or gone: they add themselves when they are reconciled, the garbage collector
        drops the deleted, and the sweep makes the list exact. Without this, a thousand
        JobQueues created at once would rewrite an ever longer owner list a thousand times."""
        if known.url != url:
            return False
        if url is None or jobqueue is None:
            return known.owners == owners
        return (jobqueue in known.owners) == uses_default

    async def release(self, namespace: str, jobqueue: redissecret.Owner) -> None:
        """JobQueue ``jobqueue`` no longer uses the default Redis (it has ``spec.redis``): drop
        it from the owners, deleting the Secret if it was the last. Best effort: a failure is
        logged, and the sweep repairs. Costs nothing when the JobQueue was known not to be
        an owner."""
        known = self._known.get(namespace)
        if known is not None and jobqueue not in known.owners:
            return
        try:
            await self.ensure(namespace, jobqueue, uses_default=False)
        except (errors.RedisSecretConflict, k8s.ApiError) as e:
            logger.warning("Secret %s/%s not updated after JobQueue %s left the default Redis: %s",
                           namespace, redissecret.SECRET_NAME, jobqueue.name, e)

    async def sweep(self) -> None:
        """Re-read the Secret of every namespace that has, or had, one and repair it."""
        namespaces = {ref.namespace for ref in self._queues()
                      if ref.redis_secret is None and not ref.deleting} | {
            ns for ns, state in self._known.items() if state.url is not None}
        for namespace in sorted(namespaces):
            try:
                await self.ensure(namespace, verify=True)
            except errors.RedisSecretConflict as e:
                logger.warning("%s", e)
            except k8s.ApiError as e:
                logger.warning("Secret %s/%s not checked: %s", namespace, redissecret.SECRET_NAME,
                               k8s.message(e))
