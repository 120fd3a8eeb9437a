"""The catalog's arithmetic on one chunk: bar-index × symbol matrices in, one matrix per column out.

Every input matrix has a row per bar index (row k is the k-th bar of every symbol of the chunk) and a
column per symbol; cells past a symbol's last bar are NaN. `compute` returns each computed column's rows
`first` … (all rows with `first` = 0): the recursions run over the whole history, but windows, lags and
everything derived are computed only for the rows asked for — a scan wanting each symbol's latest bar asks
for the last two (the latest and the one before it, which crosses and "rising" votes compare with), and the
linear averages' last values then come from impulse weights, one matrix product each (`_impulse_weights`).

Kinds of computation:
- recursive averages (EMA, Wilder's RSI / ATR / directional movement, MACD's signal, ADX) step over the
  bar index, each step updating every series of every symbol at once (`_smooth`);
- trailing windows (SMA, sums, highest / lowest, Bollinger variance) either use `_rolling`'s binary
  decomposition, shared by all windows over the same values, or — for few rows, or a window nearly
  as long as the history — reduce each row's window directly (`_windowed`);
- lags (changes, gaps, crosses) divide or compare a matrix with itself shifted by whole rows.
Row k being bar k of every symbol, a column's warm-up is its first `lookback` rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import numpy as np

from technic_core.catalog import consensus

SMA_PERIODS = (10, 20, 50, 100, 200)
EMA_PERIODS = (10, 20, 50, 200)
CHANGE_SESSIONS = (1, 5, 21, 63, 126, 252)
MOMENTUM_SESSIONS = (21, 63, 126)
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
WILDER = 14  # RSI, ATR, ADX / DI and MFI
STOCH_PERIOD, STOCH_SMOOTHING = 14, 3
AROON_PERIOD = 25
CCI_PERIOD = 20
BB_PERIOD, BB_DEVIATIONS = 20, 2.0
VOLUME_PERIOD = 20
RANGE_PERIOD = 20
YEAR_SESSIONS = 252
VOLATILITY_RETURNS = 21
RS_SESSIONS = 63
ROC_SESSIONS = 10
CROSS_FAST, CROSS_SLOW = 50, 200

#: TA-Lib's test for zero in ADX / DI and BETA (`TA_IS_ZERO`, an absolute band).
_TA_EPSILON = 1e-14
#: A CCI deviation below this share of the typical price is rounding residue of a flat window (CCI 0).
_FLAT_CCI = 1e-12
#: A window variance below this fraction of its squared mean is recomputed exactly (see `_rolling_variance`).
_VARIANCE_RECHECK = 1e-5


#: Optional groups of computed columns: a caller that keeps none of a group's columns skips its arithmetic
#: (`compute_catalog(columns=...)`). Everything else — averages, MACD, RSI, ATR, Bollinger, volume, changes,
#: the 20-bar range — is always computed. Skipping a group changes no other column's value, not even in the
#: last bit: each column's arithmetic reads only its own inputs.
GROUPS: dict[str, tuple[str, ...]] = {
    "directional": ("adx_14", "plus_di_14", "minus_di_14"),
    "oscillators": ("stoch_k", "stoch_d", "willr_14", "cci_20", "mfi_14", "aroon_up_25", "aroon_down_25"),
    "year_range": ("high_52w", "low_52w", "high_52w_dist", "low_52w_dist", "new_high_52w", "new_low_52w"),
    "volatility": ("volatility_21",),
    "index": ("beta_252", "rs_63"),
    "consensus": ("consensus_ma", "consensus_oscillators", "consensus_rating"),
}
ALL_GROUPS = frozenset(GROUPS)
#: Groups whose arithmetic reads another group's columns.
_GROUP_INPUTS = {"consensus": ("directional", "oscillators")}


def groups_for(columns: Iterable[str]) -> frozenset[str]:
    """The groups `compute` must run for `columns` (computed column names) to be among its values."""
    names = set(columns)
    groups = {group for group, members in GROUPS.items() if names.intersection(members)}
    for group in tuple(groups):
        groups.update(_GROUP_INPUTS.get(group, ()))
    return frozenset(groups)


def compute(
    prices: dict[str, np.ndarray],
    year_bars: np.ndarray,
    index: np.ndarray | None,
    first: int,
    groups: frozenset[str] = ALL_GROUPS,
) -> dict[str, np.ndarray]:
    """Every computed catalog column, rows `first` … of the chunk (of the optional `GROUPS`, those in `groups`).

    `prices`: open, high, low, close and volume matrices; `year_bars`: for rows `first` …, the bar index of
    each symbol's first bar in the row's calendar year (0 when the history starts that year); `index`: the
    index close on each cell's date (NaN where it has none), or None. Cells past a symbol's last bar may hold
    anything in `year_bars`. A ratio over a zero price comes out ±inf here; the caller turns infinities into
    NaN.
    """
    values: dict[str, np.ndarray] = {}
    _recursive(prices, first, values, directional="directional" in groups)
    _windows(prices, first, values, groups)
    _performance(prices, year_bars, first, values)
    if "volatility" in groups:
        _volatility(prices["close"], first, values)
    if "index" in groups:
        _against_index(prices["close"], index, first, values)
    if "consensus" in groups:
        values.update(consensus.rate(prices["close"][first:], values))
    return values


# --- primitives -----------------------------------------------------------------------------------------


def _smooth(values: np.ndarray, decay: np.ndarray, seeds: list[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """In place, s[t] = values[t] + decay · s[t − 1] for each series from its seed on; NaN before it.

    `values` is bar index × series × symbol and holds each series' input as it enters the recursion — alpha ·
    input for an EMA (alpha = 2 / (period + 1), decay 1 − alpha), the input itself for Wilder's smoothing in
    TA-Lib's sum form (decay 13 / 14) — all series advancing together in a single loop over the bar index.
    `decay` broadcasts against one bar's series × symbol slice (one factor per series), or has `values`'
    shape (a factor per cell). `seeds` lists (series, bar, seed values): the series starts at that bar with
    those values, as TA-Lib seeds its averages.
    """
    height = len(values)
    for series, bar, seed in seeds:
        if bar < height:
            values[:bar, series] = 0.0  # zeros before the seed carry nothing into it
            values[bar, series] = seed
    start = min(bar for _, bar, _ in seeds)
    rows = list(values)
    factors = list(decay) if decay.shape == values.shape else [decay] * height
    carried = np.empty(values.shape[1:])
    for bar in range(start + 1, height):
        np.multiply(rows[bar - 1], factors[bar], out=carried)
        np.add(rows[bar], carried, out=rows[bar])
    for series, bar, _ in seeds:
        values[:bar, series] = np.nan
    return values


def _seed_mean(values: np.ndarray, last: int, count: int) -> np.ndarray:
    """TA-Lib's seed of a recursive average: the mean of the `count` rows ending at row `last`, summed row
    after row as TA-Lib sums it. (numpy's own reduction picks its summation order by the array's shape, so a
    symbol's seed would round differently with the width of its chunk.)"""
    if last >= len(values):
        return np.full(values.shape[1:], np.nan)
    total = values[last - count + 1].copy()
    for row in range(last - count + 2, last + 1):
        total += values[row]
    total /= count
    return total


def _windowed(values: np.ndarray, combine: np.ufunc, windows: dict[int, int]) -> dict[int, np.ndarray]:
    """For each `window: first`, `combine` (np.add, np.maximum) over the trailing `window` rows of rows
    `first` …; NaN where the window reaches before row 0.

    Each window takes the cheaper way: a direct reduction per row (few rows, or a window nearly as long as
    the history), or `_rolling`'s binary decomposition — about log2(window) passes over the rows
    from the earliest one a window reads, its blocks shared by all windows decomposed together. Every row
    (`first` 0) is always decomposed: a decomposed sum depends only on its window's values, so a bar's value
    is then the same to the last bit whatever else its chunk holds (the ML features rely on that: a panel cut
    at a date gives the values the whole panel has up to that date).
    """
    height = len(values)
    outs, decomposed = {}, {}
    for window, first in windows.items():
        warmup = max(0, window - 1 - first)  # rows whose window reaches before row 0
        start = max(0, first - window + 1)
        if not first or (height - start) * window.bit_length() < (height - first - warmup) * window:
            decomposed[window] = first
            continue
        out = outs[window] = np.empty((height - first, *values.shape[1:]))
        out[:warmup] = np.nan
        for row in range(first + warmup, height):
            combine.reduce(values[row - window + 1 : row + 1], axis=0, out=out[row - first])
    if decomposed:
        start = max(0, min(first - window + 1 for window, first in decomposed.items()))
        block = values[start:]
        full = _rolling(block, combine, {window: np.empty_like(block) for window in decomposed})
        outs.update({window: full[window][first - start :] for window, first in decomposed.items()})
    return outs


def _rolling(
    values: np.ndarray, combine: Callable[..., np.ndarray], outs: dict[int, np.ndarray]
) -> dict[int, np.ndarray]:
    """For each `window: out` pair, `combine` (np.add, np.maximum, np.minimum) over each row's trailing
    `window` rows, into `out`; NaN in its first `window − 1` rows. Returns `outs`.

    Binary decomposition: blocks of 1, 2, 4 … rows are built by combining neighbouring blocks of half the
    size, and each window is assembled from the blocks matching the set bits of its length. That is about
    log2(window) passes instead of `window`, the blocks are shared by all windows over the same values,
    and for sums it is pairwise summation: no cumulative-sum drift, however long the history.
    """
    targets = {}
    for window, out in outs.items():
        out[: window - 1] = np.nan
        if window <= len(values):
            targets[window] = out[window - 1 :]
    covered = dict.fromkeys(targets, 0)
    blocks, block_rows = values, 1
    scratch = (np.empty_like(values), np.empty_like(values)) if targets else ()
    while targets:
        for window, target in targets.items():
            if window & block_rows:
                part = blocks[covered[window] : covered[window] + len(target)]
                if covered[window]:
                    combine(target, part, out=target)
                else:
                    target[...] = part
                covered[window] += block_rows
        targets = {window: target for window, target in targets.items() if covered[window] < window}
        if targets:
            doubled = scratch[block_rows.bit_length() % 2][: len(blocks) - block_rows]
            blocks = combine(blocks[:-block_rows], blocks[block_rows:], out=doubled)
            block_rows *= 2
    return outs


def _rolling_variance(values: np.ndarray, mean: np.ndarray, window: int, first: int) -> np.ndarray:
    """Population variance over the trailing `window` rows of rows `first` …, given their `mean`.

    The fast mean(x²) − mean(x)² cancels catastrophically when the spread is tiny next to the level (a stock
    pinned at a deal price), whereas TA-Lib returns exactly 0 for a constant window. So windows below
    `_VARIANCE_RECHECK` × mean² (negative ones included) are recomputed exactly from deviations to their
    latest value: exactly 0 for a flat window, and the cancellation left is bounded by the window length
    instead of the price level.
    """
    start = max(0, first - window + 1)
    squares = np.square(values[start:])
    variance = _windowed(squares, np.add, {window: first - start})[window]
    variance /= window
    mean_square = np.square(mean)
    variance -= mean_square
    mean_square *= _VARIANCE_RECHECK
    rows, columns = np.nonzero(variance < mean_square)
    if rows.size:
        windows = values[(rows + first)[:, np.newaxis] - np.arange(window), columns[:, np.newaxis]]
        deviations = windows - windows[:, :1]
        exact = (deviations * deviations).mean(axis=1) - deviations.mean(axis=1) ** 2
        variance[rows, columns] = np.maximum(exact, 0.0)
    return variance


def _bars_since_latest_max(values: np.ndarray, window: int) -> np.ndarray:
    """Rows back from each row to the latest maximum of its trailing `window` rows; NaN before a full window.

    Binary decomposition like `_rolling`, on (maximum, row of its latest occurrence) pairs: of two
    neighbouring blocks the later one wins ties, as in TA-Lib's AROON.
    """
    height = len(values)
    since = np.full(values.shape, np.nan)
    if window > height:
        return since
    rows = height - window + 1
    column = (-1, *[1] * (values.ndim - 1))
    best = values
    where = np.broadcast_to(np.arange(height, dtype=np.float64).reshape(column), values.shape)
    # The window is assembled from its earliest part to its latest; the empty start loses to any part.
    target_best, target_where = np.full((rows, *values.shape[1:]), -np.inf), np.zeros((rows, *values.shape[1:]))
    covered, block = 0, 1
    while True:
        if window & block:
            part_best, part_where = best[covered : covered + rows], where[covered : covered + rows]
            later = part_best >= target_best
            np.maximum(target_best, part_best, out=target_best)
            np.copyto(target_where, part_where, where=later)
            covered += block
            if covered == window:
                break
        later = best[block:] >= best[:-block]
        best = np.maximum(best[:-block], best[block:])
        where = np.where(later, where[block:], where[:-block])
        block *= 2
    np.subtract(np.arange(window - 1, height, dtype=np.float64).reshape(column), target_where, out=since[window - 1 :])
    since[window - 1 :][np.isnan(target_best)] = np.nan
    return since


def _change(values: np.ndarray, lag: int, first: int, base: np.ndarray | None = None) -> np.ndarray:
    """Rows `first` … of `values` over `base` (default `values`) `lag` rows earlier, minus 1; NaN without one."""
    base = values if base is None else base
    height = len(values)
    change = np.full((height - first, *values.shape[1:]), np.nan)
    begin = max(first, lag)
    if begin < height:
        np.divide(values[begin:], base[begin - lag : height - lag], out=change[begin - first :])
        change[begin - first :] -= 1.0
    return change


# --- recursive averages ---------------------------------------------------------------------------------


#: The share of the previous sum Wilder's smoothing keeps in TA-Lib's sum form s − s / 14 + x.
_KEEP = (WILDER - 1) / WILDER
#: Smoothing factors of EMA 10, 20, 50, 200 and of MACD's fast and slow EMAs.
_AVERAGE_ALPHAS = np.array([2.0 / (period + 1) for period in (*EMA_PERIODS, MACD_FAST, MACD_SLOW)])
_SIGNAL_ALPHA = 2.0 / (MACD_SIGNAL + 1)


def _averages(close: np.ndarray) -> np.ndarray:
    """EMA 10, 20, 50, 200 and MACD's fast and slow EMAs of `close`, bar × 6 × symbol, seeded as TA-Lib seeds
    them: each with the mean of its first `period` closes, MACD's two both at bar MACD_SLOW − 1 (the fast one
    with the MACD_FAST closes ending there)."""
    start = MACD_SLOW - 1
    seeds = [(k, period - 1, _seed_mean(close, period - 1, period)) for k, period in enumerate(EMA_PERIODS)]
    seeds += [(4, start, _seed_mean(close, start, MACD_FAST)), (5, start, _seed_mean(close, start, MACD_SLOW))]
    inputs = np.empty((len(close), len(_AVERAGE_ALPHAS), *close.shape[1:]))
    for k, alpha in enumerate(_AVERAGE_ALPHAS):
        np.multiply(close, alpha, out=inputs[:, k])
    return _smooth(inputs, (1.0 - _AVERAGE_ALPHAS).reshape(-1, *[1] * (close.ndim - 1)), seeds)


def _signal(macd: np.ndarray) -> np.ndarray:
    """MACD's signal: the MACD_SIGNAL-bar EMA of `macd` (bar × symbol), seeded at bar 33 with the mean of
    MACD's first MACD_SIGNAL values."""
    start = MACD_SLOW + MACD_SIGNAL - 2
    inputs = np.multiply(macd, _SIGNAL_ALPHA)[:, np.newaxis]
    return _smooth(inputs, np.array([1.0 - _SIGNAL_ALPHA]), [(0, start, _seed_mean(macd, start, MACD_SIGNAL))])[:, 0]


def _wilder_sums(raw: np.ndarray, seed_bars: list[int]) -> np.ndarray:
    """In place, Wilder's smoothing of bar × series × symbol `raw` in TA-Lib's sum form s − s / 14 + x (14 ×
    the average, so no input needs scaling); series k starts at bar `seed_bars[k]` with the sum of its bars 1
    … `seed_bars[k]` (bar 0 has no previous close)."""
    seeds = [(k, bar, bar * _seed_mean(raw[:, k], bar, bar)) for k, bar in enumerate(seed_bars)]
    return _smooth(raw, np.array([_KEEP]), seeds)


@functools.lru_cache(maxsize=16)
def _impulse_weights(height: int, first: int) -> dict[str, np.ndarray]:
    """Rows `first` … of the linear averages over a `height`-bar history, as weights on their input bars.

    An EMA, MACD (a difference of EMAs), its signal (an EMA of MACD) and a Wilder sum are linear in their
    input bars, seeds included, so each of their values is a weighted sum of the inputs; the weights are the
    same functions run over unit impulses — an identity matrix whose columns stand for symbols.
    """
    identity = np.eye(height)
    averages = _averages(identity)
    macd = averages[:, 4] - averages[:, 5]
    weights = {
        "averages": np.ascontiguousarray(averages[first:]),
        "macd": macd[first:],
        "signal": _signal(macd)[first:],
        "wilder": _wilder_sums(identity[:, np.newaxis].copy(), [WILDER])[first:, 0],
    }
    for matrix in weights.values():
        matrix.flags.writeable = False  # shared by every call through the cache
    return weights


def _recursive(prices: dict[str, np.ndarray], first: int, values: dict[str, np.ndarray], directional: bool) -> None:
    """EMAs, MACD, RSI, ATR, DI and ADX — exactly TA-Lib's, seeds and start bars included.

    Wilder's sums: true range, +DM and −DM, gains and losses. True range, gains and losses start at bar 14
    with their sum over bars 1–14 (ATR's and RSI's seed), ±DM at bar 13 with the sum over bars 1–13, as DI
    starts them. DI's true-range sum follows ATR's recursion from bar 14 on, so the two differ by their
    difference at bar 14 decaying by 13/14 a bar: no series of its own. ADX is seeded at bar 27 with the mean
    DX of bars 14–27; where DX is undefined (a zero true-range sum or DI sum, TA-Lib's TA_IS_ZERO) TA-Lib
    neither counts it in the seed nor moves ADX, hence a per-cell decay.

    ADX needs DX on every bar, hence true range and ±DM smoothed over the whole history. Everything else is
    wanted from row `first` on only: when that leaves few rows and every symbol has every row, the linear
    averages come from `_impulse_weights` (one matrix product each) instead of recursing over the history.
    """
    high, low, close = prices["high"], prices["low"], prices["close"]
    height, width = close.shape
    raw = np.empty((height, 5, width))
    ranges, plus_dm, minus_dm, gains, losses = (raw[1:, k] for k in range(5))
    raw[0] = np.nan
    change = close[1:] - close[:-1]
    np.maximum(change, 0.0, out=gains)
    np.subtract(gains, change, out=losses)
    np.maximum(high[1:], close[:-1], out=ranges)
    ranges -= np.minimum(low[1:], close[:-1], out=change)
    up = np.subtract(high[1:], high[:-1])
    down = np.subtract(low[:-1], low[1:])
    np.maximum(up, 0.0, out=plus_dm)
    plus_dm *= up > down
    np.maximum(down, 0.0, out=minus_dm)
    minus_dm *= down > up
    first_ranges = (WILDER - 1) * _seed_mean(raw[:, 0], WILDER - 1, WILDER - 1)  # DI's true-range seed

    if first > 0 and not np.isnan(close[-1]).any():
        weights = _impulse_weights(height, first)
        averages = (weights["averages"].reshape(-1, height) @ close).reshape(height - first, -1, width)
        macd, signal = weights["macd"] @ close, weights["signal"] @ close
        wilder = weights["wilder"][:, 1:]  # bar 0 has no gain or loss
        gain_sum, loss_sum = wilder @ gains, wilder @ losses
        sums = _wilder_sums(raw[:, :3], [WILDER, WILDER - 1, WILDER - 1])
    else:
        averages = _averages(close)
        macd = averages[:, 4] - averages[:, 5]
        signal = _signal(macd)
        sums = _wilder_sums(raw, [WILDER, WILDER - 1, WILDER - 1, WILDER, WILDER])
        averages, macd, signal = averages[first:], macd[first:], signal[first:]
        gain_sum, loss_sum = sums[first:, 3], sums[first:, 4]

    for k, period in enumerate(EMA_PERIODS):
        values[f"ema_{period}"] = averages[:, k]
    macd[np.isnan(signal)] = np.nan  # TA-Lib reports MACD only beside its signal
    values["macd"], values["macd_signal"], values["macd_hist"] = macd, signal, macd - signal
    total = gain_sum + loss_sum
    # Both sums are 0 only on a flat series, where TA-Lib's RSI is 0: divide by the smallest double.
    np.maximum(total, np.finfo(np.float64).tiny, out=total)
    values["rsi"] = np.multiply(gain_sum, 100.0)
    values["rsi"] /= total
    range_sum = sums[:, 0]
    values["atr"] = range_sum[first:] / WILDER
    values["atr_pct"] = np.multiply(range_sum[first:], 100.0 / WILDER)
    values["atr_pct"] /= close[first:]
    if not directional:
        return

    # TA-Lib's true-range sum of DI: ATR's sum but for the seed's difference, decaying.
    di_range = np.full_like(close, np.nan)
    if height > WILDER:
        decayed = _KEEP ** np.arange(height - WILDER)[:, np.newaxis]
        np.multiply(decayed, first_ranges / WILDER, out=di_range[WILDER:])
        np.subtract(range_sum[WILDER:], di_range[WILDER:], out=di_range[WILDER:])
    plus_sum, minus_sum = sums[:, 1], sums[:, 2]
    nonzero_range = di_range >= _TA_EPSILON
    for name, movement in (("plus_di_14", plus_sum), ("minus_di_14", minus_sum)):
        di = values[name] = np.zeros_like(close[first:])  # 0 where the true-range sum is zero
        np.divide(movement[first:] * 100.0, di_range[first:], out=di, where=nonzero_range[first:])
        di[np.isnan(di_range[first:])] = np.nan

    # DX = 100 |+DI − −DI| / (+DI + −DI), the true-range sum cancelling; ADX's recursion takes DX / 14. TA-Lib
    # leaves DX undefined where the true-range sum or the DI sum (100 × DM sum / true-range sum) is zero
    # within TA_EPSILON.
    dm_total = plus_sum + minus_sum
    undefined = dm_total * (100.0 / _TA_EPSILON) < di_range
    undefined |= ~nonzero_range
    inputs = np.subtract(plus_sum, minus_sum)
    np.abs(inputs, out=inputs)
    inputs /= dm_total
    inputs *= 100.0 / WILDER
    inputs[undefined] = 0.0
    adx_start = 2 * WILDER - 1
    seed = _seed_mean(inputs, adx_start, WILDER) * WILDER  # the mean DX
    factors = np.where(undefined, 1.0, _KEEP)[:, np.newaxis]
    values["adx_14"] = _smooth(inputs[:, np.newaxis], factors, [(0, adx_start, seed)])[first:, 0]


# --- trailing windows -----------------------------------------------------------------------------------


def _windows(prices: dict[str, np.ndarray], first: int, values: dict[str, np.ndarray], groups: frozenset[str]) -> None:
    """SMAs, Bollinger, volume averages and the 20-bar range; with "oscillators" MFI, CCI, stochastics,
    Williams %R and Aroon; with "year_range" the 52-week range."""
    high, low, close, volume = (prices[name] for name in ("high", "low", "close", "volume"))
    height = len(close)
    now = close[first:]
    oscillators = "oscillators" in groups
    means = _windowed(close, np.add, dict.fromkeys(SMA_PERIODS, first))
    for period, mean in means.items():
        mean /= period
        values[f"sma_{period}"] = mean
    middle = means[BB_PERIOD]
    deviation = np.sqrt(_rolling_variance(close, middle, BB_PERIOD, first))
    values["bb_upper"] = middle + BB_DEVIATIONS * deviation
    values["bb_lower"] = middle - BB_DEVIATIONS * deviation
    band = deviation * (2.0 * BB_DEVIATIONS)
    values["bb_width"] = band / middle
    # A flat window has zero-width bands and its close on the middle band: %B 0.5.
    pct_b = values["bb_pct_b"] = np.full_like(now, 0.5)
    np.divide(now - values["bb_lower"], band, out=pct_b, where=band != 0)
    pct_b[np.isnan(band)] = np.nan

    # Means over 20 bars of volume, dollar volume and typical price (which CCI and MFI read back further).
    start = max(0, first - max(VOLUME_PERIOD, CCI_PERIOD, WILDER + 1))
    summed = [volume[start:], close[start:] * volume[start:]]
    if oscillators:
        typical = high[start:] + low[start:]
        typical += close[start:]
        typical /= 3.0
        summed.append(typical)
    twenty = _windowed(np.stack(summed, axis=1), np.add, {VOLUME_PERIOD: first - start})[VOLUME_PERIOD]
    twenty /= VOLUME_PERIOD
    values["avg_volume_20"], values["avg_dollar_volume_20"] = twenty[:, 0], twenty[:, 1]
    values["volume_ratio"] = volume[first:] / twenty[:, 0]
    if oscillators:
        values["cci_20"] = _cci(typical, twenty[:, 2], first - start)
        values["mfi_14"] = _mfi(typical, volume[start:], first - start)

    # Highest highs and lowest lows (as highest negated lows), side by side; %K's smoothing reads 4 bars back.
    extremes = np.stack([high, -low], axis=1)
    smoothing = 2 * (STOCH_SMOOTHING - 1)
    stoch_first = max(0, first - smoothing)
    windows = {RANGE_PERIOD: first}
    if oscillators:
        windows[STOCH_PERIOD] = stoch_first
    if "year_range" in groups:
        windows[YEAR_SESSIONS] = first
    highest = _windowed(extremes, np.maximum, windows)
    values["dist_high_20"] = now / highest[RANGE_PERIOD][:, 0] - 1.0
    values["dist_low_20"] = now / -highest[RANGE_PERIOD][:, 1] - 1.0
    if oscillators:
        _stochastics(close[stoch_first:], highest[STOCH_PERIOD], first - stoch_first, values)
        aroon_start = max(0, first - AROON_PERIOD)
        since = _bars_since_latest_max(extremes[aroon_start:], AROON_PERIOD + 1)[first - aroon_start :]
        values["aroon_up_25"] = (100.0 / AROON_PERIOD) * (AROON_PERIOD - since[:, 0])
        values["aroon_down_25"] = (100.0 / AROON_PERIOD) * (AROON_PERIOD - since[:, 1])
    if "year_range" in groups:
        high_52w, low_52w = highest[YEAR_SESSIONS][:, 0], -highest[YEAR_SESSIONS][:, 1]
        values["high_52w"], values["low_52w"] = high_52w, low_52w
        values["high_52w_dist"] = now / high_52w - 1.0
        values["low_52w_dist"] = now / low_52w - 1.0
        values["new_high_52w"] = _flag(high[first:height] == high_52w, high_52w)
        values["new_low_52w"] = _flag(low[first:height] == low_52w, low_52w)


def _flag(condition: np.ndarray, defined_by: np.ndarray) -> np.ndarray:
    """A boolean column as 1.0 / 0.0, NaN where `defined_by` is NaN."""
    flag = condition.astype(np.float64)
    flag[np.isnan(defined_by)] = np.nan
    return flag


def _cci(typical: np.ndarray, mean: np.ndarray, first: int) -> np.ndarray:
    """TA-Lib's CCI over CCI_PERIOD bars for rows `first` … of `typical` (`mean`: their window means).

    (typical − mean) / (0.015 × mean absolute deviation), the deviations summed as
    Σ|x − m| = 2 Σ max(x − m, 0) = 2 (Σ max(x, m) − n m), since a window's deviations from its own mean sum to
    zero: one maximum and one addition per bar of the window. A flat window (both deviations within
    `_FLAT_CCI` of the level, i.e. rounding) gives 0, as TA-Lib reports it.
    """
    height = len(typical)
    cci = np.full((height - first, *typical.shape[1:]), np.nan)
    begin = max(first, CCI_PERIOD - 1)
    if begin >= height:
        return cci
    current = mean[begin - first :]
    total = np.zeros_like(current)
    term = np.empty_like(current)
    for lag in range(CCI_PERIOD):
        np.maximum(typical[begin - lag : height - lag], current, out=term)
        total += term
    deviation = current * CCI_PERIOD
    np.subtract(total, deviation, out=deviation)
    deviation *= 2.0 * 0.015 / CCI_PERIOD
    offset = typical[begin:] - current
    flat = np.abs(current) * _FLAT_CCI
    ratio = cci[begin - first :]
    np.divide(offset, deviation, out=ratio)
    ratio[(np.abs(offset) <= flat) | (deviation <= flat)] = 0.0
    ratio[np.isnan(current)] = np.nan
    return cci


def _mfi(typical: np.ndarray, volume: np.ndarray, first: int) -> np.ndarray:
    """TA-Lib's MFI over WILDER bars for rows `first` …: positive and negative money flow (typical price ×
    volume, signed by the typical price's move; no move — within TA-Lib's scaled dead zone — is no flow), 0
    when none flowed."""
    move = typical[1:] - typical[:-1]
    flow = typical[1:] * volume[1:]
    flow[np.abs(move) <= _TA_EPSILON * (np.abs(typical[1:]) + np.abs(typical[:-1]))] = 0.0
    flows = np.empty((len(typical), 2, *typical.shape[1:]))
    flows[0] = np.nan  # no move into the first row (its previous bar, where there is one, is further back)
    np.multiply(flow, move >= 0.0, out=flows[1:, 0])
    np.subtract(flow, flows[1:, 0], out=flows[1:, 1])
    sums = _windowed(flows, np.add, {WILDER: first})[WILDER]
    positive, total = sums[:, 0], sums[:, 0] + sums[:, 1]
    mfi = np.zeros_like(total)
    np.divide(positive, total, out=mfi, where=total > 0.0)
    mfi *= 100.0
    mfi[np.isnan(total)] = np.nan
    return mfi


def _stochastics(close: np.ndarray, highest: np.ndarray, first: int, values: dict[str, np.ndarray]) -> None:
    """TA-Lib's STOCH (14, 3 SMA, 3 SMA) and WILLR (14) for rows `first` …; `highest` holds the 14-bar highest
    high and negated lowest low of every row; a zero range gives 0 for both, as in TA-Lib."""
    highest_high, lowest_low = highest[:, 0], -highest[:, 1]
    span = highest_high - lowest_low
    defined = span != 0.0
    fast_k = np.zeros_like(span)
    np.divide(close - lowest_low, span / 100.0, out=fast_k, where=defined)
    fast_k[np.isnan(span)] = np.nan
    willr = np.zeros_like(span[first:])
    np.divide(highest_high[first:] - close[first:], span[first:] / -100.0, out=willr, where=defined[first:])
    willr[np.isnan(span[first:])] = np.nan
    values["willr_14"] = willr
    slow_k = _windowed(fast_k, np.add, {STOCH_SMOOTHING: 0})[STOCH_SMOOTHING]
    slow_k /= STOCH_SMOOTHING
    slow_d = _windowed(slow_k, np.add, {STOCH_SMOOTHING: first})[STOCH_SMOOTHING]
    slow_d /= STOCH_SMOOTHING
    slow_k = slow_k[first:]
    slow_k[np.isnan(slow_d)] = np.nan  # TA-Lib reports %K only beside %D
    values["stoch_k"], values["stoch_d"] = slow_k, slow_d


# --- lags, crosses, performance, volatility, the index ----------------------------------------------------


def _performance(
    prices: dict[str, np.ndarray], year_bars: np.ndarray, first: int, values: dict[str, np.ndarray]
) -> None:
    """Changes, momentum, rate of change, gap, year to date, distances to the SMAs and golden / death crosses."""
    close = prices["close"]
    for sessions in CHANGE_SESSIONS:
        name = f"mom_{sessions}" if sessions in MOMENTUM_SESSIONS else f"change_{sessions}d"
        values[name] = _change(close, sessions, first)
    values["roc_10"] = _change(close, ROC_SESSIONS, first)
    values["gap"] = _change(prices["open"], 1, first, base=close)
    # Year to date: over the close of the bar before the year's first (none when the history starts that year).
    reference = year_bars - 1
    ytd = values["change_ytd"] = close[first:] / np.take_along_axis(close, np.maximum(reference, 0), axis=0)
    ytd -= 1.0
    ytd[reference < 0] = np.nan
    for period in (20, 50, 200):
        values[f"close_vs_sma_{period}"] = close[first:] / values[f"sma_{period}"] - 1.0
    fast, slow = values[f"sma_{CROSS_FAST}"], values[f"sma_{CROSS_SLOW}"]
    above, below = fast > slow, fast < slow
    for name, now in (("golden_cross", above), ("death_cross", below)):
        cross = np.full_like(fast, np.nan)
        cross[1:] = now[1:] & ~now[:-1]
        cross[: max(0, CROSS_SLOW - first)] = np.nan  # the slow SMA on the previous bar is needed
        values[name] = cross


def _volatility(close: np.ndarray, first: int, values: dict[str, np.ndarray]) -> None:
    """volatility_21: the sample standard deviation of the last VOLATILITY_RETURNS daily returns."""
    start = max(0, first - VOLATILITY_RETURNS + 1)
    returns = _change(close, 1, start)
    window = {VOLATILITY_RETURNS: first - start}
    mean = _windowed(returns, np.add, window)[VOLATILITY_RETURNS]
    mean /= VOLATILITY_RETURNS
    variance = _rolling_variance(returns, mean, VOLATILITY_RETURNS, first - start)
    variance *= VOLATILITY_RETURNS / (VOLATILITY_RETURNS - 1)
    values["volatility_21"] = np.sqrt(variance, out=variance)


def _against_index(close: np.ndarray, index: np.ndarray | None, first: int, values: dict[str, np.ndarray]) -> None:
    """rs_63 and beta_252 against the index closes read on each bar's date (NaN without an index)."""
    if index is None:
        values["rs_63"] = np.full_like(close[first:], np.nan)
        values["beta_252"] = np.full_like(close[first:], np.nan)
        return
    values["rs_63"] = values[f"mom_{RS_SESSIONS}"] - _change(index, RS_SESSIONS, first)
    if len(close) <= YEAR_SESSIONS:  # no symbol of the chunk has the YEAR_SESSIONS returns beta needs
        values["beta_252"] = np.full_like(close[first:], np.nan)
        return
    # TA-Lib's BETA: the regression slope of the symbol's returns on the index's over YEAR_SESSIONS returns.
    start = max(0, first - YEAR_SESSIONS + 1)
    stacked = np.empty((len(close) - start, 4, close.shape[1]))
    index_returns, returns = _change(index, 1, start), _change(close, 1, start)
    stacked[:, 0], stacked[:, 1] = index_returns, returns
    np.multiply(index_returns, index_returns, out=stacked[:, 2])
    np.multiply(index_returns, returns, out=stacked[:, 3])
    sums = _windowed(stacked, np.add, {YEAR_SESSIONS: first - start})[YEAR_SESSIONS]
    sum_x, sum_y, sum_xx, sum_xy = (sums[:, k] for k in range(4))
    variance = YEAR_SESSIONS * sum_xx - sum_x * sum_x
    beta = values["beta_252"] = YEAR_SESSIONS * sum_xy - sum_x * sum_y
    flat = np.abs(variance) < _TA_EPSILON
    np.divide(beta, variance, out=beta, where=~flat)
    beta[flat] = 0.0
    beta[np.isnan(variance)] = np.nan
