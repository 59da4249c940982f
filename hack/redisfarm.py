"""Redis set-ups beyond one plain server, all real processes on 127.0.0.1, for tests and
benchmarks: a primary with a replica watched by three Sentinels (Debian's ``redis-sentinel``),
a server that speaks only TLS (certificates made here with ``openssl``), and ACL users.

    with redisfarm.SentinelGroup().start() as group:
        url = group.url(db=0)            # redis+sentinel://127.0.0.1:p1,…/jq-primary/0
        group.fail_primary()             # SIGKILL the current primary
        group.wait_failover()            # the Sentinels promoted the replica

Each process gets a free port and a temporary directory; :meth:`stop` (or leaving the
``with`` block) ends them and removes the directories.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

import devenv

SERVICE = "jq-primary"


@dataclass
class RedisProcess(devenv.RedisServer):
    """One ``redis-server`` (or ``redis-sentinel``) with the given arguments (stopped, paused
    and resumed as :class:`devenv.RedisServer`)."""

    args: list[str] = field(default_factory=list)
    exe: str = "redis-server"
    #: a TLS server answers no plain ``PING``: :meth:`start` then waits for the port only
    tls: bool = False

    def start(self, config: str | None = None) -> RedisProcess:
        """Start it (``config``: the text of a config file to start from, which the process may
        rewrite, as Sentinel does) and wait until it answers."""
        exe = shutil.which(self.exe)
        if not exe:
            raise devenv.SetupError(devenv.MISSING_TOOL.format(tool=self.exe))
        argv = [exe]
        if config is not None:
            conf = self.workdir / f"{self.exe}.conf"
            conf.write_text(config)
            argv.append(str(conf))
        else:
            argv += ["--port", str(self.port)]
        argv += ["--bind", "127.0.0.1", "--dir", str(self.workdir), "--logfile", str(self.log), *self.args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        devenv.wait_until(
            f"{self.exe} on :{self.port}",
            self.answers,
            timeout=20,
            gone=lambda: f"exited: {self.log.read_text()[-2000:]}" if self.exited() else None,
        )
        return self

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.exe}.log"

    def exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def answers(self) -> bool:
        try:
            if self.tls:
                with contextlib.closing(socket.create_connection(("127.0.0.1", self.port), timeout=1)):
                    return True
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except (OSError, redis.RedisError):
            return False

    def kill(self) -> None:
        """SIGKILL: gone at once, nothing saved or handed over (a crashed or lost machine)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


_PLAIN: list[str] = ["--save", "", "--appendonly", "no", "--databases", "64", "--loglevel", "notice"]


@dataclass
class SentinelGroup:
    """A primary and a replica of it, watched by three Sentinels under :data:`SERVICE`
    (quorum 2, a primary is down after ``down_after_ms`` without answering)."""

    down_after_ms: int = 1000
    failover_timeout_ms: int = 5000
    servers: list[RedisProcess] = field(default_factory=list)
    sentinels: list[RedisProcess] = field(default_factory=list)

    def start(self) -> SentinelGroup:
        primary = RedisProcess(args=list(_PLAIN)).start()
        replica = RedisProcess(args=[*_PLAIN, "--replicaof", "127.0.0.1", str(primary.port)]).start()
        self.servers = [primary, replica]
        devenv.wait_until(
            "the replica in sync",
            lambda: redis.Redis(port=replica.port).info("replication").get("master_link_status") == "up",
            timeout=30,
        )
        for _ in range(3):
            sentinel = RedisProcess(args=[], exe="redis-sentinel")
            sentinel.start(
                config="\n".join(
                    [
                        f"port {sentinel.port}",
                        f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2",
                        f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
                        f"sentinel failover-timeout {SERVICE} {self.failover_timeout_ms}",
                        f"sentinel parallel-syncs {SERVICE} 1",
                        "",
                    ]
                )
            )
            self.sentinels.append(sentinel)

        def agreed() -> bool:
            for s in self.sentinels:
                state: dict[str, Any] = redis.Redis(port=s.port).sentinel_master(SERVICE)  # type: ignore[assignment]
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
            return True

        devenv.wait_until("the Sentinels seeing each other and the replica", agreed, timeout=60)
        return self

    def __enter__(self) -> SentinelGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for p in [*self.sentinels, *self.servers]:
            p.stop()

    def url(self, db: int = 0, *, credentials: str = "", tls: bool = False, query: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        scheme = "rediss+sentinel" if tls else "redis+sentinel"
        return f"{scheme}://{credentials}{hosts}/{SERVICE}/{db}{'?' + query if query else ''}"

    def primary_port(self) -> int:
        """The primary's port as the first Sentinel that answers says."""
        for s in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                return _primary_of(s)
        raise AssertionError("no Sentinel answers")

    def primary(self) -> RedisProcess:
        port = self.primary_port()
        return next(p for p in self.servers if p.port == port)

    def fail_primary(self) -> tuple[int, float]:
        """SIGKILL the current primary; its port and the unix time."""
        victim = self.primary()
        at = time.time()
        victim.kill()
        return victim.port, at

    def wait_failover(self, old_port: int, timeout: float = 60) -> float:
        """Wait until every Sentinel names another primary and it accepts writes; the unix time."""

        def promoted() -> bool:
            ports = set()
            for s in self.sentinels:
                try:
                    ports.add(_primary_of(s))
                except redis.RedisError:
                    return False
            if len(ports) != 1 or old_port in ports:
                return False
            role: Any = redis.Redis(port=ports.pop(), socket_timeout=1).role()
            return bool(role[0] in (b"master", "master"))

        devenv.wait_until("the Sentinels' failover", promoted, timeout=timeout, interval=0.05)
        return time.time()


def _primary_of(sentinel: RedisProcess) -> int:
    # (redis-py's stubs type this reply loosely: it is (host, port), or None if the name is unknown)
    address = redis.Redis(port=sentinel.port, socket_timeout=1).sentinel_get_master_addr_by_name(SERVICE)
    assert isinstance(address, tuple | list), address
    return int(address[1])


# --------------------------------------------------------------------------------------
# TLS


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path) -> Certificates:
    """A private CA and a server certificate it signed for 127.0.0.1 and localhost (openssl)."""
    exe = shutil.which("openssl")
    if not exe:
        raise devenv.SetupError(devenv.MISSING_TOOL.format(tool="openssl"))
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt")
    )
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run([exe, *args], check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=jobqueue test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    key.chmod(0o600)
    return Certificates(ca, cert, key)


def tls_server(certs: Certificates, *extra: str) -> RedisProcess:
    """A redis-server that speaks only TLS (no plain port); clients need not present a
    certificate. ``extra``: more arguments (e.g. ``--user …`` ACL rules)."""
    server = RedisProcess(
        args=[
            *_PLAIN,
            "--tls-cert-file",
            str(certs.cert),
            "--tls-key-file",
            str(certs.key),
            "--tls-ca-cert-file",
            str(certs.ca),
            "--tls-auth-clients",
            "no",
            *extra,
        ],
        tls=True,
    )
    server.args = ["--port", "0", "--tls-port", str(server.port), *server.args]  # (the last --port wins)
    return server.start()
