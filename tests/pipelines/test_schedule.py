"""The market-open schedule scans the latest complete session and never ticks a holiday into a run."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from dagster import DagsterInstance, RunRequest, build_schedule_context

from technic_pipelines.definitions import defs
from technic_pipelines.defs.scan.schedules import market_open_schedule

NEW_YORK = ZoneInfo("America/New_York")


def _tick(day: dt.date):
    when = dt.datetime(day.year, day.month, day.day, 9, 30, tzinfo=NEW_YORK)
    with DagsterInstance.ephemeral() as instance:
        context = build_schedule_context(
            instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
        )
        return market_open_schedule.evaluate_tick(context)


@pytest.mark.parametrize(
    ("tick_day", "scanned"),
    [
        (dt.date(2024, 12, 2), "2024-11-29"),  # Monday scans Friday (the weekend in between)
        (dt.date(2024, 11, 29), "2024-11-27"),  # the day after Thanksgiving scans Wednesday
        (dt.date(2024, 4, 1), "2024-03-28"),  # Easter Monday: Good Friday is skipped
        (dt.date(2024, 12, 26), "2024-12-24"),  # after Christmas: Christmas Eve (an early close)
        (dt.date(2024, 6, 27), "2024-06-26"),  # an ordinary Thursday
    ],
)
def test_session_ticks_request_the_previous_session(tick_day, scanned):
    result = _tick(tick_day)
    assert len(result.run_requests) == 1
    request: RunRequest = result.run_requests[0]
    assert request.partition_key == scanned
    assert request.run_key == scanned


@pytest.mark.parametrize("holiday", [dt.date(2024, 11, 28), dt.date(2024, 3, 29), dt.date(2024, 12, 25)])
def test_holiday_ticks_are_skipped_with_a_reason(holiday):
    result = _tick(holiday)
    assert not result.run_requests
    assert "not an NYSE session" in result.skip_message


def test_schedule_is_market_open_new_york_weekdays():
    assert market_open_schedule.cron_schedule == "30 9 * * 1-5"
    assert market_open_schedule.execution_timezone == "America/New_York"
