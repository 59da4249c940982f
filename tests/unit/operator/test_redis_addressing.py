"""Redis URLs: validated before use, never shown with their password, and only the servers
the cluster admin allows for a JobQueue's own URL."""

from __future__ import annotations

import pytest

from jobqueue_operator import errors, hostpolicy, redisq, settings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@redis.jobs:6379/2", "redis://redis.jobs:6379/2"),
        ("rediss://user:hunter2@redis.jobs/0", "rediss://redis.jobs/0"),
        ("redis://localhost", "redis://localhost"),
        (
            "redis+sentinel://jq:hunter2@s1:26379,s2:26379/mymaster/3?sentinel_password=hunter3",
            "redis+sentinel://s1:26379,s2:26379/mymaster/3",
        ),
    ],
)
def test_redact_removes_credentials(url: str, shown: str) -> None:
    assert redisq.redact(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "redis://redis:6379/0",
        "rediss://:p@redis/3",
        "unix:///run/redis.sock",
        "redis+sentinel://s1,s2:26380/mymaster",
        "rediss+sentinel://u:p@s1/svc/2",
    ],
)
def test_valid_urls(url: str) -> None:
    redisq.check_url(url)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://redis:6379", "scheme"),
        ("redis://:6379/0", "no host"),
        ("redis://redis:port/0", "port"),
        ("redis://redis:6379/db", "database number"),
        ("redis+sentinel://s1:26379", "service name"),
        ("redis+sentinel://s1:port/mymaster", "port"),
        ("", "scheme"),
        ("redis://user:12345/xyz@redis:6379/0", "percent-encode"),
    ],
)
def test_invalid_urls_are_config_errors(url: str, says: str) -> None:
    with pytest.raises(errors.RedisConfigError) as info:
        redisq.check_url(url)
    assert info.value.reason == "InvalidRedisURL"
    assert says in info.value.message
    assert "12345" not in info.value.message


ALLOWED = ("*.redis.svc.cluster.local", "redis.example.com:6380", "10.20.0.0/16", "fd00::/8")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("redis://a.redis.svc.cluster.local:6379/0", ALLOWED),
        ("rediss://:pw@REDIS.example.com:6380/1", ALLOWED),
        ("redis://10.20.3.4/0", ALLOWED),
        ("redis://[fd00::1]:6379", ALLOWED),
        ("redis://anything:1/0", ()),  # no list: any host
        ("redis+sentinel://s1:26379,s2:26379/mymaster/0", ()),
    ],
)
def test_allowed_hosts(url: str, allowed: tuple[str, ...]) -> None:
    assert hostpolicy.refusal(url, allowed) is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("unix:///var/run/redis.sock", hostpolicy.UNIX_REFUSED),
        ("redis://redis.example.com:6379/0", hostpolicy.HOST_REFUSED),  # the wrong port
        ("redis://169.254.169.254:80/0", hostpolicy.HOST_REFUSED),
        ("redis://evil.redis.svc.cluster.local.attacker.io/0", hostpolicy.HOST_REFUSED),
        ("redis://10.20.0.1.nip.io/0", hostpolicy.HOST_REFUSED),  # a name is never an address
        # the Sentinels, not the URL, would name the server
        ("redis+sentinel://a.redis.svc.cluster.local:26379/mymaster/0", hostpolicy.SENTINEL_REFUSED),
    ],
)
def test_refused_urls_say_why_and_nothing_about_the_target(url: str, says: str) -> None:
    refused = hostpolicy.refusal(url, ALLOWED)
    assert refused == says
    target = url.split("://")[1].rstrip("/0")
    assert target not in refused


def test_unix_sockets_are_refused_even_without_a_list() -> None:
    assert hostpolicy.refusal("unix:///tmp/redis.sock", ()) == hostpolicy.UNIX_REFUSED


def test_allowed_hosts_setting_is_checked_at_start() -> None:
    config = settings.Settings.from_env({"JOBQUEUE_REDIS_ALLOWED_HOSTS": "redis.x:6380, 10.0.0.0/8 ,*.svc"})
    assert config.redis_allowed_hosts == ("redis.x:6380", "10.0.0.0/8", "*.svc")
    with pytest.raises(errors.SettingsError, match="JOBQUEUE_REDIS_ALLOWED_HOSTS='http://x'"):
        settings.Settings.from_env({"JOBQUEUE_REDIS_ALLOWED_HOSTS": "http://x"})


def test_isolation_setting() -> None:
    assert settings.Settings.from_env({}).redis_isolation == "none"
    isolated = settings.Settings.from_env({"JOBQUEUE_REDIS_ISOLATION": "Namespace"})
    assert isolated.redis_isolation == "namespace"
    with pytest.raises(errors.SettingsError, match="namespace or none"):
        settings.Settings.from_env({"JOBQUEUE_REDIS_ISOLATION": "db"})
    with pytest.raises(errors.SettingsError, match="unix://"):
        settings.Settings.from_env(
            {"JOBQUEUE_REDIS_ISOLATION": "namespace", "JOBQUEUE_REDIS_URL": "unix:///run/redis.sock"}
        )
