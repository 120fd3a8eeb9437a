"""When the session's scan is overdue: `TECHNIC_SCAN_OVERDUE_MINUTES` after the 09:30 New York open.

The market-open schedule launches the scan at the open, so `scan_results` is expected to materialize
between the open and that deadline on every weekday. Dagster's freshness daemon evaluates the policy on its
own clock, so the asset turns overdue in the UI even when nothing ran (the daemon down at the open, the
run stuck in the queue), which a check executed by the asset's own run could never report.

A cron cannot skip exchange holidays: on a weekday the NYSE is closed the policy reads overdue from the
deadline until the next session's scan. The webhook notification (`defs/operations/alerts.py`) consults the
NYSE calendar instead, so nobody is paged on a holiday.
"""

from __future__ import annotations

import datetime as dt

from dagster import FreshnessPolicy

from technic_core import calendar
from technic_pipelines.partitions import MARKET_OPEN_CRON

_MINUTE, _HOUR, _, _, _WEEKDAYS = MARKET_OPEN_CRON.split()
#: The open the schedule ticks at.
MARKET_OPEN = dt.time(int(_HOUR), int(_MINUTE))


def scan_deadline(overdue_minutes: int) -> dt.time:
    """Wall-clock time in New York by which a session day's scan must have materialized."""
    opened = dt.datetime.combine(dt.date(2000, 1, 3), MARKET_OPEN)
    return (opened + dt.timedelta(minutes=overdue_minutes)).time()


def scan_freshness_policy(overdue_minutes: int) -> FreshnessPolicy:
    """Fresh when a materialization falls between the open and the deadline of the latest weekday."""
    deadline = scan_deadline(overdue_minutes)
    return FreshnessPolicy.cron(
        deadline_cron=f"{deadline.minute} {deadline.hour} * * {_WEEKDAYS}",
        lower_bound_delta=dt.timedelta(minutes=overdue_minutes),
        timezone=calendar.NEW_YORK,
    )


def freshness_description(overdue_minutes: int) -> str:
    """The policy in words, for the asset's description in the UI."""
    return (
        f"Overdue when no scan materialized between the {MARKET_OPEN:%H:%M} open and "
        f"{scan_deadline(overdue_minutes):%H:%M} New York on a weekday (TECHNIC_SCAN_OVERDUE_MINUTES="
        f"{overdue_minutes}); on a weekday NYSE holiday it stays overdue until the next session's scan."
    )
