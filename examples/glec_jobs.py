"""Example jobs for the demo: the seed's job kinds (GLEC API), self-contained.

The seed's processors call a database, a realtime service and an ML service; here each job
does the same *shape* of work on its own data so the demo runs anywhere: short I/O waits
stand in for database and network calls, and dispatch optimisation is a real (small)
vehicle-routing optimisation. The manifests in ``manifests/samples/`` allow-list this module
(``worker.imports: [glec_jobs]``); the dev pod runner puts ``examples/`` on ``PYTHONPATH``.

Async functions run on queues whose workers use ``mode: async`` (notifications, audit log,
e-mail); blocking ones on ``thread`` queues; CPU-bound ones on ``process`` queues.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import os
import random
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
def rank_proposals(bid_id: str, proposals: Sequence[dict[str, float]],
                   weights: dict[str, float] | None = None) -> dict[str, Any]:
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
        ({**p, "score": w["price"] * norm(p["price"], lo_p, hi_p) + w["ei"] * norm(p["ei"], lo_e, hi_e)
          + w["on_time"] * p.get("on_time", 0.9)} for p in proposals),
        key=lambda p: -p["score"])
    update_progress(100)
    return {"bid_id": bid_id, "ranked_count": len(scored), "top_score": round(scored[0]["score"], 4)}


# --- order:status-update (thread) ----------------------------------------------------------

ORDER_FLOW = {"created": {"assigned", "cancelled"}, "assigned": {"picked_up", "cancelled"},
              "picked_up": {"delivered"}, "delivered": set(), "cancelled": set()}


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
                candidate = best[:i] + best[i:k + 1][::-1] + best[k + 1:]
                if _route_length(depot, candidate) < _route_length(depot, best) - 1e-9:
                    best, improved = candidate, True
    return best


@job
def optimize_dispatch(batch_id: str, orders: Sequence[dict[str, Any]],
                      vehicles: Sequence[dict[str, Any]], depot: Sequence[float] = (0.0, 0.0)
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
    return {"batch_id": batch_id, "optimized_count": len(orders) - len(unassigned),
            "unassigned": unassigned, "emissions": round(optimised, 2),
            "saving_vs_naive": round(1 - optimised / naive, 4) if naive else 0.0}


def random_dispatch_batch(rng: random.Random, n_orders: int = 40, n_vehicles: int = 5
                          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A plausible batch for the demo: orders around a depot, a mixed fleet."""
    orders = [{"id": f"o{i}", "at": [rng.uniform(-50, 50), rng.uniform(-50, 50)],
               "demand": rng.choice([1, 1, 2, 3])} for i in range(n_orders)]
    vehicles = [{"id": f"v{i}", "capacity": 1.5 * n_orders * 2 / n_vehicles,
                 "ei": rng.choice([55.0, 70.0, 90.0, 120.0])} for i in range(n_vehicles)]
    return orders, vehicles


# --- notification:send, email:send, audit:log (async) --------------------------------------


def email_job_id(user_id: str, type: str, title: str, message: str) -> str:  # the seed's field name
    """The e-mail job a notification fans out: one id per notification, so a retried
    notification never sends two e-mails."""
    digest = hashlib.sha256(f"{user_id}|{type}|{title}|{message}".encode()).hexdigest()[:16]
    return f"email-{digest}"


@job
async def send_notification(user_id: str, type: str, title: str, message: str,  # the seed's field name
                            send_email: bool = False) -> dict[str, Any]:
    """Store a notification; fan out an e-mail job when asked (the seed's send_email flag)."""
    await _aio(0.03)
    email_job = None
    if send_email:
        result = enqueue("email:send", "glec_jobs.send_email", f"{user_id}@example.com", title, message,
                         job_id=email_job_id(user_id, type, title, message), connection=_redis())
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
def generate_report(report_type: str, period: str) -> dict[str, Any]:
    """A slow I/O job: collect pages, render, upload."""
    for step in range(5):
        _io(0.2)
        update_progress(20 * (step + 1))
    return {"report": f"{report_type}-{period}.pdf"}


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
