"""Every step that calls the market-data source is in the `market_data` concurrency pool, which the project's
instance limits to one step at a time across all runs: the vendor's limit is per key, not per run."""

from pathlib import Path

import yaml
from dagster import DagsterInstance

from technic_pipelines import cli
from technic_pipelines.definitions import defs

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
