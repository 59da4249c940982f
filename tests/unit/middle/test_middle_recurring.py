"""RecurringJobs in process: the real RecurringJobs (and the JobQueue reconcile it depends on)
over the fake API and Redis (middlekit), with a fake clock.

Mirrors tests/integration/recurring/test_recurring_reconcile.py and the CronJob case of
tests/integration/operator/test_operator_name_conflicts.py, plus the API answers a cluster
will not give on demand (403, 409, 422 on the CronJob).
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from jobqueue import keys
from jobqueue_operator import k8s, models, recurring
from jobqueue_operator.builders import cronjob, deployment, names
from unit.middle.middlekit import NAMESPACE, REDIS_URL, Operator, api_error

RJ = models.RECURRINGJOB_KIND
FULL: dict[str, Any] = {
    "schedule": "0 0 * * *",
    "timeZone": "Asia/Seoul",
    "args": ["kr", None],
    "kwargs": {"aggregation_type": "daily"},
    "jobOptions": {"attempts": 2, "timeoutSeconds": 600},
    "priority": 4,
    "concurrencyPolicy": "Replace",
    "startingDeadlineSeconds": 300,
}


async def with_queue(**spec: Any) -> Operator:
    """An operator whose namespace has JobQueue ``analytics``, reconciled (settings published)."""
    op = Operator.make()
    op.kube.jobqueue("analytics", **spec)
    await op.reconcile("analytics")
    return op


async def reconcile(op: Operator, name: str) -> recurring.Outcome:
    body = op.kube.get(RJ, name)
    assert body is not None
    return await op.recurring.reconcile(body)


def ready(op: Operator, name: str) -> tuple[str, str, str]:
    cond = op.kube.condition(RJ, name, "Ready")
    return cond["status"], cond["reason"], cond["message"]


def cron(op: Operator, name: str) -> dict[str, Any]:
    live = op.kube.get("CronJob", name)
    assert live is not None
    return live


async def test_the_cronjob_is_built_as_specified_and_the_status_says_when_it_runs() -> None:
    op = await with_queue()
    rj = op.kube.recurringjob("daily-analytics", **{**FULL, "function": "glec_jobs.daily_aggregate"})
    assert await reconcile(op, "daily-analytics") == recurring.Outcome()

    jq = op.kube.get(models.JOBQUEUE_KIND, "analytics")
    assert jq is not None
    expected = cronjob.build(
        namespace=NAMESPACE,
        name="daily-analytics",
        uid=rj["metadata"]["uid"],
        spec=models.RecurringJobSpec.model_validate(rj["spec"]),
        queue=cronjob.target(
            namespace=NAMESPACE, name="analytics", spec=models.JobQueueSpec.model_validate(jq["spec"])
        ),
        defaults=deployment.WorkerDefaults(default_redis=True),
    )
    (applied,) = op.kube.writes("apply", "CronJob")
    assert applied.body == expected
    assert applied.manager == names.OPERATOR_MANAGER
    status = op.kube.objects[RJ, NAMESPACE, "daily-analytics"]["status"]
    assert (status["cronJobName"], status["queueName"], status["observedGeneration"]) == (
        "daily-analytics",
        f"{NAMESPACE}.analytics",
        1,
    )
    assert status["nextScheduleTime"] == "2026-01-05T15:00:00Z"  # midnight in Seoul, after EPOCH
    assert "lastScheduleTime" not in status  # no tick yet
    assert ready(op, "daily-analytics")[:2] == ("True", "Scheduled")
    assert op.kube.condition(RJ, "daily-analytics", "RedisReachable")["status"] == "True"
    assert op.kube.reasons("daily-analytics") == [("Normal", "CronJobCreated")]

    # the refresher moves nextScheduleTime on as time passes, and writes nothing else
    op.clock.tick(4 * 3600)
    await op.recurring.refresh_all()
    status = op.kube.objects[RJ, NAMESPACE, "daily-analytics"]["status"]
    assert status["nextScheduleTime"] == "2026-01-06T15:00:00Z"


async def test_a_missing_queue_is_reported_and_the_cronjob_waits_for_it() -> None:
    op = Operator.make()
    op.kube.recurringjob("daily-analytics")
    await reconcile(op, "daily-analytics")
    status, reason, message = ready(op, "daily-analytics")
    assert (status, reason) == ("False", "QueueMissing")
    assert message == f"JobQueue 'analytics' does not exist in namespace {NAMESPACE}"
    assert op.kube.events[-1].message == message
    assert op.kube.reasons("daily-analytics") == [("Warning", "QueueMissing")]
    assert op.kube.get("CronJob", "daily-analytics") is None
    assert "nextScheduleTime" not in op.kube.objects[RJ, NAMESPACE, "daily-analytics"]["status"]

    # the queue arrives later (applied in the wrong order): the JobQueue watch reconciles
    op.kube.jobqueue("analytics")
    await op.reconcile("analytics")
    jq = op.kube.get(models.JOBQUEUE_KIND, "analytics")
    assert jq is not None
    assert op.recurring.jobqueue_matters(jq, deleted=False)
    await op.recurring.jobqueue_changed(jq, deleted=False)
    assert ready(op, "daily-analytics")[:2] == ("True", "Scheduled")
    assert cron(op, "daily-analytics")["spec"]["suspend"] is False
    assert op.kube.reasons("daily-analytics")[-1] == ("Normal", "Ready")

    # ...and goes away again: the CronJob is suspended, not deleted
    op.kube.remove(models.JOBQUEUE_KIND, "analytics")
    await op.recurring.jobqueue_changed(jq, deleted=True)
    status, reason, message = ready(op, "daily-analytics")
    assert (status, reason) == ("False", "QueueMissing")
    assert message.endswith("CronJob daily-analytics is suspended until it exists")
    assert cron(op, "daily-analytics")["spec"]["suspend"] is True
    assert [c.manager for c in op.kube.writes("suspend")] == [names.OPERATOR_MANAGER]

    op.kube.jobqueue("analytics")
    await op.reconcile("analytics")
    back = op.kube.get(models.JOBQUEUE_KIND, "analytics")
    assert back is not None
    await op.recurring.jobqueue_changed(back, deleted=False)
    assert ready(op, "daily-analytics")[:2] == ("True", "Scheduled")
    assert cron(op, "daily-analytics")["spec"]["suspend"] is False


async def test_someone_elses_cronjob_is_reported_not_taken_over_nor_suspended() -> None:
    op = Operator.make()
    theirs = op.kube.create(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": NAMESPACE},
            "spec": {"schedule": "0 3 * * *"},
        }
    )
    op.kube.recurringjob("nightly")
    await reconcile(op, "nightly")  # its queue is missing: ours would be suspended, this one is not
    assert ready(op, "nightly")[1] == "QueueMissing"
    assert op.kube.get("CronJob", "nightly") == theirs

    op.kube.jobqueue("analytics")
    await op.reconcile("analytics")
    outcome = await reconcile(op, "nightly")
    assert outcome.retry_error is not None
    status, reason, message = ready(op, "nightly")
    assert (status, reason) == ("False", "NameConflict")
    assert "a CronJob named nightly already exists" in message
    assert op.kube.get("CronJob", "nightly") == theirs
    assert op.kube.writes("apply", "CronJob") == op.kube.writes("suspend") == []

    op.kube.remove("CronJob", "nightly")
    await op.recurring.refresh_all()  # the refresher tries a NameConflict again
    assert ready(op, "nightly")[:2] == ("True", "Scheduled")
    assert names.owned_by_us(cron(op, "nightly"), kind=RJ, component=cronjob.COMPONENT)


@pytest.mark.parametrize(
    ("spec", "reason", "text"),
    [
        (
            {"timeZone": "Mars/Olympus"},
            "UnknownTimeZone",
            "'Mars/Olympus' is not in the IANA time zone database",
        ),
        ({"schedule": "0 0 30 2 *"}, "ScheduleNeverFires", "never creates a Job"),
    ],
)
async def test_what_the_api_server_cannot_check_is_reported(
    spec: dict[str, Any], reason: str, text: str
) -> None:
    op = await with_queue()
    op.kube.recurringjob("odd", **spec)
    await reconcile(op, "odd")
    status, got, message = ready(op, "odd")
    assert (status, got) == ("False", reason)
    assert text in message
    assert ("Warning", reason) in op.kube.reasons("odd")


async def test_an_unreachable_redis_is_reported_until_it_answers() -> None:
    """The queue's Redis comes from a Secret that does not exist yet: every tick would fail."""
    op = await with_queue(redis={"urlSecretRef": {"name": "queue-redis", "key": "url"}})
    op.kube.recurringjob("daily-analytics")
    await reconcile(op, "daily-analytics")
    assert ready(op, "daily-analytics")[:2] == ("False", "RedisUnreachable")
    reachable = op.kube.condition(RJ, "daily-analytics", "RedisReachable")
    assert (reachable["status"], reachable["reason"]) == ("False", "SecretNotFound")
    assert f"Secret {NAMESPACE}/queue-redis not found" in reachable["message"]
    assert ("Warning", "SecretNotFound") in op.kube.reasons("daily-analytics")
    # the CronJob exists all the same: its pods read the URL from the Secret when they run
    pod = cron(op, "daily-analytics")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = pod["containers"][0]["env"]
    assert {
        "name": "JOBQUEUE_REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "queue-redis", "key": "url"}},
    } in env

    op.kube.url_secret(REDIS_URL, name="queue-redis")
    await op.recurring.refresh_all()  # Redis answers, but the queue's settings are not there yet
    assert ready(op, "daily-analytics")[:2] == ("False", "QueueNotPublished")
    await op.sweeper.sweep()  # the settings sweep publishes them
    await op.recurring.refresh_all()
    assert ready(op, "daily-analytics")[:2] == ("True", "Scheduled")
    assert op.kube.condition(RJ, "daily-analytics", "RedisReachable")["status"] == "True"
    assert ("Normal", "RedisReachable") in op.kube.reasons("daily-analytics")


async def test_a_cronjob_the_api_server_refuses_is_a_permanent_error_with_a_condition() -> None:
    op = await with_queue()
    op.kube.recurringjob("daily")
    op.kube.fail("apply", "CronJob", api_error(422, 'CronJob.batch "daily" is invalid: spec.timeZone'))
    outcome = await reconcile(op, "daily")
    assert outcome.permanent_error is not None
    status, reason, message = ready(op, "daily")
    assert (status, reason) == ("False", "CronJobRejected")
    assert message.startswith("the API server refused CronJob daily: ")
    assert "spec.timeZone" in message
    assert ("Warning", "CronJobRejected") in op.kube.reasons("daily")


@pytest.mark.parametrize("code", [403, 409])
async def test_a_cronjob_apply_that_may_work_later_is_retried_with_nothing_written(code: int) -> None:
    op = await with_queue()
    op.kube.recurringjob("daily")
    op.kube.fail("apply", "CronJob", api_error(code))
    with pytest.raises(k8s.ApiError):  # the handler: kopf.TemporaryError, retried after RETRY_DELAY
        await reconcile(op, "daily")
    assert op.kube.writes("apply_status", RJ) == []
    assert await reconcile(op, "daily") == recurring.Outcome()
    assert ready(op, "daily")[:2] == ("True", "Scheduled")


async def test_a_restarted_operator_writes_nothing_when_nothing_changed() -> None:
    op = await with_queue()
    op.kube.recurringjob("daily-analytics")
    await reconcile(op, "daily-analytics")
    rj_version = op.kube.objects[RJ, NAMESPACE, "daily-analytics"]["metadata"]["resourceVersion"]
    cron_version = cron(op, "daily-analytics")["metadata"]["resourceVersion"]
    events = len(op.kube.events)

    restarted = Operator.make(kube=op.kube, hub=op.hub)
    assert await reconcile(restarted, "daily-analytics") == recurring.Outcome()
    assert op.kube.objects[RJ, NAMESPACE, "daily-analytics"]["metadata"]["resourceVersion"] == rj_version
    assert cron(op, "daily-analytics")["metadata"]["resourceVersion"] == cron_version
    assert len(op.kube.events) == events


async def test_a_tick_reports_its_job_and_a_failed_job_gets_one_warning() -> None:
    op = await with_queue()
    op.kube.recurringjob("daily")
    await reconcile(op, "daily")
    tick = datetime.datetime(2026, 1, 6, 0, 0, tzinfo=datetime.UTC)
    job_id = cronjob.job_id(NAMESPACE, cronjob.scheduled_job_name("daily", tick))
    op.hub.servers[REDIS_URL].hset(
        keys.job_key(job_id), {"status": "failed", "origin": f"{NAMESPACE}.analytics"}
    )
    ticked = cron(op, "daily")
    ticked["status"] = {"lastScheduleTime": "2026-01-06T00:00:00Z"}
    assert op.recurring.cronjob_matters("MODIFIED", ticked)
    await op.recurring.cronjob_event("MODIFIED", ticked)
    status = op.kube.objects[RJ, NAMESPACE, "daily"]["status"]
    assert (status["lastJobId"], status["lastJobStatus"]) == (job_id, "failed")
    assert op.kube.reasons("daily").count(("Warning", "JobFailed")) == 1
    op.clock.tick(86400)  # a day on: the refresher writes a new nextScheduleTime, the job is still failed
    await op.recurring.refresh_all()
    assert op.kube.objects[RJ, NAMESPACE, "daily"]["status"]["nextScheduleTime"] == "2026-01-07T00:00:00Z"
    assert op.kube.reasons("daily").count(("Warning", "JobFailed")) == 1  # once per job, not per write
