"""Ad-hoc scans: the core engine over the latest warehouse data, in worker threads, streamed via the hub.

Why worker threads: a scan is seconds of polars work; on the event loop it would stall every stream. Each
scan gets a topic in the hub, and the worker publishes each batch to it with `call_soon_threadsafe`, so an
ad-hoc scan streams in exactly the format of a partition tail. The worker also records the scan in scan
history (`Warehouse.append_scan_run`) before publishing `end`, so a client that saw `end` finds the row.

Inputs (bars and index closes over the lookback, the latest session's screened universe, its regime and
the latest priority plan) are loaded once and kept until one of their files changes, so a scan request does not re-read a year
of bars and its first batch can be on the wire within tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import polars as pl

from api.events import (
    END_ERROR,
    RESULT,
    ScanRowEncoder,
    StreamEvent,
    end_event,
    progress_event,
    result_event,
    sse_burst,
)
from api.hub import StreamHub, Topic
from api.models import Watchlist
from technic_core import calendar, daily
from technic_core.config import ScanConfig, where_screen
from technic_core.errors import ConfigError, TechnicError
from technic_core.ml.labels import HORIZONS
from technic_core.ml.registry import ModelRegistry
from technic_core.ml.scan_history import scan_run_row
from technic_core.ml.scorer import alpha_enricher
from technic_core.scan import (
    ScanBatch,
    ScanHistory,
    ScanHooks,
    ScanRun,
    run_scan,
    scan_candidates,
    watchlist_report,
)
from technic_core.storage import AnyPath
from technic_core.warehouse import Warehouse

logger = logging.getLogger(__name__)

#: Ad-hoc scan ids: a prefix the pipeline never uses, so scan history tells them from daily scans.
SCAN_ID_PREFIX = "adhoc-"
SCAN_ID_FORM = r"adhoc-[0-9a-f]{16}"
SCAN_ID_PATTERN = rf"^{SCAN_ID_FORM}$"

QUEUED, RUNNING, FINISHED = "queued", "running", "finished"
#: Priority settings of ad-hoc scans: the pipeline's defaults, so both follow a plan the same way.
PRIORITY = daily.DEFAULT_PRIORITY
#: While scan workers are handing events over, how often the loop looks for more (see `ScanManager._publish`):
#: the most a batch waits beyond its computation before it is published.
OUTBOX_POLL_S = 0.002

#: Fewest rows of a batch whose burst the scan worker builds for the subscribers (see `ScanManager._record`).
PREBUILT_BURST_ROWS = 16

#: Symbols in an ad-hoc scan's first batch (later ones have the config's `batch_size`): a large scan computes
#: its first batch alone (`technic_core.scan.UP_FRONT_SYMBOLS`), so a small one puts the first results on the
#: stream soonest.
FIRST_BATCH_SIZE = 25
#: Bars always loaded: the default scan's lookback, which is also the history the alpha features read.
DEFAULT_LOOKBACK = daily.DEFAULT_SCAN.lookback_sessions
#: The champion models `technic_core.ml.scorer` serves, one per label horizon.
ALPHA_MODELS = tuple(f"alpha_{horizon}d" for horizon in HORIZONS)
ORDER_PRIORITY, ORDER_ALPHABETICAL = "priority", "alphabetical"


class NoScanData(TechnicError):
    """The warehouse lacks what an ad-hoc scan needs (no screened session, or its bars)."""


class ScanQuotaExceeded(TechnicError):
    """The caller already has as many queued or running scans as its key allows."""


class UnknownScan(TechnicError):
    """No ad-hoc scan with that id is known (never started, forgotten, or evicted)."""


class NotScanOwner(TechnicError):
    """A key tried to stop or forget a scan another key started."""


class UnknownWatchlist(ConfigError):
    """An ad-hoc scan's watchlist names no symbol the scanned session lists."""


@dataclass(frozen=True)
class PriorityPlan:
    """The latest `priority` partition at or before the scanned session, in rank order.

    Read as stored: the pipeline refreshes a stale plan before its own scan, but the API never writes a
    partition, so an ad-hoc scan follows the plan the pipeline last wrote.
    """

    session: dt.date
    frame: pl.DataFrame
    order: tuple[str, ...]


@dataclass(frozen=True)
class ScanInputs:
    """Everything `run_scan` needs for the latest session, as loaded from the warehouse."""

    session: dt.date
    #: Bars over at least `bars_lookback` sessions, sorted by symbol and prepared for the engine once, so
    #: a scan starts on its first batch at once.
    history: ScanHistory
    bars_lookback: int
    #: The index closes (`date`, `close`) over the same sessions as the bars: beta_252 and rs_63 read them.
    index: pl.DataFrame
    universe: pl.DataFrame
    conditions: dict[str, object] | None
    priority: PriorityPlan | None
    #: The champion alpha models' `ScanHooks.enrich` for the session (None without a loadable champion).
    alpha: Callable[[pl.DataFrame], pl.DataFrame] | None

    @property
    def bars(self) -> pl.DataFrame:
        return self.history.bars

    @property
    def regime(self) -> str | None:
        regime = None if self.conditions is None else self.conditions.get("regime")
        return regime if isinstance(regime, str) else None  # a String column: text or null


class ScanInputsCache:
    """Loads `ScanInputs` for the latest screened session and re-uses them while their files are unchanged.

    Thread-safe: concurrent requests wait for one load instead of reading the bars twice. The fingerprint is
    the modification time of every partition file the inputs came from except the older bars, which the
    pipeline only ever re-materializes with identical data, plus the alpha champions' pointers, so a newly
    promoted model scores the next scan. Bars cover at least the default lookback, the history the alpha
    features need.
    """

    def __init__(self, store: Warehouse) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cached: ScanInputs | None = None
        self._fingerprint: tuple[object, ...] = ()

    def latest_session(self) -> dt.date:
        sessions = self.store.sessions("universe")
        if not sessions:
            raise NoScanData("the warehouse has no screened universe yet; run the daily pipeline first (technic run)")
        return sessions[-1]

    def load(self, lookback_sessions: int) -> ScanInputs:
        lookback_sessions = max(lookback_sessions, DEFAULT_LOOKBACK)
        with self._lock:
            session = self.latest_session()
            priority_session = max((s for s in self.store.sessions("priority") if s <= session), default=None)
            fingerprint = self._fingerprint_of(session, priority_session)
            cached = self._cached
            if cached is None or fingerprint != self._fingerprint:
                cached = self._load(session, priority_session, lookback_sessions)
            elif cached.bars_lookback < lookback_sessions:
                history, index = self._history(session, lookback_sessions)
                cached = replace(cached, history=history, index=index, bars_lookback=lookback_sessions)
            self._cached, self._fingerprint = cached, fingerprint
            return cached

    def _fingerprint_of(self, session: dt.date, priority_session: dt.date | None) -> tuple[object, ...]:
        files = [
            *self.store.partition_files("universe", session),
            *self.store.partition_files("bars", session),
            *self.store.partition_files("index_bars", session),
            *self.store.partition_files("conditions", session),
            *(self.store.partition_files("priority", priority_session) if priority_session else []),
        ]
        registry = ModelRegistry(self.store)
        champions = tuple(registry.pointer_fingerprint(name) for name in ALPHA_MODELS)
        return (session, priority_session, champions, *((str(path), _mtime(path)) for path in files))

    def _load(self, session: dt.date, priority_session: dt.date | None, lookback: int) -> ScanInputs:
        started = time.perf_counter()
        if not self.store.has_partition("bars", session):
            raise NoScanData(f"the latest screened session {session} has no bars partition")
        conditions = self.store.read("conditions", session, session)
        (history, index), universe = self._history(session, lookback), self.store.read("universe", session, session)
        bars = history.bars
        regime = conditions.get_column("regime")[0] if conditions.height else None
        inputs = ScanInputs(
            session=session,
            history=history,
            bars_lookback=lookback,
            index=index,
            universe=universe,
            conditions=conditions.row(0, named=True) if conditions.height else None,
            priority=self._priority(priority_session) if priority_session else None,
            alpha=self._alpha(session, bars, universe, regime),
        )
        logger.info(
            "loaded scan inputs",
            extra={
                "session": session.isoformat(),
                "bars": inputs.bars.height,
                "seconds": time.perf_counter() - started,
            },
        )
        return inputs

    def _history(self, session: dt.date, lookback: int) -> tuple[ScanHistory, pl.DataFrame]:
        """The bars over `lookback` sessions, prepared, and the index closes over the same sessions."""
        # Sorted by symbol: the engine then finds the rows of a scan's symbols by binary search, so a scan (of
        # any size) does no work on the whole history before its first batch.
        start = calendar.sessions_back(session, lookback)[0]
        history = ScanHistory.of(self.store.read("bars", start, session).sort("symbol", "date"))
        return history, daily.read_index_closes(self.store, start, session)

    def _alpha(
        self, session: dt.date, bars: pl.DataFrame, universe: pl.DataFrame, regime: str | None
    ) -> Callable[[pl.DataFrame], pl.DataFrame] | None:
        """The alpha enricher, as the daily scan builds it; a failure degrades scans to null alpha columns."""
        try:
            return alpha_enricher(self.store, session, bars, universe, regime)
        except Exception:
            logger.exception(
                "alpha models unusable; ad-hoc scans run without alpha", extra={"session": session.isoformat()}
            )
            return None

    def _priority(self, session: dt.date) -> PriorityPlan:
        plan = self.store.read("priority", session, session).sort("rank")
        return PriorityPlan(session=session, frame=plan, order=tuple(plan.get_column("symbol").to_list()))


def _mtime(path: AnyPath) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


@dataclass
class AdHocScan:
    """One ad-hoc scan: its request, where it streams, and its counters (updated by the worker)."""

    scan_id: str
    owner: str
    config: ScanConfig
    inputs: ScanInputs
    ordering: str
    topic: Topic
    created_at: dt.datetime
    stop_requested: threading.Event = field(default_factory=threading.Event)
    status: str = QUEUED
    total: int = 0
    scanned: int = 0
    results: int = 0
    signals: int = 0
    rejected: int = 0
    batches: int = 0
    elapsed_s: float = 0.0
    end_reason: str | None = None
    error: str | None = None
    done: Future[None] | None = None
    #: With `config.symbols`: which of them the scan visits.
    watchlist: Watchlist | None = None
    #: Its result rows as JSON, encoded a computation pass at a time (the last step of its enrichment).
    encoder: ScanRowEncoder = field(default_factory=ScanRowEncoder)

    @property
    def session(self) -> dt.date:
        return self.inputs.session

    def rows(self) -> list[dict[str, object]]:
        """Every published row, in seq order, decoded from the stream log (the one copy the scan keeps)."""
        return [json.loads(row) for event in self.topic.log if event.kind == RESULT for row in event.rows]


def watchlist_of(config: ScanConfig, inputs: ScanInputs) -> Watchlist | None:
    """What becomes of the scan's watchlist on the scanned session; `UnknownWatchlist` when the session lists
    none of its symbols."""
    if config.symbols is None:
        return None
    report = watchlist_report(inputs.universe, config.symbols)
    if not report.known:
        shown = ", ".join(report.requested[:10]) + (" …" if len(report.requested) > 10 else "")
        raise UnknownWatchlist(f"none of the {len(report.requested)} symbol(s) is listed on {inputs.session}: {shown}")
    return Watchlist(
        requested=len(report.requested),
        scanned=len(scan_candidates(inputs.universe, config)),
        unknown=list(report.unknown),
        not_screened=list(report.not_screened),
    )


def ordering_note(scan: AdHocScan) -> str:
    """One sentence for the response saying which order the scan follows and why."""
    plan = scan.inputs.priority
    if scan.ordering == ORDER_PRIORITY and plan is not None:
        return f"symbols are scanned in the rank order of the priority plan of {plan.session}"
    if scan.config.prioritize:
        return (
            f"no priority partition exists at or before {scan.session}, so symbols are scanned in "
            "alphabetical order (materialize symbol_priority_scores to prioritize)"
        )
    return "prioritization is off in the request, so symbols are scanned in alphabetical order"


class ScanManager:
    """Starts, tracks, stops and forgets ad-hoc scans. Public methods run on the event loop thread."""

    def __init__(
        self,
        store: Warehouse,
        hub: StreamHub,
        loop: asyncio.AbstractEventLoop,
        *,
        workers: int,
        max_scans_per_key: int,
        retained: int,
        hooks: ScanHooks,
    ) -> None:
        self.store = store
        self.hub = hub
        self.inputs = ScanInputsCache(store)
        self._loop = loop
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="adhoc-scan")
        self._max_scans_per_key = max_scans_per_key
        self._retained = retained
        self._hooks = hooks
        self._scans: dict[str, AdHocScan] = {}
        #: Events handed from the scan workers to the loop, in order (see `_publish`).
        self._outbox: collections.deque[tuple[Topic, tuple[StreamEvent, ...]]] = collections.deque()
        self._outbox_lock = threading.Lock()
        self._drain_scheduled = False

    def start(self, config: ScanConfig, owner: str, inputs: ScanInputs) -> AdHocScan:
        """Register a scan and queue it on a worker; raises `ScanQuotaExceeded` beyond the key's cap."""
        mine = [scan for scan in self._scans.values() if scan.owner == owner and scan.status != FINISHED]
        if len(mine) >= self._max_scans_per_key:
            raise ScanQuotaExceeded(
                f"this key already has {len(mine)} queued or running scan(s), the most it may have "
                f"(TECHNIC_API_MAX_SCANS_PER_KEY={self._max_scans_per_key}); stop one or wait for it to end"
            )
        watchlist = watchlist_of(config, inputs)
        scan_id = SCAN_ID_PREFIX + secrets.token_hex(8)
        ordering = ORDER_PRIORITY if config.prioritize and inputs.priority is not None else ORDER_ALPHABETICAL
        scan = AdHocScan(
            scan_id=scan_id,
            owner=owner,
            config=config,
            inputs=inputs,
            ordering=ordering,
            topic=self.hub.create_scan_topic(scan_id),
            created_at=dt.datetime.now(dt.UTC),
            watchlist=watchlist,
        )
        self._scans[scan_id] = scan
        self._evict_finished()
        scan.done = self._executor.submit(self._execute, scan)
        logger.info(
            "ad-hoc scan queued",
            extra={"scan_id": scan_id, "session": inputs.session.isoformat(), "ordering": ordering},
        )
        return scan

    def get(self, scan_id: str) -> AdHocScan:
        try:
            return self._scans[scan_id]
        except KeyError:
            raise UnknownScan(f"no ad-hoc scan {scan_id!r} (never started, deleted, or evicted)") from None

    def stop(self, scan_id: str, owner: str) -> AdHocScan:
        """Ask the scan to stop before its next batch; a finished scan is left as it is."""
        scan = self._owned(scan_id, owner)
        scan.stop_requested.set()
        return scan

    def forget(self, scan_id: str, owner: str) -> None:
        """Stop the scan if it runs and drop it; attached clients still receive its `end`."""
        scan = self.stop(scan_id, owner)
        del self._scans[scan_id]
        self.hub.drop_scan_topic(scan_id)
        logger.info("ad-hoc scan deleted", extra={"scan_id": scan.scan_id})

    def active(self) -> list[AdHocScan]:
        return [scan for scan in self._scans.values() if scan.status != FINISHED]

    def shutdown(self) -> None:
        """Stop every scan and wait for the workers (each stops before its next batch)."""
        for scan in self._scans.values():
            scan.stop_requested.set()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _owned(self, scan_id: str, owner: str) -> AdHocScan:
        scan = self.get(scan_id)
        if scan.owner != owner:
            raise NotScanOwner(f"scan {scan_id!r} was started with another API key; only that key may change it")
        return scan

    def _evict_finished(self) -> None:
        finished = [scan for scan in self._scans.values() if scan.status == FINISHED]
        for scan in finished[: max(0, len(finished) - self._retained)]:
            del self._scans[scan.scan_id]
            self.hub.drop_scan_topic(scan.scan_id)

    # ---------------------------------------------------------------- worker thread

    def _publish(self, topic: Topic, *events: StreamEvent) -> None:
        """Hand events to the loop; a loop already closed (shutdown) has nobody left to tell.

        Events wait in an outbox that the loop drains. Waking the loop from a worker is a socket write and
        a thread switch, which tiny batches would pay per batch; so only a hand-off that finds no drain
        scheduled wakes it, and a drain that found events looks again `OUTBOX_POLL_S` later, until one
        finds the outbox empty."""
        with self._outbox_lock:
            self._outbox.append((topic, events))
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain_outbox)
        except RuntimeError:
            logger.debug("event loop closed; dropping events", extra={"stream": topic.key})

    def _drain_outbox(self) -> None:
        with self._outbox_lock:
            handed = list(self._outbox)
            self._outbox.clear()
            self._drain_scheduled = bool(handed)
        for topic, events in handed:
            for event in events:
                topic.publish(event)
        if handed:
            self._loop.call_later(OUTBOX_POLL_S, self._drain_outbox)

    def _execute(self, scan: AdHocScan) -> None:
        started_at = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        scan.status = RUNNING
        inputs = scan.inputs
        order = inputs.priority.order if scan.ordering == ORDER_PRIORITY and inputs.priority else None
        run = ScanRun(batches=iter(()), total=0)
        try:
            previous = self._previous_results(scan.config, inputs.session)
            run = run_scan(
                scan.config,
                inputs.session,
                inputs.history,
                inputs.universe,
                regime=inputs.regime,
                order=order,
                should_stop=scan.stop_requested.is_set,
                hooks=self._scan_hooks(scan),
                first_batch_size=FIRST_BATCH_SIZE,
                index=inputs.index,
                previous=previous,
            )
            scan.total = run.total
            for batch in run:
                self._record(scan, batch)
            scan.end_reason = run.end_reason
        except Exception as exc:
            logger.exception("ad-hoc scan failed", extra={"scan_id": scan.scan_id})
            scan.end_reason, scan.error = END_ERROR, str(exc)
        scan.elapsed_s = time.perf_counter() - started
        scan.encoder.forget()  # a finished scan is kept for replays, whose rows are in its topic's log
        run.end_reason = scan.end_reason
        self._append_history(scan, run, started_at)
        scan.status = FINISHED
        self._publish(scan.topic, end_event(scan.scan_id, scan.results, scan.end_reason or END_ERROR, scan.error))
        logger.info(
            "ad-hoc scan finished",
            extra={"scan_id": scan.scan_id, "end_reason": scan.end_reason, "results": scan.results},
        )

    def _previous_results(self, config: ScanConfig, session: dt.date) -> pl.DataFrame | None:
        """The stored results of the session before `session`, when the scan's `where` reads `prev()`."""
        if config.where is None or not where_screen(config.where).prev_columns:
            return None
        previous = calendar.previous_session(session)
        if not self.store.has_partition("results", previous):
            return None
        return self.store.read("results", previous, previous)

    def _scan_hooks(self, scan: AdHocScan) -> ScanHooks:
        """What the pipeline's scan gets (`technic_core.daily.plan_hooks`: plan annotation, alpha columns,
        the hit-rate reorder when the scan follows the plan), then the configured hooks."""
        plan = scan.inputs.priority if scan.ordering == ORDER_PRIORITY else None
        hooks = daily.plan_hooks(plan.frame if plan else None, scan.inputs.universe, scan.inputs.alpha, PRIORITY).hooks
        reorder = self._hooks.reorder or hooks.reorder
        return ScanHooks(enrich=hooks.enrich, reorder=reorder).with_enrichment(self._hooks.enrich, scan.encoder)

    def _record(self, scan: AdHocScan, batch: ScanBatch) -> None:
        first_seq = scan.results + 1
        scan.results += batch.results.height
        scan.scanned, scan.signals, scan.elapsed_s = batch.scanned, batch.signals, batch.elapsed_s
        scan.batches += 1
        scan.rejected += batch.rejections.height
        events = []
        if batch.results.height:
            events.append(result_event(scan.scan_id, batch.batch, first_seq, scan.encoder.rows(batch.results)))
        events.append(
            progress_event(
                scan.scan_id,
                scan.results,
                batch=batch.batch,
                signals=batch.signals,
                scanned=batch.scanned,
                total=batch.total,
                elapsed_s=batch.elapsed_s,
            )
        )
        # The write every live subscriber gets, plain and gzip, built here rather than on the event loop. A scan
        # nobody follows (yet: `POST /scan`) skips it; a client that attaches later has its replay built anyway.
        # So does a batch of a few rows: such batches come faster than the loop takes them, and subscribers
        # join what is ready into one write, so a burst of this batch alone would go unsent.
        if scan.topic.subscribers and batch.results.height >= PREBUILT_BURST_ROWS:
            sse_burst(events).deflated()
        self._publish(scan.topic, *events)

    def _append_history(self, scan: AdHocScan, run: ScanRun, started_at: dt.datetime) -> None:
        row = scan_run_row(scan.scan_id, scan.session, scan.config, run, scan.inputs.regime, scan.elapsed_s, started_at)
        try:
            self.store.append_scan_run(row)
        except Exception:
            logger.exception("could not append ad-hoc scan to scan history", extra={"scan_id": scan.scan_id})
