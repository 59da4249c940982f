"""The autoscaler's operator settings: JOBQUEUE_POLL_INTERVAL and JOBQUEUE_WORKER_BUDGET."""

from __future__ import annotations

import pytest

from jobqueue_operator import errors
from jobqueue_operator.settings import Settings


def test_defaults_poll_every_second_without_a_budget() -> None:
    config = Settings.from_env({})
    assert config.poll_interval == 1.0
    assert config.worker_budget is None


def test_zero_turns_the_autoscaler_off_and_a_budget_is_a_pod_count() -> None:
    config = Settings.from_env({"JOBQUEUE_POLL_INTERVAL": "0", "JOBQUEUE_WORKER_BUDGET": "40"})
    assert config.poll_interval == 0
    assert config.worker_budget == 40


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POLL_INTERVAL", "0.01"),
        ("POLL_INTERVAL", "-1"),
        ("POLL_INTERVAL", "soon"),
        ("WORKER_BUDGET", "-3"),
        ("WORKER_BUDGET", "1.5"),
    ],
)
def test_bad_values_stop_the_operator_with_the_variable_named(name: str, value: str) -> None:
    with pytest.raises(errors.SettingsError, match=f"JOBQUEUE_{name}"):
        Settings.from_env({f"JOBQUEUE_{name}": value})
