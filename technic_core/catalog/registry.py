"""The screener's column catalog: every column a scan can show or filter on, described in one place.

Each `Column` says what the column is (`description`), its polars `dtype`, its `unit`, how many earlier
sessions of the symbol's own history it needs before it has a value (`lookback`: the value is null on the
symbol's first `lookback` bars), where it comes from (`source`) and, for columns a source may lack, why it
can be null (`null_reason`). `technic_core.catalog.engine.compute_catalog` computes exactly these columns.

Sources: ``bars`` — the symbol's own bars; ``index`` — the symbol's bars and the broad-market index series
read on the symbol's dates; ``universe`` — passed through from the universe / reference frame; ``derived`` —
computed from other catalog columns.

Unit convention — one for the whole catalog:

* ``fraction``: returns, changes, distances, gaps and other relative quantities as plain fractions, 0.04
  meaning 4 % (a close 4 % above its 50-session SMA has ``close_vs_sma_50 = 0.04``). The existing momentum
  and distance columns (``mom_21``, ``dist_high_20`` …) and ``bb_width`` (band width over the middle band)
  already used fractions.
* ``percent``: 4.0 meaning 4 % — only ``atr_pct``, which predates the catalog and keeps its values (the
  TechRating inputs and stored results depend on them). It is the one column that differs.
* ``points``: an oscillator on its native scale, as screeners show it — RSI, stochastics, MFI, ADX/DI and
  Aroon 0–100, Williams %R −100–0, CCI unbounded (mostly within ±300); each description gives the range.
* ``price``: the symbol's quote currency per share (moving averages, bands, ATR, MACD, 52-week range).
* ``ratio``: a multiple where 1 is parity (relative volume, beta).
* ``shares``, ``dollars``: volume in shares, dollar volume and market cap in dollars.
* ``score``: the consensus rating's −1 (every vote sell) … +1 (every vote buy).
* ``sessions``, ``boolean``, ``text``: counts of bars, flags and names.

Aliases: four screener names carry exactly the values of an existing column (``alias_of``): ``rel_volume``
is ``volume_ratio`` (today's volume over the 20-session mean including today, so it equals
``volume / avg_volume_20``), and ``change_21d``, ``change_63d``, ``change_126d`` are ``mom_21``, ``mom_63``,
``mom_126``. Both names stay, so existing readers keep working and screener users find the name they know.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

#: Every unit a column may have (see the module docstring).
UNITS = ("fraction", "percent", "points", "price", "ratio", "shares", "dollars", "score", "sessions", "boolean", "text")

#: Every source a column may come from (see the module docstring).
SOURCES = ("bars", "index", "universe", "derived")

#: Why a pass-through column can be null.
_NO_UNIVERSE = "null when no universe frame is given or it has no row (or no value) for the symbol"
_NO_INDEX = "null when no index series is given or it has no close on one of the symbol's dates the window spans"


@dataclass(frozen=True)
class Column:
    """One catalog column. `lookback` counts the symbol's own earlier bars the first value needs."""

    name: str
    dtype: pl.DataType
    unit: str
    group: str
    description: str
    lookback: int = 0
    source: str = "bars"
    null_reason: str | None = None
    alias_of: str | None = None


def _sma(period: int) -> Column:
    return Column(
        f"sma_{period}",
        pl.Float64(),
        "price",
        "moving averages",
        f"Simple moving average of the last {period} closes (TA-Lib SMA).",
        lookback=period - 1,
    )


def _ema(period: int) -> Column:
    return Column(
        f"ema_{period}",
        pl.Float64(),
        "price",
        "moving averages",
        f"Exponential moving average of the closes, alpha 2 / ({period} + 1), seeded as TA-Lib seeds it: with "
        f"the SMA of the first {period} closes (TA-Lib EMA).",
        lookback=period - 1,
    )


def _close_vs_sma(period: int) -> Column:
    return Column(
        f"close_vs_sma_{period}",
        pl.Float64(),
        "fraction",
        "moving averages",
        f"Close over sma_{period}, minus 1: how far the close is above (+) or below (−) its {period}-session average.",
        lookback=period - 1,
        source="derived",
    )


def _change(sessions: int, alias_of: str | None = None) -> Column:
    return Column(
        f"change_{sessions}d",
        pl.Float64(),
        "fraction",
        "performance",
        f"Close over the close {sessions} bars earlier, minus 1 (TA-Lib ROCP).",
        lookback=sessions,
        alias_of=alias_of,
    )


def _momentum(sessions: int) -> Column:
    return Column(
        f"mom_{sessions}",
        pl.Float64(),
        "fraction",
        "performance",
        f"Close over the close {sessions} bars earlier, minus 1 (TA-Lib ROC / 100); the same values as "
        f"change_{sessions}d.",
        lookback=sessions,
    )


CATALOG: tuple[Column, ...] = (
    # --- moving averages --------------------------------------------------------------------------------
    *(_sma(period) for period in (10, 20, 50, 100, 200)),
    *(_ema(period) for period in (10, 20, 50, 200)),
    *(_close_vs_sma(period) for period in (20, 50, 200)),
    Column(
        "golden_cross",
        pl.Boolean(),
        "boolean",
        "moving averages",
        "sma_50 crossed above sma_200 on this session: sma_50 > sma_200 now and sma_50 ≤ sma_200 on the previous bar.",
        lookback=200,
        source="derived",
    ),
    Column(
        "death_cross",
        pl.Boolean(),
        "boolean",
        "moving averages",
        "sma_50 crossed below sma_200 on this session: sma_50 < sma_200 now and sma_50 ≥ sma_200 on the previous bar.",
        lookback=200,
        source="derived",
    ),
    # --- trend strength ---------------------------------------------------------------------------------
    Column(
        "adx_14",
        pl.Float64(),
        "points",
        "trend",
        "Average directional index, 0–100, Wilder-smoothed over 14 bars (TA-Lib ADX); above 20–25 a trend "
        "is under way, whatever its direction.",
        lookback=27,
    ),
    Column(
        "plus_di_14",
        pl.Float64(),
        "points",
        "trend",
        "Plus directional indicator, 0–100: Wilder-smoothed up-moves over the true range (TA-Lib PLUS_DI); "
        "0 while the smoothed true range is zero.",
        lookback=14,
    ),
    Column(
        "minus_di_14",
        pl.Float64(),
        "points",
        "trend",
        "Minus directional indicator, 0–100: Wilder-smoothed down-moves over the true range (TA-Lib "
        "MINUS_DI); 0 while the smoothed true range is zero.",
        lookback=14,
    ),
    Column(
        "aroon_up_25",
        pl.Float64(),
        "points",
        "trend",
        "Aroon up, 0–100: 100 × (25 − bars since the highest high of the last 26 bars) / 25, the latest "
        "bar winning ties (TA-Lib AROON).",
        lookback=25,
    ),
    Column(
        "aroon_down_25",
        pl.Float64(),
        "points",
        "trend",
        "Aroon down, 0–100: 100 × (25 − bars since the lowest low of the last 26 bars) / 25, the latest bar "
        "winning ties (TA-Lib AROON).",
        lookback=25,
    ),
    # --- oscillators ------------------------------------------------------------------------------------
    Column(
        "rsi",
        pl.Float64(),
        "points",
        "oscillators",
        "Relative strength index over 14 bars, 0–100 (TA-Lib RSI); 0 on a flat series, as TA-Lib reports it.",
        lookback=14,
    ),
    Column(
        "macd",
        pl.Float64(),
        "price",
        "oscillators",
        "MACD line: EMA(12) − EMA(26) of the closes, both started at bar 25 (TA-Lib MACD 12, 26, 9); "
        "reported from bar 33, where its signal starts.",
        lookback=33,
    ),
    Column(
        "macd_signal",
        pl.Float64(),
        "price",
        "oscillators",
        "Signal line: the 9-bar EMA of the MACD line (TA-Lib MACD 12, 26, 9).",
        lookback=33,
    ),
    Column(
        "macd_hist",
        pl.Float64(),
        "price",
        "oscillators",
        "MACD histogram: macd − macd_signal.",
        lookback=33,
        source="derived",
    ),
    Column(
        "stoch_k",
        pl.Float64(),
        "points",
        "oscillators",
        "Slow stochastic %K, 0–100: the 3-bar SMA of 100 × (close − lowest low) / (highest high − lowest "
        "low) over 14 bars (TA-Lib STOCH 14, 3 SMA, 3 SMA; a zero range counts 0).",
        lookback=17,
    ),
    Column(
        "stoch_d",
        pl.Float64(),
        "points",
        "oscillators",
        "Slow stochastic %D, 0–100: the 3-bar SMA of stoch_k (TA-Lib STOCH 14, 3 SMA, 3 SMA).",
        lookback=17,
    ),
    Column(
        "willr_14",
        pl.Float64(),
        "points",
        "oscillators",
        "Williams %R, −100–0: −100 × (highest high − close) / (highest high − lowest low) over 14 bars "
        "(TA-Lib WILLR); 0 for a zero range, as TA-Lib reports it.",
        lookback=13,
    ),
    Column(
        "cci_20",
        pl.Float64(),
        "points",
        "oscillators",
        "Commodity channel index, unbounded (mostly ±300): (typical price − its 20-bar mean) / (0.015 × "
        "mean absolute deviation), typical price (high + low + close) / 3 (TA-Lib CCI); 0 on a flat "
        "window.",
        lookback=19,
    ),
    Column(
        "mfi_14",
        pl.Float64(),
        "points",
        "oscillators",
        "Money flow index, 0–100: 100 × positive / (positive + negative) money flow (typical price × "
        "volume) over 14 bars (TA-Lib MFI); 0 when no money flowed.",
        lookback=14,
    ),
    Column(
        "roc_10",
        pl.Float64(),
        "fraction",
        "oscillators",
        "Rate of change over 10 bars: close over the close 10 bars earlier, minus 1 (TA-Lib ROC / 100, as a "
        "fraction like every change in the catalog).",
        lookback=10,
    ),
    # --- volatility -------------------------------------------------------------------------------------
    Column(
        "bb_upper",
        pl.Float64(),
        "price",
        "volatility",
        "Upper Bollinger band: sma_20 + 2 population standard deviations of the last 20 closes (TA-Lib "
        "BBANDS 20, 2, 2).",
        lookback=19,
    ),
    Column(
        "bb_lower",
        pl.Float64(),
        "price",
        "volatility",
        "Lower Bollinger band: sma_20 − 2 population standard deviations of the last 20 closes (TA-Lib "
        "BBANDS 20, 2, 2).",
        lookback=19,
    ),
    Column(
        "bb_pct_b",
        pl.Float64(),
        "fraction",
        "volatility",
        "Bollinger %B: (close − bb_lower) / (bb_upper − bb_lower); 0 on the lower band, 1 on the upper, "
        "0.5 when the bands have zero width (a flat window, where the close is the middle band).",
        lookback=19,
    ),
    Column(
        "bb_width",
        pl.Float64(),
        "fraction",
        "volatility",
        "Bollinger band width: (bb_upper − bb_lower) / sma_20.",
        lookback=19,
    ),
    Column(
        "atr",
        pl.Float64(),
        "price",
        "volatility",
        "Average true range over 14 bars, Wilder-smoothed (TA-Lib ATR).",
        lookback=14,
    ),
    Column(
        "atr_pct",
        pl.Float64(),
        "percent",
        "volatility",
        "ATR as a percentage of the close: 100 × atr / close — percent, unlike the rest of the catalog "
        "(kept as it was: TechRating and stored results use it).",
        lookback=14,
        source="derived",
    ),
    Column(
        "volatility_21",
        pl.Float64(),
        "fraction",
        "volatility",
        "Sample standard deviation (n − 1) of the last 21 daily returns (close over the previous bar's "
        "close, minus 1); daily, not annualized.",
        lookback=21,
    ),
    Column(
        "beta_252",
        pl.Float64(),
        "ratio",
        "volatility",
        "Beta of the symbol's last 252 daily returns against the index's returns between the same dates: "
        "their covariance over the index's variance (TA-Lib BETA of the index and the symbol's closes); 0 "
        "when the index did not move over the window, as TA-Lib reports it.",
        lookback=252,
        source="index",
        null_reason=_NO_INDEX,
    ),
    Column(
        "rs_63",
        pl.Float64(),
        "fraction",
        "volatility",
        "Relative strength against the index: change_63d minus the index's change between the same two dates.",
        lookback=63,
        source="index",
        null_reason=_NO_INDEX,
    ),
    # --- volume -----------------------------------------------------------------------------------------
    Column(
        "avg_volume_20",
        pl.Float64(),
        "shares",
        "volume",
        "Mean volume of the last 20 bars, today included (TA-Lib SMA of volume).",
        lookback=19,
    ),
    Column(
        "avg_dollar_volume_20",
        pl.Float64(),
        "dollars",
        "volume",
        "Mean of close × volume over the last 20 bars, today included.",
        lookback=19,
    ),
    Column(
        "volume_ratio",
        pl.Float64(),
        "ratio",
        "volume",
        "Today's volume over avg_volume_20 (the 20-bar mean including today).",
        lookback=19,
    ),
    Column(
        "rel_volume",
        pl.Float64(),
        "ratio",
        "volume",
        "Relative volume, the screener name of volume_ratio: volume / avg_volume_20.",
        lookback=19,
        alias_of="volume_ratio",
    ),
    # --- performance and range --------------------------------------------------------------------------
    _change(1),
    _change(5),
    _change(21, alias_of="mom_21"),
    _change(63, alias_of="mom_63"),
    _change(126, alias_of="mom_126"),
    _change(252),
    *(_momentum(sessions) for sessions in (21, 63, 126)),
    Column(
        "change_ytd",
        pl.Float64(),
        "fraction",
        "performance",
        "Year to date: close over the symbol's last close before 1 January of this bar's year, minus 1.",
        lookback=1,
        null_reason="null when the bars hold no close of the symbol before this calendar year",
    ),
    Column(
        "gap",
        pl.Float64(),
        "fraction",
        "performance",
        "Opening gap: open over the previous bar's close, minus 1.",
        lookback=1,
    ),
    Column(
        "high_52w",
        pl.Float64(),
        "price",
        "performance",
        "Highest high of the last 252 bars (TA-Lib MAX of the highs).",
        lookback=251,
    ),
    Column(
        "low_52w",
        pl.Float64(),
        "price",
        "performance",
        "Lowest low of the last 252 bars (TA-Lib MIN of the lows).",
        lookback=251,
    ),
    Column(
        "high_52w_dist",
        pl.Float64(),
        "fraction",
        "performance",
        "Close over high_52w, minus 1 (≤ 0 unless the close is above every high).",
        lookback=251,
        source="derived",
    ),
    Column(
        "low_52w_dist",
        pl.Float64(),
        "fraction",
        "performance",
        "Close over low_52w, minus 1 (≥ 0 unless the close is below every low).",
        lookback=251,
        source="derived",
    ),
    Column(
        "new_high_52w",
        pl.Boolean(),
        "boolean",
        "performance",
        "Today's high is the 252-bar high: high = high_52w, i.e. at or above every high of the previous "
        "251 bars (an equal earlier high counts; a flat series sets it every day).",
        lookback=251,
        source="derived",
    ),
    Column(
        "new_low_52w",
        pl.Boolean(),
        "boolean",
        "performance",
        "Today's low is the 252-bar low: low = low_52w, i.e. at or below every low of the previous 251 bars "
        "(an equal earlier low counts; a flat series sets it every day).",
        lookback=251,
        source="derived",
    ),
    Column(
        "dist_high_20",
        pl.Float64(),
        "fraction",
        "performance",
        "Close over the highest high of the last 20 bars, minus 1 (≤ 0 unless the close is above them).",
        lookback=19,
    ),
    Column(
        "dist_low_20",
        pl.Float64(),
        "fraction",
        "performance",
        "Close over the lowest low of the last 20 bars, minus 1 (≥ 0 unless the close is below them).",
        lookback=19,
    ),
    # --- descriptive ------------------------------------------------------------------------------------
    Column("name", pl.String(), "text", "descriptive", "Company name.", source="universe", null_reason=_NO_UNIVERSE),
    Column(
        "market_cap",
        pl.Float64(),
        "dollars",
        "descriptive",
        "Market capitalization as of the universe frame's session (not recomputed per bar).",
        source="universe",
        null_reason=_NO_UNIVERSE,
    ),
    Column(
        "exchange",
        pl.String(),
        "text",
        "descriptive",
        "Listing exchange (e.g. XNAS, XNYS).",
        source="universe",
        null_reason="null unless the universe frame has an `exchange` column: no Technic source reports the "
        "listing exchange yet (schema.REFERENCE has none)",
    ),
    Column(
        "history_sessions",
        pl.Int64(),
        "sessions",
        "descriptive",
        "The symbol's complete bars up to and including this row — what the lookbacks count.",
    ),
    # --- consensus rating (technic_core.catalog.consensus) ----------------------------------------------
    Column(
        "consensus_ma",
        pl.Float64(),
        "score",
        "consensus",
        "Moving-average side of the consensus rating, −1–1: the mean vote of close vs each SMA and EMA "
        "(see technic_core.catalog.consensus).",
        lookback=9,
        source="derived",
    ),
    Column(
        "consensus_oscillators",
        pl.Float64(),
        "score",
        "consensus",
        "Oscillator side of the consensus rating, −1–1: the mean vote of RSI, stochastics, CCI, ADX/DI, "
        "MACD, Williams %R and rate of change (see technic_core.catalog.consensus).",
        lookback=11,
        source="derived",
    ),
    Column(
        "consensus_rating",
        pl.Float64(),
        "score",
        "consensus",
        "Consensus rating, −1–1: the mean of consensus_ma and consensus_oscillators (either alone while "
        "the other has no vote yet). Beside TechRating, not replacing it.",
        lookback=9,
        source="derived",
    ),
    Column(
        "consensus_signal",
        pl.String(),
        "text",
        "consensus",
        "Band of consensus_rating: Strong Sell ≤ −0.5 < Sell < −0.1 ≤ Neutral ≤ 0.1 < Buy < 0.5 ≤ Strong Buy.",
        lookback=9,
        source="derived",
    ),
)

#: Catalog columns by name.
COLUMNS: dict[str, Column] = {column.name: column for column in CATALOG}


def dtypes() -> dict[str, pl.DataType]:
    """Name → polars dtype of every catalog column, in catalog order."""
    return {column.name: column.dtype for column in CATALOG}


def column_rows() -> list[dict[str, str | int | None]]:
    """The registry as rows, one per column in catalog order — what `GET /columns` answers and `technic
    columns` prints: name, type (the polars dtype: Float64, Int64, Boolean or String), unit, group,
    description, lookback, source, null_reason and alias_of (None where the column has none)."""
    return [
        {
            "name": column.name,
            "type": str(column.dtype),
            "unit": column.unit,
            "group": column.group,
            "description": column.description,
            "lookback": column.lookback,
            "source": column.source,
            "null_reason": column.null_reason,
            "alias_of": column.alias_of,
        }
        for column in CATALOG
    ]
