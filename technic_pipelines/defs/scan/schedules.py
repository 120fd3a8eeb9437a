"""Market-open schedule: at 09:30 New York on NYSE sessions, scan the latest complete session.

Cron cannot express exchange holidays, so the cron ticks on weekdays and the tick itself consults the NYSE
calendar: a holiday tick is skipped with a reason the UI shows; a session tick requests the previous
session's partition (Monday's tick scans Friday, the day after Thanksgiving scans Wednesday). The run key is
the partition, so a restarted daemon never scans a session twice. The schedule runs by default (a user
who stops it in the UI keeps it stopped).
"""

import datetime as dt

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, SkipReason, schedule

from technic_core import calendar
from technic_pipelines.defs.scan.jobs import daily_scan_job
from technic_pipelines.partitions import MARKET_OPEN_CRON, session_key


def session_to_scan(tick: dt.datetime) -> dt.date | None:
    """The session a market-open tick at `tick` scans, or None when the tick's day is not a session."""
    day = calendar.session_of(tick)
    if not calendar.is_session(day):
        return None
    return calendar.previous_session(day)


@schedule(
    cron_schedule=MARKET_OPEN_CRON,
    execution_timezone=calendar.NEW_YORK,
    job=daily_scan_job,
    # On out of the box, as the README promises; a user's toggle in the UI is stored and wins over this.
    default_status=DefaultScheduleStatus.RUNNING,
    description="At the NYSE open on trading days, scan the previous (latest complete) session.",
)
def market_open_schedule(context: ScheduleEvaluationContext):
    tick = context.scheduled_execution_time
    session = session_to_scan(tick)
    if session is None:
        return SkipReason(f"{calendar.session_of(tick)} is not an NYSE session; nothing to scan")
    key = session_key(session)
    return RunRequest(run_key=key, partition_key=key, tags={"technic/trigger": "market_open"})
