"""Technical indicators for a whole bar panel at once, defined exactly as TA-Lib defines them.

Why a panel: a scan needs indicators for thousands of symbols, and calling TA-Lib once per symbol spends
most of its time in the Python loop around it. Here the panel is cut into chunks of whole symbols and each
indicator is a few numpy operations over a chunk; chunks are sized to stay in the CPU cache.

Two layouts, each where it is fastest:
- Window and lag indicators run along the chunk's rows as stored — symbol after symbol, each symbol's bars
  in date order — so "k bars earlier" is simply k rows earlier, and results land straight in the output
  columns. A value whose window reaches back past its symbol's first bar would mix in the previous symbol;
  those warm-up values are blanked.
- Recursive averages (EMA, Wilder) need bar t of every symbol at once, so their inputs are pivoted into a
  matrix with a row per bar index and a column per symbol, left-aligned: row k holds each symbol's k-th
  bar, whatever its date. The loop then runs over bar indices only, each step updating every symbol.

Either way a symbol's sequence is the bars it has: a late listing needs no special casing and a missing
session (a halt) is simply absent — exactly what TA-Lib sees when it runs on that symbol's own bars.
Nothing is forward-filled or invented.

Null convention: wherever TA-Lib returns NaN (warm-up, too little history) the column is null, never NaN.
A ratio with a zero denominator (a zero price) is null too, where plain division would give ±inf.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from technic_core import schema
from technic_core.errors import ConfigError

REQUIRED_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume")

#: Wilder's period of both RSI and ATR (TA-Lib's default for each); sharing it lets one loop smooth both.
WILDER_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_PERIOD, BB_DEVIATIONS = 20, 2.0
VOLUME_PERIOD = 20
MOMENTUM_PERIODS = (21, 63, 126)
SMA_PERIODS = (50, 200)
RANGE_PERIOD = 20

#: Cells (bar index × symbol) per matrix of the recursive averages (512 KiB each): wide enough that each
#: step of the loop over bar indices updates a few hundred symbols, small enough to stay in the CPU cache.
#: Both chunk sizes were tuned on 5,000 symbols × 252 sessions; they also bound memory for any panel.
_RECURSIVE_CHUNK_CELLS = 1 << 16

#: Bars per chunk of the window and lag indicators (256 KiB per column): small enough that a chunk's
#: working set stays in the CPU cache.
_WINDOW_CHUNK_CELLS = 1 << 15

#: A window variance below this fraction of its squared mean is recomputed exactly (see `_rolling_variance`).
_VARIANCE_RECHECK = 1e-5

#: Bars at the start of each symbol whose window or lag reaches back past its first bar.
_WINDOW_WARMUP = {
    "bb_width": BB_PERIOD - 1,
    "volume_ratio": VOLUME_PERIOD - 1,
    **{f"mom_{period}": period for period in MOMENTUM_PERIODS},
    **{f"sma_{period}": period - 1 for period in SMA_PERIODS},
    "dist_high_20": RANGE_PERIOD - 1,
    "dist_low_20": RANGE_PERIOD - 1,
}


def compute_indicators(bars: pl.DataFrame, last_only: bool = False) -> pl.DataFrame:
    """Append every `schema.INDICATORS` column and `history_sessions` to a long bars panel.

    `bars` holds at least `REQUIRED_COLUMNS` for any number of symbols, in any row order; each symbol's
    indicators are computed over its own bars in date order. The result has the input columns plus the
    indicator columns (Float64, null during warm-up — see the module docstring) and `history_sessions`
    (Int64: the symbol's bar count up to and including the row), sorted by (symbol, date). With
    `last_only` it keeps only each symbol's last row — what a scan scores — computed the same way.

    Raises `ConfigError` for a missing required column, a null symbol or date, or a repeated
    (symbol, date).
    """
    _check_columns(bars)
    order, starts = _ordering(bars)
    if order is not None and not last_only:
        # Every row is returned: sort the frame once (one gather per column; rechunking first makes a
        # gather from a multi-chunk frame several times cheaper) and read the prices from it in place.
        bars, order = bars.rechunk()[order], None
    prices = {}
    for name in ("high", "low", "close", "volume"):
        values = bars.get_column(name).cast(pl.Float64).to_numpy()
        prices[name] = values if order is None else values[order]
    lengths = np.diff(starts)
    positions = np.arange(bars.height) - np.repeat(starts[:-1], lengths)
    columns = {name: np.empty(bars.height) for name in schema.INDICATORS}
    with np.errstate(divide="ignore", invalid="ignore"):
        for chunk in _chunks(starts, positions, _RECURSIVE_CHUNK_CELLS):
            _fill_recursive(chunk, prices, columns)
        for chunk in _chunks(starts, positions, _WINDOW_CHUNK_CELLS):
            _fill_windowed(chunk, prices, columns)

    if last_only:
        last_rows = starts[1:] - 1
        frame = bars[last_rows if order is None else order[last_rows]]
        columns = {name: column[last_rows] for name, column in columns.items()}
        history_sessions = lengths
    else:
        frame = bars
        history_sessions = positions + 1
    return frame.with_columns(
        *(pl.Series(name, values) for name, values in columns.items()),
        pl.Series("history_sessions", history_sessions, dtype=pl.Int64),
    ).with_columns(pl.col(*schema.INDICATORS).fill_nan(None))


def _check_columns(bars: pl.DataFrame) -> None:
    """Reject a panel the indicators cannot be keyed on, naming what is wrong."""
    missing = [name for name in REQUIRED_COLUMNS if name not in bars.columns]
    if missing:
        raise ConfigError(f"compute_indicators: bars lack column(s) {', '.join(missing)}")
    for name in ("symbol", "date"):
        if bars.get_column(name).null_count():
            raise ConfigError(f"compute_indicators: bars have a null {name}")


def _ordering(bars: pl.DataFrame) -> tuple[np.ndarray | None, np.ndarray]:
    """The row permutation that sorts `bars` by (symbol, date) — None if already sorted — and symbol starts.

    `starts[i]` is the first sorted row of the i-th symbol and `starts[-1]` the row count. Already-sorted
    input costs only the check (which stops at the first out-of-order symbol otherwise). Other input is
    grouped by symbol, each group in date order: several times faster than a two-key sort of the frame,
    and for a date-major panel (what sources and warehouse globs over date partitions return) each group
    already is in date order.
    """
    symbol, date = pl.col("symbol"), pl.col("date")
    if bars.get_column("symbol").is_sorted():
        flags = bars.select(new_symbol=(symbol != symbol.shift()).fill_null(True), later=date > date.shift())
        new_symbol = flags.get_column("new_symbol")
        if (new_symbol | flags.get_column("later").fill_null(True)).all():
            return None, np.append(new_symbol.arg_true().to_numpy(), bars.height)

    rows_in_date_order = pl.col("row") if bars.get_column("date").is_sorted() else pl.col("row").sort_by("date")
    rows = (
        bars.select(symbol, date)
        .with_row_index("row")
        .group_by("symbol")
        .agg(rows_in_date_order)
        .sort("symbol")
        .get_column("row")
    )
    order = rows.explode().to_numpy()
    starts = np.zeros(rows.len() + 1, dtype=np.int64)
    np.cumsum(rows.list.len().to_numpy(), out=starts[1:])
    days = bars.get_column("date").to_physical().to_numpy()[order]
    repeated = days[1:] == days[:-1]
    repeated[starts[1:-1] - 1] = False
    if repeated.any():
        row = bars.row(int(order[np.argmax(repeated)]), named=True)
        raise ConfigError(f"compute_indicators: bars repeat {row['symbol']} on {row['date']}")
    return order, starts


class _Chunk:
    """A run of consecutive symbols of the sorted panel: its rows, and their cells in a bar-index matrix.

    Matrix row k, column j is the k-th bar of the chunk's j-th symbol. When every symbol of the chunk has
    the same number of bars (the usual panel) the matrix is a plain transpose of the rows; otherwise each
    row is placed in its own cell, and the cells past a symbol's last bar stay NaN.
    """

    def __init__(self, starts: np.ndarray, positions: np.ndarray) -> None:
        """`starts`: first row of each of the chunk's symbols, then the row after its last; `positions`: each
        row's bar index within its symbol (panel-wide)."""
        self.rows = slice(int(starts[0]), int(starts[-1]))
        self.lengths = np.diff(starts)
        self.width, self.height = len(self.lengths), int(self.lengths.max())
        #: Both set only when the chunk's symbols differ in length (each row then has its own cell).
        self.positions: np.ndarray | None = None
        self.cells: np.ndarray | None = None
        if not (self.lengths == self.height).all():
            self.positions = positions[self.rows]
            self.cells = self.positions * self.width + np.repeat(np.arange(self.width), self.lengths)

    def to_matrix(self, rows: np.ndarray) -> np.ndarray:
        """The chunk's rows of one column as a bar-index × symbol matrix."""
        if self.cells is None:
            return np.ascontiguousarray(rows.reshape(self.width, self.height).T)
        matrix = np.full(self.height * self.width, np.nan)
        matrix[self.cells] = rows
        return matrix.reshape(self.height, self.width)

    def write_rows(self, matrix: np.ndarray, rows: np.ndarray) -> None:
        """Copy a bar-index × symbol matrix back into the chunk's rows of one column."""
        if self.cells is None:
            np.copyto(rows.reshape(self.width, self.height), matrix.T)
        else:
            np.take(matrix.ravel(), self.cells, out=rows)

    def blank_warmup(self, columns: dict[str, np.ndarray], warmup: dict[str, int]) -> None:
        """Set each named column's first `warmup[name]` bars of every symbol to NaN, in the chunk's rows."""
        for bars in set(warmup.values()):
            names = [name for name, name_bars in warmup.items() if name_bars == bars]
            if self.positions is None:  # so is `cells`: equal lengths, a plain transpose
                for name in names:
                    columns[name].reshape(self.width, self.height)[:, :bars] = np.nan
            else:
                early = self.positions < bars
                for name in names:
                    np.copyto(columns[name], np.nan, where=early)


def _chunks(starts: np.ndarray, positions: np.ndarray, cells: int) -> list[_Chunk]:
    """Consecutive runs of whole symbols whose matrices (longest history × symbols) stay near `cells`."""
    symbol_count = len(starts) - 1
    if not symbol_count:
        return []
    per_chunk = max(1, cells // int(np.diff(starts).max()))
    return [_Chunk(starts[first : first + per_chunk + 1], positions) for first in range(0, symbol_count, per_chunk)]


def _fill_recursive(chunk: _Chunk, prices: dict[str, np.ndarray], columns: dict[str, np.ndarray]) -> None:
    """Write the chunk's rows of the indicators built on recursive averages: RSI, ATR, MACD and its signal."""
    matrices = {name: chunk.to_matrix(prices[name][chunk.rows]) for name in ("high", "low", "close")}
    rsi, atr = _rsi_and_atr(**matrices)
    macd, macd_signal = _macd(matrices["close"])
    for name, matrix in (("rsi", rsi), ("atr", atr), ("macd", macd), ("macd_signal", macd_signal)):
        chunk.write_rows(matrix, columns[name][chunk.rows])


def _fill_windowed(chunk: _Chunk, prices: dict[str, np.ndarray], columns: dict[str, np.ndarray]) -> None:
    """Write the chunk's rows of every other indicator, each computed along the rows as stored.

    Operations write into the output columns (`out=`, in-place operators) wherever they can: allocating
    and first touching a fresh array costs about as much as the arithmetic. Ratios are plain divisions;
    only a zero price can make a denominator zero, and then the chunk's infinities are turned into NaN.
    """
    high, low, close, volume = (prices[name][chunk.rows] for name in ("high", "low", "close", "volume"))
    out = {name: column[chunk.rows] for name, column in columns.items()}
    np.subtract(out["macd"], out["macd_signal"], out=out["macd_hist"])
    np.multiply(out["atr"], 100.0, out=out["atr_pct"])
    out["atr_pct"] /= close

    middle = np.empty_like(close)
    _rolling_means(close, {BB_PERIOD: middle, **{period: out[f"sma_{period}"] for period in SMA_PERIODS}})
    band_width = _rolling_variance(close, middle, BB_PERIOD, out=out["bb_width"])
    np.sqrt(band_width, out=band_width)
    band_width *= 2.0 * BB_DEVIATIONS
    band_width /= middle
    volume_ratio = _rolling_means(volume, {VOLUME_PERIOD: out["volume_ratio"]})[VOLUME_PERIOD]
    np.divide(volume, volume_ratio, out=volume_ratio)
    for period in MOMENTUM_PERIODS:
        momentum = out[f"mom_{period}"]
        momentum[:period] = np.nan
        np.divide(close[period:], close[:-period], out=momentum[period:])
        momentum -= 1.0
    for name, extremes, extreme in (("dist_high_20", high, np.maximum), ("dist_low_20", low, np.minimum)):
        distance = _rolling(extremes, extreme, {RANGE_PERIOD: out[name]})[RANGE_PERIOD]
        np.divide(close, distance, out=distance)
        distance -= 1.0

    chunk.blank_warmup(out, _WINDOW_WARMUP)
    if not (close.all() and high.all() and low.all()):
        for column in out.values():
            column[np.isinf(column)] = np.nan


def _rsi_and_atr(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TA-Lib's RSI and ATR, both Wilder averages over `WILDER_PERIOD` bars.

    RSI smooths gains and losses, ATR the true range; all three start at the second bar (they need the
    previous close) and are seeded, as in TA-Lib, with the plain mean of their first `WILDER_PERIOD`
    values. They sit side by side in one matrix so that a single loop over the bar index smooths all
    three. RSI is 0 where both averages are 0 (a flat series), as TA-Lib reports it.
    max(high, previous close) − min(low, previous close) equals TA-Lib's largest of the three ranges.
    """
    height, width = close.shape
    changes = np.empty((height, 3, width))
    changes[0] = np.nan
    gains, losses, true_range = changes[1:, 0], changes[1:, 1], changes[1:, 2]
    previous_close = close[:-1]
    change = close[1:] - previous_close
    np.maximum(change, 0.0, out=gains)
    np.subtract(gains, change, out=losses)
    np.maximum(high[1:], previous_close, out=true_range)
    true_range -= np.minimum(low[1:], previous_close, out=change)
    averages = _exponential_smoothing(
        changes, WILDER_PERIOD, _seed_mean(changes, WILDER_PERIOD, WILDER_PERIOD), 1.0 / WILDER_PERIOD
    )
    average_gain, average_loss, atr = averages[:, 0], averages[:, 1], averages[:, 2]
    total = average_gain + average_loss
    # Both averages are 0 only on a flat series; dividing by the smallest positive double instead of 0
    # then gives TA-Lib's RSI of 0 there, without a separate pass to patch it.
    np.maximum(total, np.finfo(np.float64).tiny, out=total)
    rsi = np.multiply(average_gain, 100.0)
    rsi /= total
    return rsi, atr


def _macd(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TA-Lib's MACD line and signal, NaN until the signal exists.

    TA-Lib starts both EMAs at bar `MACD_SLOW − 1`: the slow one seeded with the mean of its first
    `MACD_SLOW` closes, the fast one with the mean of the `MACD_FAST` closes ending at that same bar (not
    from bar `MACD_FAST − 1`). The signal EMA is seeded with the mean of the first `MACD_SIGNAL` MACD
    values, and MACD itself is only reported from there on. Both EMAs run side by side (the closes broadcast
    against the two smoothing factors), so a single loop over the bar index serves both.
    """
    start = MACD_SLOW - 1
    emas = _exponential_smoothing(
        close[:, np.newaxis],
        start,
        np.stack([_seed_mean(close, start, MACD_FAST), _seed_mean(close, start, MACD_SLOW)]),
        np.array([[2.0 / (MACD_FAST + 1)], [2.0 / (MACD_SLOW + 1)]]),
    )
    macd = np.subtract(emas[:, 0], emas[:, 1])
    signal_start = start + MACD_SIGNAL - 1
    signal = _exponential_smoothing(
        macd, signal_start, _seed_mean(macd, signal_start, MACD_SIGNAL), 2.0 / (MACD_SIGNAL + 1)
    )
    macd[:signal_start] = np.nan
    return macd, signal


def _seed_mean(values: np.ndarray, last_row: int, count: int) -> np.ndarray:
    """TA-Lib's seed of a recursive average: the plain mean of the `count` rows ending at `last_row`."""
    if last_row >= len(values):
        return np.full(values.shape[1:], np.nan)
    return values[last_row - count + 1 : last_row + 1].mean(axis=0)


def _exponential_smoothing(values: np.ndarray, start: int, seed: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    """`seed` at row `start`, then s[t] = alpha · x[t] + (1 − alpha) · s[t−1]; NaN before `start`.

    The one recursion behind EMA (alpha = 2 / (period + 1)) and Wilder's average (alpha = 1 / period).
    `values` is indexed by bar along its first axis; `alpha` is a scalar or broadcasts against it (one
    factor per series smoothed side by side). The result first holds alpha · x, so each step of the loop
    over bars is two in-place operations on a whole row, every symbol at once.
    """
    smoothed = np.multiply(values, alpha)
    smoothed[:start] = np.nan
    if start >= len(values):
        return smoothed
    smoothed[start] = seed
    decay = 1.0 - np.asarray(alpha)
    carried = np.empty(smoothed.shape[1:])
    for row in range(start + 1, len(values)):
        np.multiply(smoothed[row - 1], decay, out=carried)
        smoothed[row] += carried
    return smoothed


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


def _rolling_means(values: np.ndarray, outs: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """For each `window: out` pair, the mean over each row's trailing `window` rows into `out`."""
    _rolling(values, np.add, outs)
    for window, out in outs.items():
        out /= window
    return outs


def _rolling_variance(values: np.ndarray, mean: np.ndarray, window: int, out: np.ndarray) -> np.ndarray:
    """Population variance over each row's trailing `window` rows, given their `mean`, into `out`.

    The fast formula mean(x²) − mean(x)² cancels catastrophically when the spread is tiny next to the
    level (a stock pinned at a deal price), whereas TA-Lib returns exactly 0 for a constant window. So
    windows whose fast variance falls below `_VARIANCE_RECHECK` × mean² (negative ones included) are
    recomputed exactly, from deviations to the window's last value: exactly 0 for a constant window, and
    the cancellation left is bounded by the window length instead of the price level.
    """
    mean_square = np.multiply(mean, mean)
    variance = _rolling_means(np.multiply(values, values), {window: out})[window]
    variance -= mean_square
    mean_square *= _VARIANCE_RECHECK
    flagged = np.flatnonzero(variance < mean_square)
    if flagged.size:
        windows = values[flagged[:, None] - np.arange(window)]
        deviations = windows - windows[:, :1]
        exact = (deviations * deviations).mean(axis=1) - deviations.mean(axis=1) ** 2
        variance[flagged] = np.maximum(exact, 0.0)
    return variance
