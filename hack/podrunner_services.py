"""The pod runner's stand-in for Services (container mode): pods reach ``<svc>.<ns>.svc`` by name.

A dev-cluster stand-in, not kube-proxy and not cluster DNS. kwok runs no kube-proxy, and the
runner's containers share the host's network, so a Service's virtual IP leads nowhere. For
each Service with a selector the runner instead

* listens on a loopback address of its own (from 127.64.0.0/10, like the ``kubernetes``
  Service's stand-in in podrunner_containers), on each of the Service's ports;
* writes the Service's names into every pod's /etc/hosts at that address, as cluster DNS
  would answer them: ``<svc>.<ns>.svc.cluster.local``, ``<svc>.<ns>.svc``, ``<svc>.<ns>``,
  and the bare ``<svc>`` for pods of the same namespace (a pod's resolv.conf is the host's,
  so there is no search path to complete a short name). The files are rewritten in place
  when Services come and go;
* forwards each connection to a ready backend chosen when the connection arrives: a pod of
  the Service's namespace that the selector matches and whose container the runner is
  running, at the container port the Service's ``targetPort`` names (a number, or the name
  of one of the container's ``ports``). So a connection made after a pod is replaced reaches
  the new pod, as through kube-proxy; one already open ends with its pod. No backend: the
  connection is closed at once (a real Service without endpoints refuses it too).

Since every container listens on the host's network, two pods that declare the same
``containerPort`` (two Redis pods of two test namespaces) would collide. The runner gives such
a pod a free host port instead when it can tell the process which one: an environment
variable named ``…PORT`` whose value is one of the container's ``containerPort`` s (e.g. the
chart's Redis: ``REDIS_PORT=6379``, ``--port $(REDIS_PORT)``) gets the free port, and the
Service forwards there (podrunner's ``listen_ports``). Not emulated: ``externalName``,
``NodePort``/``LoadBalancer`` exposure, session affinity, UDP, Services without a selector
(hand-made Endpoints), environment variables of Services (``enableServiceLinks``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import podrunner_containers as containers

#: (namespace, selector, one of the Service's ``ports``) -> the (host, port) of each ready backend
Backends = Callable[[str, Mapping[str, str], Mapping[str, Any]], list[tuple[str, int]]]

API_SERVICE = ("default", "kubernetes")
"""Emulated by podrunner_containers.ServiceProxy (it has no selector: its endpoint is the API server)."""


# --------------------------------------------------------------------------------------
# Pure rules


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether a Service's selector picks a pod with ``labels``; an empty selector picks none
    (such a Service's endpoints are managed by hand)."""
    return bool(selector) and all((labels or {}).get(k) == v for k, v in (selector or {}).items())


def target_port(port: Mapping[str, Any], container: Mapping[str, Any]) -> int | None:
    """The container port a Service port leads to: ``targetPort`` as a number, or the
    container's port of that name (None: the container has none, so no endpoint), or the
    Service port itself when ``targetPort`` is not set."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    return next((p["containerPort"] for p in container.get("ports") or [] if p.get("name") == target), None)


def names(namespace: str, name: str, *, same_namespace: bool) -> list[str]:
    """The host names cluster DNS answers for Service ``name`` of ``namespace``."""
    full = [f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}.svc", f"{name}.{namespace}"]
    return [*full, name] if same_namespace else full


def hosts_lines(addresses: Mapping[tuple[str, str], str], namespace: str) -> list[str]:
    """/etc/hosts lines of the Services at ``addresses`` ((namespace, name) -> address) for a
    pod of ``namespace``, in a stable order."""
    return [
        f"{ip}\t{' '.join(names(ns, name, same_namespace=ns == namespace))}"
        for (ns, name), ip in sorted(addresses.items())
    ]


# --------------------------------------------------------------------------------------
# The listeners


@dataclass
class _Listener:
    ip: str
    servers: list[asyncio.Server]
    ports: tuple[int, ...]
    spec: Mapping[str, Any]


class Services:
    """One listener per Service with a selector; :meth:`apply` and :meth:`remove` follow the
    API server's Services; :meth:`hosts` gives a pod's /etc/hosts lines."""

    def __init__(self, backends: Backends, log: Callable[[str], None]) -> None:
        self.backends = backends
        self.log = log
        self._listeners: dict[tuple[str, str], _Listener] = {}

    @property
    def addresses(self) -> dict[tuple[str, str], str]:
        return {key: listener.ip for key, listener in self._listeners.items()}

    def hosts(self, namespace: str) -> list[str]:
        return hosts_lines(self.addresses, namespace)

    async def apply(self, service: Mapping[str, Any]) -> bool:
        """Follow a Service that was added or changed; whether the hosts files must change."""
        meta = service.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        spec = service.get("spec") or {}
        ports = tuple(p["port"] for p in spec.get("ports") or [] if p.get("protocol", "TCP") == "TCP")
        if key == API_SERVICE or not spec.get("selector") or not ports or spec.get("type") == "ExternalName":
            return self.remove(*key)
        current = self._listeners.get(key)
        if current is not None and current.ports == ports:
            current.spec = spec  # a new selector or targetPort counts from the next connection
            return False
        self.remove(*key)
        ip, servers = await containers.listen_on_loopback(
            lambda port: self._handler(key, port), ports, f"Service {key[0]}/{key[1]}"
        )
        self._listeners[key] = _Listener(ip, servers, ports, spec)
        self.log(f"service {key[0]}/{key[1]} at {ip}:{','.join(map(str, ports))}")
        return True

    def remove(self, namespace: str, name: str) -> bool:
        listener = self._listeners.pop((namespace, name), None)
        if listener is None:
            return False
        for server in listener.servers:
            server.close()
        return True

    def keep_only(self, keys: set[tuple[str, str]]) -> bool:
        """Drop the listeners of Services not in ``keys`` (after a re-list)."""
        gone = [key for key in self._listeners if key not in keys]
        for key in gone:
            self.remove(*key)
        return bool(gone)

    def close(self) -> None:
        for key in list(self._listeners):
            self.remove(*key)

    def _handler(self, key: tuple[str, str], port: int) -> containers.Handler:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            listener = self._listeners.get(key)
            spec = listener.spec if listener else {}
            port_spec = next((p for p in spec.get("ports") or [] if p["port"] == port), None)
            candidates = self.backends(key[0], spec.get("selector") or {}, port_spec) if port_spec else []
            random.shuffle(candidates)  # kube-proxy's iptables mode picks a backend at random too
            for host, backend_port in candidates:
                try:
                    up_reader, up_writer = await asyncio.open_connection(host, backend_port)
                except OSError:
                    continue  # not listening (yet): the next backend
                await containers.splice(reader, writer, up_reader, up_writer)
                return
            with contextlib.suppress(OSError):
                writer.close()

        return serve
