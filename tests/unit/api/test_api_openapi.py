"""The admin API's OpenAPI document is generated from the code (docs/openapi.json)."""

from __future__ import annotations

import json
from pathlib import Path

from jobqueue.api import openapi

ROOT = Path(__file__).resolve().parents[3]


def test_checked_in_openapi_matches_the_code() -> None:
    checked_in = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert checked_in == openapi.render(), "run `make generate` and commit docs/openapi.json"


def test_every_operation_is_documented_with_its_errors() -> None:
    doc = json.loads(openapi.render())
    operations = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert operations == {
        ("GET", "/api/v1/queues"),
        ("GET", "/api/v1/queues/{queue}"),
        ("POST", "/api/v1/queues/{queue}/pause"),
        ("POST", "/api/v1/queues/{queue}/resume"),
        ("GET", "/api/v1/queues/{queue}/jobs"),
        ("POST", "/api/v1/queues/{queue}/jobs"),
        ("GET", "/api/v1/queues/{queue}/jobs/{job_id}"),
        ("POST", "/api/v1/queues/{queue}/jobs/{job_id}/retry"),
        ("DELETE", "/api/v1/queues/{queue}/jobs/{job_id}"),
        ("POST", "/api/v1/queues/{queue}/jobs/{job_id}/cancel"),
        ("POST", "/api/v1/queues/{queue}/bulk/retry"),
        ("POST", "/api/v1/queues/{queue}/bulk/remove"),
    }
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op.get("description") or op.get("summary"), (method, path)
            assert {"401", "403", "404"} <= set(op["responses"]), (method, path)
            assert op.get("security") or doc.get("security") or "HTTPBearer" in json.dumps(op), (method, path)
    job = doc["components"]["schemas"]["Job"]["properties"]
    # the seed's getJobStatus fields
    assert {
        "id",
        "name",
        "data",
        "progress",
        "state",
        "attempts",
        "maxAttempts",
        "failedReason",
        "stacktrace",
        "createdAt",
        "finishedAt",
    } <= set(job)


def test_workers_and_the_cli_do_not_load_the_web_stack() -> None:
    # every worker pod runs `jobqueue worker`: FastAPI is loaded only by `jobqueue api`
    import subprocess
    import sys

    code = "import sys, jobqueue, jobqueue.cli, jobqueue.worker; print('fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
