"""The alerting sensors against a real webhook receiver on loopback: a failed run is posted with its id, job,
partition, error and link; an overdue scan is posted once per session; nothing is posted with the URL unset."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    SensorResult,
    SkipReason,
    StaticPartitionsDefinition,
    build_run_status_sensor_context,
    build_sensor_context,
    job,
    op,
)

from technic_pipelines.definitions import defs
from technic_pipelines.defs.operations.alerts import (
    NOT_CONFIGURED,
    build_scan_overdue_sensor,
    overdue_scan,
    run_failure_alert_sensor,
)
from tests.core.webhook_receiver import webhook_receiver

NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture(autouse=True)
def alert_environment(monkeypatch, tmp_path):
    """No alert variable from the process or a `.env`: each test sets what it needs."""
    for name in ("TECHNIC_ALERT_WEBHOOK_URL", "TECHNIC_DAGSTER_UI_URL", "TECHNIC_SCAN_OVERDUE_MINUTES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@op
def fetch_bars():
    raise RuntimeError("grouped bars for 2024-06-28 are missing")


@job(partitions_def=StaticPartitionsDefinition(["2024-06-28"]))
def tiny_job():
    fetch_bars()


def _failed_run(instance: DagsterInstance):
    result = tiny_job.execute_in_process(instance=instance, partition_key="2024-06-28", raise_on_error=False)
    assert not result.success
    return result


def test_a_failed_run_is_posted_with_its_id_job_partition_error_and_link(alert_environment):
    """Through the sensor's real evaluation: its first tick starts from the end of the event log, the next
    finds the run's failure there and posts it."""
    instance = DagsterInstance.ephemeral()
    started = run_failure_alert_sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs))
    run = _failed_run(instance).dagster_run
    with webhook_receiver() as receiver:
        alert_environment.setenv("TECHNIC_ALERT_WEBHOOK_URL", receiver.url)
        alert_environment.setenv("TECHNIC_DAGSTER_UI_URL", "http://dagster.example:3000/")
        context = build_sensor_context(instance=instance, cursor=started.cursor, definitions=defs)
        run_failure_alert_sensor.evaluate_tick(context)
    [body] = receiver.bodies
    text = body["text"]
    assert text.startswith("*Technic run failed: tiny_job*")
    assert f"*Run*: {run.run_id}" in text and "*Job*: tiny_job" in text and "*Partition*: 2024-06-28" in text
    assert "fetch_bars: RuntimeError: grouped bars for 2024-06-28 are missing" in text
    assert f"<http://dagster.example:3000/runs/{run.run_id}|Open the run in Dagster>" in text
    assert [block["type"] for block in body["blocks"]] == ["section"] * 3


def test_a_failed_run_posts_nothing_while_the_url_is_unset():
    instance = DagsterInstance.ephemeral()
    result = _failed_run(instance)
    context = build_run_status_sensor_context(
        sensor_name=run_failure_alert_sensor.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
    ).for_run_failure()
    with webhook_receiver() as receiver:
        skipped = run_failure_alert_sensor(context)
    assert isinstance(skipped, SkipReason) and skipped.skip_message == NOT_CONFIGURED
    assert receiver.bodies == []


def test_both_sensors_are_in_the_code_location():
    assert {"run_failure_alert_sensor", "scan_overdue_sensor"} <= {sensor.name for sensor in defs.sensors or []}


@pytest.mark.parametrize(
    ("now", "day", "session"),
    [
        # before the deadline the previous session day's scan is the one that must exist
        (dt.datetime(2024, 6, 28, 10, 29), dt.date(2024, 6, 27), dt.date(2024, 6, 26)),
        (dt.datetime(2024, 6, 28, 10, 30), dt.date(2024, 6, 28), dt.date(2024, 6, 27)),
        # the weekend and Independence Day ask nothing new; the day after scans the early close of 3 July
        (dt.datetime(2024, 6, 30, 12, 0), dt.date(2024, 6, 28), dt.date(2024, 6, 27)),
        (dt.datetime(2024, 7, 4, 12, 0), dt.date(2024, 7, 3), dt.date(2024, 7, 2)),
        (dt.datetime(2024, 7, 5, 11, 0), dt.date(2024, 7, 5), dt.date(2024, 7, 3)),
    ],
)
def test_the_overdue_session_follows_the_nyse_calendar(now, day, session):
    assert overdue_scan(now.replace(tzinfo=NEW_YORK), 60) == (day, session)
    assert overdue_scan(now.replace(tzinfo=NEW_YORK).astimezone(dt.UTC), 60) == (day, session)


def _overdue_sensor_at(when: dt.datetime):
    return build_scan_overdue_sensor(clock=lambda: when.replace(tzinfo=NEW_YORK), name="overdue_test_sensor")


def test_an_overdue_scan_is_posted_once_per_session(alert_environment):
    instance = DagsterInstance.ephemeral()
    friday_late = _overdue_sensor_at(dt.datetime(2024, 6, 28, 11, 0))
    with webhook_receiver() as receiver:
        alert_environment.setenv("TECHNIC_ALERT_WEBHOOK_URL", receiver.url)
        first = friday_late(build_sensor_context(instance=instance))
        assert isinstance(first, SensorResult) and first.cursor == "2024-06-27"
        again = friday_late(build_sensor_context(instance=instance, cursor=first.cursor))
        assert isinstance(again, SkipReason) and "notified already" in (again.skip_message or "")
        # the next session day's deadline asks about the next session: notified once more
        monday_late = _overdue_sensor_at(dt.datetime(2024, 7, 1, 10, 45))
        second = monday_late(build_sensor_context(instance=instance, cursor=first.cursor))
        assert isinstance(second, SensorResult) and second.cursor == "2024-06-28"
    assert len(receiver.bodies) == 2
    text = receiver.bodies[0]["text"]
    assert "scan_results 2024-06-27" in text and "*Deadline*: 2024-06-28 10:30 New York" in text


def test_a_materialized_session_and_an_unset_url_post_nothing(alert_environment):
    instance = DagsterInstance.ephemeral()
    sensor = _overdue_sensor_at(dt.datetime(2024, 6, 28, 11, 0))
    with webhook_receiver() as receiver:
        unset = sensor(build_sensor_context(instance=instance))
        assert isinstance(unset, SkipReason) and unset.skip_message == NOT_CONFIGURED
        alert_environment.setenv("TECHNIC_ALERT_WEBHOOK_URL", receiver.url)
        instance.report_runless_asset_event(AssetMaterialization(asset_key="scan_results", partition="2024-06-27"))
        scanned = sensor(build_sensor_context(instance=instance))
        assert isinstance(scanned, SkipReason) and "materialized" in (scanned.skip_message or "")
    assert receiver.bodies == []


def test_an_undelivered_overdue_notice_is_tried_again_at_the_next_tick(alert_environment):
    instance = DagsterInstance.ephemeral()
    sensor = _overdue_sensor_at(dt.datetime(2024, 6, 28, 11, 0))
    with webhook_receiver(404) as receiver:
        alert_environment.setenv("TECHNIC_ALERT_WEBHOOK_URL", receiver.url)
        refused = sensor(build_sensor_context(instance=instance))
        assert isinstance(refused, SkipReason) and "could not be delivered" in (refused.skip_message or "")
        retried = sensor(build_sensor_context(instance=instance))
        assert isinstance(retried, SensorResult) and retried.cursor == "2024-06-27"
    assert len(receiver.bodies) == 2
