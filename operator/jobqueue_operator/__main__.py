"""``python -m jobqueue_operator`` / ``jobqueue-operator``: run the operator.

Reads the settings (:mod:`jobqueue_operator.settings`), sets up structured logging and the
``/metrics`` endpoint, and hands over to kopf: cluster-wide or in the configured
namespaces, standalone (without kopf's peering), with kopf's liveness endpoint at
``/healthz``. SIGTERM stops it gracefully.

With ``JOBQUEUE_LEADER_LEASE`` set (the chart's default, two replicas) the process first
stands by as a candidate for that Lease (:mod:`jobqueue_operator.leader`), answering
``/healthz`` itself, and runs kopf only once it holds the Lease — every handler and every
loop of the operator, not just the loops: kopf keeps each object's handling state in the
object's annotations, so two kopf instances on the same objects collide, and a handler
skipped on a standby (a ``when=`` filter) still makes kopf record the change as handled
(docs/operator.md, "Two replicas"). On SIGTERM the leader stops kopf and then releases the
Lease, so the standby takes over at its next look; if it loses the Lease (could not renew
in time, or someone else holds it) it stops the operator's loops at once, stops kopf and
exits with status 1, to come back as a fresh candidate.

With ``JOBQUEUE_SHARDS`` as well, every replica also takes part in the autoscaler's shards
(:mod:`jobqueue_operator.sharding`) for its whole life: while it stands by it runs a kopf
with only the autoscaler's indexes and the autoscaler over its shards (nothing that writes
kopf's annotations); once it leads, that kopf stops and the full one starts, whose
autoscaler again scales only this replica's shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from typing import Any, Final

import kopf
from aiohttp import web

from jobqueue_operator import __version__, k8s, kopfpatch, leader, metrics, sharding
from jobqueue_operator import errors as operator_errors
from jobqueue_operator import settings as operator_settings

logger = logging.getLogger(__name__)

#: Seconds a leader that lost its Lease gives kopf to stop before the process exits anyway.
STOP_SECONDS: Final = 10.0


class _QuietRoutine(logging.Filter):
    """Drop kopf's "… succeeded" INFO lines of the routine handlers: the watch handlers run on
    every worker Deployment status change and the probes (``sweep``, ``autoscaler``) on every
    liveness check, and their success says nothing. Their failures (WARNING and above) still
    show. kopf words the line ``"{handler} succeeded."``, a handler reading ``Handler '<id>'``
    and a probe ``Activity '<id>'``; every probe of :mod:`jobqueue_operator.handlers` must be
    listed here (a unit test checks it)."""

    ROUTINE = (
        "Handler 'worker_deployment_event'",
        "Handler 'jobqueue_deleted'",
        "Activity 'sweep'",
        "Activity 'autoscaler'",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.getMessage().startswith(self.ROUTINE)


def configure_logging(config: operator_settings.Settings) -> None:
    """JSON lines (with the Kubernetes object of each message under ``k8s``) or plain text."""
    kopf.configure(
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="k8s",
    )
    logging.getLogger().setLevel(config.log_level)
    # one INFO line per API request would drown everything else
    for noisy in ("httpx2", "httpcore2", "aiohttp.access"):  # per request (and per liveness probe)
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    for name in ("kopf.objects", "kopf.activities.probe"):
        logging.getLogger(name).addFilter(_QuietRoutine())


def main() -> None:
    try:
        config = operator_settings.Settings.from_env()
    except operator_errors.SettingsError as e:
        print(f"jobqueue-operator: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(config)
    logger.info(
        "jobqueue-operator %s starting: namespaces=%s, default Redis %s, leader election %s",
        __version__,
        ",".join(config.namespaces) or "<all>",
        "configured" if config.redis_url else "not configured",
        "on Lease {1}/{0}".format(*config.leader_lease) if config.leader_lease else "off",
    )
    metrics.serve(config.metrics_port)
    kopfpatch.install()  # before any kopf starts: its start-up readiness, linear in the objects
    from jobqueue_operator import handlers  # noqa: F401, PLC0415 (registers the handlers)

    if config.leader_lease is None:
        kopf.run(**_kopf_options(config), memo=kopf.Memo(config=config))
    else:
        raise SystemExit(asyncio.run(elected(config)))


def _kopf_options(config: operator_settings.Settings) -> dict[str, Any]:
    liveness = f"http://0.0.0.0:{config.health_port}/healthz" if config.health_port else None
    return {
        "clusterwide": config.clusterwide,
        "namespaces": config.namespaces,
        "standalone": True,
        "liveness_endpoint": liveness,
    }


class Elections:
    """The leader election and the shard table (:mod:`.leader`, :mod:`.sharding`), on a thread
    and an event loop of their own, with their own API client.

    A takeover keeps the operator's event loop busy for seconds (kopf lists every object again
    and resumes every JobQueue): with 1,000 JobQueues on 2 cores, renewals made from that loop
    missed their 2 s deadline every time, and each new leader gave its Lease up seconds after
    taking it (benchmarks/bench_autoscaler_shards.py). On their own thread they go on whatever
    that loop does (the GIL changes hands every few milliseconds). The operator's side only
    reads their state (:meth:`leader.Elector.valid`, :meth:`sharding.ShardTable.holds`) and
    waits for :attr:`won` and :attr:`lost`, set on its own loop."""

    def __init__(self, config: operator_settings.Settings) -> None:
        assert config.leader_lease is not None
        self._config = config
        self._home = asyncio.get_running_loop()
        self.won, self.lost = asyncio.Event(), asyncio.Event()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.elector: leader.Elector
        self.shards: sharding.ShardTable | None = None
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._run(),), name="elections", daemon=True
        )

    async def start(self) -> None:
        self._thread.start()
        if not await asyncio.to_thread(self._ready.wait, 30):
            raise RuntimeError("the elections' thread did not start")

    async def stop(self) -> None:
        """Stop campaigning and release whatever is held (the leader Lease, shards)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join, STOP_SECONDS)

    async def _run(self) -> None:
        config = self._config
        assert config.leader_lease is not None
        name, namespace = config.leader_lease
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        kube = k8s.Kube.connect()
        self.elector = leader.Elector(
            kube,
            namespace=namespace,
            name=name,
            identity=leader.identity(),
            timing=leader.Timing(
                lease_seconds=config.lease_seconds,
                renew_deadline=config.renew_deadline_seconds,
                retry_period=config.retry_period_seconds,
            ),
        )
        tasks = [asyncio.create_task(self._campaign(), name="leader-lease")]
        if config.shards:
            self.shards = sharding.ShardTable(
                kube,
                namespace=namespace,
                lease=name,
                identity=self.elector.identity,
                count=config.shards,
                timing=self.elector.timing,
            )
            tasks.append(asyncio.create_task(self.shards.run(), name="shards"))
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.elector.release()
            if self.shards is not None:
                await self.shards.release()
            await kube.close()

    async def _campaign(self) -> None:
        await self.elector.acquire()
        self._home.call_soon_threadsafe(self.won.set)
        try:
            await self.elector.hold()
        finally:  # (lost, or anything unexpected that ended the renewals: the leader stands down)
            self._home.call_soon_threadsafe(self.lost.set)


async def elected(config: operator_settings.Settings) -> int:
    """Stand by until this process holds the Lease, then run the operator while it does; the
    exit status."""
    elections = Elections(config)
    await elections.start()
    try:
        if not await _stand_by(elections, config):
            return 0
        return await _lead(elections, config)
    finally:
        await elections.stop()  # (the operator has stopped acting: release the Lease)


async def _stand_by(elections: Elections, config: operator_settings.Settings) -> bool:
    """Wait for the Lease, serving ``/healthz`` (and, with shards, scaling this replica's
    shards); False if SIGTERM/SIGINT came first."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    health = await _standby_health(elections.elector, config.health_port) if config.health_port else None
    winning = asyncio.create_task(elections.won.wait())
    stopping = asyncio.create_task(stop.wait())
    scaling = None
    if elections.shards is not None:
        from jobqueue_operator import handlers  # noqa: PLC0415 (imported by main already)

        kopf_stop, kopf_ready = asyncio.Event(), asyncio.Event()
        signals = asyncio.create_task(_signals_stop(kopf_ready, stop), name="signals-to-stop-flag")
        options = {**_kopf_options(config), "liveness_endpoint": None}
        scaling = asyncio.create_task(
            kopf.operator(
                **options,
                registry=handlers.SHARD_REGISTRY,
                stop_flag=kopf_stop,
                ready_flag=kopf_ready,
                memo=kopf.Memo(config=config, owns=elections.shards.holds),
            ),
            name="standby-autoscaler",
        )
    try:
        waiting = {winning, stopping} if scaling is None else {winning, stopping, scaling}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if scaling is not None and scaling.done() and not stop.is_set():
            # its shards would stay held and unscaled: exit, so that the pod restarts and the
            # shards go to the others meanwhile
            raise RuntimeError("the standby's autoscaler (kopf) stopped on its own") from scaling.exception()
    finally:
        for task in (winning, stopping):
            task.cancel()
        if scaling is not None:
            kopf_stop.set()  # (its cleanup stops the autoscaler before the full kopf starts)
            try:
                await asyncio.wait_for(scaling, STOP_SECONDS)
            except Exception:
                logger.exception("the standby's autoscaler did not stop cleanly")
            signals.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if health is not None:
            await health.cleanup()
    if stop.is_set():
        logger.info("stopped while standing by")
        return False
    return True


async def _standby_health(elector: leader.Elector, port: int) -> web.AppRunner:
    """``/healthz`` of a standby: alive while it is a candidate (kopf's own endpoint takes the
    port over once this process leads)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "role": "standby",
                "lease": f"{elector.namespace}/{elector.name}",
                "leader": elector.holder or None,
            }
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 (the probe comes from the kubelet)
    return runner


async def _signals_stop(ready: asyncio.Event, stop: asyncio.Event) -> None:
    """Once kopf runs, let SIGTERM/SIGINT set the stop flag instead of kopf's own signal
    handling: kopf then stops the same way, but its task waiting on a stop flag that is never
    set would hold up its exit by 5 s — and so the hand-over, which waits for the exit."""
    await ready.wait()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def _lead(elections: Elections, config: operator_settings.Settings) -> int:
    from jobqueue_operator import handlers  # noqa: PLC0415 (imported by main already)

    elector = elections.elector
    memo = kopf.Memo(config=config, acting=elector.valid)  # (the autoscaler checks it before each write)
    if elections.shards is not None:
        memo.owns = elections.shards.holds
    stop, ready = asyncio.Event(), asyncio.Event()
    # created before kopf starts: kopf cancels, when it stops, only the tasks started after it
    losing = asyncio.create_task(elections.lost.wait(), name="leader-lost")
    signals = asyncio.create_task(_signals_stop(ready, stop), name="signals-to-stop-flag")
    running = asyncio.create_task(
        kopf.operator(**_kopf_options(config), stop_flag=stop, ready_flag=ready, memo=memo)
    )
    await asyncio.wait({losing, running}, return_when=asyncio.FIRST_COMPLETED)
    signals.cancel()
    if running.done():  # SIGTERM (or kopf failed): the operator has stopped acting, hand over
        losing.cancel()
        running.result()
        return 0
    handlers.stand_down(memo)
    stop.set()
    try:
        await asyncio.wait_for(running, STOP_SECONDS)
    except Exception:
        logger.exception("the operator did not stop cleanly after losing the Lease")
    logger.error(
        "lost the leader Lease %s/%s: exiting, to rejoin as a standby", elector.namespace, elector.name
    )
    return 1


if __name__ == "__main__":
    main()
