"""The namespace's default-Redis Secret in process: the real DefaultRedisSecrets, driven by the
real Reconciler over the fake API and Redis (middlekit).

Mirrors tests/integration/operator/test_operator_default_redis.py and the Secret case of
test_operator_name_conflicts.py.
"""

from __future__ import annotations

import base64
from typing import Any

from jobqueue_operator import defaultredis, models
from jobqueue_operator.builders import names, redissecret
from unit.middle.middlekit import NAMESPACE, REDIS_URL, FakeKube, Operator

SECRET = redissecret.SECRET_NAME
OWN_REDIS = {"urlSecretRef": {"name": "jobqueue-redis", "key": "url"}}
ROTATED_URL = "redis://jq:s3cret@redis.test:6379/0"


def secret(kube: FakeKube) -> dict[str, Any] | None:
    return kube.get("Secret", SECRET)


def owners(kube: FakeKube) -> set[str]:
    return {ref["name"] for ref in ((secret(kube) or {}).get("metadata") or {}).get("ownerReferences") or []}


def redis_env(kube: FakeKube, name: str) -> dict[str, Any]:
    dep = kube.get("Deployment", names.deployment_name(name))
    assert dep is not None
    (env,) = [
        e
        for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "JOBQUEUE_REDIS_URL"
    ]
    return dict(env)


def template_revision(kube: FakeKube, name: str) -> str | None:
    dep = kube.get("Deployment", names.deployment_name(name)) or {}
    annotations = dep.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations") or {}
    return annotations.get(redissecret.REVISION_ANNOTATION)


async def add(op: Operator, name: str, **spec: Any) -> None:
    op.kube.jobqueue(name, **spec)
    op.indexes.refresh()  # (kopf's index sees the JobQueue before its handler runs)
    await op.reconcile(name)


async def delete(op: Operator, name: str) -> None:
    body = op.kube.get(models.JOBQUEUE_KIND, name)
    assert body is not None
    op.kube.remove(models.JOBQUEUE_KIND, name)
    op.indexes.refresh()
    await op.reconciler.gone(body)


async def test_the_url_reaches_the_workers_through_an_owned_secret() -> None:
    op = Operator.make()
    await add(op, "mailer")
    body = secret(op.kube)
    assert body is not None
    assert base64.b64decode(body["data"]["url"]).decode() == REDIS_URL
    assert body["metadata"]["labels"][names.MANAGED_BY_LABEL] == names.MANAGED_BY
    (ref,) = body["metadata"]["ownerReferences"]
    jq = op.kube.get(models.JOBQUEUE_KIND, "mailer")
    assert jq is not None
    assert (ref["kind"], ref["name"], ref["uid"]) == ("JobQueue", "mailer", jq["metadata"]["uid"])
    assert "controller" not in ref  # owned, not controlled: several JobQueues share it
    assert redis_env(op.kube, "mailer")["valueFrom"] == {"secretKeyRef": {"name": SECRET, "key": "url"}}
    assert template_revision(op.kube, "mailer") == "1"
    # the Deployment never carries the URL itself
    assert REDIS_URL not in str(op.kube.get("Deployment", "mailer-worker"))


async def test_the_secret_follows_the_jobqueues_that_use_the_default_redis() -> None:
    op = Operator.make()
    for name in ("alpha", "beta"):
        await add(op, name)
    assert owners(op.kube) == {"alpha", "beta"}

    # beta moves to its own Redis: it leaves the owners, its workers leave the Secret
    op.kube.url_secret(REDIS_URL)
    await add(op, "beta", redis=OWN_REDIS)
    assert owners(op.kube) == {"alpha"}
    own = {"secretKeyRef": {"name": "jobqueue-redis", "key": "url"}}
    assert redis_env(op.kube, "beta")["valueFrom"] == own
    assert template_revision(op.kube, "beta") is None

    # alpha, its last owner, is deleted: no JobQueue left on the default Redis, no Secret (the
    # operator deletes it; while no operator runs, the garbage collector does)
    await delete(op, "alpha")
    assert secret(op.kube) is None
    assert len(op.kube.writes("delete", "Secret")) == 1

    # beta comes back to the default Redis: the Secret is made again, for it
    await add(op, "beta")
    assert owners(op.kube) == {"beta"}
    # the last one moves away again: the operator deletes the Secret itself
    await add(op, "beta", redis=OWN_REDIS)
    assert secret(op.kube) is None
    assert [c.name for c in op.kube.writes("delete", "Secret")] == [SECRET, SECRET]


async def test_a_secret_deleted_by_hand_is_back_after_a_sweep_with_the_same_revision() -> None:
    op = Operator.make()
    await add(op, "gamma")
    first = secret(op.kube)
    assert first is not None
    op.kube.remove("Secret", SECRET)
    await op.secrets.sweep()
    again = secret(op.kube)
    assert again is not None
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
    assert owners(op.kube) == {"gamma"}
    # same URL, same revision: recreating it does not roll the workers
    assert again["metadata"]["annotations"] == first["metadata"]["annotations"]


async def test_many_jobqueues_share_a_small_secret_that_outlives_its_deleted_owners() -> None:
    op = Operator.make()
    all_names = [f"q{i:02d}" for i in range(defaultredis.OWNER_LIMIT + 4)]
    for name in all_names:
        op.kube.jobqueue(name)
    op.indexes.refresh()
    for name in all_names:
        await op.reconcile(name)
    first = owners(op.kube)
    assert len(first) == defaultredis.OWNER_LIMIT
    applies = len(op.kube.writes("apply", "Secret"))
    assert applies < len(all_names)  # a burst costs a few writes, not one per JobQueue

    for name in sorted(first):  # every owner is deleted: others take their places
        await delete(op, name)
    rest = set(all_names) - first
    assert owners(op.kube) == rest
    for name in rest:
        assert redis_env(op.kube, name)["valueFrom"] == {"secretKeyRef": {"name": SECRET, "key": "url"}}


async def test_a_new_default_url_updates_the_secret_and_rolls_the_workers() -> None:
    op = Operator.make()
    await add(op, "rotating")
    before = op.kube.get("Deployment", "rotating-worker")
    assert before is not None
    assert template_revision(op.kube, "rotating") == "1"

    # the operator restarts with a rotated URL (a password where there was none)
    restarted = Operator.make(kube=op.kube, hub=op.hub, default_url=ROTATED_URL)
    await restarted.reconcile("rotating")
    body = secret(op.kube)
    assert body is not None
    assert base64.b64decode(body["data"]["url"]).decode() == ROTATED_URL
    assert body["metadata"]["annotations"][redissecret.REVISION_ANNOTATION] == "2"
    assert template_revision(op.kube, "rotating") == "2"
    after = op.kube.get("Deployment", "rotating-worker")
    assert after is not None
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    assert ROTATED_URL not in str(after)


async def test_a_secret_of_that_name_made_by_someone_else_is_left_alone() -> None:
    op = Operator.make()
    theirs = op.kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": SECRET,
                "namespace": NAMESPACE,
                # our labels, copied: without a JobQueue owner reference it is still not ours
                "labels": {names.MANAGED_BY_LABEL: names.MANAGED_BY, names.COMPONENT_LABEL: "default-redis"},
            },
            "data": {"url": base64.b64encode(b"redis://their-redis:6379/0").decode()},
        }
    )
    op.kube.jobqueue("careful")
    op.indexes.refresh()
    outcome = await op.reconcile("careful")
    assert outcome.retry_error is not None
    ready = op.kube.condition(models.JOBQUEUE_KIND, "careful", "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RedisSecretConflict")
    assert f"Secret {NAMESPACE}/{SECRET} exists but was not made by jobqueue-operator" in ready["message"]
    assert secret(op.kube) == theirs  # not a field changed
    assert op.kube.get("Deployment", "careful-worker") is None  # never pointed at it
    assert ("Warning", "RedisSecretConflict") in op.kube.reasons("careful")
    await op.secrets.sweep()  # the sweep leaves it alone too
    assert secret(op.kube) == theirs

    # once that Secret is gone, the retry makes our own
    op.kube.remove("Secret", SECRET)
    await op.reconcile("careful")
    assert owners(op.kube) == {"careful"}
    assert redis_env(op.kube, "careful")["valueFrom"] == {"secretKeyRef": {"name": SECRET, "key": "url"}}
    assert op.kube.condition(models.JOBQUEUE_KIND, "careful", "Ready")["status"] == "True"
