"""The fixed numbers of the simulated market: regimes, volatility dynamics, jumps, index and VIX levels, and
how each session's random draws are seeded. See docs/simulated-market.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class _Regime(NamedTuple):
    name: str
    drift: float  # daily log drift of the market factor
    volatility: float  # daily volatility the market GARCH reverts to
    idiosyncratic_multiplier: float  # scales stocks' own variance target
    vix_premium: float  # points added to the volatility index's target


#: Market regimes in chain-state order; bull is the starting state.
REGIMES: tuple[_Regime, ...] = (
    _Regime("bull", 0.0006, 0.0075, 1.0, 0.0),
    _Regime("bear", -0.0010, 0.017, 1.35, 4.0),
    _Regime("chop", -0.0002, 0.013, 1.2, 3.0),
)
#: Daily transition probabilities (row: today's regime); expected stays ≈ 170 / 40 / 35 sessions.
REGIME_TRANSITIONS = np.array(
    [
        [0.9940, 0.0020, 0.0040],
        [0.0120, 0.9750, 0.0130],
        [0.0200, 0.0080, 0.9720],
    ]
)
_MARKET_GARCH = (0.08, 0.89)  # (shock weight, persistence) of the market's conditional variance
_STOCK_GARCH = (0.07, 0.91)
_SECTOR_VOLATILITY = 0.006  # daily, in the bull regime's market volatility
_NEWS_PROBABILITY = 0.002  # chance of an idiosyncratic news jump per symbol-day
_NEWS_SIZE = 4.0  # news jump std in units of the symbol's base volatility
_IPO_POP_MEAN, _IPO_POP_SPREAD = 0.10, 0.15  # first-day log return over the offer price
_INDEX_TRACKING = 0.001  # daily std of the index's own noise around its constituents' common moves
_FINEST_TICKS_PER_DOLLAR = 1e4  # below $1 prices tick in hundredths of a cent
_INDEX_START = 266.86  # SPY's close the session before the default epoch
_VIX_START = 11.0
_VARIANCE_RISK_PREMIUM = 1.2  # implied over expected volatility
_MARKET_CAP_BOUNDS = (50e6, 2e12)
_MEDIAN_MARKET_CAP = 2.5e9
_SURPRISE_CENTER, _SURPRISE_SCALE = 1.5, 6.0  # surprise_pct = center + scale × Student-t(3)

#: Random streams: a session's market and stock draws come from `np.random.default_rng([seed, day_number,
#: stream])`, the universe's from `[seed, _STREAM_UNIVERSE]` and a quarter's earnings from `[seed,
#: _STREAM_EARNINGS, quarter]`; no generator is shared across days, so any range of sessions is consistent.
_STREAM_UNIVERSE, _STREAM_MARKET, _STREAM_STOCKS, _STREAM_EARNINGS = range(4)


def _day_numbers(days: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 (the `day_number` a session's draws are seeded with)."""
    return days.astype("datetime64[D]").astype(np.int64)
