"""Pre-screen: decide, per listed symbol and session, whether it is worth scanning — and say why not.

The predecessor rejected about half of its universe before fetching any history, which was its largest
speed-up; the same rules run here, but vectorized over the whole reference × bars panel in one polars query.
Every rejected symbol carries exactly one reason code — that of the first rule it fails, in the order of
`REJECTION_REASONS` — so dashboards can count rejections and a user can see why a ticker is missing.

Rules, in evaluation order (cheap data-quality checks first, then tradability, then risk):

* ``invalid_symbol`` — not 1–5 capitals with an optional one-letter class suffix (``BRK.B``, ``BF-B``);
  warrants, units and test tickers fall here.
* ``single_letter_symbol`` — one-letter tickers, when `ScreeningRules.reject_single_letter` is set (the
  predecessor's habit; they are few and well covered elsewhere).
* ``insufficient_history`` — fewer than `min_history_sessions` bars up to the session.
* ``no_bar_on_session`` — listed but without a bar that day (halted or not traded).
* ``price_below_min`` — session close below `min_price`.
* ``dollar_volume_below_min`` — mean close × volume over the liquidity window below `min_avg_dollar_volume`.
* ``market_cap_below_min`` — below the sector's floor (`sector_min_market_cap`; sectors not in that table,
  including a null sector, use `min_market_cap`). A null `market_cap` is estimated as shares outstanding ×
  session close; only when neither is known does the rule abstain, as the predecessor's "if available" did —
  by then the price and dollar-volume rules have already removed the illiquid tail such names come from.
* ``price_to_dollar_volume_above_max`` — close / mean dollar volume above `max_price_to_dollar_volume`
  (a high-priced share that trades too little to enter or leave).
* ``volatility_above_max`` — sample std of the daily close-to-close returns inside the liquidity window
  above `max_daily_volatility`.

A rule whose inputs are missing does not fail: missing history and missing session bars have rules of their
own, earlier in the order, so a null never hides behind an unrelated reason.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from technic_core import schema
from technic_core.config import ScreeningRules

#: Rejection reason codes in evaluation order: a symbol's `reason` is the first of these it fails.
REJECTION_REASONS: tuple[str, ...] = (
    "invalid_symbol",
    "single_letter_symbol",
    "insufficient_history",
    "no_bar_on_session",
    "price_below_min",
    "dollar_volume_below_min",
    "market_cap_below_min",
    "price_to_dollar_volume_above_max",
    "volatility_above_max",
)

#: Outcome label `screening_summary` gives symbols that passed every rule.
PASSED_OUTCOME = "passed"

#: Common-stock tickers: 1–5 capitals, optionally a class suffix after "." or "-" (BRK.B, BF-B).
SYMBOL_PATTERN = r"^[A-Z]{1,5}([.-][A-Z])?$"


def screen(reference: pl.DataFrame, bars: pl.DataFrame, session: date, rules: ScreeningRules) -> pl.DataFrame:
    """Screen every symbol of `reference` on `session`; one `schema.UNIVERSE` row per symbol, sorted by symbol.

    `bars` may hold more symbols and later sessions than needed: bars after `session` are ignored (a
    backfilled partition must not see its future) and symbols outside `reference` are not screened.
    """
    statistics = _bar_statistics(bars, reference.select("symbol"), session, rules.liquidity_window)
    screened = (
        reference.lazy()
        .join(statistics, on="symbol", how="left")
        .with_columns(
            pl.lit(session, dtype=pl.Date).alias("date"),
            pl.col("history_sessions").fill_null(0),
        )
        .with_columns(_first_failure(rules).alias("reason"))
        .with_columns(pl.col("reason").is_null().alias("passed"))
        .sort("symbol")
        .collect()
    )
    return schema.conform(screened, schema.UNIVERSE, "universe")


def screening_summary(universe: pl.DataFrame) -> pl.DataFrame:
    """Count a `schema.UNIVERSE` frame by outcome: columns `outcome`, `symbols`, `pct` (of all rows, 0–100).

    Rows come in a fixed order — `PASSED_OUTCOME`, then `REJECTION_REASONS` — with zero counts kept, so a
    dashboard's bars do not jump around between sessions. A reason code unknown to this version (a universe
    written by another one) is appended rather than dropped, so the counts always add up to the universe.
    """
    outcomes = (PASSED_OUTCOME, *REJECTION_REASONS)
    known = pl.DataFrame({"outcome": outcomes, "order": range(len(outcomes))})
    counts = (
        universe.select(pl.col("reason").fill_null(PASSED_OUTCOME).alias("outcome"))
        .group_by("outcome")
        .agg(pl.len().alias("symbols"))
    )
    symbols = pl.col("symbols").fill_null(0).cast(pl.Int64)
    return (
        known.join(counts, on="outcome", how="full", coalesce=True)
        .sort("order", "outcome", nulls_last=True)
        .select(
            "outcome",
            symbols,
            pl.when(symbols.sum() > 0).then(symbols * 100.0 / symbols.sum()).alias("pct"),
        )
    )


def _bar_statistics(bars: pl.DataFrame, symbols: pl.DataFrame, session: date, window: int) -> pl.LazyFrame:
    """Per-symbol liquidity and history figures from the bars up to and including `session`.

    Both window statistics look at the same last `window` bars the symbol has (not calendar sessions, so a
    halt does not shrink the sample); the volatility uses the returns between those bars.
    """
    return (
        bars.lazy()
        .filter(pl.col("date") <= session)
        .join(symbols.lazy(), on="symbol", how="semi")
        .sort("symbol", "date")
        .group_by("symbol")
        .agg(
            pl.col("close").filter(pl.col("date") == session).last().alias("close"),
            (pl.col("close") * pl.col("volume")).tail(window).mean().alias("avg_dollar_volume"),
            pl.col("close").tail(window).pct_change().std().alias("daily_volatility"),
            pl.len().cast(pl.Int64).alias("history_sessions"),
        )
    )


def _market_cap_floor(rules: ScreeningRules) -> pl.Expr:
    """The sector's floor from the rules' table, `min_market_cap` for any other (or null) sector."""
    return pl.col("sector").replace_strict(
        rules.sector_min_market_cap, default=rules.min_market_cap, return_dtype=pl.Float64
    )


def _failures(rules: ScreeningRules) -> dict[str, pl.Expr]:
    """One boolean expression per reason code, true where the rule fails (nulls: see the module docstring)."""
    close = pl.col("close")
    market_cap = pl.coalesce(pl.col("market_cap"), pl.col("shares_outstanding").cast(pl.Float64) * close)
    return {
        "invalid_symbol": pl.col("symbol").str.contains(SYMBOL_PATTERN).not_().fill_null(True),
        "single_letter_symbol": pl.lit(rules.reject_single_letter) & (pl.col("symbol").str.len_chars() == 1),
        "insufficient_history": pl.col("history_sessions") < rules.min_history_sessions,
        "no_bar_on_session": close.is_null(),
        "price_below_min": close < rules.min_price,
        "dollar_volume_below_min": pl.col("avg_dollar_volume") < rules.min_avg_dollar_volume,
        "market_cap_below_min": market_cap < _market_cap_floor(rules),
        "price_to_dollar_volume_above_max": close / pl.col("avg_dollar_volume") > rules.max_price_to_dollar_volume,
        "volatility_above_max": pl.col("daily_volatility") > rules.max_daily_volatility,
    }


def _first_failure(rules: ScreeningRules) -> pl.Expr:
    """The code of the first failing rule in `REJECTION_REASONS` order, null when every rule passes."""
    failures = _failures(rules)
    return pl.coalesce([pl.when(failures[code].fill_null(False)).then(pl.lit(code)) for code in REJECTION_REASONS])
