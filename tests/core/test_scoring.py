"""TechRating, signals, regime, market conditions and sector statistics on inputs with known answers."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from technic_core import schema
from technic_core.errors import ConfigError
from technic_core.scoring import (
    COMPONENT_WEIGHTS,
    SECTOR_STATISTICS,
    SIGNAL_THRESHOLDS,
    classify_regime,
    market_conditions,
    score,
    sector_statistics,
    signal_from_rating,
)
from technic_core.sources import INDEX_SYMBOL, VOLATILITY_SYMBOL

SESSION = date(2024, 6, 28)

#: Inputs on which every vote is exactly neutral.
NEUTRAL = {
    "close": 100.0,
    "rsi": 50.0,
    "macd": 0.0,
    "macd_signal": 0.0,
    "macd_hist": 0.0,
    "bb_width": 0.15,
    "atr": 2.0,
    "atr_pct": 0.02,
    "volume_ratio": 1.0,
    "mom_21": 0.0,
    "mom_63": 0.0,
    "mom_126": 0.0,
    "sma_50": 100.0,
    "sma_200": 100.0,
    "dist_high_20": -0.05,
    "dist_low_20": 0.05,
}
UPTREND = {
    "close": 120.0,
    "rsi": 62.0,
    "macd": 2.0,
    "macd_signal": 1.4,
    "macd_hist": 0.6,
    "bb_width": 0.10,
    "atr": 2.4,
    "atr_pct": 0.02,
    "volume_ratio": 1.6,
    "mom_21": 0.08,
    "mom_63": 0.15,
    "mom_126": 0.30,
    "sma_50": 110.0,
    "sma_200": 95.0,
    "dist_high_20": -0.01,
    "dist_low_20": 0.12,
}
DOWNTREND = {
    "close": 80.0,
    "rsi": 38.0,
    "macd": -2.0,
    "macd_signal": -1.4,
    "macd_hist": -0.6,
    "bb_width": 0.20,
    "atr": 2.4,
    "atr_pct": 0.03,
    "volume_ratio": 1.6,
    "mom_21": -0.08,
    "mom_63": -0.15,
    "mom_126": -0.30,
    "sma_50": 90.0,
    "sma_200": 105.0,
    "dist_high_20": -0.12,
    "dist_low_20": 0.01,
}
SCORE_COLUMNS = [*COMPONENT_WEIGHTS, "tech_rating"]


def indicator_rows(*rows: dict) -> pl.DataFrame:
    """Rows with `close` and every indicator column; a column a row leaves out is null."""
    columns = {"close": pl.Float64, **schema.INDICATORS}
    return pl.DataFrame([{c: row.get(c) for c in columns} for row in rows], schema=columns)


def rated(*rows: dict) -> list[dict]:
    return score(indicator_rows(*rows)).select(*SCORE_COLUMNS, "signal").to_dicts()


def test_neutral_inputs_rate_exactly_fifty():
    (row,) = rated(NEUTRAL)
    assert all(row[c] == pytest.approx(50.0) for c in SCORE_COLUMNS)
    assert row["signal"] == "Neutral"


def test_score_appends_float_columns_and_keeps_the_input():
    frame = indicator_rows(NEUTRAL, UPTREND).with_columns(pl.Series("symbol", ["A", "B"]))
    scored = score(frame)
    assert scored.select(frame.columns).equals(frame)
    assert all(scored.schema[c] == pl.Float64 for c in SCORE_COLUMNS)
    assert scored.schema["signal"] == pl.String


def test_uptrend_rates_above_neutral_and_downtrend_below():
    up, neutral, down = rated(UPTREND, NEUTRAL, DOWNTREND)
    assert up["tech_rating"] > 70.0 > neutral["tech_rating"] > 30.0 > down["tech_rating"]
    assert up["signal"] in ("Buy", "Strong Buy")
    assert down["signal"] in ("Sell", "Strong Sell")
    for component in COMPONENT_WEIGHTS:
        assert up[component] > down[component]


def test_rising_momentum_raises_the_rating():
    ratings = [row["tech_rating"] for row in rated(*({**UPTREND, "mom_21": m} for m in (-0.1, 0.0, 0.05, 0.1, 0.2)))]
    assert ratings == sorted(ratings)
    assert len(set(ratings)) == len(ratings)


def test_ratings_stay_within_bounds_on_extreme_inputs():
    rng = np.random.default_rng(11)
    size = 2_000
    close = rng.uniform(0.5, 2_000, size)
    frame = pl.DataFrame(
        {
            "close": close,
            "rsi": rng.uniform(0, 100, size),
            "macd": rng.normal(0, 0.2, size) * close,
            "macd_signal": rng.normal(0, 0.2, size) * close,
            "macd_hist": rng.normal(0, 0.2, size) * close,
            "bb_width": rng.uniform(0, 3, size),
            "atr": rng.uniform(0, 50, size),
            "atr_pct": rng.uniform(0, 0.5, size),
            "volume_ratio": rng.uniform(0, 50, size),
            "mom_21": rng.normal(0, 2, size),
            "mom_63": rng.normal(0, 2, size),
            "mom_126": rng.normal(0, 2, size),
            "sma_50": close * rng.uniform(0.2, 5, size),
            "sma_200": close * rng.uniform(0.2, 5, size),
            "dist_high_20": -rng.uniform(0, 0.9, size),
            "dist_low_20": rng.uniform(0, 9, size),
        }
    )
    scored = score(frame)
    for column in SCORE_COLUMNS:
        values = scored[column]
        assert values.null_count() == 0
        assert values.min() >= 0.0 and values.max() <= 100.0
    assert set(scored["signal"]) <= set(schema.SIGNALS)


def test_young_symbol_without_long_averages_still_rates():
    young = {k: v for k, v in UPTREND.items() if k not in ("sma_200", "mom_126")}
    (row,) = rated(young)
    assert row["tech_rating"] is not None
    assert row["tech_rating"] > 70.0


def test_component_averages_only_available_votes_and_rating_reweights():
    # Trend from close vs sma_50 alone: one vote, tanh(5 % / 5 %).
    (alone,) = rated({"close": 105.0, "sma_50": 100.0})
    trend = 50.0 + 50.0 * math.tanh(1.0)
    assert alone["trend_score"] == pytest.approx(trend)
    assert alone["momentum_score"] is None
    assert alone["tech_rating"] == pytest.approx(trend)
    # Adding one momentum vote, tanh(0.18 / 0.18): the rating is the 35/30 weighted mean of the two.
    (pair,) = rated({"close": 105.0, "sma_50": 100.0, "mom_63": 0.18})
    momentum = 50.0 + 50.0 * math.tanh(1.0)
    assert pair["momentum_score"] == pytest.approx(momentum)
    assert pair["volume_score"] is None
    assert pair["tech_rating"] == pytest.approx((35 * trend + 30 * momentum) / 65)


def test_all_null_inputs_give_null_rating_and_signal():
    (row,) = rated({})
    assert all(row[c] is None for c in SCORE_COLUMNS)
    assert row["signal"] is None


def test_flat_range_does_not_poison_the_rating():
    (row,) = rated({**NEUTRAL, "dist_high_20": 0.0, "dist_low_20": 0.0})
    assert row["oscillator_score"] == pytest.approx(50.0)
    assert row["tech_rating"] == pytest.approx(50.0)


def test_rsi_votes_contrarian_only_outside_its_neutral_zone():
    rows = rated(*({**NEUTRAL, "rsi": rsi} for rsi in (10.0, 30.0, 50.0, 70.0, 90.0)))
    oscillators = [row["oscillator_score"] for row in rows]
    # Three oscillator votes; RSI is ±1 at 10 / 90 and 0 inside 30–70.
    assert oscillators == pytest.approx([50 + 50 / 3, 50.0, 50.0, 50.0, 50 - 50 / 3])


def test_missing_indicator_column_is_named():
    with pytest.raises(ConfigError, match="rsi"):
        score(indicator_rows(NEUTRAL).drop("rsi"))


def test_signal_bands_at_their_boundaries():
    ratings = [100.0, 80.0, 79.999, 70.0, 69.999, 50.0, 30.001, 30.0, 20.001, 20.0, 0.0, None]
    expected = [
        "Strong Buy",
        "Strong Buy",
        "Buy",
        "Buy",
        "Neutral",
        "Neutral",
        "Neutral",
        "Sell",
        "Sell",
        "Strong Sell",
        "Strong Sell",
        None,
    ]
    frame = pl.DataFrame({"tech_rating": ratings}, schema={"tech_rating": pl.Float64})
    assert frame.select(signal_from_rating(pl.col("tech_rating")).alias("signal"))["signal"].to_list() == expected
    assert SIGNAL_THRESHOLDS == {"Strong Buy": 80.0, "Buy": 70.0, "Sell": 30.0, "Strong Sell": 20.0}


def test_signal_bands_mirror_around_fifty():
    ratings = pl.DataFrame({"r": np.linspace(0.0, 100.0, 401)})
    mirrored = {
        "Strong Buy": "Strong Sell",
        "Buy": "Sell",
        "Neutral": "Neutral",
        "Sell": "Buy",
        "Strong Sell": "Strong Buy",
    }
    signals = ratings.select(
        signal_from_rating(pl.col("r")).alias("up"), signal_from_rating(100.0 - pl.col("r")).alias("down")
    )
    assert [mirrored[s] for s in signals["up"]] == signals["down"].to_list()


# --- regime -------------------------------------------------------------------------------------------


def series(symbol: str, closes: list[float] | np.ndarray, last: date = SESSION) -> pl.DataFrame:
    """Daily bars of `symbol` with the given closes, the final one dated `last`."""
    closes = [float(c) for c in closes]
    days = [last - timedelta(days=len(closes) - 1 - i) for i in range(len(closes))]
    return pl.DataFrame(
        {
            "symbol": symbol,
            "date": days,
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "volume": 1e6,
            "vwap": None,
            "trades": None,
        },
        schema=schema.BARS,
    )


CALM_BULL = 100.0 * 1.001 ** np.arange(250)
CALM_BEAR = 100.0 * 0.999 ** np.arange(250)
CHOPPY_BULL = CALM_BULL * np.where(np.arange(250) % 2 == 0, 1.02, 0.98)


@pytest.mark.parametrize(
    ("closes", "vix", "regime"),
    [
        (CALM_BULL, 15.0, "bull_normal"),
        (CALM_BEAR, 15.0, "bear_normal"),
        (CHOPPY_BULL, 15.0, "bull_high"),
        (CALM_BULL, 30.0, "bull_high"),
        (CALM_BULL[:30], 15.0, "sideways_normal"),
    ],
    ids=["bull", "bear", "realized-vol", "vix", "short-history"],
)
def test_classify_regime(closes, vix, regime):
    index = pl.concat([series(INDEX_SYMBOL, closes), series(VOLATILITY_SYMBOL, [vix] * len(closes))])
    result = classify_regime(index, SESSION)
    assert result["regime"] == regime
    assert result["regime"] == f"{result['trend']}_{result['volatility_state']}"


def test_regime_figures_by_hand():
    result = classify_regime(pl.concat([series(INDEX_SYMBOL, CHOPPY_BULL), series(VOLATILITY_SYMBOL, [17.0])]), SESSION)
    assert result["index_close"] == pytest.approx(CHOPPY_BULL[-1])
    assert result["index_return_1d"] == pytest.approx(CHOPPY_BULL[-1] / CHOPPY_BULL[-2] - 1)
    assert result["index_sma_50"] == pytest.approx(CHOPPY_BULL[-50:].mean())
    assert result["index_sma_200"] == pytest.approx(CHOPPY_BULL[-200:].mean())
    returns = CHOPPY_BULL[-21:][1:] / CHOPPY_BULL[-21:][:-1] - 1
    assert result["index_volatility_20d"] == pytest.approx(returns.std(ddof=1) * math.sqrt(252))
    assert result["vix"] == 17.0


def test_short_history_defaults_to_sideways_normal_with_unknown_figures():
    result = classify_regime(series(INDEX_SYMBOL, [100.0, 101.0]), SESSION)
    assert (result["trend"], result["volatility_state"]) == ("sideways", "normal")
    assert result["index_sma_50"] is None and result["index_volatility_20d"] is None and result["vix"] is None
    assert result["index_return_1d"] == pytest.approx(0.01)


def test_regime_ignores_bars_after_the_session():
    crash = series(INDEX_SYMBOL, CALM_BULL[-1] * 0.9 ** np.arange(1, 31), last=SESSION + timedelta(days=30))
    index = pl.concat([series(INDEX_SYMBOL, CALM_BULL), crash])
    assert classify_regime(index, SESSION)["regime"] == "bull_normal"


# --- market conditions ------------------------------------------------------------------------------


def test_market_conditions_breadth_by_hand():
    rising = 50.0 + np.arange(60)  # advancing, above its SMA 50
    falling = 120.0 - np.arange(60)  # declining, below its SMA 50
    young = [10.0, 9.0, 9.5]  # advancing, too young for an SMA 50
    stale = 50.0 + np.arange(60)  # no bar on the session: not counted at all
    panel = pl.concat(
        [
            series("AAA", rising),
            series("BBB", falling),
            series("CCC", young),
            series("DDD", stale, last=SESSION - timedelta(days=1)),
            series("AAA", [1.0], last=SESSION + timedelta(days=1)),  # after the session: ignored
        ]
    )
    index = pl.concat([series(INDEX_SYMBOL, CALM_BULL), series(VOLATILITY_SYMBOL, [14.0] * 5)])
    conditions = market_conditions(panel, index, SESSION)
    assert conditions.schema == pl.Schema(schema.CONDITIONS)
    row = conditions.row(0, named=True)
    assert conditions.height == 1
    assert row["date"] == SESSION
    assert row["symbols"] == 3
    assert row["pct_advancing"] == pytest.approx(100.0 * 2 / 3)
    assert row["pct_above_sma_50"] == pytest.approx(50.0)
    assert (row["regime"], row["trend"], row["volatility_state"]) == ("bull_normal", "bull", "normal")
    assert row["index_close"] == pytest.approx(CALM_BULL[-1])
    assert row["vix"] == 14.0


def test_market_conditions_without_any_bars():
    empty = schema.empty(schema.BARS)
    row = market_conditions(empty, empty, SESSION).row(0, named=True)
    assert row["symbols"] == 0
    assert row["pct_advancing"] is None and row["pct_above_sma_50"] is None
    assert row["regime"] == "sideways_normal"


# --- sector statistics ------------------------------------------------------------------------------


def test_sector_statistics_by_hand():
    results = pl.DataFrame(
        {
            "sector": ["Energy", "Energy", "Energy", "Utilities", None],
            "tech_rating": [90.0, 60.0, None, 40.0, 75.0],
            "signal": ["Strong Buy", "Neutral", None, "Neutral", "Buy"],
            "mom_21": [0.10, 0.02, 0.03, -0.01, None],
        }
    )
    statistics = sector_statistics(results)
    assert statistics.schema == pl.Schema(SECTOR_STATISTICS)
    assert statistics.to_dicts() == [
        {
            "sector": "Energy",
            "symbols": 3,
            "mean_tech_rating": 75.0,
            "median_tech_rating": 75.0,
            "pct_buy": pytest.approx(100.0 / 3),
            "mean_mom_21": pytest.approx(0.05),
        },
        {
            "sector": "Utilities",
            "symbols": 1,
            "mean_tech_rating": 40.0,
            "median_tech_rating": 40.0,
            "pct_buy": 0.0,
            "mean_mom_21": -0.01,
        },
        {
            "sector": None,
            "symbols": 1,
            "mean_tech_rating": 75.0,
            "median_tech_rating": 75.0,
            "pct_buy": 100.0,
            "mean_mom_21": None,
        },
    ]
