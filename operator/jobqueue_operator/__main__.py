"""``python -m jobqueue_operator`` / ``jobqueue-operator``: run the operator.

Reads the settings (:mod:`jobqueue_operator.settings`), sets up structured logging and the
``/metrics`` endpoint, and hands over to kopf: cluster-wide or in the configured
namespaces, standalone (one replica with ``strategy: Recreate``; kopf's peering would
not pause the operator's own loops anyway, kopf.md §1.6), with kopf's liveness endpoint
at ``/healthz``. SIGTERM stops it gracefully.
"""

from __future__ import annotations

import logging
import sys

import kopf

from jobqueue_operator import __version__, metrics
from jobqueue_operator import errors as operator_errors
from jobqueue_operator import settings as operator_settings


class _QuietRoutine(logging.Filter):
    """Drop kopf's "… succeeded" INFO lines of the routine handlers: the watch handlers run on
    every worker Deployment status change and the probes (``sweep``, ``autoscaler``) on every
    liveness check, and their success says nothing. Their failures (WARNING and above) still
    show. kopf words the line ``"{handler} succeeded."``, a handler reading ``Handler '<id>'``
    and a probe ``Activity '<id>'``; every probe of :mod:`jobqueue_operator.handlers` must be
    listed here (a unit test checks it)."""

    ROUTINE = ("Handler 'worker_deployment_event'", "Handler 'jobqueue_deleted'",
               "Activity 'sweep'", "Activity 'autoscaler'")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.getMessage().startswith(self.ROUTINE)


def configure_logging(config: operator_settings.Settings) -> None:
    """JSON lines (with the Kubernetes object of each message under ``k8s``) or plain text."""
    kopf.configure(log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
                   log_refkey="k8s")
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
    logging.getLogger(__name__).info(
        "jobqueue-operator %s starting: namespaces=%s, default Redis %s", __version__,
        ",".join(config.namespaces) or "<all>", "configured" if config.redis_url else "not configured")
    metrics.serve(config.metrics_port)
    from jobqueue_operator import handlers  # noqa: F401, PLC0415 (registers the handlers)

    kopf.run(
        clusterwide=config.clusterwide,
        namespaces=config.namespaces,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz" if config.health_port else None,
    )


if __name__ == "__main__":
    main()
