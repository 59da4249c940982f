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
    ],
)
def test_redact_removes_credentials(url: str, shown: str) -> None:
    assert redisq.redact(url) == shown


@pytest.mark.parametrize("url", ["redis://redis:6379/0", "rediss://:p@redis/3", "unix:///run/redis.sock"])
def test_valid_urls(url: str) -> None:
    redisq.check_url(url)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://redis:6379", "scheme"),
        ("redis://:6379/0", "no host"),
        ("redis://redis:port/0", "port"),
        ("redis://redis:6379/db", "database number"),
        ("", "scheme"),
    ],
)
def test_invalid_urls_are_config_errors(url: str, says: str) -> None:
    with pytest.raises(errors.RedisConfigError) as info:
        redisq.check_url(url)
    assert info.value.reason == "InvalidRedisURL"
    assert says in info.value.message
