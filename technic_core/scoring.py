"""TechRating, its Signal, the market regime, market conditions and per-sector statistics.

TechRating (0–100) follows the idea of TradingView's technical rating — many small votes, each saying
"bullish", "bearish" or "neutral", averaged into one number — with two changes: votes are continuous
(a price 1 % above its SMA is a weaker vote than one 20 % above), and they are grouped into four components
whose weights say how much each kind of evidence should count.

Each sub-score lies in [-1, 1]; a component is ``50 + 50 × mean(available sub-scores)``, so 50 is neutral:

========================  ======  =================================================================
component                 weight  sub-scores
========================  ======  =================================================================
``trend_score``           35      close vs sma_50, close vs sma_200, sma_50 vs sma_200 (relative
                                  gaps); MACD vs its signal line (the histogram) and MACD vs zero,
                                  both relative to the close so they compare across prices
``momentum_score``        30      mom_21, mom_63, mom_126
``oscillator_score``      20      RSI zones, Bollinger width, position in the 20-session range
``volume_score``          15      volume confirmation: (volume_ratio − 1) × direction of mom_21
========================  ======  =================================================================

Continuous votes saturate through ``tanh(x / scale)``; `SATURATION_SCALES` holds the scales, chosen near a
typical one-sigma value of the input on a broad US market, so an ordinary move votes about ±0.76 and only
an unusual one reaches ±1. The oscillators are the contrarian counterweight, as in TradingView: RSI votes
only outside 30–70 (linearly, reaching ±1 at 10 and 90; oversold is bullish rebound potential, overbought
bearish exhaustion risk); narrow Bollinger bands vote bullish (contraction precedes expansion, and calm
trends are the durable ones) while very wide bands — the aftermath of a shock — vote bearish; the range
position maps the 20-session low → -1 and high → +1.

``tech_rating = Σ weight × component / Σ weight`` over the available components. Missing inputs (young
symbols lack sma_200 and mom_126) drop out of their component's mean instead of counting as neutral, and a
component with no input drops out of the weighting; the rating is null only when all four are missing.

Input units follow the catalog (`technic_core.catalog.registry`): RSI on 0–100, momenta and distances as fractions
(0.05 = 5 %), MACD in price units, `bb_width` as band width over the middle band, `volume_ratio` as the
session's volume over its recent mean.

Signal bands (`SIGNAL_THRESHOLDS`) are symmetric around 50: Strong Buy at ≥ 80, Buy at ≥ 70, Sell at
≤ 30, Strong Sell at ≤ 20, Neutral strictly between 30 and 70 — so ratings r and 100 − r get mirrored
signals. On simulated 1,500-symbol markets whose index went sideways over the last quarter, these scales
and bands put 10–20 % of symbols at Buy or better and 1–5 % at Strong Buy. The rating is absolute, not a
rank: after a broad rally the share of buys rises, and the regime (`classify_regime`) says why.
"""

from __future__ import annotations

import functools
import math
from datetime import date

import polars as pl

from technic_core import schema
from technic_core.errors import ConfigError
from technic_core.sources import INDEX_SYMBOL, VOLATILITY_SYMBOL

#: Weight of each component in TechRating (they sum to 100).
COMPONENT_WEIGHTS: dict[str, float] = {
    "trend_score": 35.0,
    "momentum_score": 30.0,
    "oscillator_score": 20.0,
    "volume_score": 15.0,
}

#: Input value that makes a continuous vote tanh(1) ≈ 0.76: about one typical sigma of that input.
SATURATION_SCALES: dict[str, float] = {
    "close_vs_sma_50": 0.05,
    "close_vs_sma_200": 0.10,
    "sma_50_vs_sma_200": 0.05,
    "macd_hist_vs_close": 0.005,
    "macd_vs_close": 0.01,
    "mom_21": 0.10,
    "mom_63": 0.18,
    "mom_126": 0.25,
    "bb_width": 0.15,
    "volume_ratio": 1.0,
}

#: RSI bounds of the neutral zone, and how far past them (RSI points) a vote reaches ±1.
RSI_OVERSOLD = 30.0
RSI_OVERBOUGHT = 70.0
RSI_RAMP = 20.0

#: Signal bands on tech_rating: buy bands apply at or above, sell bands at or below their threshold.
SIGNAL_THRESHOLDS: dict[str, float] = {
    "Strong Buy": 80.0,
    "Buy": 70.0,
    "Sell": 30.0,
    "Strong Sell": 20.0,
}

#: Signals counted as buys in `sector_statistics`.
BUY_SIGNALS: tuple[str, ...] = ("Strong Buy", "Buy")

#: Sessions per year, to annualize daily volatility.
SESSIONS_PER_YEAR = 252
#: The index's annualized 20-session realized volatility above which the market counts as high-volatility.
HIGH_REALIZED_VOLATILITY = 0.25
#: VIX level above which the market counts as high-volatility (its long-run median is near 18).
HIGH_VIX = 25.0
#: Sessions in the realized-volatility window of the regime and market conditions.
VOLATILITY_WINDOW = 20

#: Columns of `sector_statistics`, one row per sector.
SECTOR_STATISTICS: schema.Columns = {
    "sector": pl.String,
    "symbols": pl.Int64,
    "mean_tech_rating": pl.Float64,
    "median_tech_rating": pl.Float64,
    "pct_buy": pl.Float64,
    "mean_mom_21": pl.Float64,
}


def score(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` plus the four component scores, `tech_rating` and `signal` (see the module docstring).

    `frame` needs `close` and every `schema.INDICATORS` column; nulls are fine, a missing column is not.
    """
    missing = [c for c in ("close", *schema.INDICATORS) if c not in frame.columns]
    if missing:
        raise ConfigError(f"score: missing column(s) {', '.join(missing)}")
    components, rating, signal = _score_expressions()
    # One query, its expressions built once: a scan scores a pass of symbols at a time, and for a few hundred
    # rows building and planning the expressions costs more than evaluating them.
    return frame.lazy().with_columns(components).with_columns(rating).with_columns(signal).collect()


@functools.cache
def _score_expressions() -> tuple[list[pl.Expr], pl.Expr, pl.Expr]:
    """The expressions of `score`: the four component scores, then `tech_rating`, then `signal`."""
    components = {
        "trend_score": _trend_votes(),
        "momentum_score": _momentum_votes(),
        "oscillator_score": _oscillator_votes(),
        "volume_score": _volume_votes(),
    }
    rating = _available_weighted_mean([(pl.col(name), weight) for name, weight in COMPONENT_WEIGHTS.items()])
    return (
        [
            (50.0 + 50.0 * _available_weighted_mean([(vote, 1.0) for vote in votes])).alias(name)
            for name, votes in components.items()
        ],
        rating.alias("tech_rating"),
        signal_from_rating(pl.col("tech_rating")).alias("signal"),
    )


def signal_from_rating(rating: pl.Expr) -> pl.Expr:
    """The `schema.SIGNALS` band of a tech_rating expression per `SIGNAL_THRESHOLDS`; null stays null."""
    return (
        pl.when(rating >= SIGNAL_THRESHOLDS["Strong Buy"])
        .then(pl.lit("Strong Buy"))
        .when(rating >= SIGNAL_THRESHOLDS["Buy"])
        .then(pl.lit("Buy"))
        .when(rating <= SIGNAL_THRESHOLDS["Strong Sell"])
        .then(pl.lit("Strong Sell"))
        .when(rating <= SIGNAL_THRESHOLDS["Sell"])
        .then(pl.lit("Sell"))
        .when(rating.is_not_null())
        .then(pl.lit("Neutral"))
    )


def classify_regime(index_bars: pl.DataFrame, session: date) -> dict[str, str | float | None]:
    """The market regime on `session` from the `INDEX_SYMBOL` (and `VOLATILITY_SYMBOL`) bars up to it.

    Returns `regime` ("<trend>_<volatility_state>"), `trend` (bull / bear / sideways), `volatility_state`
    (high / normal) and the figures behind them: `index_close`, `index_return_1d`, `index_sma_50`,
    `index_sma_200`, `index_volatility_20d` (annualized), `vix` — each the latest value on or before
    `session`, None when the history is too short to compute it.

    Trend is bull when the close and the 50-session SMA are both above the 200-session SMA, bear when both
    are below, sideways otherwise — including with fewer than 200 sessions, when no long trend can be
    claimed. Volatility is high when the realized volatility exceeds `HIGH_REALIZED_VOLATILITY` or the VIX
    exceeds `HIGH_VIX`; an unknown figure never makes it high, so a short history reads as normal.
    """
    as_of = index_bars.filter(pl.col("date") <= session).sort("date")
    figures = _index_figures(as_of.filter(pl.col("symbol") == INDEX_SYMBOL))
    vix_closes = as_of.filter(pl.col("symbol") == VOLATILITY_SYMBOL).get_column("close")
    figures["vix"] = vix_closes[-1] if vix_closes.len() else None

    close, sma_50, sma_200 = figures["index_close"], figures["index_sma_50"], figures["index_sma_200"]
    trend = "sideways"
    if close is not None and sma_50 is not None and sma_200 is not None:
        if close > sma_200 and sma_50 > sma_200:
            trend = "bull"
        elif close < sma_200 and sma_50 < sma_200:
            trend = "bear"
    volatility = figures["index_volatility_20d"]
    vix = figures["vix"]
    high = (volatility is not None and volatility > HIGH_REALIZED_VOLATILITY) or (vix is not None and vix > HIGH_VIX)
    volatility_state = "high" if high else "normal"
    return {"regime": f"{trend}_{volatility_state}", "trend": trend, "volatility_state": volatility_state, **figures}


def market_conditions(bars: pl.DataFrame, index_bars: pl.DataFrame, session: date) -> pl.DataFrame:
    """One `schema.CONDITIONS` row for `session`: the regime (`classify_regime`) and market breadth.

    Breadth counts the symbols with a bar on the session (`symbols`): `pct_advancing` is the share of them
    whose close beats their previous bar's close (a first-ever bar cannot advance), `pct_above_sma_50` the
    share of those with at least 50 bars whose close is above their own 50-bar SMA. Bars after `session`
    are ignored; percentages are null when no symbol qualifies.
    """
    close = pl.col("close")
    per_symbol = (
        bars.lazy()
        .filter(pl.col("date") <= session)
        .sort("symbol", "date")
        .group_by("symbol")
        .agg(
            (pl.col("date").last() == session).alias("on_session"),
            (close.last() > close.tail(2).first()).alias("advancing"),
            pl.when(pl.len() >= 50).then(close.last() > close.tail(50).mean()).alias("above_sma_50"),
        )
        .filter(pl.col("on_session"))
    )
    breadth = per_symbol.select(
        (pl.col("advancing").cast(pl.Float64).mean() * 100.0).alias("pct_advancing"),
        (pl.col("above_sma_50").cast(pl.Float64).mean() * 100.0).alias("pct_above_sma_50"),
        pl.len().cast(pl.Int64).alias("symbols"),
    ).collect()
    conditions = breadth.with_columns(
        pl.lit(session, dtype=pl.Date).alias("date"),
        *(pl.lit(value).alias(name) for name, value in classify_regime(index_bars, session).items()),
    )
    return schema.conform(conditions, schema.CONDITIONS, "conditions")


def sector_statistics(results: pl.DataFrame) -> pl.DataFrame:
    """Per-sector summary of scored results (`SECTOR_STATISTICS` columns), sorted by sector, null last.

    `pct_buy` is the share (0–100) of the sector's rows signalled Buy or Strong Buy; means and the median
    skip null ratings and momenta. Symbols without a sector form their own row (sector null) so every
    result is counted somewhere. Computed once per scan from the results, never per symbol.
    """
    statistics = (
        results.group_by("sector")
        .agg(
            pl.len().cast(pl.Int64).alias("symbols"),
            pl.col("tech_rating").mean().alias("mean_tech_rating"),
            pl.col("tech_rating").median().alias("median_tech_rating"),
            (pl.col("signal").is_in(BUY_SIGNALS).fill_null(False).cast(pl.Float64).mean() * 100.0).alias("pct_buy"),
            pl.col("mom_21").mean().alias("mean_mom_21"),
        )
        .sort("sector", nulls_last=True)
    )
    return schema.conform(statistics, SECTOR_STATISTICS, "sector_statistics")


def _saturate(value: pl.Expr, scale_name: str) -> pl.Expr:
    """A continuous vote in (-1, 1): tanh of `value` over its typical size."""
    return (value / SATURATION_SCALES[scale_name]).tanh()


def _relative_gap(numerator: str, denominator: str) -> pl.Expr:
    """How far one price-like column sits above another, as a fraction of the latter."""
    return pl.col(numerator) / pl.col(denominator) - 1.0


def _trend_votes() -> list[pl.Expr]:
    """Is the price above its averages, are the averages stacked bullishly, and is MACD above its signal and zero?

    `macd_hist` is MACD minus its signal line by definition, so it is the crossover vote; it is rebuilt
    from the two lines when only they are present.
    """
    crossover = pl.coalesce(pl.col("macd_hist"), pl.col("macd") - pl.col("macd_signal"))
    return [
        _saturate(_relative_gap("close", "sma_50"), "close_vs_sma_50"),
        _saturate(_relative_gap("close", "sma_200"), "close_vs_sma_200"),
        _saturate(_relative_gap("sma_50", "sma_200"), "sma_50_vs_sma_200"),
        _saturate(crossover / pl.col("close"), "macd_hist_vs_close"),
        _saturate(pl.col("macd") / pl.col("close"), "macd_vs_close"),
    ]


def _momentum_votes() -> list[pl.Expr]:
    """Returns over one, three and six months, each saturated at its own horizon's typical size."""
    return [_saturate(pl.col(horizon), horizon) for horizon in ("mom_21", "mom_63", "mom_126")]


def _oscillator_votes() -> list[pl.Expr]:
    """The contrarian and setup votes: RSI zones, Bollinger band width, position in the 20-session range.

    The range position uses the distances' magnitudes, so it does not depend on how they are signed.
    """
    rsi = pl.col("rsi")
    rsi_zone = ((RSI_OVERSOLD - rsi) / RSI_RAMP).clip(0.0, 1.0) - ((rsi - RSI_OVERBOUGHT) / RSI_RAMP).clip(0.0, 1.0)
    typical_width = SATURATION_SCALES["bb_width"]
    above_low, below_high = pl.col("dist_low_20").abs(), pl.col("dist_high_20").abs()
    range_position = 2.0 * above_low / (above_low + below_high) - 1.0
    return [
        rsi_zone,
        _saturate(typical_width - pl.col("bb_width"), "bb_width"),
        range_position,
    ]


def _volume_votes() -> list[pl.Expr]:
    """Volume confirms a move when above its norm, and casts doubt on it when below.

    The vote is (volume_ratio − 1), saturated, times the saturated one-month momentum as a soft direction:
    heavy volume in a rally is bullish, heavy volume in a sell-off bearish, a rally on thin volume suspect.
    """
    return [_saturate(pl.col("volume_ratio") - 1.0, "volume_ratio") * _saturate(pl.col("mom_21"), "mom_21")]


def _available_weighted_mean(weighted: list[tuple[pl.Expr, float]]) -> pl.Expr:
    """Weighted mean of the non-null expressions of each row; null when all of them are null.

    NaN (a 0 / 0 such as a flat 20-session range) counts as missing, not as a vote that poisons the mean.
    """
    votes = [(value.fill_nan(None), weight) for value, weight in weighted]
    total = pl.sum_horizontal([value * weight for value, weight in votes])
    weights = pl.sum_horizontal([pl.when(value.is_not_null()).then(weight).otherwise(0.0) for value, weight in votes])
    return pl.when(weights > 0).then(total / weights)


def _index_figures(index: pl.DataFrame) -> dict[str, float | None]:
    """Close, 1-session return, SMA 50/200 and annualized 20-session volatility of a date-sorted index series."""
    close = pl.col("close")
    sessions = pl.len()
    row = index.select(
        close.last().alias("index_close"),
        pl.when(sessions >= 2).then(close.last() / close.tail(2).first() - 1.0).alias("index_return_1d"),
        pl.when(sessions >= 50).then(close.tail(50).mean()).alias("index_sma_50"),
        pl.when(sessions >= 200).then(close.tail(200).mean()).alias("index_sma_200"),
        pl.when(sessions > VOLATILITY_WINDOW)
        .then(close.pct_change().tail(VOLATILITY_WINDOW).std() * math.sqrt(SESSIONS_PER_YEAR))
        .alias("index_volatility_20d"),
    )
    return row.row(0, named=True)
