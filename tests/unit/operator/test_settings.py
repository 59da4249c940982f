"""Operator settings from JOBQUEUE_* environment variables."""

from __future__ import annotations

import pytest

from jobqueue_operator import errors
from jobqueue_operator.settings import Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert (s.metrics_port, s.health_port, s.log_format, s.log_level) == (8080, 8081, "json", "INFO")
    assert s.clusterwide
    assert s.serves("anything")


def test_every_variable() -> None:
    s = Settings.from_env(
        {
            "JOBQUEUE_NAMESPACES": " jobs, reports ,,",
            "JOBQUEUE_REDIS_URL": "redis://:secret@redis:6379/2",
            "JOBQUEUE_METRICS_PORT": "9090",
            "JOBQUEUE_HEALTH_PORT": "0",
            "JOBQUEUE_LOG_LEVEL": "debug",
            "JOBQUEUE_LOG_FORMAT": "PLAIN",
            "JOBQUEUE_PRIORITY_CLASS_PREFIX": "jobqueue-priority-",
            "JOBQUEUE_WORKER_IMAGE_PULL_POLICY": "Always",
            "JOBQUEUE_RESYNC_SECONDS": "12.5",
            "JOBQUEUE_REDIS_TIMEOUT_SECONDS": "1",
        }
    )
    assert s.namespaces == ("jobs", "reports")
    assert not s.clusterwide
    assert s.serves("jobs")
    assert not s.serves("default")
    assert s.redis_url == "redis://:secret@redis:6379/2"
    assert (s.metrics_port, s.health_port, s.log_level, s.log_format) == (9090, 0, "DEBUG", "plain")
    assert s.priority_class_prefix == "jobqueue-priority-"
    assert s.worker_image_pull_policy == "Always"
    assert (s.resync_seconds, s.redis_timeout_seconds) == (12.5, 1.0)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("METRICS_PORT", "http", "expected a number"),
        ("HEALTH_PORT", "70000", "from 0 to 65535"),
        ("LOG_LEVEL", "loud", "one of DEBUG"),
        ("LOG_FORMAT", "xml", "json or plain"),
        ("WORKER_IMAGE_PULL_POLICY", "Sometimes", "one of Always"),
        ("REDIS_URL", "http://redis:6379", "redis://"),
        ("RESYNC_SECONDS", "0", "from 1 to"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(errors.SettingsError, match=f"JOBQUEUE_{name}=") as info:
        Settings.from_env({f"JOBQUEUE_{name}": value})
    assert says in str(info.value)


def test_the_redis_password_never_appears_in_errors() -> None:
    with pytest.raises(errors.SettingsError) as info:
        Settings.from_env({"JOBQUEUE_REDIS_URL": "http://user:hunter2@redis"})
    assert "hunter2" not in str(info.value)


def test_leader_election_is_off_unless_a_lease_is_named() -> None:
    assert Settings.from_env({"POD_NAMESPACE": "ops"}).leader_lease is None
    s = Settings.from_env(
        {
            "JOBQUEUE_LEADER_LEASE": "jq-leader",
            "POD_NAMESPACE": "ops",
            "JOBQUEUE_LEADER_LEASE_SECONDS": "15",
            "JOBQUEUE_LEADER_RENEW_DEADLINE_SECONDS": "10",
            "JOBQUEUE_LEADER_RETRY_PERIOD_SECONDS": "2",
        }
    )
    assert s.leader_lease == ("jq-leader", "ops")
    assert (s.lease_seconds, s.renew_deadline_seconds, s.retry_period_seconds) == (15, 10.0, 2.0)


def test_shards_need_a_lease_and_no_budget() -> None:
    leader = {"JOBQUEUE_LEADER_LEASE": "jq-leader", "POD_NAMESPACE": "ops"}
    assert Settings.from_env(leader).shards == 0
    assert Settings.from_env({**leader, "JOBQUEUE_SHARDS": "8"}).shards == 8
    with pytest.raises(errors.SettingsError, match=r"JOBQUEUE_SHARDS='8'.*without JOBQUEUE_LEADER_LEASE"):
        Settings.from_env({"JOBQUEUE_SHARDS": "8"})
    with pytest.raises(errors.SettingsError, match=r"JOBQUEUE_SHARDS='8'.*JOBQUEUE_WORKER_BUDGET"):
        Settings.from_env({**leader, "JOBQUEUE_SHARDS": "8", "JOBQUEUE_WORKER_BUDGET": "5"})
    with pytest.raises(errors.SettingsError, match=r"JOBQUEUE_SHARDS='65'.*from 0 to 64"):
        Settings.from_env({**leader, "JOBQUEUE_SHARDS": "65"})


def test_a_lease_needs_the_pods_namespace() -> None:
    with pytest.raises(errors.SettingsError, match=r"JOBQUEUE_LEADER_LEASE='jq-leader'.*POD_NAMESPACE"):
        Settings.from_env({"JOBQUEUE_LEADER_LEASE": "jq-leader"})


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"), [("3", "3", "0.5"), ("3", "2", "2"), ("2", "2.5", "1")]
)
def test_lease_timings_must_nest(duration: str, deadline: str, retry: str) -> None:
    """The leader renews several times within its deadline and gives up before anyone may
    take over; the message names all three variables."""
    with pytest.raises(
        errors.SettingsError,
        match=r"JOBQUEUE_LEADER_RETRY_PERIOD_SECONDS=.*"
        r"JOBQUEUE_LEADER_RENEW_DEADLINE_SECONDS=.*JOBQUEUE_LEADER_LEASE_SECONDS=",
    ):
        Settings.from_env(
            {
                "JOBQUEUE_LEADER_LEASE_SECONDS": duration,
                "JOBQUEUE_LEADER_RENEW_DEADLINE_SECONDS": deadline,
                "JOBQUEUE_LEADER_RETRY_PERIOD_SECONDS": retry,
            }
        )
