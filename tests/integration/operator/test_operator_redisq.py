"""The operator's Redis access (jobqueue_operator.redisq) against a real Redis."""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis

import devenv
from jobqueue import settings as qsettings
from jobqueue_operator import errors, redisq


def settings(queue: str, owner: str, generation: int = 1, namespace: str = "glec") -> qsettings.QueueSettings:
    return qsettings.QueueSettings(
        queue_name=queue, namespace=namespace, jobqueue=owner, generation=generation
    )


async def test_publish_replace_and_withdraw_only_ones_own(redis_url: str, redis_conn: redis.Redis) -> None:
    hub = redisq.RedisHub(timeout=2)
    try:
        await hub.publish(redis_url, settings("q", "a"))
        await hub.publish(redis_url, settings("q", "a", generation=2))  # its own: replaced
        assert qsettings.load(redis_conn, "q").generation == 2
        with pytest.raises(errors.QueueNameTaken) as taken:
            await hub.publish(redis_url, settings("q", "b"))
        assert taken.value.owner == ("glec", "a")
        assert not await hub.unpublish(redis_url, "q", owner=("glec", "b"))  # not b's to remove
        assert qsettings.load(redis_conn, "q").jobqueue == "a"
        await hub.publish(redis_url, settings("q", "b"), replace=("glec", "a"))  # a is gone
        assert qsettings.load(redis_conn, "q").jobqueue == "b"
        assert await hub.unpublish(redis_url, "q", owner=("glec", "b"))
        assert qsettings.published_queue_names(redis_conn) == set()
        assert not await hub.unpublish(redis_url, "q", owner=("glec", "b"))  # idempotent
    finally:
        hub.close()


async def test_published_reads_every_queue_in_one_go(redis_url: str, redis_conn: redis.Redis) -> None:
    for i in range(50):
        qsettings.publish(redis_conn, settings(f"q{i}", f"jq{i}"))
    redis_conn.sadd(qsettings.SETTINGS_INDEX_KEY, "broken")
    redis_conn.set(qsettings.SETTINGS_KEY_PREFIX + "broken", "not json")
    hub = redisq.RedisHub(timeout=2)
    try:
        found = await hub.published(redis_url)
    finally:
        hub.close()
    assert len(found) == 51
    assert found["broken"] is None
    assert found["q7"] == settings("q7", "jq7")


async def test_a_dead_redis_fails_fast_after_the_first_timeout() -> None:
    url = f"redis://:hunter2@127.0.0.1:{devenv.free_port()}/0"
    hub = redisq.RedisHub(timeout=1, retry_after=60)
    try:
        with pytest.raises(errors.RedisUnavailable) as first:
            await hub.published(url)
        with pytest.raises(errors.RedisUnavailable) as second:
            await hub.published(url)  # the breaker answers: no new connection attempt
        assert str(first.value) == str(second.value)
        assert "hunter2" not in str(first.value)
        assert "127.0.0.1" in str(first.value)
    finally:
        hub.close()


async def test_a_hanging_redis_does_not_block_the_event_loop(
    redis_server: devenv.RedisServer, redis_url: str
) -> None:
    hub = redisq.RedisHub(timeout=1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    task = asyncio.create_task(ticker())
    redis_server.pause()
    try:
        with pytest.raises(errors.RedisUnavailable):
            await hub.published(redis_url)
    finally:
        redis_server.resume()
        task.cancel()
        hub.close()
    assert ticks >= 3  # the loop kept running while a Redis call hung in its thread


async def test_dead_servers_cost_only_their_own_calls(redis_url: str) -> None:
    """Regression (issue 20): every Redis shared 4 threads with 2 s timeouts, so 8 dead URLs
    (of JobQueues pointing anywhere) delayed an unrelated queue's call by seconds. Twelve
    servers that accept connections and never answer: the healthy server's call is answered
    while every one of their calls is still waiting."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)  # connections are accepted by the kernel and never answered
    port = listener.getsockname()[1]
    dead = [f"redis://:pw{db}@127.0.0.1:{port}/{db}" for db in range(12)]
    hub = redisq.RedisHub(timeout=2)
    try:
        await hub.published(redis_url)
        stuck = [asyncio.create_task(hub.published(url)) for url in dead for _ in range(3)]
        await asyncio.sleep(0.3)  # every thread they can have is taken now
        assert await hub.published(redis_url) == {}
        assert not any(call.done() for call in stuck)
        for call in stuck:
            with pytest.raises(errors.RedisUnavailable) as failed:
                await call
            assert "did not answer" in str(failed.value)
            assert "pw" not in str(failed.value)
    finally:
        hub.close()
        listener.close()
