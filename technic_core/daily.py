"""The per-session pipeline, written once: bars → screening → market conditions → priority plan → scan →
scan-run row, as plain functions over a `Warehouse`.

The Dagster assets, the ML sandbox (and so the ML benchmark) and the API's ad-hoc scans all call these, so
what is evaluated and served is the production path. Each step reads its inputs from the warehouse and
writes its partition, so a step can run alone (a backfill of one asset) and the next step sees exactly what
a reader would.

Why the plan can be refreshed by the scan: `scan_results` depends on `symbol_priority_scores`, so the plan
cannot declare that it reads earlier results (that would be a cycle in the asset graph). In a single-run
backfill every session's plan is written before any session's scan, so a plan can predate its history; the
scan notices (a results file newer than the plan) and refreshes the two factors that read results.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import polars as pl

from technic_core import calendar, schema
from technic_core.config import ScanConfig, ScreeningRules
from technic_core.errors import DataSourceError
from technic_core.ml.scan_history import DAILY_PREFIX, scan_run_row
from technic_core.ml.scorer import alpha_enricher
from technic_core.priority import (
    ACTIVITY_SESSIONS,
    HISTORY_COLUMNS,
    PlanAnnotator,
    PriorityConfig,
    SectorHitRateReorder,
    prioritize,
    refresh_plan,
    session_metrics,
)
from technic_core.scan import NO_HOOKS, ScanHooks, ScanRun, run_scan
from technic_core.scoring import market_conditions
from technic_core.screening import screen
from technic_core.sources import INDEX_SYMBOL, MarketDataSource
from technic_core.warehouse import Warehouse

_log = logging.getLogger(__name__)

#: The scan the daily pipeline runs (and plans are batched for).
DEFAULT_SCAN = ScanConfig()
DEFAULT_RULES = ScreeningRules()
DEFAULT_PRIORITY = PriorityConfig()
#: Sessions of bars screening reads: the liquidity window, or the history a symbol needs, whichever is longer.
SCREENING_LOOKBACK = max(DEFAULT_RULES.liquidity_window, DEFAULT_RULES.min_history_sessions)
#: Sessions of bars the breadth measure needs: a 50-bar SMA plus the previous close.
CONDITIONS_LOOKBACK = 51
#: Sessions of index history for its 200-session SMA (with room for holidays in the source's own calendar).
INDEX_LOOKBACK = 260
#: Sessions of earnings asked for to learn whether the source has any: every listed company reports
#: quarterly, so a year without a single report means the source has no earnings data.
EARNINGS_PROBE_SESSIONS = 260


def daily_scan_id(session: dt.date) -> str:
    """The scan-history id of the pipeline's scan of `session` (ad-hoc and replay scans use other prefixes)."""
    return f"{DAILY_PREFIX}{session.isoformat()}"


def window_start(session: dt.date, sessions: int) -> dt.date:
    """The first of the `sessions` sessions ending at `session`."""
    return calendar.sessions_back(session, sessions)[0]


# ----------------------------------------------------------------------------------------------- bars


#: Sessions of bars `write_bars` fetches and writes at a time: a first backfill holds one chunk in memory,
#: never its whole history, so its peak stays flat however many years it loads (a quarter of a year here).
BARS_CHUNK_SESSIONS = 64


@dataclass(frozen=True)
class BarsWritten:
    """What `write_bars` wrote: the sessions given a partition, their bar rows and distinct symbols."""

    sessions: list[dt.date]
    rows: int
    symbols: int


def write_bars(
    store: Warehouse,
    source: MarketDataSource,
    sessions: Sequence[dt.date],
    *,
    every_session: bool = True,
    chunk_sessions: int = BARS_CHUNK_SESSIONS,
    progress: Callable[[str], None] = _log.info,
) -> BarsWritten:
    """Fetch the bars and index bars of `sessions` (a contiguous range) and write one partition each.

    The range is fetched `chunk_sessions` sessions at a time (fetch, write its partitions, release), and
    `progress` hears of each chunk; the partitions are the same whatever the chunk size. With
    `every_session` (the pipeline's rule), a session for which the source returned no bars raises
    `DataSourceError` before anything of its chunk is written (earlier chunks' partitions, each complete,
    stay); without it (a history that starts inside the range, as in the ML sandbox) such sessions are left
    out. Index partitions are written before bar partitions, so a bars partition on disk implies its index
    partition.
    """
    if chunk_sessions < 1:
        raise ValueError(f"chunk_sessions: {chunk_sessions} is not a positive number of sessions")
    written: list[dt.date] = []
    rows = 0
    symbols: set[str] = set()
    for start in range(0, len(sessions), chunk_sessions):
        chunk = sessions[start : start + chunk_sessions]
        fetched = source.bars(chunk[0], chunk[-1])
        by_session = {key[0]: frame for key, frame in fetched.partition_by("date", as_dict=True).items()}
        empty = [s for s in chunk if s not in by_session]
        if empty and every_session:
            raise DataSourceError(
                f"source {source.name!r} returned no bars for {len(empty)} session(s), first {empty[0]}; "
                f"nothing from {chunk[0]} on was written"
            )
        present = [s for s in chunk if s in by_session]
        if present:
            write_index_bars(store, source, present)
        for session in present:
            store.write_partition("bars", session, by_session[session])
        written += present
        rows += fetched.height
        symbols.update(fetched.get_column("symbol").unique().to_list())
        progress(
            f"bars {chunk[0]}…{chunk[-1]}: {len(present)} partitions, {fetched.height} rows "
            f"({start + len(chunk)}/{len(sessions)} sessions)"
        )
    return BarsWritten(written, rows, len(symbols))


def stored_bars(
    store: Warehouse, sessions: Sequence[dt.date], chunk_sessions: int = BARS_CHUNK_SESSIONS
) -> Iterator[tuple[dt.date, pl.DataFrame]]:
    """Each of `sessions`' stored bars (empty where there are none), oldest first, read `chunk_sessions`
    sessions at a time: one listing and one scan per chunk instead of one per session, and never more than
    a chunk in memory."""
    for start in range(0, len(sessions), chunk_sessions):
        chunk = sessions[start : start + chunk_sessions]
        frames = store.read("bars", chunk[0], chunk[-1]).partition_by("date", as_dict=True)
        by_session = {key[0]: frame for key, frame in frames.items()}
        for session in chunk:
            yield session, by_session.get(session, schema.empty(schema.BARS))


def write_index_bars(store: Warehouse, source: MarketDataSource, sessions: Sequence[dt.date]) -> None:
    """Fetch the index bars of `sessions` (a contiguous range) and write one partition each (empty where the
    source has none, so a session's partition always exists once its bars do)."""
    index_by_session = {
        key[0]: frame
        for key, frame in source.index_bars(sessions[0], sessions[-1]).partition_by("date", as_dict=True).items()
    }
    for session in sessions:
        store.write_partition("index_bars", session, index_by_session.get(session, schema.empty(schema.BARS)))


# ------------------------------------------------------------------------------------------ screening


def screen_session(
    store: Warehouse, source: MarketDataSource, session: dt.date, rules: ScreeningRules = DEFAULT_RULES
) -> pl.DataFrame:
    """Screen the source's reference data of `session` against the stored bars; writes `universe/`."""
    bars = store.read("bars", window_start(session, SCREENING_LOOKBACK), session)
    screened = screen(source.reference(session), bars, session, rules)
    store.write_partition("universe", session, screened)
    return screened


def latest_universe(store: Warehouse, session: dt.date) -> pl.DataFrame | None:
    """The session's screened universe, else the previous session's, else None (a first backfill)."""
    for candidate in (session, calendar.previous_session(session)):
        if store.has_partition("universe", candidate):
            return store.read("universe", candidate, candidate)
    return None


# ---------------------------------------------------------------------------------- market conditions


def read_index_bars(store: Warehouse, first: dt.date, last: dt.date) -> pl.DataFrame:
    """The index bars the conditions of sessions `first`…`last` read (one read for a whole backfill)."""
    return store.read("index_bars", window_start(first, INDEX_LOOKBACK), last)


def index_closes(index_bars: pl.DataFrame) -> pl.DataFrame:
    """The broad-market index's closes (`INDEX_SYMBOL`, SPY) in index bars, as `date` and `close`: the series
    the scan's catalog measures beta_252 and rs_63 against (`run_scan(index=...)`)."""
    return index_bars.filter(pl.col("symbol") == INDEX_SYMBOL).select("date", "close")


def read_index_closes(store: Warehouse, first: dt.date, last: dt.date) -> pl.DataFrame:
    """`index_closes` of the stored index bars of sessions `first`…`last`."""
    return index_closes(store.read("index_bars", first, last))


def session_conditions(store: Warehouse, session: dt.date, index_bars: pl.DataFrame | None = None) -> pl.DataFrame:
    """Market conditions (regime, breadth, volatility) of `session`; writes `conditions/`.

    `index_bars` may be passed when several sessions are computed in a row (see `read_index_bars`).
    """
    if index_bars is None:
        index_bars = read_index_bars(store, session, session)
    bars = store.read("bars", window_start(session, CONDITIONS_LOOKBACK), session)
    conditions = market_conditions(bars, index_bars, session)
    store.write_partition("conditions", session, conditions)
    return conditions


# ------------------------------------------------------------------------------------------ priority


def source_earnings(source: MarketDataSource, first: dt.date, last: dt.date) -> pl.DataFrame | None:
    """Earnings reported before the sessions `first`…`last`, or None when the source has no earnings data
    at all (see `technic_core.priority.fundamental_scores`)."""
    earnings = source.earnings(
        calendar.sessions_back(first, EARNINGS_PROBE_SESSIONS)[0], calendar.previous_session(last)
    )
    return earnings if earnings.height else None


def plan_session(
    store: Warehouse,
    session: dt.date,
    earnings: pl.DataFrame | None,
    batch_size: int = DEFAULT_SCAN.batch_size,
    config: PriorityConfig = DEFAULT_PRIORITY,
) -> pl.DataFrame:
    """The priority plan of `session` from what was known before it; writes `priority/`.

    Reads the session's universe, the results of the `config.history_sessions` sessions before it and the
    bars of the `ACTIVITY_SESSIONS` before it.
    """
    previous = calendar.previous_session(session)
    bars = store.read("bars", window_start(previous, ACTIVITY_SESSIONS), previous)
    universe = store.read("universe", session, session)
    plan = prioritize(universe, _history(store, session, config), bars, earnings, session, batch_size, config)
    store.write_partition("priority", session, plan)
    return plan


def _history(store: Warehouse, session: dt.date, config: PriorityConfig) -> pl.DataFrame:
    """The result columns the priority factors read, for the history window before `session`."""
    window = calendar.sessions_back(calendar.previous_session(session), config.history_sessions)
    return store.scan("results", window[0], window[-1]).select(HISTORY_COLUMNS).collect()


class DeferredReorder:
    """The sector/industry hit-rate reorder, built when first called, i.e. after the first batch is out.

    Why: building it indexes the whole plan, and the engine calls the hook only after yielding a batch, so
    nothing before the first result waits for it. `elapsed_s` counts the build and every call.
    """

    def __init__(self, plan: pl.DataFrame, universe: pl.DataFrame, config: PriorityConfig) -> None:
        self._args = (plan, universe, config)
        self._reorder: SectorHitRateReorder | None = None
        self._build_s = 0.0

    @property
    def elapsed_s(self) -> float:
        return self._build_s + (self._reorder.elapsed_s if self._reorder is not None else 0.0)

    def __call__(self, remaining: list[str], results: pl.DataFrame) -> list[str]:
        if self._reorder is None:
            started = time.perf_counter()
            self._reorder = SectorHitRateReorder(*self._args)
            self._build_s = time.perf_counter() - started
        return self._reorder(remaining, results)


@dataclass(frozen=True)
class PlanHooks:
    """The scan hooks of a scan that follows a plan, with the annotator and reorder inside them (whose
    `elapsed_s` count as prioritization overhead)."""

    hooks: ScanHooks
    annotator: PlanAnnotator | None = None
    reorder: DeferredReorder | None = None


def plan_hooks(
    plan: pl.DataFrame | None,
    universe: pl.DataFrame,
    alpha: Callable[[pl.DataFrame], pl.DataFrame] | None,
    config: PriorityConfig = DEFAULT_PRIORITY,
) -> PlanHooks:
    """The scan hooks every scan of the platform gets: each result annotated with its plan score and tier
    (when following `plan`), then the alpha columns, and the sector/industry hit-rate reorder after each
    batch (when following `plan` and `config.reorder`)."""
    if plan is None:
        return PlanHooks(NO_HOOKS.with_enrichment(alpha))
    annotator = PlanAnnotator(plan)
    reorder = DeferredReorder(plan, universe, config) if config.reorder else None
    return PlanHooks(ScanHooks(reorder=reorder).with_enrichment(annotator, alpha), annotator, reorder)


@dataclass
class PrioritizedScan:
    """A session's plan made ready for `run_scan(order=..., hooks=...)`, and the metadata it yields after.

    `order` is None (scan alphabetically) when prioritization is off or the session has no plan; `note`
    then says why. `setup_s` is the time spent loading (and, if stale, refreshing) the plan and building
    the hooks; with the hooks' own time (annotating and reordering) it is the prioritization overhead on
    the scan's path.
    """

    plan: pl.DataFrame | None
    order: list[str] | None
    hooks: ScanHooks
    batch_size: int
    setup_s: float = 0.0
    refreshed: bool = False
    note: str = ""
    reorder: DeferredReorder | None = None
    annotator: PlanAnnotator | None = None

    def metadata(self, results: pl.DataFrame, run: ScanRun) -> dict[str, bool | int | float | str]:
        """Prioritization figures of a finished scan, keys prefixed `priority_`."""
        if self.plan is None:
            return {"priority_followed": False, "priority_note": self.note}
        hook_s = sum(hook.elapsed_s for hook in (self.reorder, self.annotator) if hook is not None)
        measured = session_metrics(
            self.plan, results, run.scanned, self.batch_size, self.setup_s + hook_s, run.elapsed_s - hook_s
        )
        return {
            "priority_followed": True,
            "priority_plan_refreshed": self.refreshed,
            "priority_reordered": self.reorder is not None,
            **{f"priority_{key}": _rounded(value) for key, value in measured.items() if value is not None},
        }


def prioritized_scan(
    store: Warehouse,
    session: dt.date,
    universe: pl.DataFrame,
    scan_config: ScanConfig = DEFAULT_SCAN,
    config: PriorityConfig = DEFAULT_PRIORITY,
    alpha: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> PrioritizedScan:
    """Load `session`'s plan for a scan with `scan_config` over `universe` (the session's `schema.UNIVERSE`).

    A plan older than a results partition of its history window is refreshed from the current history and
    written back, so the stored plan is always the one the scan followed. `alpha` is the enricher of the
    alpha columns, applied after the plan's annotation.
    """
    started = time.perf_counter()
    if not scan_config.prioritize:
        return PrioritizedScan(
            None, None, plan_hooks(None, universe, alpha).hooks, scan_config.batch_size, note="prioritization is off"
        )
    if not store.has_partition("priority", session):
        _log.warning("no priority plan for %s: scanning in symbol order", session)
        return PrioritizedScan(
            None, None, plan_hooks(None, universe, alpha).hooks, scan_config.batch_size, note="no plan for the session"
        )
    plan = store.read("priority", session, session)
    refreshed = _plan_is_stale(store, session, config)
    if refreshed:
        plan = refresh_plan(plan, _history(store, session, config), session, scan_config.batch_size, config)
        store.write_partition("priority", session, plan)
        _log.info("refreshed the priority plan of %s from newer results", session)
    built = plan_hooks(plan, universe, alpha, config)
    return PrioritizedScan(
        plan=plan,
        order=plan.get_column("symbol").to_list(),
        hooks=built.hooks,
        batch_size=scan_config.batch_size,
        setup_s=time.perf_counter() - started,
        refreshed=refreshed,
        reorder=built.reorder,
        annotator=built.annotator,
    )


def _plan_is_stale(store: Warehouse, session: dt.date, config: PriorityConfig) -> bool:
    """True when a results file of the plan's history window is newer than the plan's file."""
    written = max(path.stat().st_mtime_ns for path in store.partition_files("priority", session))
    window = calendar.sessions_back(calendar.previous_session(session), config.history_sessions)
    return any(path.stat().st_mtime_ns > written for day in window for path in store.partition_files("results", day))


def _rounded(value: int | float) -> int | float:
    return round(value, 4) if isinstance(value, float) else value


# ---------------------------------------------------------------------------------------------- scan


@dataclass
class SessionScan:
    """A finished daily scan of one session: the run's counters, its results as stored, its plan."""

    session: dt.date
    run: ScanRun
    results: pl.DataFrame
    plan: PrioritizedScan
    regime: str | None
    batches: int
    load_s: float
    seconds: float


def scan_session(store: Warehouse, session: dt.date, config: ScanConfig = DEFAULT_SCAN) -> SessionScan:
    """Scan `session` over the stored universe, conditions, plan, bars and index closes (for the catalog's
    beta_252 and rs_63), with the champion alpha models.

    Writes each result batch as soon as it is computed (`results/date=…/batch=…`), then the rejections and
    the scan's `scan_runs/` row (whose arrival ends the session's live streams), then compacts the batches
    into one file (`Warehouse.compact_results`).
    """
    started = time.perf_counter()
    first = window_start(session, config.lookback_sessions)
    bars = store.read("bars", first, session)
    index = read_index_closes(store, first, session)
    screened = store.read("universe", session, session)
    conditions = store.read("conditions", session, session)
    regime = conditions.get_column("regime")[0] if conditions.height else None
    plan = prioritized_scan(
        store, session, screened, config, alpha=alpha_enricher(store, session, bars, screened, regime)
    )
    load_s = time.perf_counter() - started
    run = run_scan(config, session, bars, screened, regime=regime, order=plan.order, hooks=plan.hooks, index=index)
    store.begin_results(session)
    rejections, written = [], 0
    for batch in run:
        store.write_result_batch(session, batch.batch, batch.results)
        rejections.append(batch.rejections)
        written += 1
    store.finish_results(session, written)
    store.write_partition(
        "rejections", session, pl.concat(rejections) if rejections else schema.empty(schema.REJECTIONS)
    )
    results = store.read("results", session, session)
    seconds = time.perf_counter() - started
    store.append_scan_run(scan_run_row(daily_scan_id(session), session, config, run, regime, seconds))
    store.compact_results(session)
    _log.info("scanned %s: %d results, %d rejected, end=%s", session, run.results, run.rejected, run.end_reason)
    return SessionScan(session, run, results, plan, regime, written, load_s, seconds)
