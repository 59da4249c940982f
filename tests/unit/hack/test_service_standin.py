"""The pod runner's stand-in for Services (hack/podrunner_services.py): which pods a Service
selects, which port it leads to, the names pods resolve, and the forwarding itself on real
loopback sockets (no cluster)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import podrunner
import podrunner_services as services

REDIS_CONTAINER = {"name": "redis", "ports": [{"name": "redis", "containerPort": 6379}]}


def test_a_selector_picks_pods_with_all_its_labels_and_an_empty_one_picks_none() -> None:
    assert services.selects({"app": "redis"}, {"app": "redis", "x": "1"})
    assert not services.selects({"app": "redis", "tier": "db"}, {"app": "redis"})
    assert not services.selects({}, {"app": "redis"})
    assert not services.selects(None, {"app": "redis"})


def test_target_port_by_number_by_name_or_the_service_port() -> None:
    assert services.target_port({"port": 6379, "targetPort": 7000}, REDIS_CONTAINER) == 7000
    assert services.target_port({"port": 80, "targetPort": "redis"}, REDIS_CONTAINER) == 6379
    assert services.target_port({"port": 6379}, REDIS_CONTAINER) == 6379
    assert services.target_port({"port": 80, "targetPort": "http"}, REDIS_CONTAINER) is None


def test_pods_resolve_the_names_cluster_dns_answers_short_ones_in_their_namespace_only() -> None:
    lines = services.hosts_lines({("prod", "redis"): "127.70.0.1", ("glec", "api"): "127.70.0.2"}, "prod")
    assert lines == [
        "127.70.0.2\tapi.glec.svc.cluster.local api.glec.svc api.glec",
        "127.70.0.1\tredis.prod.svc.cluster.local redis.prod.svc redis.prod redis",
    ]


def test_port_variables_that_name_a_declared_container_port_get_a_host_port_of_their_own() -> None:
    env = {"REDIS_PORT": "6379", "OTHER_PORT": "1234", "JOBQUEUE_METRICS_PORT": "9100", "SIZE": "6379"}
    assert podrunner.listen_ports(env, [6379]) == ["REDIS_PORT", "JOBQUEUE_METRICS_PORT"]


def service(name: str = "echo", ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    ports = ports or [{"port": 80, "targetPort": "echo"}]
    return {
        "metadata": {"namespace": "ns", "name": name},
        "spec": {"selector": {"app": name}, "ports": ports, **spec},
    }


async def _echo_server(reply: bytes) -> tuple[asyncio.Server, int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(reply + await reader.readexactly(1))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _ask(ip: str, port: int) -> bytes:
    """The reply to ``?``; b"" when the connection is closed (or reset) without one."""
    reader, writer = await asyncio.open_connection(ip, port)
    writer.write(b"?")  # (no half-close: the stand-in, like most clients, does not pass one on)
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def test_a_connection_reaches_the_backend_chosen_when_it_arrives() -> None:
    async def scenario() -> None:
        first, first_port = await _echo_server(b"first")
        second, second_port = await _echo_server(b"second")
        backends = {"now": [("127.0.0.1", first_port)]}
        asked: list[tuple[str, dict[str, str], int]] = []

        def lookup(namespace: str, selector: Any, port: Any) -> list[tuple[str, int]]:
            asked.append((namespace, dict(selector), port["port"]))
            return list(backends["now"])

        table = services.Services(lookup, log=lambda _: None)
        assert await table.apply(service())
        ip = table.addresses[("ns", "echo")]
        assert ip.startswith("127.")
        assert ip != "127.0.0.1"
        assert await _ask(ip, 80) == b"first?"
        backends["now"] = [("127.0.0.1", second_port)]  # the pod was replaced
        assert await _ask(ip, 80) == b"second?"
        backends["now"] = []  # no ready pod: the connection is closed at once
        assert await _ask(ip, 80) == b""
        assert asked[0] == ("ns", {"app": "echo"}, 80)
        assert not await table.apply(service())  # unchanged ports: same listener, hosts unchanged
        assert table.remove("ns", "echo")
        with pytest.raises(ConnectionRefusedError):
            await _ask(ip, 80)
        table.close()
        first.close()
        second.close()

    asyncio.run(scenario())


def test_services_without_a_selector_and_the_api_service_get_no_listener() -> None:
    async def scenario() -> None:
        table = services.Services(lambda *_: [], log=lambda _: None)
        assert not await table.apply(service(selector={}))
        assert not await table.apply(service(type="ExternalName"))
        api = service("kubernetes", [{"port": 443}])
        api["metadata"]["namespace"] = "default"
        assert not await table.apply(api)
        assert table.addresses == {}

    asyncio.run(scenario())
