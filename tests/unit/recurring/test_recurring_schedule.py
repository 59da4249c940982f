"""Schedules: the CRD's grammar (checked here with Python's re, on the real API server in
tests/integration/recurring) and the next tick computed from it."""

from __future__ import annotations

import datetime
import re
import zoneinfo

import pytest

from jobqueue_operator import models
from jobqueue_operator.builders import cronjob
from unit.recurring.schedules import INVALID, VALID

UTC = datetime.UTC


def accepted(schedule: str) -> bool:
    """The CRD's rules on ``schedule``, evaluated with Python's re (same regular expressions)."""
    if not re.match(models.CRON_SHAPE, schedule) or schedule.startswith("@every"):
        return False
    if schedule.startswith("@"):
        return True
    for field, text in zip(models.CRON_FIELDS, schedule.split(), strict=True):
        if not re.match(field.regex, text):
            return False
        for item in text.split(","):
            bounds = item.split("/")[0].split("-")
            if len(bounds) == 2 and field.value(bounds[0]) > field.value(bounds[1]):
                return False
    return True


@pytest.mark.parametrize("schedule", VALID)
def test_valid_schedules_are_accepted_and_have_a_next_tick(schedule: str) -> None:
    assert accepted(schedule)
    after = datetime.datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
    assert cronjob.next_schedule_time(schedule, "UTC", after) > after


@pytest.mark.parametrize("schedule", INVALID)
def test_invalid_schedules_are_refused(schedule: str) -> None:
    assert not accepted(schedule)


@pytest.mark.parametrize(
    ("schedule", "zone", "after", "expected"),
    [
        ("0 0 * * *", "UTC", "2026-11-26T04:00:00+00:00", "2026-11-27T00:00:00+00:00"),
        ("0 2 * * *", "UTC", "2026-11-26T02:00:00+00:00", "2026-11-27T02:00:00+00:00"),  # strictly after
        ("0 0 * * *", "Asia/Seoul", "2026-11-26T04:00:00+00:00", "2026-11-26T15:00:00+00:00"),
        ("@weekly", "UTC", "2026-11-26T04:00:00+00:00", "2026-11-29T00:00:00+00:00"),  # Sunday
        ("0 0 * * mon", "UTC", "2026-11-26T04:00:00+00:00", "2026-11-30T00:00:00+00:00"),
        ("30 9 * jan,JUL 1-5", "UTC", "2026-11-26T04:00:00+00:00", "2027-01-01T09:30:00+00:00"),
        ("5/20 * * * *", "UTC", "2026-11-26T04:50:00+00:00", "2026-11-26T05:05:00+00:00"),
        ("? 3 * * ?", "UTC", "2026-11-26T04:00:00+00:00", "2026-11-27T03:00:00+00:00"),
        ("0 0 29 2 *", "UTC", "2026-11-26T04:00:00+00:00", "2028-02-29T00:00:00+00:00"),
        # 02:30 does not exist in New York on 2027-03-14 (clocks jump from 02:00 to 03:00)
        ("0 12 * * *", "America/New_York", "2027-03-14T05:00:00+00:00", "2027-03-14T16:00:00+00:00"),
    ],
)
def test_next_tick_in_the_time_zone(schedule: str, zone: str, after: str, expected: str) -> None:
    tick = cronjob.next_schedule_time(schedule, zone, datetime.datetime.fromisoformat(after))
    assert tick == datetime.datetime.fromisoformat(expected)
    assert tick.tzinfo == UTC


def test_a_schedule_without_dates_never_fires() -> None:
    with pytest.raises(cronjob.NeverFires, match="names no date"):
        cronjob.next_schedule_time("0 0 30 2 *", "UTC", datetime.datetime(2026, 1, 1, tzinfo=UTC))


def test_unknown_time_zones_are_recognised() -> None:
    assert cronjob.known_time_zone("Asia/Seoul")
    assert cronjob.known_time_zone("Etc/GMT+5")
    assert not cronjob.known_time_zone("Mars/Olympus")
    assert not cronjob.known_time_zone("../etc/passwd")
    with pytest.raises(zoneinfo.ZoneInfoNotFoundError):
        cronjob.next_schedule_time("@daily", "Mars/Olympus", datetime.datetime(2026, 1, 1, tzinfo=UTC))


def test_the_time_zone_shape_admits_the_iana_names() -> None:
    for zone in sorted(zoneinfo.available_timezones()):
        assert re.match(models.TIME_ZONE, zone), zone
    for bad in ("Seoul time", "../etc/passwd", "/UTC", "Asia/", "UTC+1 "):
        assert not re.match(models.TIME_ZONE, bad), bad
