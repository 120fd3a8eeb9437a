"""Column names and polars dtypes of every dataset — the one place they are spelled.

Every writer casts to these schemas (`conform`) before writing, so Parquet files of the same dataset always
share one schema and DuckDB views over their globs never see conflicting types.
"""

from __future__ import annotations

from typing import TypeAlias

import polars as pl

from technic_core.catalog.registry import CATALOG, COLUMNS
from technic_core.errors import ConfigError

#: A polars dtype as written in a schema: a class (`pl.Float64`) or an instance (`pl.List(pl.String)`).
DType: TypeAlias = pl.DataType | type[pl.DataType]
#: Column name → dtype, in column order.
Columns: TypeAlias = dict[str, DType]

#: One row per symbol and session. `vwap` and `trades` may be null when a source lacks them.
BARS: Columns = {
    "symbol": pl.String,
    "date": pl.Date,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
    "vwap": pl.Float64,
    "trades": pl.Int64,
}

#: Point-in-time reference data of a listed symbol (what a vendor's ticker reference gives).
REFERENCE: Columns = {
    "symbol": pl.String,
    "name": pl.String,
    "sector": pl.String,
    "industry": pl.String,
    "market_cap": pl.Float64,
    "shares_outstanding": pl.Int64,
    "list_date": pl.Date,
    "delist_date": pl.Date,
}

#: Reference data plus the pre-screen verdict for one session. `reason` is null exactly when `passed`.
UNIVERSE: Columns = {
    "date": pl.Date,
    **REFERENCE,
    "close": pl.Float64,
    "avg_dollar_volume": pl.Float64,
    "daily_volatility": pl.Float64,
    "history_sessions": pl.Int64,
    "passed": pl.Boolean,
    "reason": pl.String,
}

#: Scheduled and reported earnings: `surprise_pct` is null until the report date has passed.
EARNINGS: Columns = {
    "symbol": pl.String,
    "date": pl.Date,
    "surprise_pct": pl.Float64,
}

#: A vendor's point-in-time list of the common stocks listed on the session (`date`): the ticker snapshots a
#: real source caches so the universe is not refetched every session.
TICKER_LISTINGS: Columns = {
    "date": pl.Date,
    "symbol": pl.String,
    "name": pl.String,
}

#: A vendor's ticker details as fetched on `date`: the slowly changing facts (industry code, share count)
#: behind sector and market cap, cached and refetched only when older than a refresh interval.
TICKER_DETAILS: Columns = {
    "date": pl.Date,
    "symbol": pl.String,
    "name": pl.String,
    "sic_code": pl.String,
    "sic_description": pl.String,
    "market_cap": pl.Float64,
    "shares_outstanding": pl.Int64,
    "list_date": pl.Date,
}

#: Market conditions for one session (a single row).
CONDITIONS: Columns = {
    "date": pl.Date,
    "regime": pl.String,
    "trend": pl.String,
    "volatility_state": pl.String,
    "index_close": pl.Float64,
    "index_return_1d": pl.Float64,
    "index_sma_50": pl.Float64,
    "index_sma_200": pl.Float64,
    "index_volatility_20d": pl.Float64,
    "vix": pl.Float64,
    "pct_advancing": pl.Float64,
    "pct_above_sma_50": pl.Float64,
    "symbols": pl.Int64,
}

#: The catalog columns TechRating scores (`technic_core.scoring`): the scan's indicators from before the catalog.
INDICATORS: Columns = {
    name: COLUMNS[name].dtype
    for name in (
        "rsi",
        "macd",
        "macd_signal",
        "macd_hist",
        "bb_width",
        "atr",
        "atr_pct",
        "volume_ratio",
        "mom_21",
        "mom_63",
        "mom_126",
        "sma_50",
        "sma_200",
        "dist_high_20",
        "dist_low_20",
    )
}

#: Result columns before the catalog's: the scored row as it was before the catalog existed.
_RESULT_HEAD: Columns = {
    "date": pl.Date,
    "symbol": pl.String,
    "sector": pl.String,
    "industry": pl.String,
    "close": pl.Float64,
    "volume": pl.Float64,
    **INDICATORS,
    "trend_score": pl.Float64,
    "momentum_score": pl.Float64,
    "oscillator_score": pl.Float64,
    "volume_score": pl.Float64,
    "tech_rating": pl.Float64,
    "signal": pl.String,
    "regime": pl.String,
}

#: Result columns after the catalog's: added by later stages, then the batch and the row's place in the scan.
_RESULT_TAIL: Columns = {
    # ML alpha from the champion models (null while no champion exists)
    "alpha_5d": pl.Float64,
    "alpha_10d": pl.Float64,
    "alpha_score": pl.Float64,
    # the priority plan the scan followed (null when prioritization is off)
    "priority_score": pl.Float64,
    "priority_tier": pl.String,
    "batch": pl.Int64,
    "seq": pl.Int64,
}

#: Catalog columns results carry besides those already in `_RESULT_HEAD` (the indicators), in registry order.
CATALOG_RESULT_COLUMNS: tuple[str, ...] = tuple(column.name for column in CATALOG if column.name not in _RESULT_HEAD)

#: Scan results: one row per scanned symbol, written batch by batch; `seq` is the per-scan row sequence. Every
#: catalog column (`technic_core.catalog.registry`) is a result column: the columns of the scored row first,
#: then the rest of the catalog in registry order, then the ML, priority, batch and seq columns. Partitions
#: written before a column existed read it as null (`Warehouse.scan`, the DuckDB views).
RESULTS: Columns = {
    **_RESULT_HEAD,
    **{name: COLUMNS[name].dtype for name in CATALOG_RESULT_COLUMNS},
    **_RESULT_TAIL,
}

#: The columns that number a result row within its scan: the batch it was published in and its `seq`.
NUMBERING = ("batch", "seq")
#: A scored result before it is numbered: `RESULTS` but the numbering, which comes last.
SCORED_RESULTS: Columns = {name: dtype for name, dtype in RESULTS.items() if name not in NUMBERING}

#: Result columns a scan may leave null: filled by later stages (ML alpha, priority plan) when present.
OPTIONAL_RESULT_COLUMNS = ("alpha_5d", "alpha_10d", "alpha_score", "priority_score", "priority_tier")

#: Symbol priority for one session: four factor scores (0-100), the weighted score, tier and planned batch.
PRIORITY: Columns = {
    "date": pl.Date,
    "symbol": pl.String,
    "historical_score": pl.Float64,
    "activity_score": pl.Float64,
    "fundamental_score": pl.Float64,
    "setup_score": pl.Float64,
    "fundamental_reason": pl.String,
    "priority_score": pl.Float64,
    "priority_tier": pl.String,
    "exploration": pl.Boolean,
    "batch": pl.Int64,
    "rank": pl.Int64,
}

#: Realized forward returns of a session's scanned symbols, written only once t+h exists (no look-ahead).
OUTCOMES: Columns = {
    "date": pl.Date,
    "symbol": pl.String,
    "signal": pl.String,
    "tech_rating": pl.Float64,
    "fwd_ret_5d": pl.Float64,
    "fwd_ret_10d": pl.Float64,
}

#: Symbols a scan looked at but could not score, with the reason (never silently dropped).
REJECTIONS: Columns = {
    "date": pl.Date,
    "symbol": pl.String,
    "reason": pl.String,
}

#: Hits of every saved screen on one session, in each screen's own order (`rank` 1 = first), with the
#: version of the screen that produced them (old hits keep theirs when a screen changes).
SCREEN_HITS: Columns = {
    "date": pl.Date,
    "screen": pl.String,
    "screen_version": pl.Int64,
    "screen_fingerprint": pl.String,
    "rank": pl.Int64,
    "symbol": pl.String,
}

#: Realized forward returns of one labeled session's screen hits and signal bands, next to the screened
#: universe's mean on the same session: `kind` is "screen", "signal" or "consensus_signal", `name` the screen
#: or band. `excess_*` = the hit's forward return minus that session's universe mean.
SCREEN_OUTCOMES: Columns = {
    "date": pl.Date,
    "kind": pl.String,
    "name": pl.String,
    "screen_version": pl.Int64,
    "symbol": pl.String,
    "fwd_ret_5d": pl.Float64,
    "fwd_ret_10d": pl.Float64,
    "excess_5d": pl.Float64,
    "excess_10d": pl.Float64,
}

#: Daily cross-sectional rank IC of each numeric rating against the forward returns of the same session.
RATING_IC: Columns = {
    "date": pl.Date,
    "rating": pl.String,
    "symbols": pl.Int64,
    "rank_ic_5d": pl.Float64,
    "rank_ic_10d": pl.Float64,
}

#: One row per scan run.
SCAN_RUNS: Columns = {
    "scan_id": pl.String,
    "date": pl.Date,
    "started_at": pl.Datetime("us", "UTC"),
    "duration_s": pl.Float64,
    "config_json": pl.String,
    "regime": pl.String,
    "symbols_screened": pl.Int64,
    "symbols_scanned": pl.Int64,
    "symbols_rejected": pl.Int64,
    "result_count": pl.Int64,
    "signal_count": pl.Int64,
    "end_reason": pl.String,
}

SIGNALS = ("Strong Buy", "Buy", "Neutral", "Sell", "Strong Sell")


def empty(schema: Columns) -> pl.DataFrame:
    """An empty frame with exactly `schema`."""
    return pl.DataFrame(schema=schema)


def conform(frame: pl.DataFrame, schema: Columns, name: str) -> pl.DataFrame:
    """Select and cast `frame` to `schema` in schema order; missing columns raise, naming them. A frame
    that already has exactly `schema` is returned as it is.

    Why strict: a silently missing column would surface days later as a broken DuckDB view.
    """
    if frame.columns == list(schema) and frame.dtypes == list(schema.values()):
        return frame  # the common case, decided without building the frame's schema (once per result batch)
    present = frame.schema
    missing = [c for c in schema if c not in present]
    if missing:
        raise ConfigError(f"{name}: missing column(s) {', '.join(missing)}")
    mistyped = [c for c, t in schema.items() if present[c] != t]
    if not mistyped:
        # Only selecting and ordering: no query to plan (this runs once per result batch).
        return frame if len(present) == len(schema) and list(present) == list(schema) else frame[list(schema)]
    return frame.select([pl.col(c).cast(t, strict=False) if c in mistyped else pl.col(c) for c, t in schema.items()])
