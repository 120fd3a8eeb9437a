"""The scan engine: screened universe + bar history → scored results, batch by batch, in a chosen order.

Why batches: consumers (the warehouse writer, API streams) publish each batch as soon as it is computed, so
the best candidates reach users first and a scan can stop early (`max_signals`, `timeout`, a stop request)
without computing the rest. Each batch is one vectorized indicator + scoring pass over its symbols.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from technic_core import schema
from technic_core.config import ScanConfig
from technic_core.indicators import compute_indicators
from technic_core.scalars import as_int
from technic_core.scoring import BUY_SIGNALS, score

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
    """Seams for later stages, each applied per batch so early termination still saves their work.

    `enrich` adds columns to a batch's scored results (e.g. ML alpha) before `seq` is assigned; it must keep
    rows. `reorder` receives the symbols not yet scanned and every result so far and returns the remaining
    symbols in their new visiting order (dynamic prioritization); it must return the same set.
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
    a partial or stale plan never loses a screened symbol.
    """
    passed = universe.filter(pl.col("passed"))
    if config.sectors is not None:
        passed = passed.filter(pl.col("sector").is_in(list(config.sectors)))
    screened = passed.get_column("symbol").sort().to_list()
    if order is not None:
        wanted = set(screened)
        planned = [s for s in dict.fromkeys(order) if s in wanted]
        seen = set(planned)
        screened = planned + [s for s in screened if s not in seen]
    if config.max_symbols is not None:
        screened = screened[: config.max_symbols]
    return screened


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
) -> ScanRun:
    """Scan `session`: returns a `ScanRun` to iterate for `ScanBatch`es in visiting order.

    `bars` is the history (any sessions up to `session`, more is ignored), plain or as a `ScanHistory`
    prepared earlier; `universe` the screened universe of the session (`schema.UNIVERSE`). Symbols with
    fewer than `config.min_history_sessions` bars or no computable rating are reported in `rejections` with
    a reason, never silently dropped. `seq` numbers published result rows 1, 2, 3 … across batches with no gaps.

    `first_batch_size` (capped at `config.batch_size`) makes only the first batch smaller: a batch costs a
    fixed cost of query planning plus its rows, so a stream whose reader waits for the first result gets it
    after the least compute, and the later batches keep the size that amortizes the fixed cost.
    """
    if first_batch_size is not None and first_batch_size < 1:
        raise ValueError(f"first_batch_size must be at least 1, got {first_batch_size}")
    candidates = scan_candidates(universe, config, order)
    reference = universe.select("symbol", "sector", "industry")
    run = ScanRun(batches=iter(()), total=len(candidates))
    first_size = min(first_batch_size or config.batch_size, config.batch_size)
    run.batches = _batches(
        run, config, session, bars, reference, candidates, regime, should_stop, clock, hooks, first_size
    )
    return run


#: Widest date range (days) whose distinct dates are found with a dense bincount rather than a hash.
_DENSE_DATE_SPAN = 1 << 20


@dataclass(frozen=True)
class ScanHistory:
    """Bars prepared for scanning: what `run_scan` learns about them before its first batch, kept.

    `run_scan` accepts plain bars and prepares them itself (a few milliseconds for a year of 5,000
    symbols); a caller that scans the same bars again and again (the API's ad-hoc scans) prepares them once
    with `ScanHistory.of` and passes this instead.

    Why batches are cut per batch rather than the whole history split by symbol up front: the split costs
    hundreds of milliseconds for 5,000 symbols — time the first results would wait for. For bars sorted by
    symbol (what the API caches) a batch is a binary search per symbol and one gather of their rows; other
    bars are filtered per batch. Either way a batch sees exactly the rows it would after a split, and the indicators
    do not depend on row order.
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
        """A function giving the bars of a batch's symbols over the last `lookback` dates up to `session`."""
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


def _batches(
    run: ScanRun,
    config: ScanConfig,
    session: dt.date,
    bars: pl.DataFrame | ScanHistory,
    reference: pl.DataFrame,
    candidates: list[str],
    regime: str | None,
    should_stop: Callable[[], bool] | None,
    clock: Callable[[], float],
    hooks: ScanHooks,
    first_size: int,
) -> Iterator[ScanBatch]:
    started = clock()
    next_seq = 1
    history = bars if isinstance(bars, ScanHistory) else ScanHistory.of(bars)
    batch_bars = history.batches(session, config.lookback_sessions)
    run.end_reason = END_COMPLETE
    remaining = list(candidates)
    published: list[pl.DataFrame] = []
    batch_no = 0
    while remaining:
        if should_stop is not None and should_stop():
            run.end_reason = END_STOPPED
            break
        if config.timeout_s is not None and clock() - started >= config.timeout_s:
            run.end_reason = END_TIMEOUT
            break
        size = config.batch_size if batch_no else first_size
        symbols, remaining = remaining[:size], remaining[size:]
        results, rejections = _score_batch(config, session, batch_bars(symbols), symbols, reference, regime)
        if hooks.enrich is not None and results.height:
            results = hooks.enrich(results)
        results = results.with_columns(
            pl.lit(batch_no, dtype=pl.Int64).alias("batch"),
            pl.int_range(next_seq, next_seq + results.height, dtype=pl.Int64).alias("seq"),
        )
        next_seq += results.height
        batch_signals = int(results.get_column("signal").is_in(BUY_SIGNALS).sum())
        run.scanned += len(symbols)
        run.results += results.height
        run.signals += batch_signals
        run.rejected += rejections.height
        for reason, count in rejections.group_by("reason").len().iter_rows():
            run.rejection_counts[reason] = run.rejection_counts.get(reason, 0) + count
        run.elapsed_s = clock() - started
        yield ScanBatch(
            batch=batch_no,
            results=schema.conform(results, schema.RESULTS, "scan results"),
            rejections=schema.conform(rejections, schema.REJECTIONS, "scan rejections"),
            scanned=run.scanned,
            total=run.total,
            signals=run.signals,
            elapsed_s=run.elapsed_s,
        )
        if config.max_signals is not None and run.signals >= config.max_signals:
            run.end_reason = END_MAX_SIGNALS
            break
        batch_no += 1
        if hooks.reorder is not None and remaining:
            published.append(results)
            reordered = hooks.reorder(remaining, pl.concat(published))
            if len(reordered) != len(remaining) or set(reordered) != set(remaining):
                raise ValueError("reorder hook must return exactly the symbols not yet scanned")
            remaining = reordered
    run.elapsed_s = clock() - started


def _score_batch(
    config: ScanConfig,
    session: dt.date,
    panel: pl.DataFrame,
    symbols: list[str],
    reference: pl.DataFrame,
    regime: str | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Indicators + scores for one batch; split into publishable results and reasoned rejections."""
    requested = pl.DataFrame({"symbol": symbols}, schema={"symbol": pl.String})
    latest = compute_indicators(panel if panel.height else schema.empty(schema.BARS), last_only=True)
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
    rejections = judged.filter(pl.col("reason").is_not_null()).select(pl.lit(session).alias("date"), "symbol", "reason")
    kept = (
        judged.filter(pl.col("reason").is_null())
        .drop("reason")
        .join(reference, on="symbol", how="left", maintain_order="left")
        .with_columns(
            pl.lit(regime, dtype=pl.String).alias("regime"),
            *[pl.lit(None, dtype=schema.RESULTS[c]).alias(c) for c in schema.OPTIONAL_RESULT_COLUMNS],
        )
    )
    return kept, rejections
