"""The operator's log filter: kopf's success line of every routine handler and probe is
dropped, everything else (other handlers, warnings, other loggers) is kept."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import kopf
import pytest

from jobqueue_operator import __main__ as entry
from jobqueue_operator import handlers  # noqa: F401 (registers the handlers with kopf)
from jobqueue_operator.settings import Settings

#: The loggers configure_logging touches (restored after each test: logging is process-wide).
_TOUCHED = ("", "kopf.objects", "kopf.activities.probe", "httpx2", "httpcore2", "aiohttp.access")


@pytest.fixture
def configured() -> Iterator[None]:
    saved = {
        name: (
            logging.getLogger(name).level,
            list(logging.getLogger(name).handlers),
            list(logging.getLogger(name).filters),
        )
        for name in _TOUCHED
    }
    entry.configure_logging(Settings(log_format="plain"))
    yield
    for name, (level, log_handlers, filters) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = log_handlers
        logger.filters[:] = filters


def passes(logger: str, message: str, level: int = logging.INFO) -> bool:
    """Whether the filters of ``logger`` let a record through (as ``Logger.handle`` asks)."""
    record = logging.LogRecord(logger, level, __file__, 1, message, None, None)
    return bool(logging.getLogger(logger).filter(record))


def probe_ids() -> list[str]:
    # the registry's activity handlers are not public API; a kopf upgrade that moves them
    # fails this test loudly rather than letting a probe's line through unnoticed
    registered = kopf.get_default_registry()._activities.get_all_handlers()
    return [h.id for h in registered if h.activity is not None and h.activity.value == "probe"]


def test_every_probe_of_the_operator_is_quiet(configured: None) -> None:
    assert sorted(probe_ids()) == ["autoscaler", "sweep"]
    for probe in probe_ids():
        # kopf's wording: f"{handler} succeeded.", an activity handler reading "Activity '<id>'"
        assert not passes("kopf.activities.probe", f"Activity '{probe}' succeeded."), probe


def test_routine_watch_handlers_are_quiet(configured: None) -> None:
    for handler in ("worker_deployment_event", "jobqueue_deleted"):
        assert not passes("kopf.objects", f"Handler '{handler}' succeeded."), handler


def test_what_matters_still_shows(configured: None) -> None:
    # other handlers' successes (a reconcile, once per spec change)
    assert passes("kopf.objects", "Handler 'reconcile_jobqueue' succeeded.")
    # a routine handler or probe failing
    assert passes("kopf.activities.probe", "Activity 'autoscaler' failed with an exception.", logging.ERROR)
    assert passes("kopf.objects", "Handler 'worker_deployment_event' failed temporarily.", logging.WARNING)
    # startup activities are not routine (once per process)
    assert passes("kopf.activities.startup", "Activity 'startup' succeeded.")
