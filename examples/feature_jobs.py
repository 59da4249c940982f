"""The jobs of examples/features.py (the runnable examples of the feature pages in docs/)."""

from __future__ import annotations

import os
import time

from jobqueue import current_job, job


@job
def send_email(to: str) -> str:
    """Fails while the (pretend) mail relay is down: ``RELAY_DOWN`` is set."""
    if os.environ.get("RELAY_DOWN"):
        raise ConnectionError(f"mail relay down, cannot send to {to}")
    return f"sent to {to}"


@job
def slow_export(seconds: float) -> str:
    """A long job (process mode: a cancel kills its process)."""
    time.sleep(seconds)
    return "exported"


@job
def nightly_export(rows: int) -> int:
    """A long job for thread mode: it checks ``current_job().cancel_requested`` between steps
    and returns early (it then ends canceled); threads cannot be killed."""
    for i in range(rows):
        if current_job().cancel_requested:
            return i
        time.sleep(0.01)
    return rows


@job
def quote(amount: float) -> dict[str, float]:
    """A fast job a caller waits for (a price quote); returns when it ended (time.time())."""
    return {"total": round(amount * 1.1, 2), "ended": time.time()}


@job
def vehicle_emissions(vehicle: str, km: float) -> float:
    """A flow's child: one vehicle's CO2e for the month, kg (a vehicle without data fails)."""
    if km < 0:
        raise ValueError(f"no odometer data for {vehicle}")
    return round(km * 0.12, 1)


@job
def fleet_report(fleet: str) -> dict[str, object]:
    """A flow's parent: runs once every vehicle is done, sums their results, names the gaps."""
    ctx = current_job()
    ended = ctx.dependencies()  # id -> JobInfo (status, failed_reason, result), or None
    return {
        "fleet": fleet,
        "kg": round(sum(ctx.dependency_results().values()), 1),
        "missing": sorted(i for i, info in ended.items() if info is None or info.status != "finished"),
    }
