"""Every step that calls the market-data source is in the `market_data` concurrency pool, which the project's
instance limits to one step at a time across all runs: the vendor's limit is per key, not per run."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance
from sqlalchemy.exc import InternalError

from technic_pipelines import cli
from technic_pipelines.definitions import DAILY_SCAN_JOB, defs
from technic_pipelines.defs.operations.launcher import initialize_pools

REPO = Path(__file__).resolve().parents[2]


def test_every_asset_using_the_source_is_in_the_market_data_pool():
    users = {
        assets.key.to_user_string(): assets.op.pool
        for assets in defs.resolve_asset_graph().assets_defs
        if "market_data" in assets.required_resource_keys
    }
    assert set(users) == {"price_bars", "universe", "symbol_priority_scores"}
    assert set(users.values()) == {"market_data"}


def test_the_project_instance_runs_one_step_of_a_pool_at_a_time(tmp_path, monkeypatch):
    assert yaml.safe_load((REPO / "dagster.yaml").read_text())["concurrency"]["pools"]["default_limit"] == 1
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    cli._ensure_dagster_home()
    with DagsterInstance.get() as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


@pytest.fixture
def project_instance(tmp_path, monkeypatch) -> Iterator[DagsterInstance]:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    cli._ensure_dagster_home()
    with DagsterInstance.get() as instance:
        yield instance


def test_a_run_finds_its_pools_made_with_the_default_limit(project_instance):
    storage = project_instance.event_log_storage
    assert storage.get_concurrency_keys() == set()
    initialize_pools(project_instance, defs.resolve_job_def(DAILY_SCAN_JOB).graph.pools)
    assert storage.get_concurrency_keys() == {"market_data", "duckdb_catalog"}
    assert storage.get_concurrency_info("market_data").slot_count == 1
    initialize_pools(project_instance, ["market_data"])  # made once; a second call changes nothing
    assert storage.get_concurrency_info("market_data").slot_count == 1


def test_the_loser_of_a_race_to_make_a_pool_goes_on(project_instance, monkeypatch):
    """What PostgreSQL does to the second of two runs making a pool at once: its insert fails (the other run's
    row is there) and the transaction is aborted."""
    storage = project_instance.event_log_storage
    make = storage.initialize_concurrency_limit_to_default

    def made_by_another_run_first(pool: str) -> bool:
        make(pool)
        raise InternalError("UPDATE concurrency_limits", {}, Exception("current transaction is aborted"))

    monkeypatch.setattr(storage, "initialize_concurrency_limit_to_default", made_by_another_run_first)
    initialize_pools(project_instance, ["market_data"])
    assert storage.get_concurrency_info("market_data").slot_count == 1


def test_a_pool_that_could_not_be_made_is_an_error(project_instance, monkeypatch):
    storage = project_instance.event_log_storage

    def broken(pool: str) -> bool:
        raise InternalError("INSERT INTO concurrency_limits", {}, Exception("disk full"))

    monkeypatch.setattr(storage, "initialize_concurrency_limit_to_default", broken)
    with pytest.raises(InternalError):
        initialize_pools(project_instance, ["market_data"])
