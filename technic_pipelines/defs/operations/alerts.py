"""Telling the data team that something is wrong: a failed run, or a session's scan overdue after the open,
posted to `TECHNIC_ALERT_WEBHOOK_URL` (Slack-compatible JSON, `technic_core.alerts`).

Both sensors are always defined and run by default, so the UI lists them where anyone looks for
alerting; with the URL unset each tick is skipped with a reason saying so, and nothing is sent. Settings are
read at every tick, so the tick history shows what the code location currently runs with.

Why a sensor of its own for the overdue scan, rather than one on the freshness policy's state changes: the
policy's cron cannot skip exchange holidays, so it reads overdue on them, and nobody should be paged for a
closed market. This sensor asks the NYSE calendar which session's scan is due and whether its partition
materialized, and notifies once per session (the cursor is the last session notified).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRun,
    DefaultSensorStatus,
    Definitions,
    RunFailureSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from technic_core import calendar
from technic_core.alerts import Alert, Webhook
from technic_core.config import AlertSettings
from technic_pipelines.defs.scan.freshness import MARKET_OPEN, scan_deadline
from technic_pipelines.defs.scan.schedules import session_to_scan
from technic_pipelines.partitions import session_key

if TYPE_CHECKING:
    from dagster._utils.error import SerializableErrorInfo

NOT_CONFIGURED = "TECHNIC_ALERT_WEBHOOK_URL is unset: notifications are off"
SCAN_RESULTS = AssetKey("scan_results")
#: Run tags naming what a run covered: one partition, or the range of a single-run backfill.
_PARTITION_TAG = "dagster/partition"
_RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def _ui_link(settings: AlertSettings, path: str) -> str | None:
    return f"{settings.dagster_ui_url.rstrip('/')}/{path}" if settings.dagster_ui_url else None


def _partitions(run: DagsterRun) -> str:
    if _PARTITION_TAG in run.tags:
        return run.tags[_PARTITION_TAG]
    start, end = (run.tags.get(tag) for tag in _RANGE_TAGS)
    return f"{start} … {end}" if start and end else "none"


def _user_error(error: SerializableErrorInfo | None) -> str:
    """The step's own exception: Dagster wraps what user code raised in its execution errors, whose message
    only says which op failed."""
    while error is not None and error.cls_name and error.cls_name.startswith("Dagster") and error.cause:
        error = error.cause
    return error.message.strip() if error is not None else "failed"


def failure_alert(context: RunFailureSensorContext, settings: AlertSettings) -> Alert:
    """What a failed run's notification says: run, job, partition(s), the failure and each failed step."""
    run = context.dagster_run
    errors = [context.failure_event.message or "the run failed"]
    for event in context.get_step_failure_events():
        errors.append(f"{event.step_key}: {_user_error(event.step_failure_data.error)}")
    return Alert(
        title=f"Technic run failed: {run.job_name}",
        details=(
            ("Run", run.run_id),
            ("Job", run.job_name),
            ("Partition", _partitions(run)),
            ("Error", "\n".join(errors)),
        ),
        link=_ui_link(settings, f"runs/{run.run_id}"),
        link_label="Open the run in Dagster",
    )


@run_failure_sensor(
    # Every run of the instance, including `technic run`'s in-process runs, which carry no code location
    # origin and so would be missed by a sensor watching this location's jobs only; the instance serves
    # this one code location.
    monitor_all_code_locations=True,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Posts each failed run (run id, job, partition, error, a link to the run when TECHNIC_DAGSTER_UI_URL "
        "is set) to TECHNIC_ALERT_WEBHOOK_URL; skips with a reason while that is unset."
    ),
)
def run_failure_alert_sensor(context: RunFailureSensorContext):
    settings = AlertSettings.from_env()
    if settings.alert_webhook_url is None:
        return SkipReason(NOT_CONFIGURED)
    alert = failure_alert(context, settings)
    if not Webhook(settings.alert_webhook_url.get_secret_value()).post(alert):
        return SkipReason(f"the failure of run {context.dagster_run.run_id} could not be delivered")
    return None


def overdue_scan(now: dt.datetime, overdue_minutes: int) -> tuple[dt.date, dt.date]:
    """(day, session): the latest NYSE session day whose deadline has passed at `now`, and the session its
    market-open scan covers, which must have materialized by then."""
    new_york = ZoneInfo(calendar.NEW_YORK)
    local = now.astimezone(new_york)
    day = local.date()
    if not calendar.is_session(day) or local < dt.datetime.combine(day, scan_deadline(overdue_minutes), new_york):
        day = calendar.previous_session(day)
    session = session_to_scan(dt.datetime.combine(day, MARKET_OPEN, new_york))
    assert session is not None  # `day` is a session
    return day, session


def _materialized(instance: DagsterInstance, key: str) -> bool:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=SCAN_RESULTS, asset_partitions=[key]), limit=1
    ).records
    return bool(records)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def build_scan_overdue_sensor(clock: Callable[[], dt.datetime] = _utc_now, name: str = "scan_overdue_sensor"):
    """The overdue-scan notifier; `clock` gives the evaluation's time (tests pass a fixed one)."""

    @sensor(
        name=name,
        minimum_interval_seconds=300,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "After the deadline on each NYSE session (TECHNIC_SCAN_OVERDUE_MINUTES after the open), posts to "
            "TECHNIC_ALERT_WEBHOOK_URL once if the session's scan_results partition has not materialized; "
            "skips with a reason while that URL is unset."
        ),
    )
    def _sensor(context: SensorEvaluationContext):
        settings = AlertSettings.from_env()
        if settings.alert_webhook_url is None:
            return SkipReason(NOT_CONFIGURED)
        day, session = overdue_scan(clock(), settings.scan_overdue_minutes)
        key = session_key(session)
        if context.cursor and key <= context.cursor:
            return SkipReason(f"the overdue scan of {key} was notified already")
        if _materialized(context.instance, key):
            return SkipReason(f"scan_results {key} materialized")
        deadline = scan_deadline(settings.scan_overdue_minutes)
        alert = Alert(
            title=f"Technic scan overdue: scan_results {key}",
            details=(
                ("Session", key),
                ("Deadline", f"{day} {deadline:%H:%M} New York"),
                ("State", "no materialization of this partition; see the market-open schedule's ticks and runs"),
            ),
            link=_ui_link(settings, "assets/scan_results"),
            link_label="Open scan_results in Dagster",
        )
        if not Webhook(settings.alert_webhook_url.get_secret_value()).post(alert):
            return SkipReason(f"the overdue scan of {key} could not be delivered; tried again next tick")
        return SensorResult(skip_reason=f"notified: the scan of {key} is overdue", cursor=key)

    return _sensor


scan_overdue_sensor = build_scan_overdue_sensor()

defs = Definitions(sensors=[run_failure_alert_sensor, scan_overdue_sensor])
