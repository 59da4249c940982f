"""current_job() / progress inside and outside a job."""

from __future__ import annotations

import pytest

from jobqueue import JobContext, current_job, update_progress
from jobqueue.context import activate, deactivate


def test_outside_a_job() -> None:
    with pytest.raises(RuntimeError, match="only available while"):
        current_job()
    update_progress(50)  # no-op, so job functions stay callable from tests


def test_inside_a_job_progress_is_reported() -> None:
    seen: list[float] = []
    token = activate(JobContext("id1", "q", "m.f", 2, 3, seen.append))
    try:
        ctx = current_job()
        assert (ctx.id, ctx.queue, ctx.function, ctx.attempt, ctx.attempts) == ("id1", "q", "m.f", 2, 3)
        ctx.update_progress(10)
        update_progress(100)
    finally:
        deactivate(token)
    assert seen == [10.0, 100.0]
    with pytest.raises(RuntimeError):
        current_job()


@pytest.mark.parametrize("bad", [-1, 101, float("nan"), "50", True])
def test_progress_is_a_percentage(bad: object) -> None:
    ctx = JobContext("id1", "q", "m.f", 1, 1, lambda v: None)
    with pytest.raises(ValueError, match="from 0 to 100"):
        ctx.update_progress(bad)  # type: ignore[arg-type]
