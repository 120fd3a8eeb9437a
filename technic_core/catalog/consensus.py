"""The consensus rating: the many-votes technical rating screener users know, beside TechRating.

Modelled on TradingView's published Technical Ratings. Every vote is +1 (buy), −1 (sell) or 0 (neutral);
a vote that lacks an input (warm-up) is not cast and does not count. Each side averages its cast votes into
[−1, 1]; ``consensus_rating`` is the mean of the two sides, or the one side that has votes while the other
has none yet.

Moving averages (``consensus_ma``): for each of sma_10, sma_20, sma_50, sma_100, sma_200, ema_10, ema_20,
ema_50 and ema_200, buy when the close is above it, sell when below.

Oscillators (``consensus_oscillators``), "rising" and "falling" meaning against the previous bar:

==============  ==================================================  =================================================
oscillator      buy                                                 sell
==============  ==================================================  =================================================
RSI (14)        rsi < 30 and rising                                 rsi > 70 and falling
Stochastic      stoch_k < 20, stoch_d < 20 and stoch_k > stoch_d    stoch_k > 80, stoch_d > 80 and stoch_k < stoch_d
CCI (20)        cci_20 < −100 and rising                            cci_20 > 100 and falling
ADX (14)        adx_14 > 20 and plus_di_14 > minus_di_14            adx_14 > 20 and plus_di_14 < minus_di_14
MACD            macd > macd_signal                                  macd < macd_signal
Williams %R     willr_14 < −80 and rising                           willr_14 > −20 and falling
Momentum (10)   roc_10 rising                                       roc_10 falling
==============  ==================================================  =================================================

One deliberate difference from TradingView: the ADX vote reads the state of the two DI lines instead of
their crossing on this very bar, so it keeps voting while the trend lasts rather than on one bar in many.
TradingView's other oscillators (Awesome Oscillator, Stochastic RSI, Bull Bear Power, Ultimate Oscillator)
and its Ichimoku, VWMA and Hull MA votes have no catalog column and do not vote.

Ties: two prices closer than `TIE` × the close, or two oscillator readings closer than `TIE` on their own
scale, are equal — neither above nor below, neither rising nor falling — so that rounding residue (a flat
series' moving averages differ from its close in the last bits) casts no vote.

Bands of ``consensus_signal`` (symmetric, so ratings r and −r get mirrored signals): Strong Sell at ≤ −0.5,
Sell below −0.1, Neutral from −0.1 to 0.1, Buy above 0.1, Strong Buy at ≥ 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

#: The moving averages whose position against the close votes.
MOVING_AVERAGES = ("sma_10", "sma_20", "sma_50", "sma_100", "sma_200", "ema_10", "ema_20", "ema_50", "ema_200")

#: Oscillator zones: RSI oversold / overbought, stochastic, CCI, Williams %R, and ADX's trend threshold.
RSI_ZONE = (30.0, 70.0)
STOCH_ZONE = (20.0, 80.0)
CCI_ZONE = (-100.0, 100.0)
WILLR_ZONE = (-80.0, -20.0)
ADX_TREND = 20.0

#: Comparisons closer than this (a share of the close for prices, on their own scale for oscillators) are ties.
TIE = 1e-9

#: Bands of consensus_rating, from the bottom: (signal, its upper bound, whether the bound is included).
SIGNAL_BANDS = (
    ("Strong Sell", -0.5, True),
    ("Sell", -0.1, False),
    ("Neutral", 0.1, True),
    ("Buy", 0.5, False),
    ("Strong Buy", np.inf, True),
)


class _Tally:
    """Votes summed and counted per cell; both fit in small integers (at most nine votes a side)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.score = np.zeros(shape, dtype=np.int8)
        self.cast = np.zeros(shape, dtype=np.int8)

    def vote(self, buy: np.ndarray, sell: np.ndarray, available: np.ndarray) -> None:
        """Add a vote; `buy` and `sell` must be False wherever the vote is not `available`."""
        self.score += buy
        self.score -= sell
        self.cast += available

    def mean(self) -> np.ndarray:
        """The mean cast vote per cell, NaN where none was cast."""
        return np.divide(self.score, self.cast, out=np.full(self.score.shape, np.nan), where=self.cast > 0)


def rate(close: np.ndarray, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """consensus_ma, consensus_oscillators and consensus_rating for matrices indexed by bar along axis 0.

    `columns` holds every name in `MOVING_AVERAGES` and the oscillator columns of the module docstring, NaN
    where they have no value. Row 0 has no previous bar, so only its moving-average votes could count; the
    catalog's moving averages need ten bars, so row 0 is NaN throughout.
    """
    now, before = slice(1, None), slice(None, -1)
    shape = (len(close) - 1, *close.shape[1:])
    averages, oscillators = _Tally(shape), _Tally(shape)
    price = close[now]
    price_tie = price * TIE
    for name in MOVING_AVERAGES:
        above = price - columns[name][now]
        averages.vote(above > price_tie, above < -price_tie, ~np.isnan(above))

    def against_previous(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The column on this bar, whether it rose or fell since the previous bar, and whether both exist."""
        value = columns[name][now]
        change = value - columns[name][before]
        return value, change > TIE, change < -TIE, ~np.isnan(change)

    for name, (low, high) in (("rsi", RSI_ZONE), ("cci_20", CCI_ZONE), ("willr_14", WILLR_ZONE)):
        value, rising, falling, available = against_previous(name)
        oscillators.vote((value < low) & rising, (value > high) & falling, available)
    _, rising, falling, available = against_previous("roc_10")
    oscillators.vote(rising, falling, available)
    k, d = columns["stoch_k"][now], columns["stoch_d"][now]
    low, high = STOCH_ZONE
    k_over_d = k - d
    oscillators.vote(
        (k < low) & (d < low) & (k_over_d > TIE), (k > high) & (d > high) & (k_over_d < -TIE), ~np.isnan(k_over_d)
    )
    adx = columns["adx_14"][now]
    trending = adx > ADX_TREND
    plus_over_minus = columns["plus_di_14"][now] - columns["minus_di_14"][now]
    oscillators.vote(trending & (plus_over_minus > TIE), trending & (plus_over_minus < -TIE), ~np.isnan(adx))
    macd_over_signal = columns["macd"][now] - columns["macd_signal"][now]
    oscillators.vote(macd_over_signal > price_tie, macd_over_signal < -price_tie, ~np.isnan(macd_over_signal))

    ma, osc = averages.mean(), oscillators.mean()
    rating = np.where(np.isnan(ma), osc, np.where(np.isnan(osc), ma, (ma + osc) / 2))
    result = {}
    for name, values in (("consensus_ma", ma), ("consensus_oscillators", osc), ("consensus_rating", rating)):
        result[name] = np.empty(close.shape)
        result[name][0] = np.nan
        result[name][now] = values
    return result


def signal(rating: np.ndarray) -> pl.Series:
    """The `SIGNAL_BANDS` band of each consensus_rating; NaN gives null."""
    band = np.zeros(rating.shape)
    for _, bound, included in SIGNAL_BANDS[:-1]:
        band += rating > bound if included else rating >= bound  # past an included bound only above it
    band[np.isnan(rating)] = np.nan
    labels = pl.Series([name for name, _, _ in SIGNAL_BANDS])
    return labels.gather(pl.Series(band, nan_to_null=True).cast(pl.UInt32))
