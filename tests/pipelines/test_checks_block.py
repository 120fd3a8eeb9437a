"""A failing blocking check on price_bars stops the scan's downstream assets and says why."""


import polars as pl
from dagster import AssetKey, DagsterInstance

from technic_core.sources import SOURCE_FACTORIES
from technic_core.sources.simulated import SimulatedMarket, SimulationConfig
from technic_pipelines.definitions import DAILY_SCAN_JOB, defs

SESSION = "2024-06-28"


class InvertedRangeMarket(SimulatedMarket):
    """The simulated market with one symbol's high and low swapped: a vendor bug the checks must catch."""

    def bars(self, start, end, symbols=None):
        bars = super().bars(start, end, symbols)
        victim = bars.get_column("symbol")[0]
        swapped = pl.col("symbol") == victim
        return bars.with_columns(
            pl.when(swapped).then(pl.col("low")).otherwise(pl.col("high")).alias("high"),
            pl.when(swapped).then(pl.col("high")).otherwise(pl.col("low")).alias("low"),
        )


def test_broken_bars_fail_the_check_and_block_downstream(tmp_path, monkeypatch):
    monkeypatch.setitem(SOURCE_FACTORIES, "inverted", lambda s: InvertedRangeMarket(SimulationConfig(n_symbols=60)))
    monkeypatch.setenv("TECHNIC_SOURCE", "inverted")
    monkeypatch.setenv("TECHNIC_WAREHOUSE", str(tmp_path))
    result = defs.resolve_job_def(DAILY_SCAN_JOB).execute_in_process(
        partition_key=SESSION, instance=DagsterInstance.ephemeral(), raise_on_error=False
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evaluations["bars_valid_ohlc"].passed
    assert "high/low outside" in evaluations["bars_valid_ohlc"].description
    assert evaluations["bars_unique"].passed
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert AssetKey("price_bars") in materialized
    assert not materialized & {AssetKey("universe"), AssetKey("market_conditions"), AssetKey("scan_results")}
    assert not (tmp_path / "universe").exists()
