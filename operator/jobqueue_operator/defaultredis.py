"""Each namespace's Secret of the operator's default Redis URL, kept in line with the JobQueues.

What the Secret is and why it looks the way it does: :mod:`jobqueue_operator.builders.redissecret`.
This module decides, per namespace, whether it should exist and with which owners, and
makes it so:

* it exists while the operator has a default URL and at least one JobQueue of the
  namespace (not being deleted) has no ``spec.redis``; up to :data:`OWNER_LIMIT` of those
  JobQueues are its owners (enough for the garbage collector to delete it once they are
  all gone; every one of ten thousand JobQueues would make it 1.5 MB, the API server's
  limit, and each new JobQueue a rewrite of the whole list);
* it is applied (server-side, field manager ``jobqueue-operator``) *before* the worker
  Deployment that references it, and deleted when its last owner moves to ``spec.redis``
  (the garbage collector deletes it when its last owner is deleted);
* a Secret of that name that the operator did not make is never touched:
  :class:`~jobqueue_operator.errors.RedisSecretConflict`.

The owners come from the in-memory JobQueue index, plus the JobQueue being reconciled as
its body says (its index entry may lag by an event). One lock per namespace serialises the
decisions, and what was last read or written is remembered, so a reconcile costs no API
call (and no look at the index) while the Secret already has the right URL and either the
JobQueue among its owners or a full owner list; after a restart the first one per namespace
reads the Secret once, and a write always carries as many owners as the index offers (a
burst of new JobQueues costs a few writes, not one each). Owners that are deleted are
replaced at once (:meth:`DefaultRedisSecrets.owner_gone`). The
settings sweep calls :meth:`DefaultRedisSecrets.sweep`, which re-reads every Secret and
makes it exact: one deleted by hand, or by the garbage collector in a race with a new
owner, is back within ``JOBQUEUE_RESYNC_SECONDS``.

**Namespace isolation** (``JOBQUEUE_REDIS_ISOLATION=namespace``): the Secret holds the
namespace's own credentials (:mod:`jobqueue_operator.tenancy`) instead of the operator's URL.
Its password is kept across restarts (the Secret is where it lives; Redis stores only a
hash), re-applied to Redis by every verifying pass (a restarted Redis forgets ACL users),
replaced when the Secret is deleted by hand (that is how a password is rotated: the new
revision rolls the workers), and the user is deleted with the Secret.

Size: an owner reference takes ~150 bytes; :data:`OWNER_LIMIT` of them keep the Secret
small however many JobQueues a namespace holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from jobqueue_operator import errors, index, k8s, tenancy
from jobqueue_operator.builders import names, redisacl, redissecret

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _State:
    """The Secret of one namespace as last read or written (``url`` None: it does not exist)."""

    url: str | None
    revision: int
    owners: frozenset[redissecret.Owner]


_ABSENT = _State(None, 0, frozenset())

#: Owners written on a namespace's Secret at most. Its existence needs one live owner; a
#: few more make a deletion of any one of them a non-event, and replacing the deleted is
#: one write (``owner_gone``), not a scan.
OWNER_LIMIT = 16


def pick_owners(
    eligible: Iterable[redissecret.Owner], current: Collection[str]
) -> frozenset[redissecret.Owner]:
    """Up to :data:`OWNER_LIMIT` of ``eligible``: those already owners (uids in ``current``)
    first, so that nothing is rewritten needlessly, then the others in a stable order."""
    ordered = sorted(eligible, key=lambda o: (o.uid not in current, o.name, o.uid))
    return frozenset(ordered[:OWNER_LIMIT])


class DefaultRedisSecrets:
    def __init__(
        self,
        kube: k8s.KubeApi,
        url: str | None,
        queues: Callable[[], Iterable[index.QueueRef]],
        tenants: tenancy.Tenancy | None = None,
    ) -> None:
        self._kube = kube
        self._url = url
        self._queues = queues
        self._tenants = tenants if tenants is not None and tenants.isolated else None
        self._locks: dict[str, asyncio.Lock] = {}
        self._known: dict[str, _State] = {}
        #: the last revision of each namespace's URL, kept when the Secret goes: recreating
        #: it (deleted by hand) must not look like a new URL and roll every worker again
        self._revisions: dict[str, tuple[str, int]] = {}

    def _eligible(
        self, namespace: str, jobqueue: redissecret.Owner | None, uses_default: bool
    ) -> set[redissecret.Owner]:
        """Every JobQueue of ``namespace`` on the default Redis (each may own the Secret)."""
        if self._url is None:
            return set()
        eligible = {
            redissecret.Owner(ref.name, ref.uid)
            for ref in self._queues()
            if ref.namespace == namespace
            and ref.redis_secret is None
            and not ref.deleting
            and (jobqueue is None or ref.uid != jobqueue.uid)
        }
        if jobqueue is not None and uses_default:
            eligible.add(jobqueue)
        return eligible

    async def ensure(
        self,
        namespace: str,
        jobqueue: redissecret.Owner | None = None,
        *,
        uses_default: bool = True,
        verify: bool = False,
    ) -> int | None:
        """Make the namespace's Secret what it should be and return its revision (None: it
        should not exist). ``jobqueue``: the JobQueue being reconciled, and whether it uses
        the default Redis now. ``verify``: re-read the Secret even if nothing seems to have
        changed. Raises :class:`~jobqueue_operator.errors.RedisSecretConflict`,
        :class:`~jobqueue_operator.k8s.ApiError`, and with namespace isolation the Redis errors
        of setting up its credentials."""
        async with self._locks.setdefault(namespace, asyncio.Lock()):
            known = self._known.get(namespace)
            # the URL it should hold: the operator's, or (isolation) the namespace's own as last
            # known (worked out again below whenever the Secret is read)
            default_url = self._url if self._tenants is None else known.url if known is not None else None
            if (
                not verify
                and known is not None
                and jobqueue is not None
                and uses_default
                and default_url is not None
                and known.url == default_url
                and (jobqueue in known.owners or len(known.owners) >= OWNER_LIMIT)
            ):
                return known.revision  # the common case, decided without looking at the index
            eligible = self._eligible(namespace, jobqueue, uses_default)
            owners = pick_owners(eligible, {o.uid for o in known.owners} if known else ())
            url = default_url if owners else None
            if (
                not verify
                and known is not None
                and (url is not None or not owners)
                and self._settled(known, url, owners, jobqueue, uses_default)
            ):
                return known.revision if url is not None else None
            self._known.pop(namespace, None)  # unknown until the API has answered
            body = await self._kube.get_secret(namespace, redissecret.SECRET_NAME)
            live = None if body is None else redissecret.Live.of(body)
            if live is not None and not live.ours:
                raise errors.RedisSecretConflict(namespace, redissecret.SECRET_NAME)
            if not owners:
                if live is not None:
                    await self._kube.delete_secret(namespace, redissecret.SECRET_NAME)
                    logger.info(
                        "deleted Secret %s/%s: no JobQueue there uses the default Redis any more",
                        namespace,
                        redissecret.SECRET_NAME,
                    )
                if self._tenants is not None and (live is not None or (known and known.url)):
                    # (also when the garbage collector deleted the Secret with its last owner)
                    await self._tenants.revoke(namespace)
                self._known[namespace] = _ABSENT
                return None
            owners = pick_owners(eligible, live.owners if live is not None else ())
            if self._tenants is not None:
                url = await self._tenants.credentials(
                    namespace, redisacl.password_of(live.url if live else None, namespace)
                )
            assert url is not None
            remembered = self._revisions.get(namespace)
            revision = redissecret.revision(
                live, url, known=0 if remembered is None else remembered[1] + (remembered[0] != url)
            )
            if live is None or (live.url, live.revision, live.owners) != (
                url,
                revision,
                frozenset(o.uid for o in owners),
            ):
                await self._kube.apply(
                    redissecret.build(namespace=namespace, url=url, revision=revision, owners=owners),
                    field_manager=names.OPERATOR_MANAGER,
                )
                # a new Secret or URL is news; a new owner list (every JobQueue created) is not
                news = live is None or live.url != url
                logger.log(
                    logging.INFO if news else logging.DEBUG,
                    "%s Secret %s/%s (revision %d, %d owners)",
                    "created" if live is None else "updated",
                    namespace,
                    redissecret.SECRET_NAME,
                    revision,
                    len(owners),
                )
            self._known[namespace] = _State(url, revision, owners)
            self._revisions[namespace] = (url, revision)
            return revision

    @staticmethod
    def _settled(
        known: _State,
        url: str | None,
        owners: frozenset[redissecret.Owner],
        jobqueue: redissecret.Owner | None,
        uses_default: bool,
    ) -> bool:
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
        except (
            errors.RedisSecretConflict,
            errors.RedisConfigError,
            errors.RedisUnavailable,
            k8s.ApiError,
        ) as e:
            logger.warning(
                "Secret %s/%s not updated after JobQueue %s left the default Redis: %s",
                namespace,
                redissecret.SECRET_NAME,
                jobqueue.name,
                e,
            )

    async def owner_gone(self, namespace: str, jobqueue: redissecret.Owner) -> None:
        """JobQueue ``jobqueue`` was deleted. If it owned the Secret, another JobQueue takes its
        place now: the garbage collector deletes the Secret once its last owner is gone, even
        while JobQueues that are not owners still use it. Best effort (the sweep repairs)."""
        known = self._known.get(namespace)
        if known is None or jobqueue not in known.owners:
            return
        try:
            await self.ensure(namespace, jobqueue, uses_default=False, verify=True)
        except (
            errors.RedisSecretConflict,
            errors.RedisConfigError,
            errors.RedisUnavailable,
            k8s.ApiError,
        ) as e:
            logger.warning(
                "Secret %s/%s: no owner put in the place of deleted JobQueue %s: %s",
                namespace,
                redissecret.SECRET_NAME,
                jobqueue.name,
                e,
            )

    async def sweep(self) -> None:
        """Re-read the Secret of every namespace that has, or had, one and repair it."""
        namespaces = {
            ref.namespace for ref in self._queues() if ref.redis_secret is None and not ref.deleting
        } | {ns for ns, state in self._known.items() if state.url is not None}
        for namespace in sorted(namespaces):
            try:
                await self.ensure(namespace, verify=True)
            except (errors.RedisSecretConflict, errors.RedisConfigError, errors.RedisUnavailable) as e:
                logger.warning("%s", e)
            except k8s.ApiError as e:
                logger.warning(
                    "Secret %s/%s not checked: %s", namespace, redissecret.SECRET_NAME, k8s.message(e)
                )
