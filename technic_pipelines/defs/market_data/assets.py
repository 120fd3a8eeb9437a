"""`price_bars`: every listed US stock's daily bar per session, and the index series, from the source."""

import datetime as dt
import time

from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, asset

from technic_core import calendar, daily, quality
from technic_core.provenance import ensure_single_source
from technic_pipelines.metadata import check_results, check_specs, run_sessions, source_counters, source_metadata
from technic_pipelines.partitions import session_partitions
from technic_pipelines.resources import MarketDataResource, WarehouseResource


@asset(
    partitions_def=session_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="market_data",
    pool="market_data",
    kinds={"polars", "parquet"},
    check_specs=check_specs("price_bars", quality.BAR_RULES),
    description=(
        "Daily OHLCV bars (plus vwap and trades) of every listed US stock for the session, from the "
        "configured market-data source. One Parquet file per session under bars/date=YYYY-MM-DD/, and the "
        "index (SPY) and volatility index (VIX) bars under index_bars/date=YYYY-MM-DD/."
    ),
)
def price_bars(
    context: AssetExecutionContext, warehouse: WarehouseResource, market_data: MarketDataResource
) -> MaterializeResult:
    started = time.perf_counter()
    store = warehouse.get()
    source = market_data.get(store)
    ensure_single_source(store, market_data.identity())
    sessions = run_sessions(context)
    before = source_counters(source)
    written = daily.write_bars(store, source, sessions, progress=context.log.info)
    context.log.info("wrote %d bar partitions (%d rows)", len(written.sessions), written.rows)
    previous_session = calendar.previous_session(sessions[0])
    previous = (
        store.read("bars", previous_session, previous_session)
        if store.has_partition("bars", previous_session)
        else None
    )
    outcomes: dict[dt.date, list[quality.CheckOutcome]] = {}
    for session, bars in daily.stored_bars(store, sessions):
        screened = daily.latest_universe(store, session)
        outcomes[session] = quality.bar_checks(bars, quality.expected_bar_symbols(screened, previous), previous)
        previous = bars
    return MaterializeResult(
        check_results=check_results(quality.combine(outcomes), quality.BAR_RULES),
        metadata={
            "dagster/row_count": written.rows // len(sessions),
            "sessions": len(sessions),
            "symbols": written.symbols,
            "seconds": round(time.perf_counter() - started, 3),
            **source_metadata(source, before),
        },
    )
