"""Every catalog column (`technic_core.catalog.registry`) for a whole bars panel in one vectorized pass.

Layout. Each symbol's complete bars (open, high, low, close and volume all finite) are numbered 0, 1, 2 …
in date order, and bar k of a symbol is cell (k, symbol) of a bar-index × symbol matrix — left-aligned,
whatever its date, so a late listing needs no special casing and a missing session is simply absent: a
symbol's sequence is exactly the bars TA-Lib would see on that symbol's own bars. Cells past a symbol's
last bar are NaN. The panel is processed in chunks of whole symbols (all their bars, a few hundred symbols)
grouped by history length, so that most chunks hold symbols of one length or nearly; `kernels` does the
arithmetic on each chunk, every column a handful of numpy operations over whole matrices.

Row order. The result keeps the input's rows in the input's order and appends the catalog columns (each
chunk writes its cells straight to their input rows), so nothing is sorted. With `last_only` it is each
symbol's latest row, sorted by symbol; a chunk then computes windows, lags and everything derived only from
the row before its shortest symbol's last on — the last two rows of a chunk of equal lengths (the
recursions still run over the whole history).

Null convention: null (never NaN) wherever TA-Lib returns NaN (warm-up, too short a history); a bar missing
a price or its volume is left out of its symbol's sequence like a missing session, and its own row's
computed columns are null; a ratio over a zero price is null, never ±inf. Zero ranges (flat prices) give
the value TA-Lib gives — 0 for RSI, stochastics, %R, CCI, DI, MFI and beta — or the one the registry
documents (bb_pct_b 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from technic_core.catalog import consensus, kernels
from technic_core.catalog.registry import CATALOG, COLUMNS
from technic_core.errors import ConfigError

#: The bar columns every computation reads.
PRICES = ("open", "high", "low", "close", "volume")
#: The columns `compute_catalog` needs in `bars`.
REQUIRED_COLUMNS = ("symbol", "date", *PRICES)

#: Cells (bar index × symbol) per chunk: wide enough that each step of the recursions over the bar index
#: updates a few hundred symbols at once, small enough that a chunk's working set stays in the CPU caches.
_CHUNK_CELLS = 1 << 16
#: Symbols a chunk holds at least before it may end at a drop in history length, and the drop that ends it:
#: narrower chunks cost more in per-operation overhead than they save in rows.
_CHUNK_MIN_WIDTH, _CHUNK_LENGTH_SPREAD = 32, 8

#: Columns whose values are another column's (registry `alias_of`).
_ALIASES = {column.name: column.alias_of for column in CATALOG if column.alias_of}
#: Columns passed through from the universe frame.
_DESCRIPTIVE = tuple(column.name for column in CATALOG if column.source == "universe")
#: Columns the kernels compute (everything but aliases, pass-throughs, history_sessions and the signal band).
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
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """`bars` with every catalog column appended (see the module docstring for layout and nulls).

    `bars` holds at least `REQUIRED_COLUMNS` for any number of symbols, in any row order.
    `index` is the broad-market series (SPY) as `date` and `close` columns, for beta_252 and rs_63; without it
    they are null. `universe` supplies the descriptive columns by `symbol` (its latest row per symbol when
    it has a `date` column); without it they are null. With `last_only` the result is each symbol's latest
    row, sorted by symbol — computed over the full history all the same. `columns` appends only the catalog
    columns it names (in registry order), with the same values: the arithmetic of groups of columns none of
    them needs is skipped (`kernels.GROUPS`), and only they are kept, which over every row of a long panel
    saves most of the output's memory and writing.

    Raises `ConfigError` for a missing required column, a null symbol or date, a repeated (symbol, date)
    in `bars` or in `index`, or a name in `columns` the catalog lacks.
    """
    wanted = _wanted(columns)
    panel = _Panel(bars)
    index_by_date = panel.by_date(index)
    stored = _stored(wanted)
    sink, groups = _Sink(panel, last_only, stored), kernels.groups_for(stored)
    with np.errstate(divide="ignore", invalid="ignore"):
        for chunk in panel.chunks(_CHUNK_CELLS):
            _compute_chunk(chunk, index_by_date, sink, groups)
    return _frame(bars, panel, sink, universe, wanted)


def _wanted(columns: Sequence[str] | None) -> tuple[str, ...]:
    """The catalog columns to append, in registry order."""
    if columns is None:
        return tuple(COLUMNS)
    unknown = [name for name in columns if name not in COLUMNS]
    if unknown:
        raise ConfigError(f"compute_catalog: no catalog column(s) {', '.join(unknown)}")
    return tuple(name for name in COLUMNS if name in set(columns))


def _stored(wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The computed columns the sink keeps for `wanted`: themselves, the originals of aliases and the rating
    the consensus signal is banded from."""
    needed = {_ALIASES.get(name, name) for name in wanted}
    if "consensus_signal" in needed:
        needed.add("consensus_rating")
    return tuple(name for name in _COMPUTED if name in needed)


class _Panel:
    """Where each input row's bar sits in the bar-index × symbol matrix, and the prices to fill it."""

    def __init__(self, bars: pl.DataFrame) -> None:
        missing = [name for name in REQUIRED_COLUMNS if name not in bars.columns]
        if missing:
            raise ConfigError(f"compute_catalog: bars lack column(s) {', '.join(missing)}")
        for name in ("symbol", "date"):
            if bars.get_column(name).null_count():
                raise ConfigError(f"compute_catalog: bars have a null {name}")
        if bars.schema["date"] != pl.Date:
            raise ConfigError(f"compute_catalog: bars' date is {bars.schema['date']}, not Date")
        self.height = rows = bars.height
        # Symbol codes from a categorical of its own: dense, in order of first appearance. (The categorical
        # must outlive the reading of its categories: they are dropped with it.)
        categories = pl.Categories.random()
        categorical = bars.get_column("symbol").cast(pl.Categorical(categories))
        self.codes = categorical.to_physical().to_numpy()
        self.symbols = categories.to_series()
        #: Codes in symbol order, the order of `last_only` results.
        self.symbol_order = self.symbols.arg_sort().to_numpy()
        width = self.symbols.len()
        days = bars.get_column("date").to_physical().to_numpy()
        first_day = int(days.min()) if rows else 0
        day_offset = days - first_day
        on_day = np.zeros(int(day_offset.max()) + 1 if rows else 0, dtype=bool)
        on_day[day_offset] = True
        # The panel's dates, dense: day number → position among the dates that have any bar.
        self.first_day, self.day_position = first_day, np.cumsum(on_day, dtype=np.int32) - 1
        self.days = np.flatnonzero(on_day) + first_day
        self.date_code = self.day_position[day_offset]
        key = np.multiply(self.date_code, width, dtype=np.int64)
        key += self.codes
        seen = np.zeros(len(self.days) * width, dtype=bool)
        seen[key] = True
        if np.count_nonzero(seen) < rows:
            self._raise_repeated(bars, key)

        # One column-major block: a single copy, each column contiguous.
        block = bars.select(pl.col(PRICES).cast(pl.Float64)).to_numpy(order="fortran")
        self.prices = {name: block[:, k] for k, name in enumerate(PRICES)}
        # A sum is NaN or ±inf if any term is (prices and volumes cannot overflow it): one pass per column, and
        # only a panel with an incomplete bar pays for the per-row test.
        self.complete = np.ones(rows, dtype=bool)
        occupied, complete_rows = seen, np.arange(rows)
        clean = all(np.isfinite(values.sum()) for values in self.prices.values())
        if not clean:
            self.complete = np.isfinite(sum(self.prices.values(), start=np.zeros(rows)))
            occupied = np.zeros_like(seen)
            occupied[key[self.complete]] = True
            complete_rows = np.flatnonzero(self.complete)
        #: Complete bars of each symbol up to and including each panel date. (A loop over dates adding whole
        #: rows: np.cumsum along the first axis is several times slower.)
        self.counts = counts = occupied.reshape(len(self.days), width).astype(np.int32)
        for day in range(1, len(counts)):
            np.add(counts[day], counts[day - 1], out=counts[day])
        #: Complete bars of the row's symbol up to and including the row's date.
        self.history = counts.ravel()[key]
        self.lengths = counts[-1] if len(counts) else np.zeros(width, dtype=np.int32)
        self.bars_max = int(self.lengths.max()) if width else 0
        cells = self.history.astype(np.int64)
        cells -= 1
        cells *= width
        cells += self.codes
        row_of_cell = np.full(self.bars_max * width, rows, dtype=np.int64)
        row_of_cell[cells if clean else cells[complete_rows]] = complete_rows
        self.row_of_cell = row_of_cell.reshape(self.bars_max, width)
        self._seen = seen.reshape(len(self.days), width)
        self._key = key
        years = self.days.astype("datetime64[D]").astype("datetime64[Y]")
        opens_year = np.append(True, years[1:] != years[:-1])
        #: Each panel date's year's first panel date.
        self._year_start = np.flatnonzero(opens_year)[np.cumsum(opens_year) - 1]

    @staticmethod
    def _raise_repeated(bars: pl.DataFrame, key: np.ndarray) -> None:
        counts = np.bincount(key)
        row = bars.row(int(np.flatnonzero(counts[key] > 1)[0]), named=True)
        raise ConfigError(f"compute_catalog: bars repeat {row['symbol']} on {row['date']}")

    def latest_rows(self) -> np.ndarray:
        """Each symbol's latest input row by date (whether or not its bar is complete), by symbol code."""
        width = self.symbols.len()
        if not width:
            return np.zeros(0, dtype=np.int64)
        last_date = len(self._seen) - 1 - np.argmax(self._seen[::-1], axis=0)
        row_of_key = np.empty(len(self._seen) * width, dtype=np.int64)
        row_of_key[self._key] = np.arange(self.height)
        return row_of_key[last_date * width + np.arange(width)]

    def bars_before_year(self, dates: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        """For cells of `symbols` (columns) on panel dates `dates`, the symbol's complete bars before 1 January
        of the date's year — the bar index of its first bar that year."""
        before = self._year_start[dates] - 1
        bars = self.counts[np.maximum(before, 0), symbols]
        bars[before < 0] = 0
        return bars

    def by_date(self, index: pl.DataFrame | None) -> np.ndarray | None:
        """The index close on each panel date (NaN where the index has none), or None without an index."""
        if index is None:
            return None
        missing = [name for name in ("date", "close") if name not in index.columns]
        if missing:
            raise ConfigError(f"compute_catalog: index lacks column(s) {', '.join(missing)}")
        if index.schema["date"] != pl.Date:
            raise ConfigError(f"compute_catalog: index's date is {index.schema['date']}, not Date")
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
        """Runs of symbols, longest histories first, each as wide as keeps its matrices (its longest history ×
        its symbols) near `cells`. A chunk also ends, once `_CHUNK_MIN_WIDTH` wide, where histories fall more
        than `_CHUNK_LENGTH_SPREAD` bars below its longest: with `last_only` a chunk computes everything but
        the recursions from its shortest symbol's last bars on, so mixing lengths costs rows.

        Equal lengths go in symbol order, so the chunks — and so every value to the last bit (matrix products
        round by their operands' layout) — depend on the symbols and their bars, never on the input's row
        order."""
        alphabetical = np.empty_like(self.symbol_order)
        alphabetical[self.symbol_order] = np.arange(len(self.symbol_order))
        by_length = np.lexsort((alphabetical, -self.lengths))
        by_length = by_length[self.lengths[by_length] > 0]  # a symbol without a complete bar has nothing to compute
        lengths = self.lengths[by_length]
        chunks, first = [], 0
        while first < len(by_length):
            longest = int(lengths[first])
            stop = min(len(by_length), first + max(1, cells // longest))
            shorter = np.flatnonzero(lengths[first + _CHUNK_MIN_WIDTH : stop] < longest - _CHUNK_LENGTH_SPREAD)
            if shorter.size:
                stop = first + _CHUNK_MIN_WIDTH + int(shorter[0])
            chunks.append(_Chunk(self, by_length[first:stop]))
            first = stop
        return chunks


class _Chunk:
    """Some of the panel's symbols: their input rows and prices as bar-index × symbol matrices."""

    def __init__(self, panel: _Panel, symbols: np.ndarray) -> None:
        self.panel, self.symbols = panel, symbols
        self.lengths = panel.lengths[symbols]
        self.height = int(self.lengths[0])  # the longest: symbols come longest first
        self.rows = panel.row_of_cell[: self.height, symbols]
        #: Columns (symbols) with fewer bars than the chunk's longest, whose trailing cells are not bars.
        self.short = [(column, int(length)) for column, length in enumerate(self.lengths) if length < self.height]

    def load(self, values: np.ndarray) -> np.ndarray:
        """One per-input-row array as the chunk's matrix; NaN in cells past a symbol's last bar."""
        # Cells past a symbol's last bar hold the row count; clipping reads a real row there, blanked next.
        return self.blank(np.take(values, self.rows, mode="clip"))

    def blank(self, matrix: np.ndarray) -> np.ndarray:
        """`matrix` with NaN in the cells past each symbol's last bar."""
        for column, length in self.short:
            matrix[length:, column] = np.nan
        return matrix


class _Sink:
    """Receives each chunk's matrices and writes them to the output columns: every row, or latest rows."""

    def __init__(self, panel: _Panel, last_only: bool, stored: tuple[str, ...] = _COMPUTED) -> None:
        self.panel, self.last_only = panel, last_only
        if last_only:
            self.rows = panel.latest_rows()
            # A symbol whose latest row is not a complete bar has no values on it.
            self.stale = ~panel.complete[self.rows]
            size = panel.symbols.len()
        else:
            size = panel.height + 1  # the last slot absorbs the writes of cells that are not bars
        # One block for all columns: a single large allocation is first touched far faster than one per
        # column (numpy asks the kernel for huge pages), and the result frame keeps it without copying. Every
        # cell no chunk writes is blanked by `finish`: a row that is not a complete bar, a symbol without one.
        self.columns = dict(zip(stored, np.empty((len(stored), size))))

    def first_row(self, chunk: _Chunk) -> int:
        """The first row the chunk must compute: 0, or for latest rows the one before its shortest symbol's last."""
        return max(0, int(chunk.lengths[-1]) - 2) if self.last_only else 0

    def write(self, chunk: _Chunk, first: int, values: dict[str, np.ndarray]) -> None:
        """Store one chunk's matrices (rows `first` … × the chunk's symbols) under their column names."""
        if self.last_only:
            latest, symbols = chunk.lengths - 1 - first, np.arange(len(chunk.lengths))
            for name, out in self.columns.items():
                out[chunk.symbols] = values[name][latest, symbols]
        else:
            rows = chunk.rows.ravel()
            for name, out in self.columns.items():
                out[rows] = values[name].ravel()

    def finish(self) -> dict[str, np.ndarray]:
        """The output columns, NaN on rows that are not complete bars (and for symbols without any)."""
        blank = self.stale if self.last_only else ~self.panel.complete
        result = {}
        for name, out in self.columns.items():
            out = out if self.last_only else out[:-1]
            if blank.any():
                out[blank] = np.nan
            result[name] = out[self.panel.symbol_order] if self.last_only else out
        return result


def _compute_chunk(chunk: _Chunk, index_by_date: np.ndarray | None, sink: _Sink, groups: frozenset[str]) -> None:
    """The computed columns of one chunk (the optional `kernels.GROUPS` among them in `groups`), written to `sink`."""
    panel, first = chunk.panel, sink.first_row(chunk)
    prices = {name: chunk.load(panel.prices[name]) for name in PRICES}
    index = None
    if index_by_date is None or "index" not in groups:
        dates = np.take(panel.date_code, chunk.rows[first:], mode="clip")
    else:
        every_date = np.take(panel.date_code, chunk.rows, mode="clip")
        index, dates = chunk.blank(index_by_date[every_date]), every_date[first:]
    values = kernels.compute(prices, panel.bars_before_year(dates, chunk.symbols), index, first, groups)
    zero_price = not all(prices[name].all() for name in ("open", "high", "low", "close"))
    if zero_price or (index is not None and not index.all()):
        for matrix in values.values():
            matrix[np.isinf(matrix)] = np.nan
    sink.write(chunk, first, values)


# --- the result frame -----------------------------------------------------------------------------------


def _frame(
    bars: pl.DataFrame, panel: _Panel, sink: _Sink, universe: pl.DataFrame | None, wanted: tuple[str, ...]
) -> pl.DataFrame:
    """The input rows (every one, or each symbol's latest) with the `wanted` catalog columns, in registry order."""
    computed = sink.finish()
    series: dict[str, pl.Series] = {}
    if sink.last_only:
        rows = sink.rows[panel.symbol_order]
        frame, history = bars[rows], panel.history[rows]
    else:
        frame, history = bars, panel.history
    if "history_sessions" in wanted:
        series["history_sessions"] = pl.Series("history_sessions", history, dtype=pl.Int64)
    for name, values in computed.items():
        if COLUMNS[name].dtype == pl.Float64:
            series[name] = _float_series(name, values)
        else:
            series[name] = pl.Series(name, values, nan_to_null=True).cast(COLUMNS[name].dtype)
    for alias, original in _ALIASES.items():
        if alias in wanted:
            series[alias] = series[original].alias(alias)
    if any(name in wanted for name in _DESCRIPTIVE):
        descriptive = _descriptive(panel.symbols, universe)
        order = panel.symbol_order if sink.last_only else panel.codes
        descriptive = descriptive.select(pl.all().gather(order))
        series.update({name: descriptive.get_column(name) for name in _DESCRIPTIVE})
    if "consensus_signal" in wanted:
        series["consensus_signal"] = consensus.signal(computed["consensus_rating"]).alias("consensus_signal")
    kept = [name for name in frame.columns if name not in wanted]
    return frame.select(kept).with_columns(series[name] for name in wanted)


def _float_series(name: str, values: np.ndarray) -> pl.Series:
    """A Float64 series over `values` without copying them (through Arrow), null where they are NaN."""
    present = values == values  # not NaN
    validity = None if present.all() else pa.py_buffer(np.packbits(present, bitorder="little"))
    array = pa.Array.from_buffers(pa.float64(), len(values), [validity, pa.py_buffer(values)])
    return pl.Series(name, pl.from_arrow(array))


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
