"""Redis URLs: validated before use, and never shown with their password."""

from __future__ import annotations

import pytest

from jobqueue_operator import errors, redisq


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@redis.jobs:6379/2", "redis://redis.jobs:6379/2"),
        ("rediss://user:hunter2@redis.jobs/0", "rediss://redis.jobs/0"),
        ("redis://localhost", "redis://localhost"),
        ("redis+sentinel://jq:hunter2@s1:26379,s2:26379/mymaster/3?sentinel_password=hunter3",
         "redis+sentinel://s1:26379,s2:26379/mymaster/3"),
    ],
)
def test_redact_removes_credentials(url: str, shown: str) -> None:
    assert redisq.redact(url) == shown


@pytest.mark.parametrize("url", ["redis://redis:6379/0", "rediss://:p@redis/3", "unix:///run/redis.sock",
                                 "redis+sentinel://s1,s2:26380/mymaster", "rediss+sentinel://u:p@s1/svc/2"])
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
    ],
)
def test_invalid_urls_are_config_errors(url: str, says: str) -> None:
    with pytest.raises(errors.RedisConfigError) as info:
        redisq.check_url(url)
    assert info.value.reason == "InvalidRedisURL"
    assert says in info.value.message
