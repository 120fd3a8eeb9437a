"""Each data-quality rule passes on a clean partition and fails on a deliberately broken one."""

import datetime as dt

import polars as pl
import pytest

from technic_core import quality, schema

D = dt.date(2024, 6, 28)


def _bars(n: int = 100, day: dt.date = D, shift: float = 0.0) -> pl.DataFrame:
    return schema.conform(
        pl.DataFrame(
            {
                "symbol": [f"S{i:03d}" for i in range(n)],
                "date": day,
                "open": [10.0 + i + shift for i in range(n)],
                "high": [12.0 + i + shift for i in range(n)],
                "low": [9.0 + i + shift for i in range(n)],
                "close": [11.0 + i + shift for i in range(n)],
                "volume": 1e6,
                "vwap": None,
                "trades": None,
            }
        ),
        schema.BARS,
        "bars",
    )


def _by_name(outcomes):
    return {o.name: o for o in outcomes}


def test_clean_bars_pass_every_rule():
    previous = _bars(day=dt.date(2024, 6, 27), shift=0.5)
    outcomes = _by_name(quality.bar_checks(_bars(), quality.expected_bar_symbols(None, previous), previous))
    assert all(o.passed for o in outcomes.values()), outcomes


def _expected(n: int = 100) -> pl.Series:
    return _bars(n).get_column("symbol")


def test_low_coverage_fails():
    outcome = _by_name(quality.bar_checks(_bars(90), _expected(), None))["bars_coverage"]
    assert not outcome.passed and outcome.metadata["coverage"] == 0.9


def test_a_few_missing_symbols_never_fail_coverage_in_a_small_universe():
    outcome = _by_name(quality.bar_checks(_bars(17), _expected(20), None))["bars_coverage"]
    assert outcome.passed and outcome.metadata["coverage"] == 0.85
    outcome = _by_name(quality.bar_checks(_bars(16), _expected(20), None))["bars_coverage"]
    assert not outcome.passed


def test_coverage_counts_the_expected_symbols_not_just_rows():
    others = _bars(100).with_columns(pl.concat_str(pl.lit("X"), pl.col("symbol")).alias("symbol"))
    outcome = _by_name(quality.bar_checks(others, _expected(), None))["bars_coverage"]
    assert not outcome.passed and outcome.metadata["coverage"] == 0.0


def test_expected_symbols_prefer_the_screened_universe():
    screened = pl.DataFrame({"symbol": ["A", "B", "C"], "passed": [True, False, True]})
    assert sorted(quality.expected_bar_symbols(screened, _bars(5)).to_list()) == ["A", "C"]
    assert quality.expected_bar_symbols(None, _bars(5)).len() == 5
    assert quality.expected_bar_symbols(None, None).len() == 0


@pytest.mark.parametrize(
    "breakage",
    [
        pl.when(pl.col("symbol") == "S003").then(None).otherwise(pl.col("open")).alias("open"),
        pl.when(pl.col("symbol") == "S003").then(-1.0).otherwise(pl.col("close")).alias("close"),
        pl.when(pl.col("symbol") == "S003").then(0.0).otherwise(pl.col("low")).alias("low"),
        pl.when(pl.col("symbol") == "S003").then(10.5).otherwise(pl.col("high")).alias("high"),  # high < close
    ],
)
def test_broken_ohlc_fails(breakage):
    outcome = _by_name(quality.bar_checks(_bars().with_columns(breakage), _expected(), None))["bars_valid_ohlc"]
    assert not outcome.passed


def test_duplicate_rows_fail():
    bars = _bars()
    outcome = _by_name(quality.bar_checks(pl.concat([bars, bars.head(2)]), _expected(), None))["bars_unique"]
    assert not outcome.passed and outcome.metadata["duplicates"] == 2


def test_stale_copy_of_previous_session_fails():
    previous = _bars(day=dt.date(2024, 6, 27))
    outcome = _by_name(quality.bar_checks(_bars(), _expected(), previous))["bars_not_stale"]
    assert not outcome.passed and outcome.metadata["repeated_share"] == 1.0


def _universe(passed: list[bool], reasons: list[str | None], symbols: list[str] | None = None) -> pl.DataFrame:
    symbols = symbols or [f"S{i:03d}" for i in range(len(passed))]
    return pl.DataFrame({"symbol": symbols, "passed": passed, "reason": reasons})


def test_universe_rules():
    good = _universe([True] * 6 + [False] * 4, [None] * 6 + ["price_below_min"] * 4)
    assert all(o.passed for o in quality.universe_checks(good))
    duplicated = _universe([True, True, False], [None, None, "x"], ["A", "A", "B"])
    assert not _by_name(quality.universe_checks(duplicated))["universe_unique"].passed
    all_rejected = _universe([False] * 10, ["x"] * 10)
    assert not _by_name(quality.universe_checks(all_rejected))["universe_rejection_rate"].passed
    unexplained = _universe([True] * 6 + [False] * 4, [None] * 6 + ["x", "x", "x", None])
    assert not _by_name(quality.universe_checks(unexplained))["universe_reasons"].passed


def _results(n: int = 5) -> pl.DataFrame:
    frame = pl.DataFrame({c: [1.0] * n for c in quality.REQUIRED_RESULT_COLUMNS})
    return frame.with_columns(
        pl.lit("X").alias("symbol"), pl.lit(50.0).alias("rsi"), pl.int_range(1, n + 1, dtype=pl.Int64).alias("seq")
    )


def test_result_rules():
    assert all(o.passed for o in quality.result_checks(_results()))
    missing = quality.result_checks(_results().drop("tech_rating"))
    assert [o.name for o in missing] == ["results_columns"] and not missing[0].passed
    nan = _results().with_columns(pl.lit(float("nan")).alias("tech_rating"))
    assert not _by_name(quality.result_checks(nan))["results_values"].passed
    bad_rsi = _results().with_columns(pl.lit(101.0).alias("rsi"))
    assert not _by_name(quality.result_checks(bad_rsi))["results_values"].passed
    gap = _results().with_columns(pl.Series("seq", [1, 2, 4, 5, 6]))
    assert not _by_name(quality.result_checks(gap))["results_seq"].passed
    unordered = _results().with_columns(pl.Series("seq", [2, 1, 3, 4, 5]))
    assert not _by_name(quality.result_checks(unordered))["results_seq"].passed


def test_combine_fails_if_any_session_fails_and_names_it():
    ok = quality.CheckOutcome("rule", True, "fine")
    bad = quality.CheckOutcome("rule", False, "broken", {"n": 1})
    combined = quality.combine({dt.date(2024, 6, 27): [ok], dt.date(2024, 6, 28): [bad]})
    assert len(combined) == 1 and not combined[0].passed
    assert "2024-06-28" in combined[0].description and combined[0].metadata["failing_sessions"] == 1
    assert quality.combine({dt.date(2024, 6, 27): [ok]})[0].passed
