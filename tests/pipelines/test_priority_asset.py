"""The symbol_priority_scores asset and the scan-side loader of its plans, over a small simulated warehouse."""

import datetime as dt
import hashlib
import os

import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from technic_core import calendar, schema
from technic_core.config import ScanConfig
from technic_core.daily import prioritized_scan
from technic_core.priority import NEUTRAL_SCORE, REASON_NO_REPORT, REASON_SURPRISE
from technic_core.scan import run_scan
from technic_core.screening import screen
from technic_core.sources.simulated import SimulatedMarket, SimulationConfig
from technic_core.warehouse import Warehouse
from technic_pipelines.defs.priority.assets import symbol_priority_scores
from technic_pipelines.resources import MarketDataResource, WarehouseResource

SYMBOLS = 80
SESSION = dt.date(2024, 7, 31)  # inside an earnings season of the simulated market
PREVIOUS = calendar.previous_session(SESSION)
FIRST = calendar.sessions_back(PREVIOUS, 2)[0]  # a session whose previous session has no results


def _scan_into(store: Warehouse, session: dt.date, bars: pl.DataFrame) -> None:
    run = run_scan(ScanConfig(), session, bars, store.read("universe", session, session))
    store.begin_results(session)
    batches = [store.write_result_batch(session, batch.batch, batch.results) for batch in run]
    store.finish_results(session, len(batches))


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Warehouse:
    """Bars of 60 sessions, universes of the last three sessions and the scan results of the previous one."""
    store = Warehouse(tmp_path_factory.mktemp("warehouse"))
    market = SimulatedMarket(SimulationConfig(n_symbols=SYMBOLS))
    bars = market.bars(calendar.sessions_back(SESSION, 60)[0], SESSION)
    for (day,), frame in bars.partition_by("date", as_dict=True).items():
        store.write_partition("bars", day, frame)
    for day in (FIRST, PREVIOUS, SESSION):
        store.write_partition("universe", day, screen(market.reference(day), bars, day, ScanConfig().screening))
    _scan_into(store, PREVIOUS, bars)
    return store


def _materialize(store: Warehouse, session: dt.date):
    result = materialize(
        [symbol_priority_scores],
        partition_key=session.isoformat(),
        resources={
            "warehouse": WarehouseResource(root=str(store.root)),
            "market_data": MarketDataResource(source="simulated", sim_symbols=SYMBOLS, sim_seed=7),
        },
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success
    return result.get_asset_materialization_events()[0].materialization.metadata


def _digest(store: Warehouse, session: dt.date) -> str:
    return hashlib.sha256(store.partition_files("priority", session)[0].read_bytes()).hexdigest()


def test_asset_writes_a_plan_of_every_screened_symbol_with_metadata(warehouse):
    metadata = _materialize(warehouse, SESSION)
    plan = warehouse.read("priority", SESSION, SESSION)
    screened = warehouse.read("universe", SESSION, SESSION).filter(pl.col("passed")).get_column("symbol")
    assert plan.columns == list(schema.PRIORITY)
    assert sorted(plan.get_column("symbol").to_list()) == sorted(screened.to_list())
    assert plan.get_column("rank").to_list() == list(range(1, plan.height + 1))
    tiers = {tier: metadata[f"tier_{tier}"].value for tier in ("high", "medium", "low")}
    assert sum(tiers.values()) == plan.height == metadata["dagster/row_count"].value
    assert tiers["high"] > 0 and tiers["low"] > 0
    assert metadata["explorers"].value == plan.get_column("exploration").sum() > 0
    assert "| 90–100 |" in metadata["score_distribution"].value
    scanned = set(warehouse.read("results", PREVIOUS, PREVIOUS).get_column("symbol"))
    informed = plan.filter(pl.col("symbol").is_in(list(scanned)))
    assert (informed.get_column("historical_score") != NEUTRAL_SCORE).all()
    assert set(plan.get_column("fundamental_reason")) == {REASON_SURPRISE, REASON_NO_REPORT}

    before = _digest(warehouse, SESSION)
    _materialize(warehouse, SESSION)
    assert _digest(warehouse, SESSION) == before  # re-materializing replaces with identical bytes


def test_a_session_without_any_scan_history_gets_a_valid_plan(warehouse):
    _materialize(warehouse, FIRST)
    plan = warehouse.read("priority", FIRST, FIRST)
    screened = warehouse.read("universe", FIRST, FIRST).filter(pl.col("passed"))
    assert plan.height == screened.height > 0
    assert (plan.get_column("historical_score") == NEUTRAL_SCORE).all()
    assert (plan.get_column("setup_score") == NEUTRAL_SCORE).all()
    assert plan.get_column("symbol").is_unique().all()


def test_scan_follows_the_plan_and_reports_priority_metadata(warehouse):
    _materialize(warehouse, SESSION)
    universe = warehouse.read("universe", SESSION, SESSION)
    prepared = prioritized_scan(warehouse, SESSION, universe, ScanConfig(batch_size=10))
    plan = warehouse.read("priority", SESSION, SESSION)
    assert not prepared.refreshed
    assert prepared.order == plan.get_column("symbol").to_list()
    bars = warehouse.read("bars", calendar.sessions_back(SESSION, 60)[0], SESSION)
    run = run_scan(ScanConfig(batch_size=10), SESSION, bars, universe, order=prepared.order, hooks=prepared.hooks)
    results = pl.concat([batch.results for batch in run])
    assert set(results.head(10).get_column("symbol")) <= set(plan.head(10).get_column("symbol"))
    assert results.get_column("priority_score").is_not_null().all()
    metadata = prepared.metadata(results, run)
    assert metadata["priority_followed"] and metadata["priority_reordered"]
    assert metadata["priority_symbols_to_first_signal"] >= 1
    assert 0 <= metadata["priority_share_signals_first_quarter"] <= 1
    assert metadata["priority_overhead_pct"] > 0
    assert {"priority_signal_rate_high", "priority_scanned_low"} <= set(metadata)


def test_a_plan_older_than_its_history_is_refreshed_and_written_back(warehouse):
    _materialize(warehouse, SESSION)
    stored = warehouse.read("priority", SESSION, SESSION)
    # the previous session is re-scanned after the plan was made (as in a single-run backfill): one symbol's
    # rating there changes, and its results file is now newer than the plan
    results = warehouse.read("results", PREVIOUS, PREVIOUS)
    symbol = stored.sort("historical_score").get_column("symbol")[0]
    changed = results.with_columns(
        pl.when(pl.col("symbol") == symbol).then(99.0).otherwise(pl.col("tech_rating")).alias("tech_rating")
    )
    warehouse.write_result_batch(PREVIOUS, 0, changed.filter(pl.col("batch") == 0))
    plan_file = warehouse.partition_files("priority", SESSION)[0]
    os.utime(plan_file, ns=(plan_file.stat().st_atime_ns, plan_file.stat().st_mtime_ns - 10**9))

    prepared = prioritized_scan(warehouse, SESSION, warehouse.read("universe", SESSION, SESSION))
    rewritten = warehouse.read("priority", SESSION, SESSION)
    assert prepared.refreshed
    assert prepared.plan.equals(rewritten)
    old = stored.filter(pl.col("symbol") == symbol).get_column("historical_score").item()
    new = rewritten.filter(pl.col("symbol") == symbol).get_column("historical_score").item()
    assert new > 90 > old
    assert (
        rewritten.select("symbol", "activity_score")
        .sort("symbol")
        .equals(stored.select("symbol", "activity_score").sort("symbol"))
    )
    warehouse.write_result_batch(PREVIOUS, 0, results.filter(pl.col("batch") == 0))  # restore for other tests


def test_without_prioritization_or_a_plan_the_scan_keeps_symbol_order(warehouse):
    universe = warehouse.read("universe", SESSION, SESSION)
    off = prioritized_scan(warehouse, SESSION, universe, ScanConfig(prioritize=False))
    assert off.order is None and off.hooks.reorder is None
    assert off.metadata(schema.empty(schema.RESULTS), None) == {
        "priority_followed": False,
        "priority_note": "prioritization is off",
    }
    missing = prioritized_scan(warehouse, calendar.next_session(SESSION), universe)
    assert missing.order is None and missing.note == "no plan for the session"
