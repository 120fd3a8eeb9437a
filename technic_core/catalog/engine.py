"""Every catalog column (`technic_core.catalog.registry`) for a whole bars panel in one vectorized pass.

Layout. Each symbol's complete bars (open, high, low, close and volume all finite) are numbered 0, 1, 2 …
in date order, and bar k of the j-th symbol (in symbol order) is cell (k, j) of a bar-index × symbol matrix
— left-aligned, whatever its date, so a late listing needs no special casing and a missing session is
simply absent: a symbol's sequence is exactly the bars TA-Lib would see on that symbol's own bars. Cells
past a symbol's last bar are NaN. The panel is processed in chunks of whole symbols (all their bars, a few
hundred symbols), small enough that a chunk's matrices stay in the CPU caches.

On a chunk every indicator is a handful of numpy operations over whole matrices:
- recursive averages (EMA, Wilder's RSI / ATR / directional movement, MACD's signal, ADX) step over the
  bar index, each step updating every series of every symbol of the chunk at once (`_smooth`);
- trailing windows (SMA, sums, highest / lowest, Bollinger variance) use `indicators._rolling`'s binary
  decomposition, shared by all windows over the same values; a window nearly as long as the history has
  few values and is reduced directly (`_windowed`);
- lags (changes, gaps, crosses) compare a matrix with itself shifted by whole rows.
Row k of the chunk is bar k of every symbol, so each column's warm-up is simply its first `lookback` rows.

Row order. The result keeps the input's rows in the input's order and appends the catalog columns (each
chunk writes its cells straight to their input rows), so nothing is sorted; with `last_only` it is each
symbol's latest row, sorted by symbol.

Null convention (as in `technic_core.indicators`): null wherever TA-Lib returns NaN (warm-up, too short a
history); a bar missing a price or its volume is left out of its symbol's sequence like a missing session,
and its own row's computed columns are null; a ratio over a zero price is null, never ±inf. Zero ranges
(flat prices) give the value TA-Lib gives — 0 for RSI, stochastics, %R, CCI, DI, MFI and beta — or the one
the registry documents (bb_pct_b 0.5).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from technic_core import indicators
from technic_core.catalog import consensus
from technic_core.catalog.registry import CATALOG, COLUMNS
from technic_core.errors import ConfigError

#: The bar columns every computation reads.
PRICES = ("open", "high", "low", "close", "volume")

#: Cells (bar index × symbol) per chunk: wide enough that each step of the recursions over the bar index
#: updates a few hundred symbols at once, small enough that a chunk's working set stays in the CPU caches.
_CHUNK_CELLS = 1 << 16

SMA_PERIODS = (10, 20, 50, 100, 200)
EMA_PERIODS = (10, 20, 50, 200)
CHANGE_SESSIONS = (1, 5, 21, 63, 126, 252)
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

#: Columns whose values are another column's (registry `alias_of`).
_ALIASES = {column.name: column.alias_of for column in CATALOG if column.alias_of}
#: Columns passed through from the universe frame.
_DESCRIPTIVE = tuple(column.name for column in CATALOG if column.source == "universe")
#: Columns the chunks compute (everything but aliases, pass-throughs, history_sessions and the signal band).
_COMPUTED = tuple(
    column.name
    for column in CATALOG
    if column.name not in _ALIASES
    and column.name not in _DESCRIPTIVE
    and column.name not in ("history_sessions", "consensus_signal")
)


def compute_catalog(
    bars: pl.DataFrame,
    index: pl.DataFrame | None = None,
    universe: pl.DataFrame | None = None,
    last_only: bool = False,
) -> pl.DataFrame:
    """`bars` with every catalog column appended (see the module docstring for layout and nulls).

    `bars` holds at least `indicators.REQUIRED_COLUMNS` for any number of symbols, in any row order.
    `index` is the broad-market series (SPY) as `date` and `close` columns, for beta_252 and rs_63; without it
    they are null. `universe` supplies the descriptive columns by `symbol` (its latest row per symbol when
    it has a `date` column); without it they are null. With `last_only` the result is each symbol's latest
    row, sorted by symbol — computed over the full history all the same.

    Raises `ConfigError` for a missing required column, a null symbol or date, or a repeated
    (symbol, date) in `bars` or in `index`.
    """
    panel = _Panel(bars)
    index_by_date = panel.by_date(index)
    sink = _Sink(panel, last_only)
    with np.errstate(divide="ignore", invalid="ignore"):
        for chunk in panel.chunks(_CHUNK_CELLS):
            _compute_chunk(chunk, index_by_date, sink)
    return _frame(bars, panel, sink, universe)


class _Panel:
    """Where each input row's bar sits in the bar-index × symbol matrix, and the prices to fill it."""

    def __init__(self, bars: pl.DataFrame) -> None:
        missing = [name for name in indicators.REQUIRED_COLUMNS if name not in bars.columns]
        if missing:
            raise ConfigError(f"compute_catalog: bars lack column(s) {', '.join(missing)}")
        for name in ("symbol", "date"):
            if bars.get_column(name).null_count():
                raise ConfigError(f"compute_catalog: bars have a null {name}")
        self.height = rows = bars.height
        symbol = bars.get_column("symbol")
        self.symbols = symbol.unique().sort()
        width = self.symbols.len()
        self.codes = symbol.cast(pl.Enum(self.symbols)).to_physical().to_numpy().astype(np.int64)
        days = bars.get_column("date").to_physical().to_numpy().astype(np.int64)
        first_day = int(days.min()) if rows else 0
        on_day = np.zeros(int(days.max()) - first_day + 1 if rows else 0, dtype=bool)
        on_day[days - first_day] = True
        # The panel's dates, dense: day number → position among the dates that have any bar.
        self.first_day, self.day_position = first_day, np.cumsum(on_day) - 1
        self.days = np.flatnonzero(on_day) + first_day
        self.date_code = self.day_position[days - first_day]
        key = self.date_code * width + self.codes
        seen = np.zeros(len(self.days) * width, dtype=bool)
        seen[key] = True
        if np.count_nonzero(seen) < rows:
            self._raise_repeated(bars, key)

        self.prices = {name: bars.get_column(name).cast(pl.Float64).to_numpy() for name in PRICES}
        total = sum(self.prices.values(), start=np.zeros(rows))
        self.complete = np.isfinite(total)
        occupied = seen
        if not self.complete.all():
            occupied = np.zeros_like(seen)
            occupied[key[self.complete]] = True
        counts = np.cumsum(occupied.reshape(len(self.days), width), axis=0, dtype=np.int64)
        #: Complete bars of the row's symbol up to and including the row's date.
        self.history = counts.ravel()[key]
        self.lengths = counts[-1] if len(counts) else np.zeros(width, dtype=np.int64)
        self.bars_max = int(self.lengths.max()) if width else 0
        cells = (self.history - 1) * width + self.codes
        row_of_cell = np.full(self.bars_max * width, rows, dtype=np.int64)
        row_of_cell[cells[self.complete]] = np.flatnonzero(self.complete)
        self.row_of_cell = row_of_cell.reshape(self.bars_max, width)
        self._seen = seen.reshape(len(self.days), width)
        self._key = key

    @staticmethod
    def _raise_repeated(bars: pl.DataFrame, key: np.ndarray) -> None:
        counts = np.bincount(key)
        row = bars.row(int(np.flatnonzero(counts[key] > 1)[0]), named=True)
        raise ConfigError(f"compute_catalog: bars repeat {row['symbol']} on {row['date']}")

    def latest_rows(self) -> np.ndarray:
        """Each symbol's latest input row by date (whether or not its bar is complete), in symbol order."""
        width = self.symbols.len()
        if not width:
            return np.zeros(0, dtype=np.int64)
        last_date = len(self._seen) - 1 - np.argmax(self._seen[::-1], axis=0)
        row_of_key = np.empty(len(self._seen) * width, dtype=np.int64)
        row_of_key[self._key] = np.arange(self.height)
        return row_of_key[last_date * width + np.arange(width)]

    def by_date(self, index: pl.DataFrame | None) -> np.ndarray | None:
        """The index close on each panel date (NaN where the index has none), or None without an index."""
        if index is None:
            return None
        missing = [name for name in ("date", "close") if name not in index.columns]
        if missing:
            raise ConfigError(f"compute_catalog: index lacks column(s) {', '.join(missing)}")
        dates = index.get_column("date").drop_nulls()
        if dates.is_duplicated().any():
            raise ConfigError(f"compute_catalog: index repeats {dates.filter(dates.is_duplicated())[0]}")
        index = index.filter(pl.col("date").is_not_null())
        days = index.get_column("date").to_physical().to_numpy().astype(np.int64) - self.first_day
        closes = index.get_column("close").cast(pl.Float64).to_numpy()
        inside = (days >= 0) & (days < len(self.day_position))
        days, closes = days[inside], closes[inside]
        on_panel_date = self.day_position[days] != np.append(-1, self.day_position)[days]
        by_date = np.full(len(self.days), np.nan)
        by_date[self.day_position[days[on_panel_date]]] = closes[on_panel_date]
        return by_date

    def chunks(self, cells: int) -> list[_Chunk]:
        """Consecutive runs of whole symbols whose matrices (longest history × symbols) stay near `cells`."""
        width = self.symbols.len()
        per_chunk = max(1, cells // max(1, self.bars_max))
        return [_Chunk(self, first, min(first + per_chunk, width)) for first in range(0, width, per_chunk)]


class _Chunk:
    """Symbols `first` … `stop − 1` of the panel: their input rows and prices as bar-index × symbol matrices."""

    def __init__(self, panel: _Panel, first: int, stop: int) -> None:
        self.panel, self.first, self.stop = panel, first, stop
        self.lengths = panel.lengths[first:stop]
        self.height = int(self.lengths.max())
        self.rows = np.ascontiguousarray(panel.row_of_cell[: self.height, first:stop])
        #: Columns (symbols) with fewer bars than the chunk's longest, whose trailing cells are not bars.
        self.short = [(column, int(length)) for column, length in enumerate(self.lengths) if length < self.height]

    def load(self, values: np.ndarray) -> np.ndarray:
        """One per-input-row array as the chunk's matrix; NaN in cells past a symbol's last bar."""
        # Cells past a symbol's last bar hold the row count; clipping reads a real row there, overwritten next.
        matrix = np.take(values, self.rows, mode="clip")
        for column, length in self.short:
            matrix[length:, column] = np.nan
        return matrix


class _Sink:
    """Receives each chunk's matrices and writes them to the output columns: every row, or latest rows."""

    def __init__(self, panel: _Panel, last_only: bool) -> None:
        self.panel, self.last_only = panel, last_only
        self.columns: dict[str, np.ndarray] = {}
        if last_only:
            self.rows = panel.latest_rows()
            # A symbol whose latest row is not a complete bar has no values on it.
            self.stale = ~panel.complete[self.rows]
            self.size = panel.symbols.len()
        else:
            self.size = panel.height + 1  # the last slot absorbs the writes of cells that are not bars

    def write(self, chunk: _Chunk, values: dict[str, np.ndarray]) -> None:
        """Store one chunk's matrices (bar index × the chunk's symbols) under their column names."""
        for name, matrix in values.items():
            out = self.columns.get(name)
            if out is None:
                out = self.columns[name] = np.empty(self.size)
            if self.last_only:
                out[chunk.first : chunk.stop] = matrix[chunk.lengths - 1, np.arange(len(chunk.lengths))]
            else:
                out[chunk.rows] = matrix

    def finish(self) -> dict[str, np.ndarray]:
        """The output columns, NaN on rows that are not complete bars (and for symbols without any)."""
        blank = self.stale if self.last_only else ~self.panel.complete
        result = {}
        for name in _COMPUTED:
            out = self.columns.get(name)
            if out is None:  # no chunk at all: an empty panel, or no complete bar anywhere
                out = np.full(self.size, np.nan)
            out = out if self.last_only else out[:-1]
            if blank.any():
                out[blank] = np.nan
            result[name] = out
        return result


def _compute_chunk(chunk: _Chunk, index_by_date: np.ndarray | None, sink: _Sink) -> None:
    """Every computed column for one chunk, written to `sink`."""
    prices = {name: chunk.load(chunk.panel.prices[name]) for name in PRICES}
    dates = np.take(chunk.panel.date_code, chunk.rows, mode="clip")
    values: dict[str, np.ndarray] = {}
    _recursive(prices, values)
    _windows(prices, values)
    _performance(prices, dates, chunk.panel.days, values)
    _volatility(values)
    index = None
    if index_by_date is not None:
        index = index_by_date[dates]
        for column, length in chunk.short:
            index[length:, column] = np.nan
    _against_index(values, index)
    values.update(consensus.rate(prices["close"], values))
    zero_price = not all(prices[name].all() for name in ("open", "high", "low", "close"))
    if zero_price or (index is not None and not index.all()):
        for matrix in values.values():
            matrix[np.isinf(matrix)] = np.nan
    sink.write(chunk, values)


# --- recursive averages ---------------------------------------------------------------------------------


def _smooth(values: np.ndarray, decay: np.ndarray, seeds: list[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """In place, s[t] = values[t] + decay · s[t − 1] for each series from its seed on; NaN before it.

    `values` is bar index × series × symbol and holds alpha · input, so this is the one recursion behind EMA
    (alpha = 2 / (period + 1)) and Wilder's average (alpha = 1 / period), all series advancing together in
    a single loop over the bar index. `decay` broadcasts against one bar's series × symbol slice (one factor
    per series), or has `values`' shape (a factor per cell). `seeds` lists (series, bar, seed values): the
    series starts at that bar with those values, as TA-Lib seeds its averages.
    """
    height = len(values)
    for series, bar, seed in seeds:
        if bar < height:
            values[:bar, series] = 0.0  # zeros before the seed carry nothing into it
            values[bar, series] = seed
    per_cell = decay.shape == values.shape
    carried = np.empty(values.shape[1:])
    for bar in range(min(bar for _, bar, _ in seeds) + 1, height):
        np.multiply(values[bar - 1], decay[bar] if per_cell else decay, out=carried)
        values[bar] += carried
    for series, bar, _ in seeds:
        values[:bar, series] = np.nan
    return values


def _seed_mean(values: np.ndarray, last: int, count: int) -> np.ndarray:
    """TA-Lib's seed of a recursive average: the mean of the `count` rows ending at row `last`."""
    return values[last - count + 1 : last + 1].mean(axis=0) if last < len(values) else np.full(values.shape[1:], np.nan)


def _recursive(prices: dict[str, np.ndarray], values: dict[str, np.ndarray]) -> None:
    """EMAs, MACD, RSI, ATR, DI and ADX — exactly TA-Lib's, seeds and start bars included.

    First loop, 12 series: the four EMAs and MACD's two (both started at bar MACD_SLOW − 1, the fast one
    seeded with the MACD_FAST closes ending there), Wilder's averages of gains, losses and true range (seeded
    at bar 14 with their mean over bars 1–14, as RSI and ATR are), and Wilder's sums of +DM, −DM and true
    range as DI uses them — TA-Lib sums bars 1–13 and then recurses s − s / 14 + x, which is this average
    times 14 seeded at bar 13 with the sum over 14. Second loop: MACD's signal and ADX (seeded at bar 27
    with the sum of DX over bars 14–27 over 14; where DX is undefined — zero true range or zero DI sum —
    TA-Lib neither adds it to the seed nor moves ADX, hence the per-cell decay).
    """
    high, low, close = prices["high"], prices["low"], prices["close"]
    height = len(close)
    inputs = np.empty((height, 12, close.shape[1]))
    gains, losses, ranges, plus_dm, minus_dm, di_range = (inputs[1:, k] for k in range(6, 12))
    inputs[0, 6:] = np.nan
    change = close[1:] - close[:-1]
    np.maximum(change, 0.0, out=gains)
    np.subtract(gains, change, out=losses)
    np.maximum(high[1:], close[:-1], out=ranges)
    ranges -= np.minimum(low[1:], close[:-1], out=change)
    di_range[...] = ranges
    up = np.subtract(high[1:], high[:-1])
    down = np.subtract(low[:-1], low[1:])
    np.maximum(up, 0.0, out=plus_dm)
    plus_dm *= up > down
    np.maximum(down, 0.0, out=minus_dm)
    minus_dm *= down > up

    start = MACD_SLOW - 1
    seeds = [(k, period - 1, _seed_mean(close, period - 1, period)) for k, period in enumerate(EMA_PERIODS)]
    seeds += [(4, start, _seed_mean(close, start, MACD_FAST)), (5, start, _seed_mean(close, start, MACD_SLOW))]
    seeds += [(k, WILDER, _seed_mean(inputs[:, k], WILDER, WILDER)) for k in (6, 7, 8)]
    seeds += [
        (k, WILDER - 1, _seed_mean(inputs[:, k], WILDER - 1, WILDER - 1) * ((WILDER - 1) / WILDER)) for k in (9, 10, 11)
    ]
    alphas = np.array([2.0 / (period + 1) for period in (*EMA_PERIODS, MACD_FAST, MACD_SLOW)] + [1.0 / WILDER] * 6)
    for k in range(6):
        np.multiply(close, alphas[k], out=inputs[:, k])
    inputs[:, 6:] *= 1.0 / WILDER
    smoothed = _smooth(inputs, (1.0 - alphas)[:, np.newaxis], seeds)

    for k, period in enumerate(EMA_PERIODS):
        values[f"ema_{period}"] = smoothed[:, k]
    macd = np.subtract(smoothed[:, 4], smoothed[:, 5])
    average_gain, average_loss = smoothed[:, 6], smoothed[:, 7]
    total = average_gain + average_loss
    # Both averages are 0 only on a flat series, where TA-Lib's RSI is 0: divide by the smallest double.
    np.maximum(total, np.finfo(np.float64).tiny, out=total)
    values["rsi"] = np.multiply(average_gain, 100.0)
    values["rsi"] /= total
    values["atr"] = smoothed[:, 8]
    values["atr_pct"] = np.multiply(smoothed[:, 8], 100.0)
    values["atr_pct"] /= close

    # DI is 0 where TA-Lib's true-range sum is zero (TA_IS_ZERO): dividing by infinity gives it.
    di_sum = np.multiply(smoothed[:, 11], WILDER)
    di_sum[di_sum < _TA_EPSILON] = np.inf
    plus_di = values["plus_di_14"] = np.multiply(smoothed[:, 9], 100.0 * WILDER)
    plus_di /= di_sum
    minus_di = values["minus_di_14"] = np.multiply(smoothed[:, 10], 100.0 * WILDER)
    minus_di /= di_sum
    di_total = plus_di + minus_di
    plus_di[:WILDER] = minus_di[:WILDER] = np.nan  # the sums start at bar 13, DI is reported from bar 14
    defined = (di_total >= _TA_EPSILON) & np.isfinite(di_sum)
    dx = np.abs(plus_di - minus_di)
    dx *= 100.0
    dx /= di_total
    dx[~defined] = 0.0

    second = np.empty((height, 2, close.shape[1]))
    decay = np.empty_like(second)
    signal_alpha = 2.0 / (MACD_SIGNAL + 1)
    np.multiply(macd, signal_alpha, out=second[:, 0])
    decay[:, 0] = 1.0 - signal_alpha
    np.multiply(dx, 1.0 / WILDER, out=second[:, 1])
    decay[:, 1] = np.where(defined, 1.0 - 1.0 / WILDER, 1.0)
    signal_start, adx_start = start + MACD_SIGNAL - 1, 2 * WILDER - 1
    seeds = [
        (0, signal_start, _seed_mean(macd, signal_start, MACD_SIGNAL)),
        (1, adx_start, _seed_mean(dx, adx_start, WILDER)),
    ]
    smoothed = _smooth(second, decay, seeds)
    macd[:signal_start] = np.nan
    values["macd"], values["macd_signal"], values["adx_14"] = macd, smoothed[:, 0], smoothed[:, 1]
    values["macd_hist"] = macd - smoothed[:, 0]


# --- trailing windows -----------------------------------------------------------------------------------


def _windowed(values: np.ndarray, combine: np.ufunc, windows: tuple[int, ...]) -> dict[int, np.ndarray]:
    """For each window, `combine` (np.add, np.maximum) over each row's trailing `window` rows; NaN before.

    A window that leaves few rows to fill — nearly as long as the history — is reduced directly, row by row:
    fewer operations than the binary decomposition's extra levels. The other windows share
    `indicators._rolling`'s decomposition.
    """
    height = len(values)
    outs = {window: np.empty_like(values) for window in windows}
    decomposed = {}
    for window, out in outs.items():
        if (height - window + 1) * window <= height * window.bit_length():
            out[: window - 1] = np.nan
            for row in range(window - 1, height):
                combine.reduce(values[row - window + 1 : row + 1], axis=0, out=out[row])
        else:
            decomposed[window] = out
    indicators._rolling(values, combine, decomposed)
    return outs


def _rolling_variance(values: np.ndarray, mean: np.ndarray, window: int) -> np.ndarray:
    """Population variance over each row's trailing `window` rows, given their `mean`.

    The matrix form of `indicators._rolling_variance` (which works on a flat column): the fast
    mean(x²) − mean(x)² cancels catastrophically when the spread is tiny next to the level, so windows below
    `indicators._VARIANCE_RECHECK` × mean² (negative ones included) are recomputed exactly from deviations to
    their first value — exactly 0 for a flat window, as TA-Lib has it.
    """
    mean_square = np.multiply(mean, mean)
    variance = _windowed(values * values, np.add, (window,))[window]
    variance /= window
    variance -= mean_square
    mean_square *= indicators._VARIANCE_RECHECK
    rows, columns = np.nonzero(variance < mean_square)
    if rows.size:
        windows = values[rows[:, np.newaxis] - np.arange(window), columns[:, np.newaxis]]
        deviations = windows - windows[:, :1]
        exact = (deviations * deviations).mean(axis=1) - deviations.mean(axis=1) ** 2
        variance[rows, columns] = np.maximum(exact, 0.0)
    return variance


def _bars_since_latest_max(values: np.ndarray, window: int) -> np.ndarray:
    """Rows back from each row to the latest maximum of its trailing `window` rows; NaN before a full window.

    Binary decomposition like `indicators._rolling`, on (maximum, row of its latest occurrence) pairs: of two
    neighbouring blocks the later one wins ties, as in TA-Lib's AROON.
    """
    height = len(values)
    since = np.full(values.shape, np.nan)
    if window > height:
        return since
    rows = height - window + 1
    best = values
    column = (-1, *[1] * (values.ndim - 1))
    where = np.broadcast_to(np.arange(height, dtype=np.float64).reshape(column), values.shape)
    # The window is assembled from earliest to latest part; an empty start loses to any part.
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
    return since


def _windows(prices: dict[str, np.ndarray], values: dict[str, np.ndarray]) -> None:
    """SMAs, Bollinger, volume averages, MFI, CCI, stochastics, Williams %R, Aroon and the price ranges."""
    high, low, close, volume = (prices[name] for name in ("high", "low", "close", "volume"))
    means = _windowed(close, np.add, SMA_PERIODS)
    for period, mean in means.items():
        mean /= period
        values[f"sma_{period}"] = mean
    middle = means[BB_PERIOD]
    deviation = np.sqrt(_rolling_variance(close, middle, BB_PERIOD))
    values["bb_upper"] = middle + BB_DEVIATIONS * deviation
    values["bb_lower"] = middle - BB_DEVIATIONS * deviation
    band = deviation * (2.0 * BB_DEVIATIONS)
    values["bb_width"] = band / middle
    # A flat window has zero-width bands and its close on the middle band: %B 0.5.
    pct_b = values["bb_pct_b"] = np.full_like(close, 0.5)
    np.divide(close - values["bb_lower"], band, out=pct_b, where=band != 0)
    pct_b[np.isnan(band)] = np.nan

    # Means over 20 bars of volume, dollar volume and typical price, side by side in one decomposition.
    typical = high + low
    typical += close
    typical /= 3.0
    stacked = np.stack([volume, close * volume, typical], axis=1)
    twenty = _windowed(stacked, np.add, (VOLUME_PERIOD,))[VOLUME_PERIOD]
    twenty /= VOLUME_PERIOD
    values["avg_volume_20"], values["avg_dollar_volume_20"] = twenty[:, 0], twenty[:, 1]
    values["volume_ratio"] = volume / twenty[:, 0]
    values["cci_20"] = _cci(typical, twenty[:, 2])
    values["mfi_14"] = _mfi(typical, volume)

    # Highest highs and lowest lows (as highest negated lows), side by side.
    extremes = np.stack([high, -low], axis=1)
    highest = _windowed(extremes, np.maximum, (STOCH_PERIOD, RANGE_PERIOD, YEAR_SESSIONS))
    _stochastics(close, highest[STOCH_PERIOD][:, 0], -highest[STOCH_PERIOD][:, 1], values)
    since = _bars_since_latest_max(extremes, AROON_PERIOD + 1)
    values["aroon_up_25"] = (100.0 / AROON_PERIOD) * (AROON_PERIOD - since[:, 0])
    values["aroon_down_25"] = (100.0 / AROON_PERIOD) * (AROON_PERIOD - since[:, 1])
    values["dist_high_20"] = close / highest[RANGE_PERIOD][:, 0] - 1.0
    values["dist_low_20"] = close / -highest[RANGE_PERIOD][:, 1] - 1.0
    high_52w, low_52w = highest[YEAR_SESSIONS][:, 0], -highest[YEAR_SESSIONS][:, 1]
    values["high_52w"], values["low_52w"] = high_52w, low_52w
    values["high_52w_dist"] = close / high_52w - 1.0
    values["low_52w_dist"] = close / low_52w - 1.0
    values["new_high_52w"] = _flag(high == high_52w, high_52w)
    values["new_low_52w"] = _flag(low == low_52w, low_52w)


def _flag(condition: np.ndarray, defined_by: np.ndarray) -> np.ndarray:
    """A boolean column as 1.0 / 0.0, NaN where `defined_by` is NaN."""
    flag = condition.astype(np.float64)
    flag[np.isnan(defined_by)] = np.nan
    return flag


def _cci(typical: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """TA-Lib's CCI: (typical − mean) / (0.015 × mean absolute deviation) over CCI_PERIOD bars.

    The deviations sum as Σ|x − m| = 2 Σ max(x − m, 0) = 2 (Σ max(x, m) − n m), because the deviations of a
    window from its own mean sum to zero — one maximum and one addition per bar of the window. A flat window
    (both deviations within `_FLAT_CCI` of the level, i.e. rounding) gives 0, as TA-Lib reports it.
    """
    height = len(typical)
    cci = np.full_like(typical, np.nan)
    if height < CCI_PERIOD:
        return cci
    last = slice(CCI_PERIOD - 1, None)
    current = mean[last]
    total = np.zeros_like(current)
    term = np.empty_like(current)
    for lag in range(CCI_PERIOD):
        np.maximum(typical[CCI_PERIOD - 1 - lag : height - lag], current, out=term)
        total += term
    deviation = current * CCI_PERIOD
    np.subtract(total, deviation, out=deviation)
    deviation *= 2.0 * 0.015 / CCI_PERIOD
    offset = typical[last] - current
    flat = np.abs(current) * _FLAT_CCI
    ratio = cci[last]
    np.divide(offset, deviation, out=ratio)
    ratio[(np.abs(offset) <= flat) | (deviation <= flat)] = 0.0
    ratio[np.isnan(current)] = np.nan
    return cci


def _mfi(typical: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """TA-Lib's MFI over WILDER bars: positive and negative money flow (typical price × volume, signed by the
    typical price's move; no move — within TA-Lib's scaled dead zone — is no flow), 0 when none flowed."""
    move = typical[1:] - typical[:-1]
    flow = typical[1:] * volume[1:]
    flow[np.abs(move) <= _TA_EPSILON * (np.abs(typical[1:]) + np.abs(typical[:-1]))] = 0.0
    flows = np.empty((len(typical), 2, typical.shape[1]))
    flows[0] = np.nan
    rising = move >= 0.0
    np.multiply(flow, rising, out=flows[1:, 0])
    np.subtract(flow, flows[1:, 0], out=flows[1:, 1])
    sums = _windowed(flows, np.add, (WILDER,))[WILDER]
    positive, total = sums[:, 0], sums[:, 0] + sums[:, 1]
    mfi = np.zeros_like(total)
    np.divide(positive, total, out=mfi, where=total > 0.0)
    mfi *= 100.0
    mfi[np.isnan(total)] = np.nan
    return mfi


def _stochastics(close: np.ndarray, highest: np.ndarray, lowest: np.ndarray, values: dict[str, np.ndarray]) -> None:
    """TA-Lib's STOCH (14, 3 SMA, 3 SMA) and WILLR (14); a zero range gives 0 for both, as in TA-Lib."""
    span = highest - lowest
    defined = span != 0.0
    fast_k = np.zeros_like(close)
    np.divide(close - lowest, span / 100.0, out=fast_k, where=defined)
    willr = values["willr_14"] = np.zeros_like(close)
    np.divide(highest - close, span / -100.0, out=willr, where=defined)
    fast_k[np.isnan(span)] = willr[np.isnan(span)] = np.nan
    slow_k = _windowed(fast_k, np.add, (STOCH_SMOOTHING,))[STOCH_SMOOTHING]
    slow_k /= STOCH_SMOOTHING
    slow_d = _windowed(slow_k, np.add, (STOCH_SMOOTHING,))[STOCH_SMOOTHING]
    slow_d /= STOCH_SMOOTHING
    slow_k[: STOCH_PERIOD - 1 + 2 * (STOCH_SMOOTHING - 1)] = np.nan  # TA-Lib reports %K only beside %D
    values["stoch_k"], values["stoch_d"] = slow_k, slow_d


# --- lags, crosses, performance -------------------------------------------------------------------------


def _change(values: np.ndarray, lag: int, base: np.ndarray | None = None) -> np.ndarray:
    """values over `base` (default: `values`) `lag` rows earlier, minus 1; NaN in the first `lag` rows."""
    base = values if base is None else base
    change = np.full_like(values, np.nan)
    if lag < len(values):
        np.divide(values[lag:], base[:-lag], out=change[lag:])
        change[lag:] -= 1.0
    return change


def _performance(
    prices: dict[str, np.ndarray], dates: np.ndarray, days: np.ndarray, values: dict[str, np.ndarray]
) -> None:
    """Changes, momentum, gap, year to date, distances to the SMAs and the golden / death crosses."""
    close = prices["close"]
    for sessions in CHANGE_SESSIONS:
        values[f"change_{sessions}d"] = _change(close, sessions)
    for sessions in (21, 63, 126):
        values[f"mom_{sessions}"] = values.pop(f"change_{sessions}d")
    values["roc_10"] = _change(close, ROC_SESSIONS)
    values["gap"] = _change(prices["open"], 1, base=close)
    values["change_ytd"] = _year_to_date(close, dates, days)
    for period in (20, 50, 200):
        values[f"close_vs_sma_{period}"] = close / values[f"sma_{period}"] - 1.0
    fast, slow = values[f"sma_{CROSS_FAST}"], values[f"sma_{CROSS_SLOW}"]
    above, below = fast > slow, fast < slow
    for name, now in (("golden_cross", above), ("death_cross", below)):
        cross = np.full_like(close, np.nan)
        cross[1:] = now[1:] & ~now[:-1]
        cross[:CROSS_SLOW] = np.nan  # the slow SMA on the previous bar
        values[name] = cross


def _year_to_date(close: np.ndarray, dates: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Close over the last close before this bar's calendar year began, minus 1; NaN without one."""
    change = np.full_like(close, np.nan)
    if len(close) < 2:
        return change
    years = days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64)[dates]
    bar = np.arange(1, len(close)).reshape(-1, 1)
    first_of_year = np.where(years[1:] != years[:-1], bar, 0)  # the bar opening a year; 0 before any
    np.maximum.accumulate(first_of_year, axis=0, out=first_of_year)
    reference = np.take_along_axis(close, np.maximum(first_of_year - 1, 0), axis=0)
    np.divide(close[1:], reference, out=change[1:])
    change[1:] -= 1.0
    change[1:][first_of_year == 0] = np.nan
    return change


def _against_index(values: dict[str, np.ndarray], index: np.ndarray | None) -> None:
    """rs_63 and beta_252 against the index closes read on each bar's date (NaN without an index)."""
    if index is None:
        values["rs_63"] = np.full_like(values["change_1d"], np.nan)
        values["beta_252"] = np.full_like(values["change_1d"], np.nan)
        return
    values["rs_63"] = values["mom_63"] - _change(index, RS_SESSIONS)
    # TA-Lib's BETA: the regression slope of the symbol's returns on the index's over YEAR_SESSIONS returns.
    index_returns, returns = _change(index, 1), values["change_1d"]
    stacked = np.stack([index_returns, returns, index_returns * index_returns, index_returns * returns], axis=1)
    sums = _windowed(stacked, np.add, (YEAR_SESSIONS,))[YEAR_SESSIONS]
    sum_x, sum_y, sum_xx, sum_xy = (sums[:, k] for k in range(4))
    variance = YEAR_SESSIONS * sum_xx - sum_x * sum_x
    beta = values["beta_252"] = YEAR_SESSIONS * sum_xy - sum_x * sum_y
    np.divide(beta, variance, out=beta, where=np.abs(variance) >= _TA_EPSILON)
    beta[np.abs(variance) < _TA_EPSILON] = 0.0
    beta[np.isnan(variance)] = np.nan


def _volatility(values: dict[str, np.ndarray]) -> None:
    """volatility_21: the sample standard deviation of the last VOLATILITY_RETURNS daily returns."""
    returns = values["change_1d"]
    mean = _windowed(returns, np.add, (VOLATILITY_RETURNS,))[VOLATILITY_RETURNS]
    mean /= VOLATILITY_RETURNS
    variance = _rolling_variance(returns, mean, VOLATILITY_RETURNS)
    variance *= VOLATILITY_RETURNS / (VOLATILITY_RETURNS - 1)
    values["volatility_21"] = np.sqrt(variance, out=variance)


# --- the result frame -----------------------------------------------------------------------------------


def _frame(bars: pl.DataFrame, panel: _Panel, sink: _Sink, universe: pl.DataFrame | None) -> pl.DataFrame:
    """The input rows (every one, or each symbol's latest) with the catalog columns, in registry order."""
    computed = sink.finish()
    descriptive = _descriptive(panel.symbols, universe)
    if sink.last_only:
        frame, history = bars[sink.rows], panel.history[sink.rows]
    else:
        frame, history = bars, panel.history
        descriptive = descriptive.select(pl.all().gather(panel.codes))
    series: dict[str, pl.Series] = {"history_sessions": pl.Series("history_sessions", history, dtype=pl.Int64)}
    for name, values in computed.items():
        series[name] = pl.Series(name, values, nan_to_null=True).cast(COLUMNS[name].dtype)
    for alias, original in _ALIASES.items():
        series[alias] = series[original].alias(alias)
    series.update({name: descriptive.get_column(name) for name in _DESCRIPTIVE})
    catalog = [column.name for column in CATALOG]
    kept = [name for name in frame.columns if name not in COLUMNS]
    return (
        frame.select(kept)
        .with_columns(*(series[name] for name in catalog if name in series))
        .with_columns(consensus.signal(pl.col("consensus_rating")).alias("consensus_signal"))
        .select(*kept, *catalog)
    )


def _descriptive(symbols: pl.Series, universe: pl.DataFrame | None) -> pl.DataFrame:
    """The universe's descriptive columns for `symbols`, in their order; null where the universe lacks them."""
    frame = pl.DataFrame({"symbol": symbols})
    if universe is not None:
        if "symbol" not in universe.columns:
            raise ConfigError("compute_catalog: universe lacks column symbol")
        if "date" in universe.columns:
            universe = universe.sort("date").unique("symbol", keep="last")
        elif universe.get_column("symbol").is_duplicated().any():
            raise ConfigError("compute_catalog: universe repeats a symbol and has no date to pick the latest")
        present = [name for name in _DESCRIPTIVE if name in universe.columns]
        frame = frame.join(universe.select("symbol", *present), on="symbol", how="left", maintain_order="left")
    frame = frame.with_columns(pl.lit(None).alias(name) for name in _DESCRIPTIVE if name not in frame.columns)
    return frame.select(pl.col(name).cast(COLUMNS[name].dtype) for name in _DESCRIPTIVE)
