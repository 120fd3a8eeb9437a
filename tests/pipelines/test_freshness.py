"""The freshness policy on `scan_results`: the session's scan is overdue a set time after the NYSE open."""

import datetime as dt

import pytest
from dagster import AssetKey
from dagster._core.definitions.freshness import CronFreshnessPolicy

from technic_core.config import AlertSettings
from technic_core.errors import ConfigError
from technic_pipelines.definitions import defs
from technic_pipelines.defs.scan.freshness import freshness_description, scan_deadline, scan_freshness_policy
from technic_pipelines.defs.scan.schedules import market_open_schedule


def test_scan_results_carries_the_policy_of_the_configured_deadline():
    node = defs.resolve_asset_graph().get(AssetKey("scan_results"))
    overdue = AlertSettings.from_env().scan_overdue_minutes
    assert node.freshness_policy == scan_freshness_policy(overdue)
    assert freshness_description(overdue) in (node.description or "")
    # the freshness check that only ran with the asset is gone; the policy replaces it
    assert "results_fresh" not in {key.name for key in node.check_keys}


def test_the_default_deadline_is_an_hour_after_the_open_on_weekdays_in_new_york():
    policy = scan_freshness_policy(AlertSettings.model_fields["scan_overdue_minutes"].default)
    assert isinstance(policy, CronFreshnessPolicy)
    assert policy.deadline_cron == "30 10 * * 1-5"
    assert policy.timezone == "America/New_York" == market_open_schedule.execution_timezone
    # the window opens at the schedule's tick: a scan from the day before never counts
    assert policy.lower_bound_delta == dt.timedelta(minutes=60)


@pytest.mark.parametrize(
    ("minutes", "cron", "deadline"),
    [(1, "31 9 * * 1-5", dt.time(9, 31)), (45, "15 10 * * 1-5", dt.time(10, 15)), (390, "0 16 * * 1-5", dt.time(16))],
)
def test_the_deadline_follows_the_setting(minutes, cron, deadline):
    policy = scan_freshness_policy(minutes)
    assert (policy.deadline_cron, policy.lower_bound_delta) == (cron, dt.timedelta(minutes=minutes))
    assert scan_deadline(minutes) == deadline
    assert f"09:30 open and {deadline:%H:%M} New York" in freshness_description(minutes)
    assert f"TECHNIC_SCAN_OVERDUE_MINUTES={minutes}" in freshness_description(minutes)


def test_the_setting_is_bounded_to_the_regular_session():
    for bad in ("0", "391", "soon"):
        with pytest.raises(ConfigError, match="TECHNIC_SCAN_OVERDUE_MINUTES"):
            AlertSettings.from_env({"TECHNIC_SCAN_OVERDUE_MINUTES": bad})
    assert AlertSettings.from_env({}).scan_overdue_minutes == 60
