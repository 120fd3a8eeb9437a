"""`PolygonSource`: the `MarketDataSource` over Polygon's REST API, and the bar requests it makes.

Reference data and the split journal are its mixins (`reference.py`, `restatement.py`); the package
docstring (`technic_core.sources.polygon`) says what it calls, caches and adjusts, and why.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import httpx
import polars as pl

from technic_core import calendar, schema
from technic_core.config import Settings
from technic_core.errors import ConfigError, DataSourceError
from technic_core.sources import INDEX_SYMBOL, VOLATILITY_SYMBOL, SourceStats
from technic_core.sources.polygon.client import (
    _AGGS_LIMIT,
    DEFAULT_BASE_URL,
    DEFAULT_RETRY,
    NotEntitledError,
    RetryPolicy,
    TokenBucket,
    _Requester,
    _run_coroutine,
)
from technic_core.sources.polygon.parsing import _aggregates_frame
from technic_core.sources.polygon.reference import DETAILS_MINUTES_PER_RUN, _ReferenceData, _sector_mapping
from technic_core.sources.polygon.restatement import _SplitRestatements
from technic_core.sources.polygon.shared_limit import SharedRateState, default_limit_dir
from technic_core.sources.polygon.splits import SplitJournal
from technic_core.warehouse import Warehouse

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: Polygon's ticker for the CBOE volatility index (an index: needs an indices plan).
VOLATILITY_TICKER = "I:VIX"


def _today_in_new_york() -> dt.date:
    return dt.datetime.now(ZoneInfo(calendar.NEW_YORK)).date()


class PolygonSource(_SplitRestatements, _ReferenceData):
    """`MarketDataSource` over Polygon's REST API; see the package docstring for calls, caches and splits.

    Public calls are serialized by a lock (one instance serves a process; Dagster shares it across assets),
    and each runs its requests in one short-lived event loop with its own `httpx.AsyncClient`.
    """

    name = "polygon"

    def __init__(
        self,
        api_key: str,
        warehouse: Warehouse,
        *,
        base_url: str = DEFAULT_BASE_URL,
        calls_per_minute: float = 5.0,
        reference_refresh_days: int = 28,
        details_refresh_days: int = 90,
        details_per_run: int | None = None,
        volatility_index: bool = False,
        concurrency: int = 8,
        timeout_s: float = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        today: Callable[[], dt.date] = _today_in_new_york,
        limit_dir: Path | None = None,
    ) -> None:
        """`clock`, `sleep` and `jitter` drive the limiter and backoff (tests pass a virtual clock);
        `today` dates details fetches and decides when they are stale; `volatility_index` asks `I:VIX` for the
        volatility index (an indices plan; one more call per update); `limit_dir` keeps the rate limit in a
        file there that every process using this key shares (None: this instance's own limit)."""
        if not api_key:
            raise ConfigError("polygon: an API key is required (POLYGON_API_KEY)")
        if concurrency < 1:
            raise ConfigError(f"polygon: concurrency {concurrency} must be at least 1")
        self.stats = SourceStats()
        self.warehouse = warehouse
        self.base_url = base_url.rstrip("/")
        shared = SharedRateState.for_key(limit_dir, self.base_url, api_key) if limit_dir is not None else None
        self.limiter = TokenBucket(calls_per_minute, clock=clock, sleep=sleep, state=shared)
        self.retry = retry
        self.sleep = sleep
        self.jitter = jitter
        self.concurrency = concurrency
        self._api_key = api_key
        self._timeout = httpx.Timeout(timeout_s)
        self._reference_refresh = dt.timedelta(days=reference_refresh_days)
        self._details_refresh = dt.timedelta(days=details_refresh_days)
        if details_per_run is None and calls_per_minute > 0:
            details_per_run = int(DETAILS_MINUTES_PER_RUN * calls_per_minute)
        #: Ticker-details calls this instance may still make (`math.inf`: no limit).
        self.details_budget: float = math.inf if details_per_run is None else details_per_run
        self._today = today
        self._lock = threading.RLock()
        self._grouped: dict[dt.date, pl.DataFrame] = {}  # raw (unadjusted) grouped bars by session
        self._volatility: dict[dt.date, dict[str, object] | None] = {}  # I:VIX bar by session, None: no bar
        #: Whether `I:VIX` is asked for: the setting, switched off for the process once the plan refuses it.
        self._volatility_entitled = volatility_index
        self._listings: dict[dt.date, pl.DataFrame] = {}
        self._listing_sessions: list[dt.date] | None = None
        self._details: pl.DataFrame | None = None
        self._journal: SplitJournal | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PolygonSource:
        if not settings.polygon_api_key:
            raise ConfigError("source 'polygon' needs POLYGON_API_KEY (a Polygon.io API key)")
        return cls(
            settings.polygon_api_key.get_secret_value(),
            Warehouse.from_settings(settings),
            base_url=settings.polygon_base_url,
            calls_per_minute=settings.polygon_calls_per_minute,
            reference_refresh_days=settings.polygon_reference_refresh_days,
            details_refresh_days=settings.polygon_details_refresh_days,
            details_per_run=settings.polygon_details_per_run,
            volatility_index=settings.polygon_volatility_index,
            limit_dir=settings.polygon_limit_dir or default_limit_dir(),
        )

    # ------------------------------------------------------------------ protocol

    def bars(self, start: dt.date, end: dt.date, symbols: Sequence[str] | None = None) -> pl.DataFrame:
        """Split-adjusted `schema.BARS` rows for sessions in [start, end], sorted by (date, symbol).

        One grouped call per session not yet fetched by this process; with `symbols`, per-ticker ranges
        instead when they take fewer calls (targeted repair). A session the vendor returns empty for (data
        not published yet, an unscheduled closure) has no rows and is not cached, so a later call asks again.
        """
        with self._lock:
            sessions = calendar.sessions_between(start, end)
            if not sessions:
                return schema.empty(schema.BARS)
            self._sync_splits(sessions[0], sessions[-1])
            wanted = None if symbols is None else list(dict.fromkeys(symbols))
            missing = [s for s in sessions if s not in self._grouped]
            if wanted is not None and len(wanted) < len(missing):
                raw = self._ticker_ranges(wanted, sessions[0], sessions[-1])
            else:
                self._fetch_grouped(missing)
                self.stats.cache_hits += len(sessions) - len(missing)
                pieces = [self._grouped[s] for s in sessions if s in self._grouped]
                raw = pl.concat(pieces) if pieces else schema.empty(schema.BARS)
                if wanted is not None:
                    raw = raw.filter(pl.col("symbol").is_in(wanted))
            return self._adjusted(raw).sort("date", "symbol")

    def ticker_bars(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        """Split-adjusted bars of `symbols` over [start, end] from per-ticker ranges: one call per symbol.

        For repairing a few symbols' history without refetching whole sessions.
        """
        with self._lock:
            sessions = calendar.sessions_between(start, end)
            if not sessions:
                return schema.empty(schema.BARS)
            self._sync_splits(sessions[0], sessions[-1])
            raw = self._ticker_ranges(list(dict.fromkeys(symbols)), sessions[0], sessions[-1])
            return self._adjusted(raw).sort("date", "symbol")

    def reference(self, session: dt.date) -> pl.DataFrame:
        """Common stocks listed on `session` (`schema.REFERENCE`), sorted by symbol.

        The list is the newest cached point-in-time snapshot at most `reference_refresh_days` before the
        session, fetched (and cached) when there is none. Sector and industry come from SIC codes, market cap
        from shares outstanding × the session's close when this process or the warehouse has it.
        """
        with self._lock:
            calendar.require_session(session)
            listing = self._listing_for(session)
            session_bars = self._session_bars(session)
            details = self._details_for(listing.get_column("symbol"), session_bars)
            sectors = _sector_mapping(details)
            market_cap = pl.col("shares_outstanding").cast(pl.Float64) * pl.col("close")
            frame = (
                listing.join(details, on="symbol", how="left", suffix="_details")
                .join(session_bars.select("symbol", "close"), on="symbol", how="left")
                .with_columns(
                    pl.coalesce("name_details", "name").alias("name"),
                    pl.col("sic_code").replace_strict(sectors, default=None, return_dtype=pl.String).alias("sector"),
                    pl.col("sic_description").str.to_titlecase().alias("industry"),
                    pl.coalesce(market_cap, "market_cap").alias("market_cap"),
                    pl.lit(None, dtype=pl.Date).alias("delist_date"),
                )
                .sort("symbol")
            )
            return schema.conform(frame, schema.REFERENCE, "reference")

    def index_bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """`INDEX_SYMBOL` bars (from grouped bars, else one per-ticker range) and `VOLATILITY_SYMBOL` bars
        (from `I:VIX` when switched on and the plan has index data; none otherwise), sorted by (date, symbol)."""
        with self._lock:
            sessions = calendar.sessions_between(start, end)
            if not sessions:
                return schema.empty(schema.BARS)
            self._sync_splits(sessions[0], sessions[-1])
            pieces = [self._grouped[s].filter(pl.col("symbol") == INDEX_SYMBOL) for s in sessions if s in self._grouped]
            missing = [s for s in sessions if s not in self._grouped]
            if missing:
                ranged = self._ticker_ranges([INDEX_SYMBOL], missing[0], missing[-1])
                pieces.append(ranged.filter(pl.col("date").is_in(missing)))
            else:
                self.stats.cache_hits += 1
            index = self._adjusted(pl.concat(pieces)) if pieces else schema.empty(schema.BARS)
            frame = pl.concat([index, self._volatility_bars(sessions)])
            return frame.sort("date", "symbol")

    def earnings(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Always empty: Polygon's stock plans carry no earnings calendar (see the package docstring)."""
        return schema.empty(schema.EARNINGS)

    # ------------------------------------------------------------------ requests

    def _run(self, work: Callable[[_Requester], Awaitable[T]]) -> T:
        """Run one batch of requests in a fresh event loop with a client that is closed when it ends."""

        async def batch() -> T:
            headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
            async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=self._timeout) as client:
                return await work(_Requester(client, self))

        return _run_coroutine(batch)

    def _fetch_grouped(self, sessions: list[dt.date]) -> None:
        """Fetch grouped bars of `sessions` into the process cache; each lands as soon as it arrives, so a
        failure later in the batch does not cost the sessions already fetched."""
        if not sessions:
            return

        async def one(requester: _Requester, session: dt.date) -> None:
            path = f"/v2/aggs/grouped/locale/us/market/stocks/{session.isoformat()}"
            payload = await requester.get(path, {"adjusted": "false"}, f"grouped daily bars for {session}")
            rows = payload.get("results") or []
            if not isinstance(rows, list):
                raise DataSourceError(f"Polygon grouped daily bars for {session}: 'results' is not a list (GET {path})")
            frame = _aggregates_frame(rows)
            stray = frame.filter(pl.col("date") != session)
            if stray.height:
                _log.warning(
                    "polygon grouped session=%s dropped=%d reason='stamped for another session' first=%s",
                    session,
                    stray.height,
                    stray.get_column("date")[0],
                )
                frame = frame.filter(pl.col("date") == session)
            if frame.is_empty():
                _log.warning("polygon grouped session=%s returned no bars (not cached; asked again next time)", session)
                return
            self._grouped[session] = frame

        self._run(lambda requester: requester.each(sessions, lambda s: one(requester, s)))

    def _ticker_ranges(self, symbols: list[str], first: dt.date, last: dt.date) -> pl.DataFrame:
        """Raw bars of each symbol over [first, last] (sessions only), one paginated range call per symbol."""
        if not symbols:
            return schema.empty(schema.BARS)

        async def one(requester: _Requester, symbol: str) -> pl.DataFrame:
            path = f"/v2/aggs/ticker/{symbol}/range/1/day/{first.isoformat()}/{last.isoformat()}"
            params = {"adjusted": "false", "sort": "asc", "limit": str(_AGGS_LIMIT)}
            rows = await requester.pages(path, params, f"daily bars of {symbol} for {first}..{last}")
            return _aggregates_frame(rows, symbol)

        frames = self._run(lambda requester: requester.each(symbols, lambda s: one(requester, s)))
        frame = pl.concat(frames)
        sessions = calendar.sessions_between(first, last)
        outside = frame.filter(~pl.col("date").is_in(sessions))
        if outside.height:
            _log.warning("polygon per-ticker dropped=%d reason='not an NYSE session in range'", outside.height)
        return frame.filter(pl.col("date").is_in(sessions))

    def _volatility_bars(self, sessions: list[dt.date]) -> pl.DataFrame:
        """`VOLATILITY_SYMBOL` bars for `sessions` from `I:VIX`, one range call for the uncached ones."""
        uncovered = [s for s in sessions if s not in self._volatility]
        if not uncovered:
            self.stats.cache_hits += 1
        elif self._volatility_entitled:
            first, last = uncovered[0], uncovered[-1]
            path = f"/v2/aggs/ticker/{VOLATILITY_TICKER}/range/1/day/{first.isoformat()}/{last.isoformat()}"
            params = {"sort": "asc", "limit": str(_AGGS_LIMIT)}
            what = f"volatility index {VOLATILITY_TICKER} for {first}..{last}"
            try:
                rows = self._run(lambda requester: requester.pages(path, params, what))
            except NotEntitledError as exc:
                self._volatility_entitled = False
                _log.warning(
                    "polygon volatility index unavailable (%s); market conditions use realized volatility only", exc
                )
            else:
                bars = _aggregates_frame(rows, VOLATILITY_SYMBOL)
                by_session = {row["date"]: row for row in bars.iter_rows(named=True)}
                for session in uncovered:
                    self._volatility[session] = by_session.get(session)
        rows = [row for s in sessions if (row := self._volatility.get(s)) is not None]
        frame = pl.DataFrame(rows, schema=schema.BARS) if rows else schema.empty(schema.BARS)
        # an index level: no volume, vwap or trades, as in the simulated market
        return frame.with_columns(
            pl.lit(0.0).alias("volume"),
            pl.lit(None, dtype=pl.Float64).alias("vwap"),
            pl.lit(None, dtype=pl.Int64).alias("trades"),
        )
