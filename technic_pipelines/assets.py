"""Session-partitioned assets: price_bars → universe → market_conditions → scan_results.

Each asset is a thin loop over the sessions of its run (one session on the daily schedule, hundreds in a
single-run backfill) that calls `technic_core` and writes the warehouse itself; Dagster gets metadata back,
not data, so nothing is pickled between steps.

Why `price_bars` comes before `universe` (the design card draws it the other way): screening needs each
symbol's price, dollar volume and volatility, which come from bars; with grouped-daily sources one call
returns every symbol's bar, so screening before fetching would save nothing.
"""


import datetime as dt
import time
import warnings
from collections import Counter
from typing import Iterable

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    BetaWarning,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

from technic_core import calendar, quality, schema
from technic_core.config import ScanConfig, ScreeningRules
from technic_core.ml.scan_history import scan_run_row
from technic_core.ml.scorer import alpha_enricher
from technic_core.errors import DataSourceError
from technic_core.provenance import ensure_single_source
from technic_core.scan import run_scan
from technic_core.scoring import market_conditions as compute_market_conditions
from technic_core.scoring import sector_statistics
from technic_core.screening import screen
from technic_core.sources import MarketDataSource
from technic_core.warehouse import Warehouse
from technic_pipelines.charts import signals_by_sector, tech_rating_histogram
from technic_pipelines.partitions import key_session, session_partitions
from technic_pipelines.priority import prioritized_scan, symbol_priority_scores
from technic_pipelines.resources import MarketDataResource, WarehouseResource

# Single-run backfills and tolerant window mappings are beta in dagster 1.13; we opt in knowingly, so the
# warning would only be noise in every CLI run and UI load.
warnings.filterwarnings("ignore", category=BetaWarning)

#: Sessions of bars the breadth measure needs: a 50-bar SMA plus the previous close.
CONDITIONS_LOOKBACK = 51
#: Sessions of index history for its 200-session SMA.
INDEX_LOOKBACK = 260

DEFAULT_SCAN = ScanConfig()
DEFAULT_RULES = ScreeningRules()
SCREENING_LOOKBACK = max(DEFAULT_RULES.liquidity_window, DEFAULT_RULES.min_history_sessions)


def _bars_window(sessions: int) -> AssetDep:
    """Dependency on the `sessions` price_bars partitions ending at this partition."""
    return AssetDep(
        "price_bars",
        partition_mapping=TimeWindowPartitionMapping(
            start_offset=-(sessions - 1), allow_nonexistent_upstream_partitions=True
        ),
    )


def _sessions(context: AssetExecutionContext) -> list[dt.date]:
    return [key_session(key) for key in context.partition_keys]


def _window_start(session: dt.date, sessions: int) -> dt.date:
    return calendar.sessions_back(session, sessions)[0]


def _latest_universe(store: Warehouse, session: dt.date) -> pl.DataFrame | None:
    """The session's screened universe, else the previous session's, else None (a first backfill)."""
    for candidate in (session, calendar.previous_session(session)):
        if store.has_partition("universe", candidate):
            return store.read("universe", candidate, candidate)
    return None


def _source_counters(source: MarketDataSource) -> tuple[int, int]:
    return source.stats.api_calls, source.stats.cache_hits


def _source_metadata(source: MarketDataSource, before: tuple[int, int]) -> dict[str, object]:
    calls, hits = _source_counters(source)
    return {"api_calls": calls - before[0], "cache_hits": hits - before[1], "source": source.name}


def _markdown_table(frame: pl.DataFrame, float_digits: int = 2) -> str:
    """A small frame as a markdown table for the UI's metadata panel."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"

    def cell(value: object) -> str:
        return f"{value:.{float_digits}f}" if isinstance(value, float) else str(value)

    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *rows])


def _check_specs(asset_name: str, names_and_descriptions: dict[str, str], blocking: bool = True) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(name, asset=asset_name, description=description, blocking=blocking)
        for name, description in names_and_descriptions.items()
    ]


def _check_results(outcomes: list[quality.CheckOutcome]) -> list[AssetCheckResult]:
    return [
        AssetCheckResult(check_name=o.name, passed=o.passed, description=o.description, metadata=o.metadata)
        for o in outcomes
    ]


BAR_CHECKS = {
    "bars_coverage": f"at least {quality.MIN_BAR_COVERAGE:.0%} of the screened universe has a bar",
    "bars_valid_ohlc": "no null or non-positive OHLC; high ≥ max(open, close) and low ≤ min(open, close)",
    "bars_unique": "no duplicate (symbol, date) rows",
    "bars_not_stale": "the session's bars are not a copy of the previous session's",
}
UNIVERSE_CHECKS = {
    "universe_unique": "each symbol appears once",
    "universe_rejection_rate": "the pre-screen rejects a plausible share of symbols (band in technic_core.quality)",
    "universe_reasons": "every rejected symbol has a reason and no passing symbol has one",
}
RESULT_CHECKS = {
    "results_columns": "all required result columns are present",
    "results_values": "no NaN or null tech_rating or close; RSI within [0, 100]",
    "results_seq": "seq is strictly increasing without gaps across the batch files",
}
FRESHNESS_CHECK = {"results_fresh": "the newest scanned session is at most one session behind the calendar"}


def _count_table(counts: Iterable[tuple[str, int]], label: str) -> str:
    return _markdown_table(pl.DataFrame(list(counts), schema={label: pl.String, "count": pl.Int64}, orient="row"))


@asset(
    partitions_def=session_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="market_data",
    kinds={"polars", "parquet"},
    check_specs=_check_specs("price_bars", BAR_CHECKS),
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
    sessions = _sessions(context)
    before = _source_counters(source)
    fetched = source.bars(sessions[0], sessions[-1])
    by_session = {key[0]: frame for key, frame in fetched.partition_by("date", as_dict=True).items()}
    empty = [s for s in sessions if s not in by_session]
    if empty:
        raise DataSourceError(
            f"source {source.name!r} returned no bars for {len(empty)} session(s), first {empty[0]}; "
            "nothing was written"
        )
    index_by_session = {
        key[0]: frame
        for key, frame in source.index_bars(sessions[0], sessions[-1]).partition_by("date", as_dict=True).items()
    }
    for session in sessions:
        # index first: a bars partition on disk then implies its index partition is complete too
        store.write_partition("index_bars", session, index_by_session.get(session, schema.empty(schema.BARS)))
        store.write_partition("bars", session, by_session[session])
    context.log.info("wrote %d bar partitions (%d rows)", len(sessions), fetched.height)
    previous_session = calendar.previous_session(sessions[0])
    previous = store.read("bars", previous_session, previous_session) if store.has_partition("bars", previous_session) else None
    outcomes: dict[dt.date, list[quality.CheckOutcome]] = {}
    for session in sessions:
        written = store.read("bars", session, session)
        screened = _latest_universe(store, session)
        outcomes[session] = quality.bar_checks(written, quality.expected_bar_symbols(screened, previous), previous)
        previous = written
    return MaterializeResult(
        check_results=_check_results(quality.combine(outcomes)),
        metadata={
            "dagster/row_count": fetched.height // len(sessions),
            "sessions": len(sessions),
            "symbols": fetched.get_column("symbol").n_unique(),
            "seconds": round(time.perf_counter() - started, 3),
            **_source_metadata(source, before),
        }
    )


@asset(
    partitions_def=session_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[_bars_window(SCREENING_LOOKBACK)],
    group_name="scan",
    kinds={"polars", "parquet"},
    check_specs=_check_specs("universe", UNIVERSE_CHECKS),
    description=(
        "Every symbol listed on the session with sector, industry and market cap, plus the pre-screen "
        "verdict: price ≥ $5, 20-session dollar volume ≥ $1M, sector market-cap floors, price-to-dollar-"
        "volume ratio, volatility ≤ 15 %/day, valid symbols. Rejected symbols keep a reason code."
    ),
)
def universe(
    context: AssetExecutionContext, warehouse: WarehouseResource, market_data: MarketDataResource
) -> MaterializeResult:
    started = time.perf_counter()
    store = warehouse.get()
    source = market_data.get(store)
    before = _source_counters(source)
    reasons: Counter[str] = Counter()
    rows = passed = 0
    outcomes: dict[dt.date, list[quality.CheckOutcome]] = {}
    for session in _sessions(context):
        bars = store.read("bars", _window_start(session, SCREENING_LOOKBACK), session)
        screened = screen(source.reference(session), bars, session, DEFAULT_RULES)
        store.write_partition("universe", session, screened)
        outcomes[session] = quality.universe_checks(store.read("universe", session, session))
        rows += screened.height
        passed += int(screened.get_column("passed").sum())
        reasons.update(dict(screened.get_column("reason").drop_nulls().value_counts().iter_rows()))
    rejected = rows - passed
    return MaterializeResult(
        check_results=_check_results(quality.combine(outcomes)),
        metadata={
            "dagster/row_count": rows,
            "passed": passed,
            "rejected": rejected,
            "rejection_rate": round(rejected / rows, 4) if rows else 0.0,
            "rejection_reasons": MetadataValue.md(_count_table(reasons.most_common(), "reason")),
            **{f"rejected_{reason}": count for reason, count in sorted(reasons.items())},
            "seconds": round(time.perf_counter() - started, 3),
            **_source_metadata(source, before),
        }
    )


@asset(
    partitions_def=session_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[_bars_window(INDEX_LOOKBACK)],
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
    sessions = _sessions(context)
    index_bars = store.read("index_bars", _window_start(sessions[0], INDEX_LOOKBACK), sessions[-1])
    latest: dict[str, object] = {}
    for session in sessions:
        bars = store.read("bars", _window_start(session, CONDITIONS_LOOKBACK), session)
        conditions = compute_market_conditions(bars, index_bars, session)
        store.write_partition("conditions", session, conditions)
        latest = conditions.row(0, named=True)
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(sessions),
            "regime": str(latest["regime"]),
            "vix": float(latest["vix"]) if latest["vix"] is not None else float("nan"),
            "pct_advancing": float(latest["pct_advancing"] or 0.0),
            "pct_above_sma_50": float(latest["pct_above_sma_50"] or 0.0),
            "index_close": float(latest["index_close"] or 0.0),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )


@asset(
    partitions_def=session_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[
        "universe",
        "market_conditions",
        "symbol_priority_scores",
        _bars_window(DEFAULT_SCAN.lookback_sessions),
    ],
    group_name="scan",
    pool="duckdb_catalog",
    check_specs=_check_specs("scan_results", RESULT_CHECKS) + _check_specs("scan_results", FRESHNESS_CHECK, blocking=False),
    kinds={"polars", "parquet", "duckdb"},
    description=(
        "The technical scan of every screened symbol: RSI, MACD, Bollinger width, ATR %, volume ratio, "
        "momentum 21/63/126, TechRating 0-100 and Signal. Written batch by batch under "
        "results/date=YYYY-MM-DD/batch=NNNNN.parquet, each row with a per-scan seq; symbols that could not "
        "be rated are listed under rejections/ with a reason."
    ),
)
def scan_results(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    store = warehouse.get()
    outcomes: dict[dt.date, list[quality.CheckOutcome]] = {}
    summaries = []
    for session in _sessions(context):
        summary, results = _scan_session(context, store, session)
        summaries.append(summary)
        outcomes[session] = quality.result_checks(results)
    # Views are globs, so a rebuild only matters for new datasets; it is cheap (tens of ms) and renamed
    # into place, and the `duckdb_catalog` pool keeps two runs from building it at once.
    store.refresh_catalog()
    expected = calendar.latest_complete_session()
    freshness = quality.freshness_check(
        max(store.sessions("results"), default=None), expected, calendar.previous_session(expected)
    )
    return MaterializeResult(
        metadata=summaries[-1], check_results=_check_results([*quality.combine(outcomes), freshness])
    )


def _scan_session(
    context: AssetExecutionContext, store: Warehouse, session: dt.date
) -> tuple[dict[str, object], pl.DataFrame]:
    """Scan one session, writing each batch as soon as it is computed; returns UI metadata and the results
    as read back from the warehouse (what checks and readers will see)."""
    started = time.perf_counter()
    bars = store.read("bars", _window_start(session, DEFAULT_SCAN.lookback_sessions), session)
    screened = store.read("universe", session, session)
    conditions = store.read("conditions", session, session)
    regime = conditions.get_column("regime")[0] if conditions.height else None
    plan = prioritized_scan(store, session, screened, DEFAULT_SCAN)
    hooks = plan.hooks.with_enrichment(alpha_enricher(store, session, bars, screened, regime))
    load_s = time.perf_counter() - started
    run = run_scan(DEFAULT_SCAN, session, bars, screened, regime=regime, order=plan.order, hooks=hooks)
    store.begin_results(session)
    rejections, written = [], 0
    for batch in run:
        store.write_result_batch(session, batch.batch, batch.results)
        rejections.append(batch.rejections)
        written += 1
    store.finish_results(session, written)
    store.write_partition(
        "rejections", session, pl.concat(rejections) if rejections else schema.empty(schema.REJECTIONS)
    )
    results = store.read("results", session, session)
    store.append_scan_run(
        scan_run_row(
            f"daily-{session.isoformat()}", session, DEFAULT_SCAN, run, regime, time.perf_counter() - started
        )
    )
    context.log.info("scanned %s: %d results, %d rejected, end=%s", session, run.results, run.rejected, run.end_reason)
    signal_counts = dict(results.get_column("signal").value_counts().iter_rows()) if results.height else {}
    top = results.sort("tech_rating", descending=True).head(10).select(
        "symbol", "sector", "close", "tech_rating", "signal", "rsi", "mom_21"
    )
    by_sector = sector_statistics(results) if results.height else None
    charts = (
        {
            "tech_rating_distribution": MetadataValue.md(tech_rating_histogram(results)),
            "signals_by_sector": MetadataValue.md(signals_by_sector(results)),
        }
        if results.height
        else {}
    )
    return {
        "dagster/row_count": results.height,
        "session": session.isoformat(),
        "symbols_screened": run.total,
        "symbols_scanned": run.scanned,
        "symbols_rejected": run.rejected,
        "batches": written,
        "end_reason": run.end_reason or "complete",
        "regime": regime or "unknown",
        **{f"signals_{name.lower().replace(' ', '_')}": int(signal_counts.get(name, 0)) for name in schema.SIGNALS},
        "top_10": MetadataValue.md(_markdown_table(top)),
        "sector_statistics": MetadataValue.md(_markdown_table(by_sector)) if by_sector is not None else "",
        "seconds_load": round(load_s, 3),
        "seconds_scan": round(run.elapsed_s, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "alpha_scored": int(results.get_column("alpha_score").is_not_null().sum()),
        **plan.metadata(results, run),
        **charts,
    }, results


session_assets = [price_bars, universe, market_conditions, symbol_priority_scores, scan_results]
