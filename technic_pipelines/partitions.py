"""One partitions definition of NYSE sessions, shared by every partitioned asset.

A time-window definition ticking at 09:30 New York on weekdays, with every weekday that is not an NYSE
session (holidays, ad-hoc closures) excluded, so partition keys are exactly the session dates. Exclusions
must equal the cron ticks to the second, hence 09:30 in America/New_York. `end_offset=1` also offers the
session that is under way, so an evening run can scan today's close without waiting for tomorrow's tick.
"""

from __future__ import annotations

import datetime as dt
import os
from zoneinfo import ZoneInfo

from dagster import TimeWindowPartitionsDefinition

from technic_core import calendar

PARTITION_FORMAT = "%Y-%m-%d"
MARKET_OPEN_CRON = "30 9 * * 1-5"
#: First session offered as a partition; the simulated market's history starts the same day.
DEFAULT_START = dt.date(2018, 1, 2)


def partitions_start() -> dt.date:
    """`TECHNIC_START_DATE` (YYYY-MM-DD) or the default: how far back the UI offers sessions."""
    raw = os.environ.get("TECHNIC_START_DATE")
    return dt.date.fromisoformat(raw) if raw else DEFAULT_START


def non_session_weekday_ticks(start: dt.date, end: dt.date) -> list[dt.datetime]:
    """09:30 New York on every weekday in [start, end] that is not an NYSE session."""
    new_york = ZoneInfo(calendar.NEW_YORK)
    sessions = set(calendar.sessions_between(start, end))
    day, ticks = start, []
    while day <= end:
        if day.weekday() < 5 and day not in sessions:
            ticks.append(dt.datetime(day.year, day.month, day.day, 9, 30, tzinfo=new_york))
        day += dt.timedelta(days=1)
    return ticks


def build_session_partitions(start: dt.date | None = None) -> TimeWindowPartitionsDefinition:
    """NYSE-session partitions from `start` (default `partitions_start()`) through the calendar's horizon."""
    first = start or partitions_start()
    return TimeWindowPartitionsDefinition(
        start=first.strftime(PARTITION_FORMAT),
        fmt=PARTITION_FORMAT,
        cron_schedule=MARKET_OPEN_CRON,
        timezone=calendar.NEW_YORK,
        end_offset=1,
        exclusions=non_session_weekday_ticks(first, calendar.last_known_session()),
    )


session_partitions = build_session_partitions()


def session_key(session: dt.date) -> str:
    return session.strftime(PARTITION_FORMAT)


def key_session(key: str) -> dt.date:
    return dt.datetime.strptime(key, PARTITION_FORMAT).date()
