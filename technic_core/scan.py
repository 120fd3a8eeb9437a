"""The scan engine: screened universe + bar history → scored results, batch by batch, in a chosen order.

Why batches: consumers (the warehouse writer, API streams) publish each batch as soon as it is computed, so
the best candidates reach users first and a scan can stop early (`max_signals`, `timeout`, a stop request)
without publishing the rest. The computing is not done per batch: every catalog column
(`technic_core.catalog`) and the scores of many symbols are one vectorized pass, whose fixed cost would
otherwise be paid again by every batch. So a scan computes all its symbols in one pass before its first
batch — or, for a large scan, its first batch alone and then everything else — and each batch cuts its
rows out of what was computed (`_ScoredTable`).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from technic_core import schema
from technic_core.catalog import compute_catalog
from technic_core.config import ScanConfig, where_screen
from technic_core.scalars import as_int
from technic_core.scoring import BUY_SIGNALS, score
from technic_core.screens.language import Screen, with_previous

#: Why a scan ended; also the `end` event reason on streams.
END_COMPLETE = "complete"
END_MAX_SIGNALS = "max_signals"
END_TIMEOUT = "timeout"
END_STOPPED = "stopped"


@dataclass(frozen=True)
class ScanBatch:
    """One published unit of a scan: its results and the symbols it could not score."""

    batch: int
    results: pl.DataFrame
    rejections: pl.DataFrame
    scanned: int
    total: int
    signals: int
    elapsed_s: float


@dataclass(frozen=True)
class ScanHooks:
    """Seams for later stages.

    `enrich` adds columns to scored results (e.g. ML alpha) before they are cut into batches and numbered: it
    gets the results of each computation pass (the symbols the engine scores at once, with the catalog), so
    its cost, like the catalog's, grows with rows and not with batches. It must keep the rows, in order, and
    the scan's signal (a batch's signals are counted from the scan's own); columns named like the numbering
    (`batch`, `seq`) are dropped. `reorder` runs between batches: it receives the symbols not yet scanned and
    every result so far and returns the remaining symbols in their new visiting order (dynamic
    prioritization); it must return the same set. The results frame it gets grows in place as batches
    follow: a hook that keeps it beyond the call keeps a `clone()`.
    """

    enrich: Callable[[pl.DataFrame], pl.DataFrame] | None = None
    reorder: Callable[[list[str], pl.DataFrame], list[str]] | None = None

    def with_enrichment(self, *steps: Callable[[pl.DataFrame], pl.DataFrame] | None) -> ScanHooks:
        """These hooks with `steps` applied after this `enrich`, in order (None steps are skipped), so
        independent stages (priority annotation, ML alpha, …) each contribute their columns."""
        chain = [step for step in (self.enrich, *steps) if step is not None]
        if not chain:
            return self

        def enrich(results: pl.DataFrame) -> pl.DataFrame:
            for step in chain:
                results = step(results)
            return results

        return ScanHooks(enrich=enrich, reorder=self.reorder)


#: A scan without hooks.
NO_HOOKS = ScanHooks()


@dataclass
class ScanRun:
    """An iterator of `ScanBatch` that remembers how the scan ended once iteration stops."""

    batches: Iterator[ScanBatch]
    total: int
    end_reason: str | None = None
    scanned: int = 0
    results: int = 0
    signals: int = 0
    rejected: int = 0
    elapsed_s: float = 0.0
    rejection_counts: dict[str, int] = field(default_factory=dict)

    def __iter__(self) -> Iterator[ScanBatch]:
        return self.batches


def scan_candidates(universe: pl.DataFrame, config: ScanConfig, order: Sequence[str] | None = None) -> list[str]:
    """Screened symbols the scan will visit, in visiting order.

    `order` (e.g. a priority plan) decides the sequence; symbols it does not name follow alphabetically, so
    a partial or stale plan never loses a screened symbol. A watchlist (`config.symbols`) keeps only its
    symbols; those the universe lacks or the pre-screen refused are not visited (`watchlist_report` says which).
    """
    passed = universe.filter(pl.col("passed"))
    if config.sectors is not None:
        passed = passed.filter(pl.col("sector").is_in(list(config.sectors)))
    if config.symbols is not None:
        passed = passed.filter(pl.col("symbol").is_in(list(config.symbols)))
    screened = passed.get_column("symbol").sort().to_list()
    if order is not None:
        wanted = set(screened)
        planned = [s for s in dict.fromkeys(order) if s in wanted]
        seen = set(planned)
        screened = planned + [s for s in screened if s not in seen]
    if config.max_symbols is not None:
        screened = screened[: config.max_symbols]
    return screened


@dataclass(frozen=True)
class WatchlistReport:
    """What becomes of a watchlist on a session: symbols the universe does not list, and listed ones the
    pre-screen refused (neither is visited)."""

    requested: tuple[str, ...]
    unknown: tuple[str, ...]
    not_screened: tuple[str, ...]

    @property
    def known(self) -> int:
        return len(self.requested) - len(self.unknown)


def watchlist_report(universe: pl.DataFrame, symbols: Sequence[str]) -> WatchlistReport:
    """Which of `symbols` the session's `universe` does not list, and which it lists but did not pass."""
    verdicts = dict(universe.select("symbol", "passed").iter_rows())
    unknown = tuple(symbol for symbol in symbols if symbol not in verdicts)
    refused = tuple(symbol for symbol in symbols if symbol in verdicts and not verdicts[symbol])
    return WatchlistReport(tuple(symbols), unknown, refused)


def run_scan(
    config: ScanConfig,
    session: dt.date,
    bars: pl.DataFrame | ScanHistory,
    universe: pl.DataFrame,
    regime: str | None = None,
    order: Sequence[str] | None = None,
    should_stop: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
    hooks: ScanHooks = NO_HOOKS,
    first_batch_size: int | None = None,
    index: pl.DataFrame | None = None,
    previous: pl.DataFrame | None = None,
) -> ScanRun:
    """Scan `session`: returns a `ScanRun` to iterate for `ScanBatch`es in visiting order.

    `bars` is the history (any sessions up to `session`, more is ignored), plain or as a `ScanHistory`
    prepared earlier; `universe` the screened universe of the session (`schema.UNIVERSE`), which also gives
    the catalog's descriptive columns (name, market cap); `index` the broad-market index closes (`date`,
    `close`: SPY, see `technic_core.daily.read_index_closes`) that beta_252 and rs_63 are measured against —
    without it they are null. Every result row carries every catalog column (`schema.RESULTS`). Symbols
    with fewer than `config.min_history_sessions` bars or no computable rating are reported in `rejections`
    with a reason, never silently dropped. `seq` numbers published result rows 1, 2, 3 … across batches with
    no gaps.

    `first_batch_size` (capped at `config.batch_size`) makes only the first batch smaller. For a scan of
    more than `UP_FRONT_SYMBOLS` symbols after it, the first batch is computed alone, so a stream whose
    reader waits for the first result gets it after the least compute.

    `config.where` (a screen) keeps only the result rows it selects, batch by batch after enrichment and before
    numbering, so `seq` stays gapless over what is published and `signals` (and `max_signals`) count the kept
    rows' buy signals. `previous` is the previous session's stored results, which `prev()` in it reads (without
    them every `prev()` comparison is false).
    """
    if first_batch_size is not None and first_batch_size < 1:
        raise ValueError(f"first_batch_size must be at least 1, got {first_batch_size}")
    candidates = scan_candidates(universe, config, order)
    run = ScanRun(batches=iter(()), total=len(candidates))
    first_size = min(first_batch_size or config.batch_size, config.batch_size)
    screen = None if config.where is None else Screened.of(config.where, previous)
    run.batches = _batches(
        run, config, session, bars, universe, candidates, regime, should_stop, clock, hooks, first_size, index, screen
    )
    return run


@dataclass(frozen=True)
class Screened:
    """A scan's `where`: its compiled screen and the previous session's rows `prev()` reads."""

    screen: Screen
    previous: pl.DataFrame | None

    @classmethod
    def of(cls, where: str, previous: pl.DataFrame | None) -> Screened:
        screen = where_screen(where)
        if not screen.prev_columns:
            return cls(screen, None)
        prior = previous if previous is not None else schema.empty(schema.RESULTS)
        # One row per symbol: a second would duplicate the symbol's row (polars refuses the join).
        wanted = ["symbol", *sorted(screen.prev_columns)]
        return cls(screen, prior.select(wanted).unique("symbol", keep="first", maintain_order=True))

    def apply(self, results: pl.DataFrame) -> tuple[pl.DataFrame, int]:
        """The rows of `results` the screen keeps, and their buy signals."""
        if self.previous is None:
            kept = self.screen.apply(results)
        else:
            joined = with_previous(results, self.previous, self.screen.prev_columns)
            kept = self.screen.apply(joined).select(results.columns)
        return kept, int(kept.get_column("signal").is_in(BUY_SIGNALS).sum())


#: Widest date range (days) whose distinct dates are found with a dense bincount rather than a hash.
_DENSE_DATE_SPAN = 1 << 20


@dataclass(frozen=True)
class ScanHistory:
    """Bars prepared for scanning: what `run_scan` learns about them before its first batch, kept.

    `run_scan` accepts plain bars and prepares them itself (a few milliseconds for a year of 5,000
    symbols); a caller that scans the same bars again and again (the API's ad-hoc scans) prepares them once
    with `ScanHistory.of` and passes this instead.

    Why the bars of a pass are cut from the history rather than the whole history split by symbol up front:
    the split costs hundreds of milliseconds for 5,000 symbols — time the first results would wait for. For
    bars sorted by symbol (what the API caches) a pass is a binary search per symbol and one gather of their
    rows; other bars are filtered. Either way a pass sees exactly the rows it would after a split, and the
    catalog does not depend on row order.
    """

    bars: pl.DataFrame
    #: The distinct non-null dates of `bars`, ascending.
    dates: pl.Series
    sorted_by_symbol: bool
    null_dates: bool

    @classmethod
    def of(cls, bars: pl.DataFrame) -> ScanHistory:
        dates = bars.get_column("date")
        return cls(bars, _distinct_dates(dates), bars.get_column("symbol").is_sorted(), dates.null_count() > 0)

    def batches(self, session: dt.date, lookback: int) -> Callable[[list[str]], pl.DataFrame]:
        """A function giving the bars of some symbols over the last `lookback` dates up to `session`."""
        upto = self.dates.filter(self.dates <= session)
        window = []
        if upto.len() < self.dates.len() or self.null_dates:
            window.append(pl.col("date") <= session)
        if upto.len() > lookback:
            window.append(pl.col("date") >= upto[-lookback])

        def panel(symbols: list[str]) -> pl.DataFrame:
            rows = self._rows(symbols)
            return rows.filter(*window) if window else rows

        return panel

    def _rows(self, symbols: list[str]) -> pl.DataFrame:
        if not self.sorted_by_symbol:
            return self.bars.filter(pl.col("symbol").is_in(symbols))
        column, wanted = self.bars.get_column("symbol"), pl.Series(sorted(set(symbols)), dtype=pl.String)
        starts = column.search_sorted(wanted, side="left").to_numpy().astype(np.int64)
        lengths = column.search_sorted(wanted, side="right").to_numpy().astype(np.int64) - starts
        # Row numbers of every symbol's run, in one gather: contiguous output, cheaper to read than the
        # concatenation of one slice per symbol.
        offsets = np.cumsum(lengths) - lengths
        return self.bars[np.repeat(starts - offsets, lengths) + np.arange(lengths.sum(), dtype=np.int64)]


def _distinct_dates(dates: pl.Series) -> pl.Series:
    """Distinct non-null dates, ascending: by a bincount over the day numbers when their span allows,
    several times faster than hashing a million dates."""
    dates = dates.drop_nulls()
    if dates.dtype == pl.Date and dates.len():
        days = dates.to_physical()
        low, high = as_int(days.min()), as_int(days.max())
        if high - low < _DENSE_DATE_SPAN:
            present = np.flatnonzero(np.bincount(days.to_numpy() - low)) + low
            return pl.Series(dates.name, present.astype(np.int32)).cast(pl.Date)
    return dates.unique().sort()


#: Scans of up to this many symbols after the first batch are computed in one pass before the first batch;
#: larger ones compute the first batch alone, then everything else. A pass costs a few milliseconds of
#: fixed cost plus its rows, so splitting pays only when the rest would delay the first batch much longer.
UP_FRONT_SYMBOLS = 500

#: Fewest symbols scanned between two calls of a reorder hook (after the first batch, which always calls it).
#: A reorder learns from hit rates, which one symbol barely moves, and costs time in the symbols still to
#: visit; calling it after every batch would make a scan's cost grow with its number of batches when batches
#: are tiny. Batches of at least this size call it after each batch, as before.
REORDER_MIN_SYMBOLS = 10

#: Empty frames of the table's two schemas, built once (a frame of ninety typed columns takes milliseconds).
_NO_RESULTS, _NO_REJECTIONS = schema.empty(schema.SCORED_RESULTS), schema.empty(schema.REJECTIONS)


class _ScoredTable:
    """The scored rows of every symbol computed so far, ready to be cut into batches.

    A pass computes the catalog (`compute_catalog`, last rows only) and the scores of many symbols at once,
    judges each (result or rejection, with the reason), enriches the results (`ScanHooks.enrich`) and
    appends them to two frames already in their published schemas, in the pass's visiting order. A batch
    then only looks its symbols up and cuts their rows out: a slice when they are consecutive (a batch in
    visiting order), a gather otherwise (after a reorder) — no query is planned per batch, so a scan's cost
    grows with its rows, not its batches.
    """

    def __init__(
        self,
        config: ScanConfig,
        session: dt.date,
        bars_of: Callable[[list[str]], pl.DataFrame],
        universe: pl.DataFrame,
        regime: str | None,
        index: pl.DataFrame | None,
        enrich: Callable[[pl.DataFrame], pl.DataFrame] | None,
    ) -> None:
        self._config, self._session, self._bars_of = config, session, bars_of
        self._universe, self._regime, self._index = universe, regime, index
        self._enrich = enrich
        self._reference = universe.select("symbol", "sector", "industry")
        self.results, self.rejections = _NO_RESULTS, _NO_REJECTIONS
        #: Symbol → its row in `results` (≥ 0) or, bit-inverted, in `rejections` (< 0).
        self._where: dict[str, int] = {}
        #: Per row of `results`: whether its signal is a buy signal; per row of `rejections`: its reason.
        self._buy: list[bool] = []
        self._reasons: list[str] = []

    def has(self, symbol: str) -> bool:
        return symbol in self._where

    def compute(self, symbols: list[str]) -> None:
        """Score `symbols` (none computed before) in one pass and append their rows."""
        config, session = self._config, self._session
        panel = self._bars_of(symbols)
        latest = compute_catalog(
            panel if panel.height else schema.empty(schema.BARS), self._index, self._universe, last_only=True
        )
        requested = pl.DataFrame({"symbol": symbols}, schema={"symbol": pl.String})
        scored = requested.join(score(latest), on="symbol", how="left", maintain_order="left")
        reason = (
            pl.when(pl.col("date").is_null())
            .then(pl.lit("no_bars"))
            .when(pl.col("date") != session)
            .then(pl.lit("no_bar_on_session"))
            .when(pl.col("history_sessions") < config.min_history_sessions)
            .then(pl.lit("insufficient_history"))
            .when(pl.col("tech_rating").is_null() | pl.col("close").is_null())
            .then(pl.lit("no_rating"))
            .when(pl.col("tech_rating") < config.min_tech_rating)
            .then(pl.lit("below_min_tech_rating"))
        )
        judged = scored.with_columns(reason.alias("reason"))
        rejected = judged.filter(pl.col("reason").is_not_null()).select(
            pl.lit(session).alias("date"), "symbol", "reason"
        )
        kept = (
            judged.filter(pl.col("reason").is_null())
            .drop("reason")
            .join(self._reference, on="symbol", how="left", maintain_order="left")
            .with_columns(
                pl.lit(self._regime, dtype=pl.String).alias("regime"),
                *[pl.lit(None, dtype=schema.RESULTS[c]).alias(c) for c in schema.OPTIONAL_RESULT_COLUMNS],
            )
        )
        if self._enrich is not None and kept.height:
            enriched = self._enrich(kept)
            if not enriched.get_column("symbol").equals(kept.get_column("symbol")):
                raise ValueError("enrich hook must keep the rows it is given, in their order")
            kept = enriched
        kept = schema.conform(kept, schema.SCORED_RESULTS, "scan results")
        rejected = schema.conform(rejected, schema.REJECTIONS, "scan rejections")
        offset, rejected_offset = self.results.height, self.rejections.height
        self._where.update(zip(kept.get_column("symbol").to_list(), range(offset, offset + kept.height)))
        self._where.update(
            zip(
                rejected.get_column("symbol").to_list(),
                range(~rejected_offset, ~(rejected_offset + rejected.height), -1),
            )
        )
        self._buy.extend(kept.get_column("signal").is_in(BUY_SIGNALS).to_list())
        self._reasons.extend(rejected.get_column("reason").to_list())
        # Appended in place: each pass adds one chunk per column, and slices across chunks stay cheap.
        self.results = kept if not offset else self.results.vstack(kept)
        self.rejections = rejected if not rejected_offset else self.rejections.vstack(rejected)

    def take(self, symbols: list[str]) -> tuple[pl.DataFrame, pl.DataFrame, int, list[str]]:
        """The rows of `symbols` (all computed), in their order: results, rejections, the results' buy
        signals and the rejections' reasons."""
        where, kept, rejected = self._where, [], []
        for symbol in symbols:
            row = where[symbol]
            if row >= 0:
                kept.append(row)
            else:
                rejected.append(~row)
        buy, reasons = self._buy, self._reasons
        return (
            _rows(self.results, kept),
            _rows(self.rejections, rejected),
            sum(buy[row] for row in kept),
            [reasons[row] for row in rejected],
        )


def _rows(frame: pl.DataFrame, rows: list[int]) -> pl.DataFrame:
    """`frame`'s `rows` in that order: a zero-copy slice when they are consecutive and ascending."""
    if not rows:
        return frame.slice(0, 0)
    first, count = rows[0], len(rows)
    if rows[-1] - first == count - 1 and (count < 3 or rows == list(range(first, first + count))):
        return frame.slice(first, count)
    return frame[rows]


def _numbered(results: pl.DataFrame, batch_no: int, seqs: pl.Series, first_seq: int) -> pl.DataFrame:
    """`results` with its `batch` and `seq` columns appended (`seq` cut from `seqs`, 1, 2, 3 …)."""
    count = results.height
    return results.hstack(
        [pl.Series("batch", np.full(count, batch_no, dtype=np.int64)), seqs.slice(first_seq - 1, count)]
    )


def _batches(
    run: ScanRun,
    config: ScanConfig,
    session: dt.date,
    bars: pl.DataFrame | ScanHistory,
    universe: pl.DataFrame,
    candidates: list[str],
    regime: str | None,
    should_stop: Callable[[], bool] | None,
    clock: Callable[[], float],
    hooks: ScanHooks,
    first_size: int,
    index: pl.DataFrame | None,
    screen: Screened | None = None,
) -> Iterator[ScanBatch]:
    started = clock()
    next_seq = 1
    history = bars if isinstance(bars, ScanHistory) else ScanHistory.of(bars)
    bars_of = history.batches(session, config.lookback_sessions)
    table = _ScoredTable(config, session, bars_of, universe, regime, index, hooks.enrich)
    run.end_reason = END_COMPLETE
    #: Visiting order; `order[:position]` are scanned. A reorder rewrites the rest.
    order, position = list(candidates), 0
    seqs = pl.Series("seq", np.arange(1, len(order) + 1, dtype=np.int64))  # a scan has a row per symbol at most
    published: pl.DataFrame | None = None
    unpublished: list[pl.DataFrame] = []  # results since the last reorder, not yet in `published`
    reordered_at = 0  # `position` at the last reorder
    batch_no = 0
    while position < len(order):
        if should_stop is not None and should_stop():
            run.end_reason = END_STOPPED
            break
        if config.timeout_s is not None and clock() - started >= config.timeout_s:
            run.end_reason = END_TIMEOUT
            break
        size = config.batch_size if batch_no else first_size
        symbols = order[position : position + size]
        if not table.has(symbols[0]):
            # The first batch alone when the rest would keep it waiting long; else everything not yet scanned.
            alone = not batch_no and len(order) - size > UP_FRONT_SYMBOLS
            table.compute(symbols if alone else order[position:])
        position += len(symbols)
        results, rejections, signals, reasons = table.take(symbols)
        if screen is not None and results.height:
            results, signals = screen.apply(results)
        results = _numbered(results, batch_no, seqs, next_seq)
        next_seq += results.height
        run.scanned += len(symbols)
        run.results += results.height
        run.signals += signals
        run.rejected += rejections.height
        for reason in reasons:
            run.rejection_counts[reason] = run.rejection_counts.get(reason, 0) + 1
        run.elapsed_s = clock() - started
        yield ScanBatch(
            batch=batch_no,
            results=results,
            rejections=rejections,
            scanned=run.scanned,
            total=run.total,
            signals=run.signals,
            elapsed_s=run.elapsed_s,
        )
        if config.max_signals is not None and run.signals >= config.max_signals:
            run.end_reason = END_MAX_SIGNALS
            break
        batch_no += 1
        if hooks.reorder is not None and position < len(order):
            unpublished.append(results)
            if batch_no > 1 and position - reordered_at < REORDER_MIN_SYMBOLS:
                continue
            reordered_at = position
            # Grown in place (one chunk per batch), so handing every result so far costs nothing per batch.
            if published is None:
                published = unpublished.pop(0).clone()
            for pending in unpublished:
                published.vstack(pending, in_place=True)
            unpublished.clear()
            remaining = order[position:]
            reordered = hooks.reorder(remaining, published)
            if len(reordered) != len(remaining) or set(reordered) != set(remaining):
                raise ValueError("reorder hook must return exactly the symbols not yet scanned")
            order[position:] = reordered
    run.elapsed_s = clock() - started
