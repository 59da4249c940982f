"""TLS (``rediss://``) and ACL users against a real redis-server configured for them: it speaks
only TLS (a private CA made here with openssl), its ``default`` user is off, and the project's
user may run everything but the ``@dangerous`` commands (FLUSHALL, CONFIG, KEYS, DEBUG …), as
managed Redis services commonly grant.

Asserted: a real ``jobqueue worker`` runs jobs, the producer API and the CLI work, and the
operator's Redis module polls and publishes — all through the one URL; a wrong password, a
missing CA, a plain ``redis://`` URL and a read-only user fail with errors that say so and
never show the password.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from whelpers import FN, publish, wait_for, worker_env, worker_process

import redisfarm
from jobqueue import JobSpec, _redis, enqueue_many, get_job
from jobqueue import settings as qsettings
from jobqueue_operator import errors, redisq

pytestmark = [pytest.mark.integration, pytest.mark.redis]

APP, APP_PASSWORD = "jq-app", "app-s3cret-pw"
READER, READER_PASSWORD = "jq-reader", "r3ader-pw"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[redisfarm.RedisProcess, Path]]:
    certs = redisfarm.make_certificates(tmp_path_factory.mktemp("tls"))
    server = redisfarm.tls_server(
        certs,
        "--user",
        "default",
        "off",
        "--user",
        APP,
        "on",
        f">{APP_PASSWORD}",
        "~*",
        "&*",
        "+@all",
        "-@dangerous",
        "--user",
        READER,
        "on",
        f">{READER_PASSWORD}",
        "~*",
        "&*",
        "+@read",
        "+@connection",
    )
    yield server, certs.ca
    server.stop()


def url_of(
    secure: tuple[redisfarm.RedisProcess, Path],
    user: str = APP,
    password: str = APP_PASSWORD,
    *,
    ca: bool = True,
    scheme: str = "rediss",
) -> str:
    server, ca_file = secure
    query = f"?ssl_ca_certs={ca_file}" if ca else ""
    return f"{scheme}://{user}:{password}@127.0.0.1:{server.port}/0{query}"


def test_workers_producers_and_the_cli_over_tls_as_an_acl_user(
    secure: tuple[redisfarm.RedisProcess, Path],
) -> None:
    import subprocess
    import sys

    url = url_of(secure)
    conn = _redis.connect(url)
    publish(conn, "secure")
    ids = [
        r.id
        for r in enqueue_many("secure", [JobSpec(f"{FN}add", [n, 1]) for n in range(20)], connection=conn)
    ]
    with worker_process(url, "secure", mode="thread", concurrency=4) as worker:
        wait_for(
            "20 jobs finished over TLS",
            lambda: all(get_job("secure", i, connection=conn).status == "finished" for i in ids),
            timeout=60,
        )
    assert "Traceback" not in worker.log(), worker.log()
    assert sorted(get_job("secure", i, connection=conn).result for i in ids) == list(range(1, 21))
    stats = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", "stats", "secure"],
        capture_output=True,
        text=True,
        env=worker_env(url, "cli"),
        timeout=60,
        check=False,
    )
    assert stats.returncode == 0, stats.stderr


def test_the_operator_polls_and_publishes_over_tls_as_an_acl_user(
    secure: tuple[redisfarm.RedisProcess, Path],
) -> None:
    url = url_of(secure)

    async def use() -> redisq.Poll:
        hub = redisq.RedisHub(timeout=2)
        try:
            await hub.publish(
                url,
                qsettings.QueueSettings.model_validate(
                    {
                        "queueName": "from-operator",
                        "imports": ["glec.jobs"],
                        "namespace": "ns",
                        "jobqueue": "q",
                    }
                ),
            )
            return await hub.poll(url, ["from-operator"])
        finally:
            hub.close()

    poll = asyncio.run(use())
    assert poll.queues["from-operator"].queued == 0
    assert qsettings.load(_redis.connect(url), "from-operator").jobqueue == "q"


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("wrong password", "AuthenticationError"),
        ("no CA", "certificate verify failed"),
        ("plain redis://", "ConnectionError"),
    ],
)
def test_refusals_say_why_and_never_show_the_password(
    secure: tuple[redisfarm.RedisProcess, Path], kind: str, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    """What a JobQueue's status shows names the server and no cause (a status is no port
    scanner, docs/security.md); the operator's log says why, for admins — neither with the
    password."""
    url = {
        "wrong password": url_of(secure, password="not-the-pw-at-all"),
        "no CA": url_of(secure, ca=False),
        "plain redis://": url_of(secure, scheme="redis", ca=False),
    }[kind]

    async def poll() -> None:
        hub = redisq.RedisHub(timeout=2)
        try:
            await hub.poll(url, ["secure"])
        finally:
            hub.close()

    with pytest.raises(errors.RedisUnavailable) as info:
        asyncio.run(poll())
    text = str(info.value)
    assert f"127.0.0.1:{secure[0].port}" in text
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == redisq.__name__)
    assert says.lower() in logged.lower(), logged
    for secret in (APP_PASSWORD, "not-the-pw-at-all"):
        assert secret not in text
        assert secret not in logged


def test_a_read_only_user_cannot_enqueue(secure: tuple[redisfarm.RedisProcess, Path]) -> None:
    publish(_redis.connect(url_of(secure)), "readonly")
    reader = _redis.connect(url_of(secure, READER, READER_PASSWORD))
    assert qsettings.load(reader, "readonly").queue_name == "readonly"  # reading is allowed
    with pytest.raises(redis.exceptions.NoPermissionError):
        enqueue_many("readonly", [JobSpec(f"{FN}add", [1, 2])], connection=reader)
