"""The JobQueue reconcile in process: the real Reconciler, StatusKeeper, DefaultRedisSecrets
and RedisAddresses over the fake API and Redis (middlekit).

Mirrors tests/integration/operator/test_operator_reconcile.py, test_operator_redis.py and
test_operator_name_conflicts.py (which prove the same against the real API server and
Redis), and adds what a cluster cannot easily be made to do: answer 403, 409 or 422 to
one particular call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from jobqueue import settings as qsettings
from jobqueue_operator import k8s, models, reconcile
from jobqueue_operator.builders import deployment as dep_builder
from jobqueue_operator.builders import names, redissecret
from unit.middle.middlekit import NAMESPACE, REDIS_URL, Operator, api_error

JQ = models.JOBQUEUE_KIND
OWN_REDIS = {"urlSecretRef": {"name": "jobqueue-redis", "key": "url"}}
OTHER_URL = "redis://other.test:6379/0"


def published(op: Operator, url: str = REDIS_URL) -> set[str]:
    return qsettings.published_queue_names(op.hub.servers[url])  # type: ignore[arg-type]


def load(op: Operator, queue: str, url: str = REDIS_URL) -> qsettings.QueueSettings:
    return qsettings.load(op.hub.servers[url], queue)  # type: ignore[arg-type]


def deployment(op: Operator, name: str) -> dict[str, Any]:
    live = op.kube.get("Deployment", names.deployment_name(name))
    assert live is not None
    return live


def status_writes(op: Operator) -> int:
    return len(op.kube.writes("apply_status"))


async def test_a_jobqueue_becomes_a_worker_deployment_with_its_settings_published() -> None:
    op = Operator.make()
    op.kube.jobqueue("mailer", priority=2, scaling={"minReplicas": 2, "maxReplicas": 4}, concurrency=4)
    assert await op.reconcile("mailer") == reconcile.Outcome()

    assert published(op) == {f"{NAMESPACE}.mailer"}
    settings = load(op, f"{NAMESPACE}.mailer")
    assert (settings.namespace, settings.jobqueue, settings.priority) == (NAMESPACE, "mailer", 2)
    live = deployment(op, "mailer")
    assert live["spec"]["replicas"] == 2  # created at minReplicas, not Kubernetes' default of 1
    (owner,) = live["metadata"]["ownerReferences"]
    body = op.kube.get(JQ, "mailer")
    assert body is not None
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "JobQueue",
        "mailer",
        body["metadata"]["uid"],
        True,
    )
    # the hand-over of spec.replicas: the operator's first apply sets it, the autoscaler claims it
    applies = [(c.manager, "replicas" in c.body["spec"]) for c in op.kube.writes("apply", "Deployment")]
    assert applies == [(names.OPERATOR_MANAGER, True), (names.AUTOSCALER_MANAGER, True)]
    status = body["status"]
    assert (status["observedGeneration"], status["queueName"]) == (1, f"{NAMESPACE}.mailer")
    assert op.kube.condition(JQ, "mailer", "RedisReachable")["status"] == "True"
    assert op.kube.condition(JQ, "mailer", "Ready")["reason"] == "WorkersStarting"
    # one Event per creation: it says the settings were published too
    (created,) = op.kube.events
    assert (created.type, created.reason) == ("Normal", "DeploymentCreated")
    assert created.message == (
        f"created worker Deployment mailer-worker with 2 replicas; settings of queue '{NAMESPACE}.mailer' "
        "published (generation 1)"
    )

    # the Deployment watch: the workers are up
    ready = {
        **live,
        "status": {
            "replicas": 2,
            "readyReplicas": 2,
            "updatedReplicas": 2,
            "observedGeneration": live["metadata"]["generation"],
        },
    }
    await op.reconciler.deployment_event("MODIFIED", ready)
    assert op.kube.condition(JQ, "mailer", "Ready")["reason"] == "WorkersReady"
    assert op.kube.objects[JQ, NAMESPACE, "mailer"]["status"]["workers"] == "2/2"


async def test_what_a_new_jobqueue_costs_the_api_server() -> None:
    """The requests of one new JobQueue, from its reconcile to the autoscaler's first figures:
    in a burst of creations the operator is CPU-bound on exactly these, each a request and a
    watch event handled again (docs/performance.md, "From kubectl apply to the Deployment").
    Counts, not timings: one more request per new JobQueue fails here. (kopf's own patch of
    its last-handled annotation comes on top.)"""
    op = Operator.make()
    for i in range(17):  # the namespace's default-Redis Secret: its first 16 owners write it
        op.kube.jobqueue(f"first-{i}")
        await op.reconcile(f"first-{i}")
    await op.cycle()
    calls, events = len(op.kube.calls), len(op.kube.events)

    op.kube.jobqueue("mailer", scaling={"minReplicas": 2, "maxReplicas": 4})
    await op.reconcile("mailer")
    await op.reconciler.deployment_event("ADDED", deployment(op, "mailer"))  # nothing new to say
    await op.cycle()  # the autoscaler's first pass over it: its figures
    await op.cycle()  # and nothing more

    made = [(c.verb, c.kind, c.manager) for c in op.kube.calls[calls:]]
    assert made == [
        ("get", "Deployment", None),  # whose is a Deployment of that name (never someone else's)
        ("apply", "Deployment", names.OPERATOR_MANAGER),  # created at minReplicas...
        # ...its status written without waiting for the hand-over's claim (it needs nothing from it)
        ("apply_status", JQ, names.OPERATOR_MANAGER),  # observedGeneration, conditions
        ("apply", "Deployment", names.AUTOSCALER_MANAGER),  # ...and spec.replicas handed over
        ("merge_status", JQ, names.AUTOSCALER_MANAGER),  # queued, desiredReplicas, ...
    ]
    live = deployment(op, "mailer")
    assert (live["spec"]["replicas"], dep_builder.replicas_managers(live)) == (
        2,
        {names.OPERATOR_MANAGER, names.AUTOSCALER_MANAGER},
    )
    assert [e.reason for e in op.kube.events[events:]] == ["DeploymentCreated"]  # one Event


async def test_a_spec_change_rolls_out_without_touching_the_replicas_and_a_restart_writes_nothing() -> None:
    op = Operator.make()
    op.kube.jobqueue("mailer", scaling={"minReplicas": 1, "maxReplicas": 3}, concurrency=3)
    await op.reconcile("mailer")
    await op.kube.scale_deployment(NAMESPACE, "mailer-worker", 3, field_manager=names.AUTOSCALER_MANAGER)
    generation = deployment(op, "mailer")["metadata"]["generation"]
    op.kube.jobqueue(
        "mailer",
        scaling={"minReplicas": 1, "maxReplicas": 3},
        concurrency=3,
        priority=1,
        worker={"image": "registry.invalid/glec-jobs:2", "imports": ["glec.jobs"]},
    )
    await op.reconcile("mailer")
    live = deployment(op, "mailer")
    assert live["spec"]["replicas"] == 3  # the operator's apply carries no replicas any more
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.invalid/glec-jobs:2"
    assert live["metadata"]["generation"] > generation
    assert "replicas" not in op.kube.writes("apply", "Deployment")[-1].body["spec"]
    assert op.kube.reasons("mailer")[-2:] == [
        ("Normal", "DeploymentUpdated"),
        ("Normal", "SettingsPublished"),
    ]
    assert op.kube.objects[JQ, NAMESPACE, "mailer"]["status"]["observedGeneration"] == 2
    assert load(op, f"{NAMESPACE}.mailer").priority == 1

    # a new operator process (kopf's resume): everything is as it should be, nothing is written,
    # and the Deployment, applied from the very body this operator would apply, is not even read
    calls, events = len(op.kube.calls), len(op.kube.events)
    restarted = Operator.make(kube=op.kube, hub=op.hub)
    await restarted.resume("mailer")
    assert [c for c in op.kube.calls[calls:] if c.kind == "Deployment"] == []
    assert [c.verb for c in op.kube.calls[calls:] if c.verb not in ("get",)] == []
    assert (
        op.kube.objects["Deployment", NAMESPACE, "mailer-worker"]["metadata"]["resourceVersion"]
        == live["metadata"]["resourceVersion"]
    )
    assert len(op.kube.events) == events


async def created_with_the_claim_interrupted(op: Operator, jobqueue: str) -> None:
    """Reconcile ``jobqueue`` while the autoscaler's claim of spec.replicas fails (409): the
    Deployment is created and owned by the operator alone; the handler would retry."""
    original = op.kube.apply

    async def claim_fails(body: Any, *, field_manager: str) -> dict[str, Any]:
        if field_manager == names.AUTOSCALER_MANAGER:
            raise api_error(409, "the object has been modified")
        return await original(body, field_manager=field_manager)

    op.kube.apply = claim_fails  # type: ignore[method-assign]
    with pytest.raises(k8s.ApiError):
        await op.reconcile(jobqueue)
    op.kube.apply = original  # type: ignore[method-assign]


async def test_an_interrupted_replica_hand_over_is_finished_before_the_next_apply() -> None:
    """The autoscaler's claim of spec.replicas failed after the creating apply: the retry
    claims the live value first; applying without replicas would reset the Deployment to 1."""
    op = Operator.make()
    op.kube.jobqueue("mailer", scaling={"minReplicas": 3, "maxReplicas": 3}, concurrency=3)
    await created_with_the_claim_interrupted(op, "mailer")
    assert deployment(op, "mailer")["spec"]["replicas"] == 3
    op.kube.jobqueue("mailer", scaling={"minReplicas": 3, "maxReplicas": 3}, concurrency=3, priority=1)
    assert await op.reconcile("mailer") == reconcile.Outcome()
    assert deployment(op, "mailer")["spec"]["replicas"] == 3
    managers = [c.manager for c in op.kube.writes("apply", "Deployment")]
    assert managers == [names.OPERATOR_MANAGER, names.AUTOSCALER_MANAGER, names.OPERATOR_MANAGER]


def after_the_first_read(op: Operator, change: Callable[[str, str], Awaitable[None]]) -> None:
    """Make ``change`` to the Deployment right after the reconcile's first read of it."""
    read = op.kube.get_deployment
    done = False

    async def changed_after_the_read(namespace: str, name: str) -> dict[str, Any] | None:
        nonlocal done
        seen = await read(namespace, name)
        if not done:
            done = True
            await change(namespace, name)
        return seen

    op.kube.get_deployment = changed_after_the_read  # type: ignore[method-assign]


async def test_a_replica_claim_never_undoes_a_scale_made_after_the_read() -> None:
    """A new leader's first reconciles race its autoscaler's first pass: the Deployment is
    read at 0, the autoscaler scales it to 2, then the interrupted hand-over's claim comes.
    The claim is conditional on the Deployment as read: it is refused, the Deployment read
    again shows the field no longer the operator's alone, and the scale stands. (An
    unconditional claim once set the 0 it had read.)"""
    op = Operator.make()
    op.kube.jobqueue("mailer", scaling={"minReplicas": 0, "maxReplicas": 2}, concurrency=2)
    await created_with_the_claim_interrupted(op, "mailer")  # the operator alone owns spec.replicas

    async def scale(namespace: str, name: str) -> None:
        await op.kube.scale_deployment(namespace, name, 2, field_manager=names.AUTOSCALER_MANAGER)

    after_the_first_read(op, scale)
    claims = len(op.kube.writes("apply", "Deployment"))
    assert await op.reconcile("mailer") == reconcile.Outcome()
    assert deployment(op, "mailer")["spec"]["replicas"] == 2
    refused = [c.manager for c in op.kube.writes("apply", "Deployment")[claims:]]
    assert refused == [names.AUTOSCALER_MANAGER, names.OPERATOR_MANAGER]  # one refused claim, the spec


async def test_a_status_write_between_read_and_claim_does_not_stop_the_hand_over() -> None:
    """The Deployment controller writes status all the time: a claim refused for that alone
    is made again with the Deployment as it is then."""
    op = Operator.make()
    op.kube.jobqueue("mailer", scaling={"minReplicas": 3, "maxReplicas": 3}, concurrency=3)
    await created_with_the_claim_interrupted(op, "mailer")

    async def status(namespace: str, name: str) -> None:
        op.kube.status_written("Deployment", namespace, name)

    after_the_first_read(op, status)
    assert await op.reconcile("mailer") == reconcile.Outcome()
    live = deployment(op, "mailer")
    assert live["spec"]["replicas"] == 3
    assert names.AUTOSCALER_MANAGER in {m["manager"] for m in live["metadata"]["managedFields"]}


async def test_a_burst_of_status_writes_does_not_fail_the_hand_over() -> None:
    """A new Deployment's status is written several times in its first second: a claim
    refused each time is made again after a pause, not left to kopf's retry 30 s later (four
    tries in a row once all lost to that burst, and the reconcile failed)."""
    op = Operator.make()
    op.kube.jobqueue("mailer", scaling={"minReplicas": 2, "maxReplicas": 2}, concurrency=2)
    await created_with_the_claim_interrupted(op, "mailer")
    read = op.kube.get_deployment
    writes = 0

    async def read_then_status_written(namespace: str, name: str) -> dict[str, Any] | None:
        nonlocal writes
        seen = await read(namespace, name)
        if writes < 6:  # six claims in a row refused: a busy machine's first second
            writes += 1
            op.kube.status_written("Deployment", namespace, name)
        return seen

    op.kube.get_deployment = read_then_status_written  # type: ignore[method-assign]
    assert await op.reconcile("mailer") == reconcile.Outcome()
    assert writes == 6
    live = deployment(op, "mailer")
    assert live["spec"]["replicas"] == 2
    assert names.AUTOSCALER_MANAGER in {m["manager"] for m in live["metadata"]["managedFields"]}


async def test_missing_secret_and_dead_redis_are_conditions_and_the_queue_recovers_by_itself() -> None:
    op = Operator.make()
    op.kube.jobqueue("no-secret", redis=OWN_REDIS)
    assert await op.reconcile("no-secret") == reconcile.Outcome()
    missing = op.kube.condition(JQ, "no-secret", "RedisReachable")
    assert (missing["status"], missing["reason"]) == ("False", "SecretNotFound")
    assert missing["message"] == f"spec.redis.urlSecretRef: Secret {NAMESPACE}/jobqueue-redis not found"
    assert op.kube.condition(JQ, "no-secret", "Ready")["reason"] == "RedisUnreachable"
    assert ("Warning", "SecretNotFound") in op.kube.reasons("no-secret")
    assert op.kube.get("Deployment", "no-secret-worker") is not None  # applied all the same

    # the Secret appears, naming a Redis that does not answer
    op.kube.url_secret(OTHER_URL)
    op.hub.down.add(OTHER_URL)
    await op.sweeper.sweep()
    down = op.kube.condition(JQ, "no-secret", "RedisReachable")
    assert (down["status"], down["reason"]) == ("False", "RedisUnavailable")
    assert "redis://other.test:6379" in down["message"]
    assert "did not answer" in down["message"]

    op.hub.down.discard(OTHER_URL)
    assert (await op.sweeper.sweep()).republished == 1  # the queue recovers on its own
    assert op.kube.condition(JQ, "no-secret", "RedisReachable")["status"] == "True"
    assert published(op, OTHER_URL) == {f"{NAMESPACE}.no-secret"}
    assert op.kube.reasons("no-secret")[-1] == ("Normal", "RedisReachable")


async def test_a_change_made_while_redis_is_down_is_applied_at_once_and_published_later() -> None:
    op = Operator.make()
    op.kube.jobqueue("steady")
    await op.reconcile("steady")
    op.hub.down.add(REDIS_URL)
    op.kube.jobqueue("steady", priority=1)
    await op.reconcile("steady")
    assert op.kube.objects[JQ, NAMESPACE, "steady"]["status"]["observedGeneration"] == 2
    assert op.kube.condition(JQ, "steady", "RedisReachable")["reason"] == "RedisUnavailable"
    assert load(op, f"{NAMESPACE}.steady").priority == 3  # not yet
    op.hub.down.discard(REDIS_URL)
    await op.sweeper.sweep()  # ...and published as soon as Redis answers again
    assert load(op, f"{NAMESPACE}.steady").priority == 1
    assert op.kube.condition(JQ, "steady", "RedisReachable")["status"] == "True"


async def test_two_jobqueues_cannot_share_a_queue_name() -> None:
    op = Operator.make()
    op.kube.jobqueue("first", queueName="shared", priority=1)
    await op.reconcile("first")
    op.kube.jobqueue("second", queueName="shared", priority=5)
    await op.reconcile("second")
    ready = op.kube.condition(JQ, "second", "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "QueueNameConflict")
    assert "already declared by JobQueue first of this namespace" in ready["message"]
    assert load(op, "shared").jobqueue == "first"  # not overwritten
    assert op.kube.get("Deployment", "second-worker") is None  # no workers on first's queue

    first = op.kube.get(JQ, "first")
    assert first is not None
    op.kube.remove(JQ, "first")
    op.indexes.refresh()
    await op.reconciler.gone(first)
    await op.reconcile("second")
    ready = op.kube.condition(JQ, "second", "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "ScaledToZero")
    loaded = load(op, "shared")
    assert (loaded.jobqueue, loaded.priority) == ("second", 5)


async def test_a_name_left_published_by_a_deleted_jobqueue_is_taken_over() -> None:
    """The other JobQueue is gone but its settings stayed (its withdrawal failed): the API
    says it no longer declares the name, so the new one publishes."""
    op = Operator.make()
    op.kube.jobqueue("first", queueName="shared")
    await op.reconcile("first")
    op.kube.remove(JQ, "first")
    op.kube.jobqueue("second", queueName="shared")
    await op.reconcile("second")
    assert load(op, "shared").jobqueue == "second"
    assert op.kube.condition(JQ, "second", "RedisReachable")["status"] == "True"


async def test_an_owner_the_operator_may_not_read_keeps_its_name() -> None:
    op = Operator.make()
    op.kube.jobqueue("first", queueName="shared")
    await op.reconcile("first")
    op.kube.jobqueue("second", queueName="shared")
    op.kube.fail("get", JQ, api_error(403))
    await op.reconcile("second")
    assert op.kube.condition(JQ, "second", "Ready")["reason"] == "QueueNameConflict"
    assert load(op, "shared").jobqueue == "first"


async def test_renaming_the_queue_withdraws_the_old_name() -> None:
    op = Operator.make()
    op.kube.jobqueue("mailer", queueName="mail:v1")
    await op.reconcile("mailer")
    op.kube.jobqueue("mailer", queueName="mail:v2")
    await op.reconcile("mailer")
    assert published(op) == {"mail:v2"}
    assert op.kube.objects[JQ, NAMESPACE, "mailer"]["status"]["queueName"] == "mail:v2"
    assert deployment(op, "mailer")["spec"]["template"]["spec"]["containers"][0]["command"][3] == "mail:v2"


async def test_queues_without_any_redis_configured_say_so() -> None:
    op = Operator.make(default_url=None)
    op.kube.jobqueue("nowhere")
    await op.reconcile("nowhere")
    cond = op.kube.condition(JQ, "nowhere", "RedisReachable")
    assert (cond["status"], cond["reason"]) == ("False", "NoRedisConfigured")
    assert "JOBQUEUE_REDIS_URL" in cond["message"]


async def test_a_deployment_the_api_server_refuses_is_a_permanent_error_with_a_condition_and_event() -> None:
    op = Operator.make()
    op.kube.jobqueue("bad")
    op.kube.fail("apply", "Deployment", api_error(422, 'Deployment "bad-worker" is invalid: spec.x: bad'))
    outcome = await op.reconcile("bad")
    assert outcome.permanent_error is not None
    assert outcome.permanent_error.startswith("the API server refused the worker Deployment")
    ready = op.kube.condition(JQ, "bad", "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "DeploymentFailed")
    assert "spec.x: bad" in ready["message"]
    assert ("Warning", "DeploymentFailed") in op.kube.reasons("bad")

    # a Deployment watch event for the old generation does not hide the error
    await op.reconciler.deployment_event(
        "MODIFIED",
        {
            "metadata": {
                "name": "bad-worker",
                "namespace": NAMESPACE,
                "labels": names.worker_labels("bad"),
                "generation": 1,
            },
            "spec": {"replicas": 0},
            "status": {},
        },
    )
    assert op.kube.condition(JQ, "bad", "Ready")["reason"] == "DeploymentFailed"

    # a new generation the API server accepts: the condition recovers, with an Event
    op.kube.jobqueue("bad", priority=2)
    assert await op.reconcile("bad") == reconcile.Outcome()
    ready = op.kube.condition(JQ, "bad", "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "ScaledToZero")
    assert op.kube.reasons("bad")[-1] == ("Normal", "Ready")
    assert op.kube.get("Deployment", "bad-worker") is not None


@pytest.mark.parametrize("code", [403, 409])
async def test_a_deployment_apply_that_may_work_later_is_retried_with_nothing_written(code: int) -> None:
    op = Operator.make()
    op.kube.jobqueue("later")
    op.kube.fail("apply", "Deployment", api_error(code))
    with pytest.raises(k8s.ApiError):  # the handler: kopf.TemporaryError, retried after RETRY_DELAY
        await op.reconcile("later")
    assert status_writes(op) == 0
    assert op.kube.get("Deployment", "later-worker") is None
    assert await op.reconcile("later") == reconcile.Outcome()
    assert op.kube.get("Deployment", "later-worker") is not None


@pytest.mark.parametrize("code", [403, 422])
async def test_a_default_redis_secret_that_cannot_be_written_holds_the_deployment_and_is_retried(
    code: int,
) -> None:
    op = Operator.make()
    op.kube.jobqueue("mailer")
    op.kube.fail("apply", "Secret", api_error(code, "secrets is forbidden"))
    outcome = await op.reconcile("mailer")
    assert outcome.retry_error is not None  # kopf.TemporaryError(delay=SECRET_RETRY_DELAY)
    ready = op.kube.condition(JQ, "mailer", "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RedisSecretFailed")
    assert f"could not write Secret {NAMESPACE}/{redissecret.SECRET_NAME}" in ready["message"]
    assert "secrets is forbidden" in ready["message"]
    assert ("Warning", "RedisSecretFailed") in op.kube.reasons("mailer")
    assert op.kube.get("Deployment", "mailer-worker") is None  # never pointed at a Secret not there

    assert await op.reconcile("mailer") == reconcile.Outcome()  # the retry
    assert op.kube.get("Deployment", "mailer-worker") is not None
    assert op.kube.get("Secret", redissecret.SECRET_NAME) is not None
    assert op.kube.reasons("mailer")[-1] == ("Normal", "Ready")


async def test_a_status_write_conflict_is_retried_and_a_deleted_object_gets_none() -> None:
    op = Operator.make()
    op.kube.jobqueue("busy")
    op.kube.fail("apply_status", JQ, api_error(409))
    with pytest.raises(k8s.ApiError):
        await op.reconcile("busy")
    # the Deployment was made; no condition was written, so no condition Event either
    assert op.kube.reasons("busy") == [("Normal", "DeploymentCreated")]
    await op.reconcile("busy")
    # the retry: the Deployment is there, the settings are still news (no status said so), and
    # the hand-over of spec.replicas (its claim was under way when the status write failed) is
    # finished: the autoscaler owns them, at the value created
    assert op.kube.reasons("busy") == [("Normal", "DeploymentCreated"), ("Normal", "SettingsPublished")]
    live = deployment(op, "busy")
    assert (live["spec"]["replicas"], dep_builder.replicas_managers(live)) == (0, {names.AUTOSCALER_MANAGER})
    assert op.kube.condition(JQ, "busy", "RedisReachable")["status"] == "True"

    # deleted while being reconciled: the write finds nothing, and that is no error
    op.kube.jobqueue("gone")
    body = op.kube.get(JQ, "gone")
    assert body is not None
    op.kube.remove(JQ, "gone")
    assert await op.reconciler.reconcile(body) == reconcile.Outcome()
    assert not [e for e in op.kube.events if e.name == "gone" and e.type == "Warning"]


async def test_someone_elses_deployment_is_reported_not_taken_over() -> None:
    op = Operator.make()
    theirs = op.kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "billing-worker", "namespace": NAMESPACE, "labels": {"app": "billing"}},
            "spec": {"replicas": 0},
        }
    )
    op.kube.jobqueue("billing")
    outcome = await op.reconcile("billing")
    assert outcome.retry_error is not None
    ready = op.kube.condition(JQ, "billing", "Ready")
    assert ready["reason"] == "NameConflict"
    assert "a Deployment named billing-worker already exists" in ready["message"]
    assert ("Warning", "NameConflict") in op.kube.reasons("billing")
    assert op.kube.get("Deployment", "billing-worker") == theirs

    op.kube.remove("Deployment", "billing-worker")  # once it is gone, the retry makes our own
    await op.reconcile("billing")
    ours = deployment(op, "billing")
    assert names.jobqueue_of(ours["metadata"]["labels"]) == "billing"


async def test_a_deleted_worker_deployment_is_recreated() -> None:
    op = Operator.make()
    op.kube.jobqueue("mailer")
    await op.reconcile("mailer")
    first = deployment(op, "mailer")
    op.kube.remove("Deployment", "mailer-worker")
    await op.reconciler.deployment_event("DELETED", first)
    again = deployment(op, "mailer")
    assert again["metadata"]["uid"] != first["metadata"]["uid"]


async def test_settings_of_a_queue_deleted_while_the_operator_was_down_are_swept() -> None:
    op = Operator.make()
    for name in ("nightly", "kept"):
        op.kube.jobqueue(name)
        await op.reconcile(name)
    # settings of another operator's namespace in the same Redis: never ours to remove
    foreign = qsettings.QueueSettings(queue_name="other.q", namespace="not-served-here", jobqueue="q")
    qsettings.publish(op.hub.servers[REDIS_URL], foreign)  # type: ignore[arg-type]
    op.kube.remove(JQ, "nightly")  # deleted while no operator ran: no handler withdrew its settings
    op.indexes.refresh()

    report = await op.sweeper.sweep()
    assert (report.withdrawn, report.republished) == (1, 0)
    assert published(op) == {f"{NAMESPACE}.kept", "other.q"}


async def test_a_suspended_queue_starts_with_no_workers_and_publishes_the_flag() -> None:
    op = Operator.make()
    op.kube.jobqueue("paused", suspend=True, scaling={"minReplicas": 1})
    await op.reconcile("paused")
    assert deployment(op, "paused")["spec"]["replicas"] == 0
    ready = op.kube.condition(JQ, "paused", "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Suspended")
    assert op.kube.objects[JQ, NAMESPACE, "paused"]["status"]["workers"] == "0/0"
    assert load(op, f"{NAMESPACE}.paused").suspend is True


async def deleted(op: Operator, name: str) -> dict[str, Any]:
    """JobQueue ``name``, reconciled, then deleted; the body its deletion handler receives."""
    op.kube.jobqueue(name)
    await op.reconcile(name)
    body = op.kube.get(JQ, name)
    assert body is not None
    assert published(op) == {f"{NAMESPACE}.{name}"}
    op.kube.remove(JQ, name)  # (its Deployment goes by garbage collection: owner reference)
    op.indexes.refresh()
    return body


async def test_deleting_a_jobqueue_withdraws_its_settings_and_forgets_it() -> None:
    op = Operator.make()
    await op.reconciler.gone(await deleted(op, "cleanup"))
    assert published(op) == set()
    assert op.keeper.known((NAMESPACE, "cleanup")) is None
    assert op.kube.get("Secret", "jobqueue-default-redis") is None  # its last owner left


async def test_a_deletion_while_redis_is_down_leaves_the_settings_to_the_sweep() -> None:
    op = Operator.make()
    body = await deleted(op, "cleanup")
    op.hub.down.add(REDIS_URL)
    await op.reconciler.gone(body)  # best effort: logged, no error
    op.hub.down.discard(REDIS_URL)
    assert published(op) == {f"{NAMESPACE}.cleanup"}
    assert (await op.sweeper.sweep()).withdrawn == 1
    assert published(op) == set()


async def test_a_resume_applies_a_deployment_made_from_another_body() -> None:
    # e.g. by an older operator whose builder differed: the digest on the Deployment tells
    op = Operator.make()
    op.kube.jobqueue("mailer", scaling={"minReplicas": 1, "maxReplicas": 3})
    await op.reconcile("mailer")
    live = op.kube.objects["Deployment", NAMESPACE, "mailer-worker"]
    live["metadata"]["annotations"][names.APPLIED_ANNOTATION] = "an-older-body"
    del live["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
    calls = len(op.kube.calls)
    restarted = Operator.make(kube=op.kube, hub=op.hub)
    assert await restarted.resume("mailer") == reconcile.Outcome()
    assert [(c.verb, c.manager) for c in op.kube.calls[calls:] if c.kind == "Deployment"] == [
        ("get", None),
        ("apply", names.OPERATOR_MANAGER),
    ]
    healed = deployment(op, "mailer")
    assert healed["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert healed["metadata"]["annotations"][names.APPLIED_ANNOTATION] != "an-older-body"


@pytest.mark.parametrize("why", ["spec changed while down", "not this JobQueue's", "no Deployment"])
async def test_a_resume_reads_and_applies_when_the_index_cannot_stand_in(why: str) -> None:
    op = Operator.make()
    op.kube.jobqueue("mailer", scaling={"minReplicas": 1, "maxReplicas": 3})
    await op.reconcile("mailer")
    if why == "spec changed while down":  # kopf would call it an update; a resume must not skip it either
        op.kube.jobqueue("mailer", scaling={"minReplicas": 1, "maxReplicas": 3}, priority=1)
    elif why == "not this JobQueue's":
        op.kube.objects["Deployment", NAMESPACE, "mailer-worker"]["metadata"]["ownerReferences"][0]["uid"] = (
            "x"
        )
    else:
        op.kube.remove("Deployment", "mailer-worker")
    calls = len(op.kube.calls)
    restarted = Operator.make(kube=op.kube, hub=op.hub)
    await restarted.resume("mailer")
    assert [c.verb for c in op.kube.calls[calls:] if c.kind == "Deployment"][:1] == ["get"]
    if why == "not this JobQueue's":
        assert op.kube.condition(JQ, "mailer", "Ready")["reason"] == "NameConflict"
    else:
        assert deployment(op, "mailer")["metadata"]["annotations"][names.APPLIED_ANNOTATION]
