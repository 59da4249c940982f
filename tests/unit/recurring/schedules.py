"""Schedules for the grammar tests, shared by the unit tests (Python's re on the CRD's
regular expressions) and the integration tests (the real API server, for RecurringJobs and
for CronJobs).

``VALID``: accepted by the RecurringJob CRD and by Kubernetes' CronJob validation.
``INVALID``: refused by the CRD; ``STRICTER`` are the ones Kubernetes would accept for a
CronJob (the CRD is stricter on purpose, see jobqueue_operator.models), all others Kubernetes
refuses too.
"""

from __future__ import annotations

VALID = [
    "0 0 * * *",
    "0 2 * * *",
    "*/15 9-17 * * 1-5",
    "0 0 1,15 * mon,WED,fri",
    "0 0 * jan-DEC ?",
    "5/10 * * * *",
    "00 000 * * *",
    "0-59/60 * * * *",
    "59 23 31 12 6",
    "0 0 */2 * SUN",
    "0  0  *  *  *",
    "@daily",
    "@hourly",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@midnight",
]
INVALID = [
    "0 0 * * 7",
    "*/0 * * * *",
    "5-3 * * * *",
    "0 0 * * FRI-MON",
    "60 * * * *",
    "0 24 * * *",
    "0 0 0 * *",
    "0 0 * 13 *",
    "0 0 L * *",
    "0 0 * * MON#2",
    "*/5/2 * * * *",
    "1-2-3 * * * *",
    "0 0 * * * *",
    "0 0 * *",
    "@DAILY",
    "@reboot",
    "every day",
    "+5 * * * *",
    "*-5 * * * *",
    "1,,2 * * * *",
    " 0 0 * * *",
    "0\t0 * * *",
    "@every 5m",
]
STRICTER = ["+5 * * * *", "*-5 * * * *", "1,,2 * * * *", " 0 0 * * *", "0\t0 * * *", "@every 5m"]
