"""Check policy: a failing data rule (corrupt or unusable data) blocks downstream assets and says why; a
failing plausibility expectation warns and never stops the run."""

import polars as pl
from dagster import AssetCheckSeverity, AssetKey, DagsterInstance

from technic_core import quality
from technic_core.sources import SOURCE_FACTORIES
from technic_core.sources.simulated import SimulatedMarket, SimulationConfig
from technic_pipelines.definitions import DAILY_SCAN_JOB, defs
from technic_pipelines.metadata import check_results

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


def test_an_implausible_rejection_rate_warns_and_the_scan_still_runs(tmp_path, monkeypatch):
    """A first session without history rejects every symbol: implausible, not corrupt, so it only warns."""
    monkeypatch.setenv("TECHNIC_SIM_SYMBOLS", "40")
    monkeypatch.setenv("TECHNIC_WAREHOUSE", str(tmp_path))
    result = defs.resolve_job_def(DAILY_SCAN_JOB).execute_in_process(
        partition_key=SESSION, instance=DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert result.success
    rate = {e.check_name: e for e in result.get_asset_check_evaluations()}["universe_rejection_rate"]
    assert not rate.passed and rate.severity == AssetCheckSeverity.WARN
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert AssetKey("scan_results") in materialized


def test_a_clean_curated_universe_only_warns():
    clean = pl.DataFrame({"symbol": ["AAPL", "MSFT", "SPGI"], "passed": [True] * 3, "reason": [None] * 3})
    outcomes = {o.name: o for o in quality.universe_checks(clean.with_columns(pl.col("reason").cast(pl.String)))}
    assert not outcomes["universe_rejection_rate"].passed
    assert outcomes["universe_unique"].passed and outcomes["universe_reasons"].passed
    (rate,) = check_results([outcomes["universe_rejection_rate"]], quality.UNIVERSE_RULES)
    assert rate.severity == AssetCheckSeverity.WARN and rate.metadata["blocking"].value is False


def test_every_check_says_which_kind_it_is_and_only_data_rules_block():
    specs = list(defs.resolve_asset_graph().asset_check_keys)
    assert len(specs) >= 15
    graph = defs.resolve_asset_graph()
    for key in specs:
        spec = graph.get_check_spec(key)
        kind = "Blocks downstream" if spec.blocking else ("Errors" if "champion" in key.name else "Warns")
        assert spec.description.startswith(kind), (key.name, spec.description)
    blocking = {graph.get_check_spec(key).name for key in specs if graph.get_check_spec(key).blocking}
    assert "universe_rejection_rate" not in blocking and "bars_coverage" not in blocking
    assert {"bars_valid_ohlc", "bars_unique", "universe_reasons", "results_seq"} <= blocking
