"""The Sentinel URL form (``redis+sentinel://``): what it means, and clear refusals."""

from __future__ import annotations

import pytest

from jobqueue import _redis
from jobqueue._redis import SentinelURL, parse_sentinel


def test_hosts_service_database_and_credentials() -> None:
    url = parse_sentinel("redis+sentinel://jq:p%40ss@s1:26380,s2,[::1]:26381/mymaster/2")
    assert url.sentinels == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (url.service, url.db, url.tls) == ("mymaster", 2, False)
    assert url.redis_options == {"username": "jq", "password": "p@ss"}
    assert url.sentinel_options == {}


def test_a_password_alone_and_the_default_database() -> None:
    url = parse_sentinel("redis+sentinel://:secret@127.0.0.1/cache")
    assert (url.service, url.db) == ("cache", 0)
    assert url.redis_options == {"password": "secret"}


def test_options_for_the_redis_connections_and_for_the_sentinels() -> None:
    url = parse_sentinel(
        "rediss+sentinel://s1/svc/0?socket_timeout=1.5&ssl_ca_certs=/etc/ca.pem"
        "&sentinel_password=x&sentinel_username=watcher&sentinel_socket_timeout=0.5"
    )
    assert url.tls
    assert url.redis_options == {"socket_timeout": 1.5, "ssl_ca_certs": "/etc/ca.pem"}
    assert url.sentinel_options == {"password": "x", "username": "watcher", "socket_timeout": 0.5}


def test_the_scheme_decides() -> None:
    assert _redis.is_sentinel("redis+sentinel://s1/m")
    assert _redis.is_sentinel(" REDISS+SENTINEL://s1/m")
    assert not _redis.is_sentinel("redis://s1:26379/0")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://s1:26379", "service name"),
        ("redis+sentinel://s1/m/0/extra", "service name"),
        ("redis+sentinel://s1/m/zero", r"database \(after the service name\) must be a number"),
        ("redis+sentinel://s1:x/m", "port is not a number"),
        ("redis+sentinel://s1:70000/m", "port is not a number"),
        ("redis+sentinel://s1,,s2/m", "host is missing"),
        ("redis+sentinel:///m", "host is missing"),
        ("redis+sentinel://s1/m?db=3", "db belongs in the URL's path"),
        ("redis+sentinel://s1/m?sentinel_socket_timeout=soon", "sentinel_socket_timeout"),
        ("redis://s1/0", "not a Sentinel URL"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_sentinel(url)


def test_errors_never_quote_the_password() -> None:
    for url in (
        "redis+sentinel://u:hunter2@s1:x/m",
        "redis+sentinel://u:hunter2@s1/m/zero",
        "redis+sentinel://u:hunter2@/m",
    ):
        with pytest.raises(ValueError, match=r"Sentinel|database") as info:
            parse_sentinel(url)
        assert "hunter2" not in str(info.value)


def test_a_client_asks_the_sentinels_for_the_primary() -> None:
    """No connection is made until a command runs: the client's pool is a Sentinel pool for
    the service, with the database and credentials of the URL."""
    client = _redis.connect("redis+sentinel://jq:pw@s1,s2/mymaster/4", socket_timeout=3)
    pool = client.connection_pool
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 4
    assert (pool.connection_kwargs["username"], pool.connection_kwargs["password"]) == ("jq", "pw")
    assert pool.connection_kwargs["socket_timeout"] == 3
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26379]
    assert sentinels[0].connection_pool.connection_kwargs["socket_timeout"] == 3
    assert isinstance(parse_sentinel("redis+sentinel://s1/m"), SentinelURL)
