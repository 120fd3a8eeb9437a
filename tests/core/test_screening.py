"""Pre-screen verdicts on hand-made symbols whose expected reason is known by construction."""

from __future__ import annotations

import math
from datetime import date, timedelta

import polars as pl
import pytest

from technic_core import schema
from technic_core.config import ScreeningRules
from technic_core.screening import PASSED_OUTCOME, REJECTION_REASONS, screen, screening_summary

SESSION = date(2024, 6, 28)
HEALTHY_CLOSES = [50.0, 50.5] * 15  # 30 bars, ~1 % daily moves
HEALTHY_VOLUME = 1e6  # ~$50M a day


def reference(*rows: dict) -> pl.DataFrame:
    """Reference rows: an Industrials $1B company unless a row says otherwise."""
    defaults = {
        "name": "Test Corp",
        "sector": "Industrials",
        "industry": None,
        "market_cap": 1e9,
        "shares_outstanding": None,
        "list_date": None,
        "delist_date": None,
    }
    return pl.DataFrame([{**defaults, **row} for row in rows], schema=schema.REFERENCE)


def bars(symbol: str, closes: list[float], volume: float = HEALTHY_VOLUME, last: date = SESSION) -> pl.DataFrame:
    """Daily bars of `symbol` with the given closes, the final one dated `last`."""
    days = [last - timedelta(days=len(closes) - 1 - i) for i in range(len(closes))]
    return pl.DataFrame(
        {
            "symbol": symbol,
            "date": days,
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "volume": volume,
            "vwap": None,
            "trades": None,
        },
        schema=schema.BARS,
    )


#: One symbol per reason (and one that passes): (reference overrides, bars).
CASES: dict[str, tuple[dict, pl.DataFrame]] = {
    "invalid_symbol": ({"symbol": "ABCDEF"}, bars("ABCDEF", HEALTHY_CLOSES)),
    "single_letter_symbol": ({"symbol": "F"}, bars("F", HEALTHY_CLOSES)),
    "insufficient_history": ({"symbol": "NEWCO"}, bars("NEWCO", HEALTHY_CLOSES[:10])),
    "no_bar_on_session": ({"symbol": "HALT"}, bars("HALT", HEALTHY_CLOSES, last=SESSION - timedelta(days=1))),
    "price_below_min": ({"symbol": "PENNY"}, bars("PENNY", [3.0] * 30)),
    "dollar_volume_below_min": ({"symbol": "THIN"}, bars("THIN", [20.0] * 30, volume=10_000)),
    "market_cap_below_min": ({"symbol": "TINY", "market_cap": 100e6}, bars("TINY", HEALTHY_CLOSES)),
    "price_to_dollar_volume_above_max": ({"symbol": "PRICY"}, bars("PRICY", [500.0] * 30, volume=3_000)),
    "volatility_above_max": ({"symbol": "WILD"}, bars("WILD", [20.0, 30.0] * 15)),
    None: ({"symbol": "GOOD"}, bars("GOOD", HEALTHY_CLOSES)),
}


@pytest.fixture(scope="module")
def universe() -> pl.DataFrame:
    refs = reference(*(overrides for overrides, _ in CASES.values()))
    return screen(refs, pl.concat(frame for _, frame in CASES.values()), SESSION, ScreeningRules())


def verdict(universe: pl.DataFrame, symbol: str) -> dict:
    return universe.filter(pl.col("symbol") == symbol).row(0, named=True)


def test_every_reason_code_is_exercised():
    assert set(CASES) - {None} == set(REJECTION_REASONS)


@pytest.mark.parametrize("reason", list(CASES), ids=lambda r: r or "passed")
def test_each_symbol_gets_exactly_its_reason(universe, reason):
    symbol = CASES[reason][0]["symbol"]
    row = verdict(universe, symbol)
    assert row["reason"] == reason
    assert row["passed"] is (reason is None)


def test_output_is_the_universe_schema_one_sorted_row_per_reference_symbol(universe):
    assert universe.schema == pl.Schema(schema.UNIVERSE)
    assert universe["symbol"].to_list() == sorted(overrides["symbol"] for overrides, _ in CASES.values())
    assert universe["date"].unique().to_list() == [SESSION]


def test_passed_rows_have_no_reason_and_rejected_rows_a_known_one(universe):
    assert (universe["passed"] == universe["reason"].is_null()).all()
    assert set(universe.filter(~pl.col("passed"))["reason"]) <= set(REJECTION_REASONS)


def test_computed_columns_by_hand():
    closes = [100.0, 110.0, 99.0]
    universe = screen(
        reference({"symbol": "CALC"}),
        bars("CALC", closes, volume=2e6),
        SESSION,
        ScreeningRules(min_history_sessions=3, liquidity_window=3),
    )
    row = verdict(universe, "CALC")
    assert row["close"] == 99.0
    assert row["history_sessions"] == 3
    assert row["avg_dollar_volume"] == pytest.approx(sum(closes) / 3 * 2e6)
    assert row["daily_volatility"] == pytest.approx(math.sqrt(0.1**2 + 0.1**2))  # returns +10 %, -10 %


def test_first_failing_rule_wins_and_relaxing_it_reveals_the_next():
    # Fails price, dollar volume, market cap, price/dollar volume and volatility all at once.
    refs = reference({"symbol": "MESS", "market_cap": 1e6})
    mess = bars("MESS", [2.0, 3.0] * 15, volume=100)
    relaxations = [
        ("price_below_min", {}),
        ("dollar_volume_below_min", {"min_price": 0.0}),
        ("market_cap_below_min", {"min_avg_dollar_volume": 0.0}),
        ("price_to_dollar_volume_above_max", {"min_market_cap": 0.0, "sector_min_market_cap": {}}),
        ("volatility_above_max", {"max_price_to_dollar_volume": 1.0}),
        (None, {"max_daily_volatility": 10.0}),
    ]
    relaxed: dict = {}
    for expected, relaxation in relaxations:
        relaxed |= relaxation
        assert verdict(screen(refs, mess, SESSION, ScreeningRules(**relaxed)), "MESS")["reason"] == expected


def test_data_quality_rules_come_before_tradability():
    refs = reference({"symbol": "X"}, {"symbol": "YOUNG"})
    young_penny = pl.concat([bars("X", [1.0] * 5), bars("YOUNG", [1.0] * 5)])
    universe = screen(refs, young_penny, SESSION, ScreeningRules())
    assert verdict(universe, "X")["reason"] == "single_letter_symbol"
    assert verdict(universe, "YOUNG")["reason"] == "insufficient_history"


def test_single_letter_rule_can_be_switched_off():
    universe = screen(
        reference({"symbol": "F"}), bars("F", HEALTHY_CLOSES), SESSION, ScreeningRules(reject_single_letter=False)
    )
    assert verdict(universe, "F")["passed"]


@pytest.mark.parametrize("symbol", ["BRK.B", "BF-B", "GOOGL"])
def test_share_class_suffixes_are_valid_symbols(symbol):
    universe = screen(reference({"symbol": symbol}), bars(symbol, HEALTHY_CLOSES), SESSION, ScreeningRules())
    assert verdict(universe, symbol)["passed"]


@pytest.mark.parametrize("symbol", ["abc", "ABCDEF", "AB.CD", "AB1", "AB-"])
def test_malformed_symbols_are_invalid(symbol):
    universe = screen(reference({"symbol": symbol}), bars(symbol, HEALTHY_CLOSES), SESSION, ScreeningRules())
    assert verdict(universe, symbol)["reason"] == "invalid_symbol"


def test_sector_market_cap_table_is_applied():
    refs = reference(
        {"symbol": "UTIL", "sector": "Utilities", "market_cap": 250e6},
        {"symbol": "INDU", "sector": "Industrials", "market_cap": 250e6},
        {"symbol": "ODDLO", "sector": "Crypto", "market_cap": 140e6},
        {"symbol": "ODDHI", "sector": "Crypto", "market_cap": 160e6},
        {"symbol": "NOSEC", "sector": None, "market_cap": 140e6},
    )
    panel = pl.concat(bars(s, HEALTHY_CLOSES) for s in refs["symbol"])
    universe = screen(refs, panel, SESSION, ScreeningRules())
    assert verdict(universe, "UTIL")["reason"] == "market_cap_below_min"
    assert verdict(universe, "INDU")["passed"]
    # Unknown and missing sectors are kept and held to the default $150M floor.
    assert verdict(universe, "ODDLO")["reason"] == "market_cap_below_min"
    assert verdict(universe, "ODDHI")["passed"]
    assert verdict(universe, "NOSEC")["reason"] == "market_cap_below_min"


def test_null_market_cap_is_estimated_from_shares_else_not_judged():
    refs = reference(
        {"symbol": "EST", "market_cap": None, "shares_outstanding": 1_000_000},  # ~$50M
        {"symbol": "UNK", "market_cap": None, "shares_outstanding": None},
    )
    panel = pl.concat([bars("EST", HEALTHY_CLOSES), bars("UNK", HEALTHY_CLOSES)])
    universe = screen(refs, panel, SESSION, ScreeningRules())
    assert verdict(universe, "EST")["reason"] == "market_cap_below_min"
    assert verdict(universe, "EST")["market_cap"] is None  # the reference value is reported as given
    assert verdict(universe, "UNK")["passed"]


def test_thresholds_are_configurable(universe):
    overrides, good_bars = CASES[None]
    strict = screen(reference(overrides), good_bars, SESSION, ScreeningRules(min_price=60.0))
    assert verdict(universe, "GOOD")["passed"]
    assert verdict(strict, "GOOD")["reason"] == "price_below_min"
    lenient = screen(
        reference(CASES["price_below_min"][0]), CASES["price_below_min"][1], SESSION, ScreeningRules(min_price=1.0)
    )
    assert verdict(lenient, "PENNY")["passed"]


def test_window_uses_only_the_last_n_bars():
    # 20 wild, nearly dead bars, then 20 calm liquid ones ending on the session.
    early = bars("SHIFT", [10.0, 90.0] * 10, volume=1.0, last=SESSION - timedelta(days=20))
    late = bars("SHIFT", [50.0] * 20)
    refs = reference({"symbol": "SHIFT"})
    row = verdict(screen(refs, pl.concat([early, late]), SESSION, ScreeningRules(liquidity_window=20)), "SHIFT")
    assert row["avg_dollar_volume"] == pytest.approx(50.0 * HEALTHY_VOLUME)
    assert row["daily_volatility"] == 0.0
    assert row["history_sessions"] == 40
    assert row["passed"]
    wide = verdict(screen(refs, pl.concat([early, late]), SESSION, ScreeningRules(liquidity_window=40)), "SHIFT")
    assert wide["avg_dollar_volume"] == pytest.approx((100.0 * 10 + 50.0 * HEALTHY_VOLUME * 20) / 40)
    assert wide["reason"] == "volatility_above_max"


def test_rows_after_the_session_are_ignored(universe):
    later = pl.concat(
        bars(overrides["symbol"], [1.0] * 5, volume=0.0, last=SESSION + timedelta(days=5))
        for overrides, _ in CASES.values()
    )
    refs = reference(*(overrides for overrides, _ in CASES.values()))
    with_future = screen(refs, pl.concat([*(frame for _, frame in CASES.values()), later]), SESSION, ScreeningRules())
    assert with_future.equals(universe)


def test_symbols_without_bars_or_outside_the_reference():
    universe = screen(reference({"symbol": "GHOST"}), bars("OTHER", HEALTHY_CLOSES), SESSION, ScreeningRules())
    assert universe["symbol"].to_list() == ["GHOST"]
    row = verdict(universe, "GHOST")
    assert row["history_sessions"] == 0
    assert row["close"] is None
    assert row["reason"] == "insufficient_history"


def test_summary_counts_every_outcome_in_fixed_order(universe):
    summary = screening_summary(universe)
    assert summary["outcome"].to_list() == [PASSED_OUTCOME, *REJECTION_REASONS]
    assert summary["symbols"].to_list() == [1] * (1 + len(REJECTION_REASONS))
    assert summary["pct"].sum() == pytest.approx(100.0)


def test_summary_keeps_zero_counts_and_unknown_codes():
    frame = pl.DataFrame({"reason": [None, None, "delisted_upstream"]}, schema={"reason": pl.String})
    summary = screening_summary(frame)
    counts = dict(zip(summary["outcome"], summary["symbols"]))
    assert counts[PASSED_OUTCOME] == 2
    assert counts["price_below_min"] == 0
    assert summary["outcome"][-1] == "delisted_upstream"
    assert counts["delisted_upstream"] == 1
