"""Example jobs for the demo: the seed's job kinds (GLEC API), self-contained.

The seed's processors call a database, a realtime service and an ML service; here each job
does the same *shape* of work on its own data so the demo runs anywhere: short I/O waits
stand in for database and network calls, report generation really writes (and fsyncs) its
report to disk, and dispatch optimisation is a real (small) vehicle-routing optimisation.
The manifests in ``manifests/samples/`` allow-list this module (``worker.imports:
[glec_jobs]``); the dev pod runner puts ``examples/`` on ``PYTHONPATH``.

Async functions run on queues whose workers use ``mode: async`` (notifications, audit log,
e-mail); blocking ones on ``thread`` queues (EI and order updates, DTG sync, reports,
analytics, clean-up); CPU-bound ones on ``process`` queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import os
import random
import re
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import redis

from jobqueue import enqueue, job, update_progress

#: Emission-intensity grades of the seed's EI scale (lower EI is better).
EI_GRADES = ((60.0, "A"), (80.0, "B"), (100.0, "C"), (130.0, "D"), (math.inf, "E"))


class TransientError(Exception):
    """A failure worth retrying (a timeout talking to a downstream service)."""


def _io(seconds: float) -> None:
    """Stand-in for a database or HTTP round trip."""
    time.sleep(seconds * random.uniform(0.5, 1.5))


async def _aio(seconds: float) -> None:
    await asyncio.sleep(seconds * random.uniform(0.5, 1.5))


@functools.cache
def _redis() -> redis.Redis:
    """One connection pool per worker process for fan-out enqueues ($JOBQUEUE_REDIS_URL)."""
    return redis.Redis.from_url(os.environ["JOBQUEUE_REDIS_URL"])


# --- ei:update (thread) -------------------------------------------------------------------


def ei_grade(ei: float) -> str:
    return next(grade for bound, grade in EI_GRADES if ei < bound)


@job
def update_ei(fleet_id: str, new_ei: float) -> dict[str, Any]:
    """Fleet emission-intensity update: validate, store, invalidate cache, publish."""
    if not 0 <= new_ei <= 200:
        raise ValueError(f"EI value out of range (0-200): {new_ei}")
    _io(0.01)  # fetch current EI
    update_progress(20)
    _io(0.02)  # update database
    update_progress(50)
    _io(0.005)  # invalidate cache
    update_progress(70)
    _io(0.005)  # publish realtime update
    update_progress(100)
    return {"fleet_id": fleet_id, "new_ei": new_ei, "grade": ei_grade(new_ei)}


# --- proposal:ranking (process) --------------------------------------------------------------


@job
def rank_proposals(
    bid_id: str, proposals: Sequence[dict[str, float]], weights: dict[str, float] | None = None
) -> dict[str, Any]:
    """Recompute composite scores of a bid's proposals and rank them (price, EI, on-time rate)."""
    w = weights or {"price": 0.5, "ei": 0.3, "on_time": 0.2}
    if not proposals:
        return {"bid_id": bid_id, "ranked_count": 0}
    prices = [p["price"] for p in proposals]
    eis = [p["ei"] for p in proposals]
    lo_p, hi_p, lo_e, hi_e = min(prices), max(prices), min(eis), max(eis)

    def norm(v: float, lo: float, hi: float) -> float:
        return 1.0 if hi == lo else 1 - (v - lo) / (hi - lo)  # lower is better

    scored = sorted(
        (
            {
                **p,
                "score": w["price"] * norm(p["price"], lo_p, hi_p)
                + w["ei"] * norm(p["ei"], lo_e, hi_e)
                + w["on_time"] * p.get("on_time", 0.9),
            }
            for p in proposals
        ),
        key=lambda p: -p["score"],
    )
    update_progress(100)
    return {"bid_id": bid_id, "ranked_count": len(scored), "top_score": round(scored[0]["score"], 4)}


# --- order:status-update (thread) ----------------------------------------------------------

ORDER_FLOW = {
    "created": {"assigned", "cancelled"},
    "assigned": {"picked_up", "cancelled"},
    "picked_up": {"delivered"},
    "delivered": set(),
    "cancelled": set(),
}


@job
def update_order_status(order_id: str, current: str, new: str) -> dict[str, str]:
    """Move an order along its life cycle; an impossible transition fails the job for good."""
    if new not in ORDER_FLOW.get(current, set()):
        raise ValueError(f"order {order_id}: cannot go from {current!r} to {new!r}")
    _io(0.015)
    return {"order_id": order_id, "status": new}


# --- dispatch:optimize (process) -------------------------------------------------------------


def _dist(a: Sequence[float], b: Sequence[float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _route_length(depot: Sequence[float], stops: list[Sequence[float]]) -> float:
    path = [depot, *stops, depot]
    return sum(_dist(path[i], path[i + 1]) for i in range(len(path) - 1))


def _two_opt(depot: Sequence[float], stops: list[Sequence[float]]) -> list[Sequence[float]]:
    """Reverse route segments while that shortens the route (classic 2-opt)."""
    best = stops[:]
    improved = True
    while improved:
        improved = False
        for i in range(len(best) - 1):
            for k in range(i + 1, len(best)):
                candidate = best[:i] + best[i : k + 1][::-1] + best[k + 1 :]
                if _route_length(depot, candidate) < _route_length(depot, best) - 1e-9:
                    best, improved = candidate, True
    return best


@job
def optimize_dispatch(
    batch_id: str,
    orders: Sequence[dict[str, Any]],
    vehicles: Sequence[dict[str, Any]],
    depot: Sequence[float] = (0.0, 0.0),
) -> dict[str, Any]:
    """Assign orders to vehicles and order each route, minimising emissions.

    Emission cost of a route = distance × the vehicle's emission intensity, so cleaner
    vehicles take longer routes when capacity allows. Greedy cheapest insertion under
    capacity, then 2-opt per route. Returns the saving against the naive plan (orders in
    arrival order, vehicles filled one after the other).
    """
    fleet = sorted(vehicles, key=lambda v: v["ei"])
    routes: dict[str, list[Sequence[float]]] = {v["id"]: [] for v in fleet}
    load = {v["id"]: 0.0 for v in fleet}
    unassigned = []
    for n, order in enumerate(sorted(orders, key=lambda o: -o["demand"])):
        best: tuple[float, str, int] | None = None
        for v in fleet:
            if load[v["id"]] + order["demand"] > v["capacity"]:
                continue
            stops = routes[v["id"]]
            base = _route_length(depot, stops)
            for pos in range(len(stops) + 1):
                delta = (_route_length(depot, [*stops[:pos], order["at"], *stops[pos:]]) - base) * v["ei"]
                if best is None or delta < best[0]:
                    best = (delta, v["id"], pos)
        if best is None:
            unassigned.append(order["id"])
            continue
        _, vid, pos = best
        routes[vid].insert(pos, order["at"])
        load[vid] += order["demand"]
        update_progress(80 * (n + 1) / len(orders))
    ei = {v["id"]: v["ei"] for v in fleet}
    routes = {vid: _two_opt(depot, stops) for vid, stops in routes.items()}
    optimised = sum(_route_length(depot, r) * ei[vid] for vid, r in routes.items())

    naive_routes: dict[str, list[Sequence[float]]] = {v["id"]: [] for v in vehicles}
    naive_load = {v["id"]: 0.0 for v in vehicles}
    for order in orders:
        for v in vehicles:
            if naive_load[v["id"]] + order["demand"] <= v["capacity"]:
                naive_routes[v["id"]].append(order["at"])
                naive_load[v["id"]] += order["demand"]
                break
    naive = sum(_route_length(depot, r) * ei[vid] for vid, r in naive_routes.items())
    update_progress(100)
    return {
        "batch_id": batch_id,
        "optimized_count": len(orders) - len(unassigned),
        "unassigned": unassigned,
        "emissions": round(optimised, 2),
        "saving_vs_naive": round(1 - optimised / naive, 4) if naive else 0.0,
    }


def random_dispatch_batch(
    rng: random.Random, n_orders: int = 40, n_vehicles: int = 5
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A plausible batch for the demo: orders around a depot, a mixed fleet."""
    orders = [
        {
            "id": f"o{i}",
            "at": [rng.uniform(-50, 50), rng.uniform(-50, 50)],
            "demand": rng.choice([1, 1, 2, 3]),
        }
        for i in range(n_orders)
    ]
    vehicles = [
        {
            "id": f"v{i}",
            "capacity": 1.5 * n_orders * 2 / n_vehicles,
            "ei": rng.choice([55.0, 70.0, 90.0, 120.0]),
        }
        for i in range(n_vehicles)
    ]
    return orders, vehicles


# --- notification:send, email:send, audit:log (async) --------------------------------------


def email_job_id(user_id: str, type: str, title: str, message: str) -> str:  # the seed's field name
    """The e-mail job a notification fans out: one id per notification, so a retried
    notification never sends two e-mails."""
    digest = hashlib.sha256(f"{user_id}|{type}|{title}|{message}".encode()).hexdigest()[:16]
    return f"email-{digest}"


@job
async def send_notification(
    user_id: str,
    type: str,
    title: str,
    message: str,  # the seed's field name
    send_email: bool = False,
) -> dict[str, Any]:
    """Store a notification; fan out an e-mail job when asked (the seed's send_email flag)."""
    await _aio(0.03)
    email_job = None
    if send_email:
        result = enqueue(
            "email:send",
            "glec_jobs.send_email",
            f"{user_id}@example.com",
            title,
            message,
            job_id=email_job_id(user_id, type, title, message),
            connection=_redis(),
        )
        email_job = result.id
    return {"user_id": user_id, "type": type, "email_job": email_job}


@job
async def send_email(to: str, subject: str, body: str = "") -> dict[str, str]:
    """Send through a flaky SMTP relay: ~10 % of attempts time out and are retried with backoff."""
    await _aio(0.05)
    if random.random() < 0.1:
        raise TransientError(f"SMTP relay timed out sending to {to}")
    return {"to": to, "subject": subject}


@job
async def write_audit_log(actor: str, action: str, entity: str) -> None:
    await _aio(0.005)


# --- data:dtg-sync (thread) ---------------------------------------------------------------

#: Records one DTG gateway call returns (one page).
DTG_PAGE = 100
#: kg of CO2 per litre of diesel (the EI is grams of CO2 per tonne-kilometre).
CO2_KG_PER_LITRE = 2.64
#: Share of syncs whose gateway call times out (retried with the queue's backoff).
DTG_TIMEOUT_RATE = 0.03


def dtg_ei_job_id(vehicle_id: str, since: str) -> str:
    """The ei:update job one DTG sync hands on: one id per (vehicle, window), so a retried
    sync never updates the EI twice."""
    digest = hashlib.sha256(f"{vehicle_id}|{since}".encode()).hexdigest()[:16]
    return f"ei-dtg-{digest}"


@job
def sync_dtg_data(vehicle_id: str, fleet_id: str, since: str, records: int = 600) -> dict[str, Any]:
    """Pull a vehicle's digital tachograph (DTG) records since ``since``, page by page, and
    hand the fleet's new emission intensity on to ``ei:update`` (the seed's "EI 데이터 수집
    (DTG 통합)"). The gateway times out now and then: the attempt fails and is retried with
    the queue's backoff, and the ei:update job's id is derived from the window, so a retry
    adds it at most once."""
    rng = random.Random(f"{vehicle_id}|{since}")
    if random.random() < DTG_TIMEOUT_RATE:
        raise TransientError(f"DTG gateway timed out for vehicle {vehicle_id}")
    distance_km = fuel_l = tonne_km = 0.0
    pages = max(1, math.ceil(records / DTG_PAGE))
    for page in range(pages):
        _io(0.02)  # one gateway call
        for _ in range(min(DTG_PAGE, records - page * DTG_PAGE)):
            km = rng.uniform(0.5, 3.0)  # one record: a minute or so of driving
            load_t = rng.uniform(2.0, 18.0)
            distance_km += km
            fuel_l += km * rng.uniform(0.18, 0.38)
            tonne_km += km * load_t
        update_progress(90 * (page + 1) / pages)
    ei = round(fuel_l * CO2_KG_PER_LITRE * 1000 / tonne_km, 1) if tonne_km else 0.0
    handed_on = enqueue(
        "ei:update",
        "glec_jobs.update_ei",
        fleet_id,
        min(ei, 200.0),
        job_id=dtg_ei_job_id(vehicle_id, since),
        connection=_redis(),
    )
    update_progress(100)
    return {
        "vehicle_id": vehicle_id,
        "records": records,
        "distance_km": round(distance_km, 1),
        "ei": ei,
        "ei_job": handed_on.id,
    }


# --- report:generate (thread) ---------------------------------------------------------------

#: Where reports are written: $GLEC_REPORT_DIR, else the temp directory (worker pods have a
#: writable /tmp and a read-only root file system).
REPORT_DIR_ENV = "GLEC_REPORT_DIR"
#: Rows written between two fsyncs: each chunk really reaches the disk.
REPORT_CHUNK = 2_000
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@job
def generate_report(report_type: str, period: str, rows: int = 20_000) -> dict[str, Any]:
    """A slow I/O job: page through ``rows`` trips and write them as a CSV report to disk
    (synced chunk by chunk), then read it back for its checksum. Written to a temporary name
    and renamed, so a failed or retried attempt never leaves half a report under the real
    name."""
    for what, value in (("report_type", report_type), ("period", period)):
        if not _SAFE_NAME.match(value):
            raise ValueError(f"{what} must be 1-64 characters of A-Z a-z 0-9 _ -, got {value!r}")
    folder = os.path.join(os.environ.get(REPORT_DIR_ENV) or tempfile.gettempdir(), "glec-reports")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{report_type}-{period}.csv")
    rng = random.Random(f"{report_type}|{period}")
    fd, partial = tempfile.mkstemp(dir=folder, prefix=".partial-", suffix=".csv")
    try:
        with os.fdopen(fd, "w", newline="") as out:
            out.write("trip_id,fleet_id,distance_km,co2_kg,ei\n")
            for start in range(0, rows, REPORT_CHUNK):
                _io(0.05)  # the next page of trips from the database
                lines = []
                for n in range(start, min(rows, start + REPORT_CHUNK)):
                    km, co2 = rng.uniform(5, 400), rng.uniform(2, 300)
                    lines.append(f"t{n},fleet-{rng.randrange(50)},{km:.1f},{co2:.2f},{co2 * 1000 / km:.1f}\n")
                out.write("".join(lines))
                out.flush()
                os.fsync(out.fileno())
                update_progress(80 * min(rows, start + REPORT_CHUNK) / max(rows, 1))
        os.replace(partial, path)
    except BaseException:  # a timeout included: no half report left behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
    digest = hashlib.sha256()
    with open(path, "rb") as written:
        for block in iter(lambda: written.read(1 << 16), b""):
            digest.update(block)
    update_progress(100)
    return {"report": path, "rows": rows, "bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


# --- failure notifications (spec.failureNotification of the samples) ------------------------


@job
def notify_admins(notice: dict[str, Any]) -> dict[str, Any]:
    """The seed's ``notifyAdmins``: a job failed for good. The operator enqueues this with the
    seed's notice (type JOB_FAILED, severity, title, message, details: job id, queue, name,
    error, attempts, data); it fans out one notification per on-call admin."""
    details = notice["details"]
    sent = []
    for admin in ("ops-oncall", "platform-oncall"):
        # one id per (admin, failure): a retried notification never notifies twice
        job_id = re.sub(r"[^A-Za-z0-9_-]", "-", f"{admin}-{details['queue']}-{details['job_id']}")[:200]
        result = enqueue(
            "notification:send",
            "glec_jobs.send_notification",
            admin,
            notice["type"],
            notice["title"],
            notice["message"],
            job_id=job_id,
            connection=_redis(),
        )
        sent.append(result.id)
    return {"job_id": details["job_id"], "notified": sent}


# --- analytics:aggregate (thread), cleanup:old-data (thread) -------------------------------


@job
def daily_aggregate(aggregation_type: str = "daily", day: str | None = None) -> dict[str, Any]:
    """Aggregate the day's emissions per fleet (the seed's 00:00 UTC recurring job)."""
    rng = random.Random(day or time.strftime("%Y-%m-%d"))
    totals: dict[str, float] = {}
    for chunk in range(10):
        for _ in range(2_000):
            fleet = f"fleet-{rng.randrange(50)}"
            totals[fleet] = totals.get(fleet, 0.0) + rng.uniform(10, 200)
        _io(0.05)  # next page of trips
        update_progress(10 * (chunk + 1))
    top = max(totals, key=lambda k: totals[k])
    return {"type": aggregation_type, "fleets": len(totals), "top_emitter": top}


@job
def cleanup_old_data(retention_days: dict[str, int]) -> dict[str, int]:
    """Delete rows older than each table's retention (the seed's 02:00 UTC recurring job)."""
    removed = {}
    for n, (table, days) in enumerate(sorted(retention_days.items())):
        if days < 1:
            raise ValueError(f"retention for {table} must be at least 1 day, got {days}")
        _io(0.1)
        removed[table] = random.randrange(100, 10_000) // max(1, days // 30)
        update_progress(100 * (n + 1) / len(retention_days))
    return removed
