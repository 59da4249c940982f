"""The shapes of the names jobs are addressed by, one copy each: the client and the worker
check them in Python, the admin API in its schemas, the operator's CRDs in OpenAPI patterns
(the API server then refuses a JobQueue or RecurringJob naming something no worker could
import). Anchored regular expressions as strings, so each user compiles or embeds them."""

from __future__ import annotations

from typing import Final

#: RQ's job id rule: it becomes part of Redis keys and URLs
JOB_ID: Final = r"^[A-Za-z0-9_-]{1,200}$"
#: a dotted Python module name (``glec.jobs``): what a worker may import
PY_MODULE: Final = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
#: a function by its module's dotted name (``glec.jobs.update_ei``): what a job names
PY_FUNCTION: Final = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"
