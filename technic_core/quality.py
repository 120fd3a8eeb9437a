"""Data-quality rules for each partition, as pure functions over polars frames.

The Dagster asset checks are thin wrappers around these, so the rules are testable without Dagster and a
broken partition fails the same way in a unit test, the UI and a backfill.

Two kinds of rule (`CheckRule.blocking`): a rule whose failure means corrupt or unusable data (duplicates,
invalid prices, unexplained rejections, a broken `seq`) blocks everything downstream; a plausibility
expectation (coverage, rejection rate) only warns, because real universes are small, curated or
messy and a clean watchlist must not fail a run for being clean.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

#: Share of expected symbols that must have a bar on a session.
MIN_BAR_COVERAGE = 0.95
#: Missing this many expected symbols never fails coverage: a delisting and a couple of halts on one day
#: are ordinary, and in a small universe they alone would cross 5 %.
ALWAYS_TOLERATED_MISSING = 3
#: A session whose bars repeat the previous session's for more than this share of symbols is stale
#: (a vendor re-serving yesterday's file).
MAX_REPEATED_BAR_SHARE = 0.5
#: Rejection rates outside this band mean the screen or the reference data went wrong.
REJECTION_RATE_BAND = (0.02, 0.90)
REQUIRED_RESULT_COLUMNS = (
    "symbol",
    "sector",
    "industry",
    "close",
    "volume",
    "rsi",
    "macd",
    "macd_signal",
    "bb_width",
    "atr_pct",
    "volume_ratio",
    "mom_21",
    "mom_63",
    "mom_126",
    "tech_rating",
    "signal",
    "batch",
    "seq",
)


@dataclass(frozen=True)
class CheckRule:
    """One data-quality rule: its check name, what it asserts, and what a failure does.

    `blocking`: a failure means corrupt or unusable data and stops everything downstream. `serving`: a
    failure means a stored model cannot be served; it is an error, but there is nothing downstream to
    block (scans carry on without the model). Otherwise the rule is a plausibility expectation that warns.
    """

    name: str
    asserts: str
    blocking: bool
    serving: bool = False

    @property
    def is_error(self) -> bool:
        """Whether a failure is shown as an error rather than a warning."""
        return self.blocking or self.serving

    @property
    def description(self) -> str:
        """What the UI shows beside the check: the rule and which kind it is."""
        if self.blocking:
            return f"Blocks downstream: {self.asserts}. A failure means corrupt or unusable data."
        if self.serving:
            return f"Errors: {self.asserts}. A failure means the model cannot be served; scans go on without it."
        return f"Warns: {self.asserts}. A plausibility expectation; a failure never stops the run."


BAR_RULES = (
    CheckRule("bars_coverage", f"at least {MIN_BAR_COVERAGE:.0%} of the screened universe has a bar", blocking=False),
    CheckRule(
        "bars_valid_ohlc", "no null or non-positive OHLC; high ≥ max(open, close) and low ≤ min(open, close)", True
    ),
    CheckRule("bars_unique", "no duplicate (symbol, date) rows", blocking=True),
    CheckRule(
        "bars_not_stale",
        f"at most {MAX_REPEATED_BAR_SHARE:.0%} of the bars repeat the previous session's OHLCV exactly "
        "(more is a vendor re-serving yesterday's file)",
        blocking=True,
    ),
)
UNIVERSE_RULES = (
    CheckRule("universe_unique", "each symbol appears once", blocking=True),
    CheckRule(
        "universe_rejection_rate",
        f"the pre-screen rejects {REJECTION_RATE_BAND[0]:.0%}–{REJECTION_RATE_BAND[1]:.0%} of the symbols",
        blocking=False,
    ),
    CheckRule("universe_reasons", "every rejected symbol has a reason and no passing symbol has one", blocking=True),
)
RESULT_RULES = (
    CheckRule("results_columns", "all required result columns are present", blocking=True),
    CheckRule("results_values", "no NaN or null tech_rating or close; RSI within [0, 100]", blocking=True),
    CheckRule("results_seq", "seq is strictly increasing without gaps across the partition's files", blocking=True),
)


@dataclass(frozen=True)
class CheckOutcome:
    """One rule's verdict on one partition, with numbers for the UI."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, float | int | str] = field(default_factory=dict)


def _count(frame: pl.DataFrame, condition: pl.Expr) -> int:
    return int(frame.select(condition.sum()).item() or 0)


def bar_checks(bars: pl.DataFrame, expected_symbols: pl.Series, previous: pl.DataFrame | None) -> list[CheckOutcome]:
    """Coverage of the expected symbols, OHLC sanity, uniqueness and staleness of one session's bars.

    `expected_symbols` is the screened universe the bars must serve (see `expected_bar_symbols`); coverage is
    the share of those symbols that have a bar, so a feed that drops names fails even if others appear.
    """
    expected = expected_symbols.unique()
    listed_symbols = expected.len()
    covered = int(expected.is_in(bars.get_column("symbol").implode()).sum()) if listed_symbols else 0
    coverage = covered / listed_symbols if listed_symbols else 1.0
    prices = ("open", "high", "low", "close")
    bad_price = pl.any_horizontal([pl.col(c).is_null() | (pl.col(c) <= 0) | pl.col(c).is_nan() for c in prices])
    bad_range = (pl.col("high") < pl.max_horizontal("open", "close")) | (
        pl.col("low") > pl.min_horizontal("open", "close")
    )
    invalid_prices, invalid_ranges = _count(bars, bad_price), _count(bars, bad_range.fill_null(False))
    duplicates = bars.height - bars.select("symbol", "date").unique().height
    repeated = 0
    if previous is not None and previous.height:
        same = bars.join(previous, on="symbol", suffix="_prev").filter(
            pl.all_horizontal([pl.col(c) == pl.col(f"{c}_prev") for c in (*prices, "volume")])
        )
        repeated = same.height
    repeated_share = repeated / bars.height if bars.height else 0.0
    return [
        CheckOutcome(
            "bars_coverage",
            coverage >= MIN_BAR_COVERAGE or listed_symbols - covered <= ALWAYS_TOLERATED_MISSING,
            f"{covered} of {listed_symbols} expected symbols have a bar ({coverage:.1%}; need ≥ {MIN_BAR_COVERAGE:.0%})",
            {"coverage": round(coverage, 4), "symbols_with_bars": covered, "listed_symbols": listed_symbols},
        ),
        CheckOutcome(
            "bars_valid_ohlc",
            invalid_prices == 0 and invalid_ranges == 0,
            f"{invalid_prices} rows with null or non-positive OHLC, {invalid_ranges} with high/low outside open/close",
            {"invalid_prices": invalid_prices, "invalid_ranges": invalid_ranges},
        ),
        CheckOutcome(
            "bars_unique",
            duplicates == 0,
            f"{duplicates} duplicate (symbol, date) rows",
            {"duplicates": duplicates},
        ),
        CheckOutcome(
            "bars_not_stale",
            repeated_share <= MAX_REPEATED_BAR_SHARE,
            f"{repeated_share:.1%} of bars repeat the previous session's OHLCV exactly",
            {"repeated_share": round(repeated_share, 4)},
        ),
    ]


def expected_bar_symbols(screened: pl.DataFrame | None, previous_bars: pl.DataFrame | None) -> pl.Series:
    """The symbols a session's bars must cover: the screened universe (symbols that passed) when one is
    known for the session or the one before, else whatever traded the previous session. Using stored
    partitions keeps the check free of vendor calls, so a backfill costs one call per session."""
    if screened is not None and screened.height:
        return screened.filter(pl.col("passed")).get_column("symbol")
    if previous_bars is not None:
        return previous_bars.get_column("symbol")
    return pl.Series("symbol", [], dtype=pl.String)


def universe_checks(universe: pl.DataFrame, band: tuple[float, float] = REJECTION_RATE_BAND) -> list[CheckOutcome]:
    """Unique symbols, a plausible rejection rate, and a reason for every rejection."""
    duplicates = universe.height - universe.get_column("symbol").n_unique()
    rejected = _count(universe, ~pl.col("passed"))
    rate = rejected / universe.height if universe.height else 1.0
    unexplained = _count(universe, ~pl.col("passed") & pl.col("reason").is_null())
    explained_passes = _count(universe, pl.col("passed") & pl.col("reason").is_not_null())
    return [
        CheckOutcome("universe_unique", duplicates == 0, f"{duplicates} duplicate symbols", {"duplicates": duplicates}),
        CheckOutcome(
            "universe_rejection_rate",
            band[0] <= rate <= band[1],
            f"{rate:.1%} of {universe.height} symbols rejected (expected {band[0]:.0%}–{band[1]:.0%})",
            {"rejection_rate": round(rate, 4), "rejected": rejected, "symbols": universe.height},
        ),
        CheckOutcome(
            "universe_reasons",
            unexplained == 0 and explained_passes == 0,
            f"{unexplained} rejections without a reason, {explained_passes} passes with one",
            {"unexplained_rejections": unexplained},
        ),
    ]


def result_checks(results: pl.DataFrame) -> list[CheckOutcome]:
    """Required columns, finite ratings and closes, RSI in range, and a gapless increasing `seq`."""
    missing = [c for c in REQUIRED_RESULT_COLUMNS if c not in results.columns]
    if missing:
        return [
            CheckOutcome(
                "results_columns", False, f"missing column(s): {', '.join(missing)}", {"missing": len(missing)}
            )
        ]
    bad_values = _count(
        results,
        pl.col("tech_rating").is_null()
        | pl.col("tech_rating").is_nan()
        | pl.col("close").is_null()
        | pl.col("close").is_nan(),
    )
    bad_rsi = _count(results, (pl.col("rsi") < 0) | (pl.col("rsi") > 100))
    seq = results.get_column("seq")
    expected = pl.Series(range(1, results.height + 1), dtype=pl.Int64)
    seq_ok = seq.null_count() == 0 and seq.to_list() == expected.to_list()
    return [
        CheckOutcome("results_columns", True, "all required columns present", {"missing": 0}),
        CheckOutcome(
            "results_values",
            bad_values == 0 and bad_rsi == 0,
            f"{bad_values} rows with NaN/null tech_rating or close, {bad_rsi} with RSI outside [0, 100]",
            {"bad_values": bad_values, "bad_rsi": bad_rsi},
        ),
        CheckOutcome(
            "results_seq",
            seq_ok,
            "seq runs 1…n without gaps in file order" if seq_ok else "seq is not strictly increasing without gaps",
            {"rows": results.height},
        ),
    ]


def combine(outcomes_by_session: dict[dt.date, list[CheckOutcome]]) -> list[CheckOutcome]:
    """One outcome per rule over several sessions (a backfill): fails if any session fails, naming them."""
    by_name: dict[str, list[tuple[dt.date, CheckOutcome]]] = {}
    for session, outcomes in outcomes_by_session.items():
        for outcome in outcomes:
            by_name.setdefault(outcome.name, []).append((session, outcome))
    combined = []
    for name, pairs in by_name.items():
        failing = [(s, o) for s, o in pairs if not o.passed]
        last_session, last = pairs[-1]
        if failing:
            first_session, first = failing[0]
            description = f"{len(failing)} of {len(pairs)} session(s) fail; first {first_session}: {first.description}"
            metadata = {**first.metadata, "failing_sessions": len(failing)}
        else:
            description = f"{len(pairs)} session(s) pass; last {last_session}: {last.description}"
            metadata = {**last.metadata, "failing_sessions": 0}
        combined.append(CheckOutcome(name, not failing, description, metadata))
    return combined
