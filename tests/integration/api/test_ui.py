"""The jobs web UI in a real headless Chromium, served by `jobqueue api` against real Redis,
with a real ServiceAccount token checked by the real kube-apiserver: what it shows, and a
click on Retry that really puts a failed job back in its queue.

``JOBQUEUE_UI_SCREENSHOT=docs/ui.png`` also writes the screenshot the docs show.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from apikit import OPERATOR_RULES, ApiServer, api_server, declare, service_account
from cdp import chromium

import devenv
from integration.workers.whelpers import ROOT, thread_worker, wait_for, wait_status
from jobqueue import admin, enqueue, get_job

sys.path.insert(0, str(ROOT / "examples"))
import glec_jobs

GLEC = ("glec_jobs",)
FAILED = "order-1042-assigned"
REASON = "ValueError: order order-1042: cannot go from 'delivered' to 'assigned'"

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis]


@pytest.fixture
def server(redis_url: str, kubeconfig: str, tmp_path: Path) -> Iterator[ApiServer]:
    with api_server(redis_url, kubeconfig, tmp_path) as s:
        yield s


def seed_jobs(conn: redis.Redis, redis_url: str, namespace: str) -> None:
    """Three of the seed's queues, run by the demo's job module: finished and failed order
    updates (an impossible transition fails for good), EI updates waiting in a paused queue."""
    declare(conn, "order:status-update", namespace, "order-status-update", attempts=1)
    declare(conn, "ei:update", namespace, "ei-update", attempts=3)
    declare(conn, "report:generate", namespace, "report-generate", attempts=3)
    enqueue(
        "order:status-update",
        glec_jobs.update_order_status,
        "order-1042",
        "delivered",
        "assigned",
        job_id="order-1042-assigned",
        connection=conn,
    )
    for i in range(6):
        enqueue(
            "order:status-update",
            glec_jobs.update_order_status,
            f"order-{1000 + i}",
            "created",
            "assigned",
            job_id=f"order-{1000 + i}-assigned",
            connection=conn,
        )
    with thread_worker(redis_url, "order:status-update", imports=GLEC, pod="order-status-worker-x2kqp"):
        wait_status(conn, "order:status-update", FAILED, "failed")
        wait_for(
            "the other updates",
            lambda: all(
                get_job("order:status-update", f"order-{1000 + i}-assigned", connection=conn).status
                == "finished"
                for i in range(6)
            ),
        )
    for i in range(40):
        enqueue(
            "ei:update",
            glec_jobs.update_ei,
            f"fleet-{i}",
            60.0 + i,
            job_id=f"ei-fleet-{i}",
            priority=1 + i % 3,
            connection=conn,
        )
    enqueue(
        "ei:update",
        glec_jobs.update_ei,
        "fleet-7",
        93.5,
        job_id="ei-fleet-7-later",
        delay=600,
        connection=conn,
    )
    for week in ("2026-W47", "2026-W48"):
        enqueue(
            "report:generate",
            glec_jobs.generate_report,
            "emissions",
            week,
            kwargs={"rows": 600_000},
            job_id=f"emissions-{week}",
            connection=conn,
        )
    admin.pause("ei:update", by=f"system:serviceaccount:{namespace}:ops", connection=conn)


async def test_the_ui_shows_queues_and_jobs_and_retries_a_failed_job(
    *,
    server: ApiServer,
    cluster: devenv.Cluster,
    namespace: str,
    redis_conn: redis.Redis,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(glec_jobs.REPORT_DIR_ENV, str(tmp_path))
    seed_jobs(redis_conn, redis_url, namespace)
    token = service_account(cluster, namespace, "ops", OPERATOR_RULES)
    with thread_worker(
        redis_url, "report:generate", concurrency=2, imports=GLEC, pod="report-generate-worker-6d4b8-q7hzv"
    ):
        wait_status(redis_conn, "report:generate", "emissions-2026-W48", "started")
        async with chromium() as page:
            await page.goto(server.url + "/")
            await page.wait_for("the sign-in form", "!document.querySelector('#login').hidden")
            await page.type("[data-testid=token]", token)
            await page.click("[data-testid=sign-in]")

            # the queues, with the counts Redis has
            await page.wait_for("three queues", "document.querySelectorAll('#queues tbody tr').length === 3")
            rows = await page.eval("""[...document.querySelectorAll('#queues tbody tr')].map(r => ({
                queue: r.dataset.queue, text: r.innerText,
                counts: Object.fromEntries([...r.querySelectorAll('[data-count]')].map(
                    c => [c.dataset.count, Number(c.innerText)]))}))""")
            shown = {r["queue"]: r for r in rows}
            assert list(shown) == ["ei:update", "order:status-update", "report:generate"]
            assert shown["order:status-update"]["counts"] == {
                "queued": 0,
                "scheduled": 0,
                "running": 0,
                "failed": 1,
                "finished": 6,
            }
            assert shown["ei:update"]["counts"]["queued"] == 40
            assert shown["ei:update"]["counts"]["scheduled"] == 1
            assert "paused" in shown["ei:update"]["text"]
            assert shown["report:generate"]["counts"]["running"] == 2
            assert "1 (2/2 busy)" in shown["report:generate"]["text"]

            # a queue's jobs by state, then the failed job's detail
            await page.click("tr[data-queue='order:status-update']")
            await page.wait_for(
                "the failed tab", "document.querySelector('#states .active')?.dataset.state === 'failed'"
            )
            await page.wait_for("the failed job", f"!!document.querySelector(\"tr[data-job='{FAILED}']\")")
            assert "failed (1)" in await page.text("#states")
            assert "finished (6)" in await page.text("#states")
            await page.click(f"tr[data-job='{FAILED}']")
            await page.wait_for(
                "the job's detail", f"document.querySelector('#job-id')?.innerText === '{FAILED}'"
            )
            assert await page.text("#job-reason") == REASON
            assert await page.eval("document.querySelector('#queue-paused').offsetParent") is None
            assert "1 of 1" in await page.text("#job-fields")
            assert await page.eval("document.querySelector('#retry').disabled") is False

            shot = tmp_path / "ui.png"
            await page.screenshot(shot)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            target = os.environ.get("JOBQUEUE_UI_SCREENSHOT")
            if target:
                shutil.copyfile(shot, target)

            # Retry, clicked: the job is back in its queue with a fresh set of attempts
            await page.click("[data-testid=retry]")
            await page.wait_for(
                "the confirmation", f"document.querySelector('#message').innerText === 'job {FAILED} retried'"
            )
            info = get_job("order:status-update", FAILED, connection=redis_conn)
            assert (info.status, info.attempts_made, info.failed_reason) == ("queued", 0, None)
            await page.wait_for(
                "the new state shown", "document.querySelector('#job-state').innerText === 'queued'"
            )
            await page.wait_for(
                "the failed count back to 0",
                """document.querySelector(
                "tr[data-queue='order:status-update'] [data-count=failed]").innerText === '0'""",
            )

            # pause from the UI: the queue is paused in Redis, by the token's user
            await page.click("[data-testid='toggle-order:status-update']")
            await page.wait_for(
                "paused", "document.querySelector('#message').innerText === 'order:status-update paused'"
            )
            state = admin.pause_state("order:status-update", connection=redis_conn)
            assert (state.paused, state.by) == (True, f"system:serviceaccount:{namespace}:ops")
            await page.click("[data-testid='toggle-order:status-update']")
            await page.wait_for(
                "resumed", "document.querySelector('#message').innerText === 'order:status-update resumed'"
            )
            assert admin.pause_state("order:status-update", connection=redis_conn).paused is False
