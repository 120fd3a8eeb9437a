"""The scan domain: `universe` (screening) → `market_conditions` → `scan_results`.

Each asset is a thin loop over the sessions of its run (one on the daily schedule, hundreds in a single-run
backfill) around a step of `technic_core.daily`, which writes the warehouse itself; Dagster gets metadata
back, not data, so nothing is pickled between steps.

Why `price_bars` comes before `universe`: screening needs each symbol's price, dollar volume and volatility,
which come from bars; with grouped-daily sources one call returns every symbol's bar, so screening before
fetching would save nothing.
"""

import datetime as dt
import time

import polars as pl
from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from technic_core import daily, quality, schema
from technic_core.config import AlertSettings, ScreeningRules
from technic_core.scalars import as_float
from technic_core.scoring import sector_statistics
from technic_core.screening import PASSED_OUTCOME, screening_summary
from technic_pipelines.defs.scan.charts import signals_by_sector, tech_rating_histogram
from technic_pipelines.defs.scan.freshness import freshness_description, scan_freshness_policy
from technic_pipelines.metadata import (
    Metadata,
    bars_window,
    check_results,
    check_specs,
    markdown_table,
    run_sessions,
    source_counters,
    source_metadata,
)
from technic_pipelines.partitions import session_partitions
from technic_pipelines.resources import MarketDataResource, WarehouseResource

#: Read when the code location loads: the deadline is part of a definition (the freshness policy).
_OVERDUE_MINUTES = AlertSettings.from_env().scan_overdue_minutes


def _screening_description(rules: ScreeningRules) -> str:
    return (
        "Every symbol listed on the session with sector, industry and market cap, plus the pre-screen "
        f"verdict: price ≥ ${rules.min_price:g}, {rules.liquidity_window}-session dollar volume ≥ "
        f"${rules.min_avg_dollar_volume:,.0f}, sector market-cap floors (default ${rules.min_market_cap:,.0f}), "
        f"price-to-dollar-volume ratio ≤ {rules.max_price_to_dollar_volume:g}, daily volatility ≤ "
        f"{rules.max_daily_volatility:.0%}, at least {rules.min_history_sessions} sessions of history, valid "
        "symbols. Rejected symbols keep a reason code."
    )


@asset(
    partitions_def=session_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[bars_window(daily.SCREENING_LOOKBACK)],
    group_name="scan",
    pool="market_data",
    kinds={"polars", "parquet"},
    check_specs=check_specs("universe", quality.UNIVERSE_RULES),
    description=_screening_description(daily.DEFAULT_RULES),
)
def universe(
    context: AssetExecutionContext, warehouse: WarehouseResource, market_data: MarketDataResource
) -> MaterializeResult:
    started = time.perf_counter()
    store = warehouse.get()
    source = market_data.get(store)
    before = source_counters(source)
    verdicts: list[pl.DataFrame] = []
    outcomes: dict[dt.date, list[quality.CheckOutcome]] = {}
    for session in run_sessions(context):
        daily.screen_session(store, source, session)
        written = store.read("universe", session, session)
        outcomes[session] = quality.universe_checks(written)
        verdicts.append(written.select("reason"))
    summary = screening_summary(pl.concat(verdicts))
    counts = dict(summary.select("outcome", "symbols").iter_rows())
    rows = int(summary.get_column("symbols").sum())
    rejected = rows - counts[PASSED_OUTCOME]
    return MaterializeResult(
        check_results=check_results(quality.combine(outcomes), quality.UNIVERSE_RULES),
        metadata={
            "dagster/row_count": rows,
            "passed": counts[PASSED_OUTCOME],
            "rejected": rejected,
            "rejection_rate": round(rejected / rows, 4) if rows else 0.0,
            "screening_outcomes": MetadataValue.md(markdown_table(summary)),
            **{f"rejected_{reason}": count for reason, count in counts.items() if reason != PASSED_OUTCOME and count},
            "seconds": round(time.perf_counter() - started, 3),
            **source_metadata(source, before),
        },
    )


@asset(
    partitions_def=session_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[bars_window(daily.INDEX_LOOKBACK)],
    group_name="scan",
    kinds={"polars", "parquet"},
    description=(
        "One row per session: market regime (index trend × volatility), index close, SMA 50/200, realized "
        "volatility, volatility-index level and breadth (% advancing, % above their 50-session SMA)."
    ),
)
def market_conditions(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    started = time.perf_counter()
    store = warehouse.get()
    sessions = run_sessions(context)
    index_bars = daily.read_index_bars(store, sessions[0], sessions[-1])
    latest: dict[str, object] = {}
    for session in sessions:
        latest = daily.session_conditions(store, session, index_bars).row(0, named=True)
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(sessions),
            "regime": str(latest["regime"]),
            "vix": as_float(latest["vix"]) if latest["vix"] is not None else float("nan"),
            "pct_advancing": as_float(latest["pct_advancing"] or 0.0),
            "pct_above_sma_50": as_float(latest["pct_above_sma_50"] or 0.0),
            "index_close": as_float(latest["index_close"] or 0.0),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )


@asset(
    partitions_def=session_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=["universe", "market_conditions", "symbol_priority_scores", bars_window(daily.DEFAULT_SCAN.lookback_sessions)],
    group_name="scan",
    pool="duckdb_catalog",
    check_specs=check_specs("scan_results", quality.RESULT_RULES),
    freshness_policy=scan_freshness_policy(_OVERDUE_MINUTES),
    kinds={"polars", "parquet", "duckdb"},
    description=(
        "The technical scan of every screened symbol: RSI, MACD, Bollinger width, ATR %, volume ratio, "
        "momentum 21/63/126, TechRating 0-100 and Signal, in the priority plan's order. Written batch by "
        f"batch ({daily.DEFAULT_SCAN.batch_size} symbols) under results/date=YYYY-MM-DD/batch=NNNNN.parquet "
        "(live streams follow them), compacted into one part-00000.parquet once the scan is done, each row "
        "with its batch and a per-scan seq; symbols that could not be rated are listed under rejections/ with a "
        f"reason. {freshness_description(_OVERDUE_MINUTES)}"
    ),
)
def scan_results(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    store = warehouse.get()
    outcomes: dict[dt.date, list[quality.CheckOutcome]] = {}
    scans = []
    for session in run_sessions(context):
        scanned = daily.scan_session(store, session)
        scans.append(scanned)
        outcomes[session] = quality.result_checks(scanned.results)
    # Views are globs, so a rebuild only matters for new datasets; it is cheap and renamed into place, and
    # the `duckdb_catalog` pool keeps two runs from building it at once.
    store.refresh_catalog()
    return MaterializeResult(
        metadata=_scan_metadata(scans[-1]),
        check_results=check_results(quality.combine(outcomes), quality.RESULT_RULES),
    )


def _scan_metadata(scanned: daily.SessionScan) -> Metadata:
    """What the UI shows of the run's last session: counts, top 10, charts, seconds per stage, priority."""
    results, run = scanned.results, scanned.run
    signal_counts = dict(results.get_column("signal").value_counts().iter_rows()) if results.height else {}
    top = (
        results.sort("tech_rating", descending=True)
        .head(10)
        .select("symbol", "sector", "close", "tech_rating", "signal", "rsi", "mom_21")
    )
    charts: Metadata = {}
    if results.height:
        charts = {
            "tech_rating_distribution": MetadataValue.md(tech_rating_histogram(results)),
            "signals_by_sector": MetadataValue.md(signals_by_sector(results)),
            "sector_statistics": MetadataValue.md(markdown_table(sector_statistics(results))),
        }
    return {
        "dagster/row_count": results.height,
        "session": scanned.session.isoformat(),
        "symbols_screened": run.total,
        "symbols_scanned": run.scanned,
        "symbols_rejected": run.rejected,
        "batches": scanned.batches,
        "end_reason": run.end_reason or "complete",
        "regime": scanned.regime or "unknown",
        **{f"signals_{name.lower().replace(' ', '_')}": int(signal_counts.get(name, 0)) for name in schema.SIGNALS},
        "top_10": MetadataValue.md(markdown_table(top)),
        "seconds_load": round(scanned.load_s, 3),
        "seconds_scan": round(run.elapsed_s, 3),
        "seconds": round(scanned.seconds, 3),
        "alpha_scored": int(results.get_column("alpha_score").is_not_null().sum()),
        **scanned.plan.metadata(results, run),
        **charts,
    }
