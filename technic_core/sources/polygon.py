"""Polygon.io's REST API as a market-data source: grouped daily bars, point-in-time tickers, splits.

Why this shape
--------------
* **One call per session.** The grouped-daily endpoint returns every US stock's bar for a date, so a
  one-year backfill is ~252 calls where a per-symbol loop needs one per symbol (5,000+); a daily update is
  one grouped call plus one splits call (a third, `I:VIX`, only when `volatility_index` is switched on). Per-ticker ranges remain for targeted repair of a few symbols
  (`ticker_bars`, or `bars(..., symbols=[...])` when that takes fewer calls).
* **Splits applied here.** Bars are requested unadjusted and adjusted locally from `/v3/reference/splits`:
  Polygon's own adjustment depends on the day of the request, so two fetches of one session a month apart
  would disagree. Stored bars are kept in the share basis of every split in a journal
  (`<warehouse>/polygon/splits.json`); when the journal learns a split, the stored `bars` and `index_bars`
  partitions before it are restated locally (prices × split_from / split_to, volume ÷ that), guarded by each
  file's hash so an interrupted restatement resumes without adjusting anything twice. The journal is state,
  not cache: deleting it forgets which splits the stored bars already include.
* **Sessions in New York.** Grouped bars are stamped 16:00 New York, per-ticker bars midnight New York; the
  session is the New York calendar date of the stamp (`calendar.session_of`'s rule, vectorized).
* **Calls are budgeted.** A token bucket (`POLYGON_CALLS_PER_MINUTE`, 0 = unlimited) spaces requests and
  honours `Retry-After`; 429s, 5xx, timeouts, network errors and malformed JSON are retried with exponential
  backoff and full jitter, with bounded concurrency. After the last attempt a `DataSourceError` names the
  endpoint and date, and since a source only returns whole ranges, the asset writes no partition.
* **Caches.** In the process: grouped bars per session and volatility-index bars. In the warehouse:
  `ticker_listings` (the point-in-time common-stock list, reused for `polygon_reference_refresh_days`) and
  `ticker_details` (SIC code and share count, refetched after `polygon_details_refresh_days`, at most
  `polygon_details_per_run` per process so the free tier's 5 calls a minute are not spent for hours on
  details; the rest follow in later runs, most liquid first). Every request counts in `stats.api_calls`;
  every session, list or range answered without one counts in `stats.cache_hits`.

What the protocol gets
----------------------
`bars` holds every ticker of the grouped response (common stocks, ETFs, preferreds, warrants...): the
warehouse keeps what the vendor priced, and `reference` (common stocks only) decides what is screened.
`reference` market caps are shares outstanding (from details) × the session's split-adjusted close;
`delist_date` stays null (Polygon does not announce delistings); sectors map SIC codes to GICS sectors.
`index_bars` takes `INDEX_SYMBOL` (SPY) from the grouped bars, and the volatility index from `I:VIX` only when
`volatility_index` is on (`TECHNIC_POLYGON_VOLATILITY_INDEX`). It is off by default because the free tier
has no indices access (the call would be refused every run) and because it is the one call a daily update
does not otherwise need; without it market conditions use SPY's realized volatility. Switched on but refused
by the plan, it logs one warning and returns no volatility rows instead of failing the run. `earnings` is always empty:
Polygon's stock plans have no earnings calendar.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import email.utils
import hashlib
import json
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, NamedTuple, Sequence, TypeVar
from zoneinfo import ZoneInfo

import httpx
import polars as pl

from technic_core import calendar, schema
from technic_core.config import Settings
from technic_core.errors import ConfigError, DataSourceError
from technic_core.sources import INDEX_SYMBOL, VOLATILITY_SYMBOL, SourceStats
from technic_core.storage import AnyPath
from technic_core.warehouse import Warehouse, write_json_atomic

_log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.polygon.io"
#: Polygon's ticker for the CBOE volatility index (an index: needs an indices plan).
VOLATILITY_TICKER = "I:VIX"
#: Where the split journal lives under the warehouse root.
JOURNAL_PATH = Path("polygon") / "splits.json"
#: Longest `Retry-After` honoured; a larger value is clipped so a bad header cannot stall a run for hours.
MAX_RETRY_AFTER_S = 600.0
#: Without an explicit per-process details budget, spend this many minutes of the rate limit on details.
DETAILS_MINUTES_PER_RUN = 10
_PAGE_LIMIT = 1_000  # the reference endpoints' maximum page size
_AGGS_LIMIT = 50_000  # the aggregates endpoint's maximum bars per response
_JOURNAL_VERSION = 1

#: Raw aggregate fields (grouped daily and per-ticker) and their types; `T` is only in grouped results.
_AGG_FIELDS: dict[str, pl.DataType] = {
    "T": pl.String,
    "o": pl.Float64,
    "h": pl.Float64,
    "l": pl.Float64,
    "c": pl.Float64,
    "v": pl.Float64,
    "vw": pl.Float64,
    "n": pl.Int64,
    "t": pl.Int64,
}
_AGG_NAMES = {
    "T": "symbol", "o": "open", "h": "high", "l": "low", "c": "close", "v": "volume", "vw": "vwap", "n": "trades"
}
_PRICE_COLUMNS = ("open", "high", "low", "close", "vwap")

#: SIC code ranges → GICS sector, most specific first: the first range containing a code wins. SIC is what
#: Polygon's ticker details carry; the mapping follows the SIC divisions and moves the well-known exceptions
#: (pharma, semiconductors, software, REITs, media...) to the GICS sector they are reported under.
SIC_SECTORS: tuple[tuple[int, int, str], ...] = (
    (1000, 1099, "Materials"),  # metal mining
    (1200, 1399, "Energy"),  # coal, oil and gas extraction and services
    (1400, 1499, "Materials"),
    (1531, 1531, "Consumer Discretionary"),  # operative builders (homebuilders)
    (2830, 2836, "Health Care"),  # drugs, biologicals
    (2840, 2844, "Consumer Staples"),  # soap, cosmetics
    (2700, 2799, "Communication Services"),  # publishing
    (2000, 2199, "Consumer Staples"),  # food, beverages, tobacco
    (2200, 2399, "Consumer Discretionary"),  # textiles, apparel
    (2400, 2499, "Materials"),
    (2500, 2599, "Consumer Discretionary"),  # furniture
    (2600, 2699, "Materials"),
    (2800, 2899, "Materials"),  # chemicals
    (2900, 2999, "Energy"),  # refining
    (3000, 3099, "Materials"),  # rubber, plastics
    (3100, 3199, "Consumer Discretionary"),  # leather goods
    (3200, 3399, "Materials"),  # glass, primary metals
    (3400, 3499, "Industrials"),
    (3570, 3579, "Information Technology"),  # computers
    (3630, 3639, "Consumer Discretionary"),  # household appliances
    (3500, 3599, "Industrials"),  # machinery
    (3600, 3699, "Information Technology"),  # electronics, semiconductors, communications equipment
    (3710, 3716, "Consumer Discretionary"),  # motor vehicles
    (3750, 3751, "Consumer Discretionary"),  # motorcycles, bicycles
    (3700, 3799, "Industrials"),  # aircraft, ships, rail
    (3840, 3851, "Health Care"),  # medical instruments
    (3800, 3899, "Information Technology"),  # measuring, optical, photographic instruments
    (3900, 3999, "Consumer Discretionary"),  # jewelry, toys, sporting goods
    (1500, 1799, "Industrials"),  # construction
    (100, 999, "Consumer Staples"),  # agriculture, fishing
    (4800, 4899, "Communication Services"),
    (4950, 4959, "Industrials"),  # waste management
    (4900, 4999, "Utilities"),
    (4000, 4799, "Industrials"),  # transportation
    (5120, 5122, "Health Care"),  # drug wholesale
    (5140, 5149, "Consumer Staples"),  # grocery wholesale
    (5170, 5172, "Energy"),  # petroleum wholesale
    (5000, 5199, "Industrials"),  # wholesale
    (5400, 5499, "Consumer Staples"),  # food stores
    (5912, 5912, "Consumer Staples"),  # drug stores
    (5200, 5999, "Consumer Discretionary"),  # retail
    (6798, 6798, "Real Estate"),  # REITs
    (6500, 6599, "Real Estate"),
    (6000, 6799, "Financials"),
    (7370, 7379, "Information Technology"),  # software, computer services
    (7800, 7899, "Communication Services"),  # motion pictures
    (8000, 8099, "Health Care"),  # health services
    (8731, 8731, "Health Care"),  # biological research
    (7000, 7299, "Consumer Discretionary"),  # hotels, personal services
    (7500, 7599, "Consumer Discretionary"),  # auto services
    (7900, 7999, "Consumer Discretionary"),  # amusement, recreation
    (8200, 8299, "Consumer Discretionary"),  # education
    (7300, 8999, "Industrials"),  # business, engineering and management services
)


def sector_for_sic(code: str | None) -> str | None:
    """The GICS sector of a SIC code (`SIC_SECTORS`); None when the code is missing or unclassifiable."""
    if code is None or not code.strip().isdigit():
        return None
    number = int(code)
    return next((sector for low, high, sector in SIC_SECTORS if low <= number <= high), None)


# ---------------------------------------------------------------------------- rate limiting and retries


class TokenBucket:
    """Spaces requests to `calls_per_minute` (0 = unlimited) and holds everyone back after a `Retry-After`.

    Implemented as a generic cell-rate algorithm: each caller reserves the next free slot synchronously (so
    concurrent tasks in one event loop, and threads, never claim the same slot), then sleeps until it. The
    state is plain numbers, not asyncio primitives, so one bucket outlives the per-call event loops and the
    rate holds across calls. `burst` slots may be used back to back; the default of one keeps a sliding
    one-minute window, which is how Polygon counts, within the limit. `clock` and `sleep` are injectable so
    tests run on a virtual clock.
    """

    def __init__(
        self,
        calls_per_minute: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if calls_per_minute < 0 or burst < 1:
            raise ConfigError(
                f"token bucket: calls_per_minute {calls_per_minute} must be ≥ 0 and burst {burst} ≥ 1"
            )
        self.interval = 60.0 / calls_per_minute if calls_per_minute > 0 else 0.0
        self._tolerance = (burst - 1) * self.interval
        self._clock = clock
        self._sleep = sleep
        self._theoretical_arrival = -math.inf
        self._paused_until = -math.inf
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Claim the next slot; return the seconds to wait before using it."""
        with self._lock:
            now = self._clock()
            start = max(now, self._paused_until, self._theoretical_arrival - self._tolerance)
            self._theoretical_arrival = max(self._theoretical_arrival, start) + self.interval
            return start - now

    def pause(self, seconds: float) -> None:
        """Let nobody start a request for `seconds` (a server's `Retry-After`)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def acquire(self) -> None:
        """Wait for a slot; a pause that began while waiting is waited out too."""
        while True:
            wait = self.reserve()
            if wait > 0:
                await self._sleep(wait)
            if self._clock() >= self._paused_until:
                return


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed request is retried (exponential backoff with full jitter).

    Full jitter (a uniform draw below the exponential cap) spreads retries of concurrent requests apart, so
    a burst of 429s does not come back as a synchronized burst.
    """

    attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ConfigError(f"retry policy: need attempts ≥ 1 and 0 ≤ base_delay_s ≤ max_delay_s, got {self}")

    def backoff(self, failed_attempts: int, fraction: float) -> float:
        """Seconds to wait after `failed_attempts` failures, given a uniform draw `fraction` in [0, 1)."""
        return fraction * min(self.max_delay_s, self.base_delay_s * 2 ** (failed_attempts - 1))


class NotEntitledError(DataSourceError):
    """Polygon refused a request with 401/403: the key is wrong or the plan lacks that data."""


def retry_after_seconds(response: httpx.Response, now: Callable[[], dt.datetime] | None = None) -> float | None:
    """The response's `Retry-After` in seconds (delta-seconds or an HTTP date), clipped to [0, 600]."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        current = now() if now else dt.datetime.now(dt.timezone.utc)
        seconds = (when - current).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class _Requester:
    """The requests of one batch: one `httpx.AsyncClient` in one event loop, the source's shared limiter,
    retry policy and call counter."""

    def __init__(self, client: httpx.AsyncClient, source: PolygonSource) -> None:
        self._client = client
        self._source = source

    async def get(self, path: str, params: dict[str, str], what: str) -> dict:
        """GET `path` and return its JSON object.

        Retries what may be transient; raises `NotEntitledError` on 401/403, `DataSourceError` on any other
        client error or after the last attempt, each naming `what` and the endpoint.
        """
        payload = await self._request(path, params, what, allow_missing=False)
        assert payload is not None  # only a 404 with allow_missing gives None
        return payload

    async def get_optional(self, path: str, params: dict[str, str], what: str) -> dict | None:
        """Like `get`, but None when Polygon answers 404 (an unknown ticker)."""
        return await self._request(path, params, what, allow_missing=True)

    async def _request(self, path: str, params: dict[str, str], what: str, allow_missing: bool) -> dict | None:
        source = self._source
        policy = source.retry
        problem = "no attempt made"
        for attempt in range(1, policy.attempts + 1):
            await source.limiter.acquire()
            source.stats.api_calls += 1
            retry_after = None
            try:
                response = await self._client.get(path, params=params)
            except httpx.TimeoutException as exc:
                problem = f"timeout ({type(exc).__name__})"
            except httpx.TransportError as exc:
                problem = f"network error ({type(exc).__name__}: {exc})"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        payload = response.json()
                    except ValueError:
                        problem = "malformed JSON in a 200 response"
                    else:
                        if isinstance(payload, dict):
                            return payload
                        problem = f"a JSON {type(payload).__name__} where an object was expected"
                elif status == 404 and allow_missing:
                    return None
                elif status in (401, 403):
                    raise NotEntitledError(f"Polygon refused {what}: HTTP {status} {_message(response)} (GET {path})")
                elif status == 429 or status >= 500:
                    problem = f"HTTP {status}"
                    retry_after = retry_after_seconds(response)
                else:
                    raise DataSourceError(f"Polygon {what}: HTTP {status} {_message(response)} (GET {path})")
            if attempt == policy.attempts:
                break
            if retry_after is not None:
                source.limiter.pause(retry_after)
                wait = 0.0
            else:
                wait = policy.backoff(attempt, source.jitter())
            _log.warning(
                "polygon retry what=%r path=%s attempt=%d/%d problem=%r retry_after_s=%s wait_s=%.2f",
                what, path, attempt, policy.attempts, problem, retry_after, wait,
            )
            if wait > 0:
                await source.sleep(wait)
        raise DataSourceError(f"Polygon {what} failed after {policy.attempts} attempts: {problem} (GET {path})")

    async def pages(self, path: str, params: dict[str, str], what: str) -> list[dict]:
        """All `results` of a paginated endpoint, following `next_url` relative to the configured base URL.

        Why relative: Polygon's `next_url` always names api.polygon.io; re-rooting it keeps every page on the
        configured host (a proxy, a test server) and never sends the key anywhere else.
        """
        results: list[dict] = []
        seen: set[str] = set()
        page = 1
        while True:
            label = what if page == 1 else f"{what} (page {page})"
            payload = await self.get(path, params, label)
            rows = payload.get("results") or []
            if not isinstance(rows, list):
                raise DataSourceError(f"Polygon {label}: 'results' is a {type(rows).__name__}, not a list (GET {path})")
            results.extend(rows)
            next_url = payload.get("next_url")
            if not next_url:
                return results
            if next_url in seen:
                raise DataSourceError(f"Polygon {label}: next_url repeats a page already read ({next_url})")
            seen.add(next_url)
            url = httpx.URL(next_url)
            path, params, page = url.path, dict(url.params), page + 1

    async def each(self, items: Sequence[T], fetch: Callable[[T], Awaitable[Any]]) -> list[Any]:
        """`fetch(item)` for every item, at most `concurrency` at once, results in item order.

        The first failure cancels the rest and is raised as itself (not wrapped in an exception group).
        """
        semaphore = asyncio.Semaphore(self._source.concurrency)

        async def bounded(item: T) -> Any:
            async with semaphore:
                return await fetch(item)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(bounded(item)) for item in items]
        except BaseExceptionGroup as failures:
            raise _first_leaf(failures) from None
        return [task.result() for task in tasks]


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _message(response: httpx.Response) -> str:
    """Polygon's error text (`message` or `error` in the JSON body), else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body.get("status") or "")
    return response.text[:200]


def _run_coroutine(factory: Callable[[], Awaitable[T]]) -> T:
    """Run an async batch from synchronous code in its own event loop.

    Inside a thread that already runs a loop (a notebook, an async server) `asyncio.run` is not allowed, so
    the batch gets a worker thread and a loop of its own there.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


# ---------------------------------------------------------------------------- splits


class Split(NamedTuple):
    """A split of `symbol` effective from `execution_date`: `split_from` old shares became `split_to`."""

    symbol: str
    execution_date: dt.date
    split_from: float
    split_to: float

    @property
    def price_factor(self) -> float:
        """What a price before the split is multiplied by to be comparable with prices after it."""
        return self.split_from / self.split_to


def splits_frame(splits: Iterable[Split]) -> pl.DataFrame:
    rows = [(s.symbol, s.execution_date, s.price_factor) for s in splits]
    return pl.DataFrame(
        rows, schema={"symbol": pl.String, "execution_date": pl.Date, "factor": pl.Float64}, orient="row"
    )


def adjust_for_splits(bars: pl.DataFrame, splits: pl.DataFrame) -> pl.DataFrame:
    """`bars` in the share basis after every split in `splits` (`splits_frame` columns).

    A bar of a symbol on a session before a split's execution date has its prices multiplied by the split's
    price factor and its volume divided by it (trades are unchanged); several later splits multiply. Adjusted
    values are rounded to 6 decimals (prices) and 3 (volume), so restating stored bars split by split and
    adjusting raw bars for all splits at once give the same numbers.
    """
    if bars.is_empty() or splits.is_empty():
        return bars
    factors = (
        bars.select("symbol", "date")
        .join(splits, on="symbol")
        .filter(pl.col("execution_date") > pl.col("date"))
        .group_by("symbol", "date")
        .agg(pl.col("factor").product().alias("_factor"))
    )
    if factors.is_empty():
        return bars
    factor = pl.col("_factor")

    def adjusted(column: str, value: pl.Expr) -> pl.Expr:
        return pl.when(factor.is_null()).then(pl.col(column)).otherwise(value).alias(column)

    return (
        bars.join(factors, on=["symbol", "date"], how="left", maintain_order="left")
        .with_columns(
            *(adjusted(c, (pl.col(c) * factor).round(6)) for c in _PRICE_COLUMNS),
            adjusted("volume", (pl.col("volume") / factor).round(3)),
        )
        .drop("_factor")
    )


@dataclass
class _Restatement:
    """Splits learned after stored partitions were written, and those partitions' hashes before restating."""

    splits: list[Split]
    partitions: dict[str, str]  # "<dataset>/<session>" → sha256 of the file as it was when planned


@dataclass
class SplitJournal:
    """Which splits stored bars include (execution dates in [covered_from, covered_through]) and any
    restatement still under way. Saved atomically as JSON; see the module docstring."""

    path: Path
    covered_from: dt.date | None = None
    covered_through: dt.date | None = None
    splits: list[Split] = field(default_factory=list)
    restatements: list[_Restatement] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> SplitJournal:
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
            if data.get("version") != _JOURNAL_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {_JOURNAL_VERSION}")
            return cls(
                path,
                _date_or_none(data["covered_from"]),
                _date_or_none(data["covered_through"]),
                [_split_from_json(row) for row in data["splits"]],
                [
                    _Restatement([_split_from_json(row) for row in r["splits"]], dict(r["partitions"]))
                    for r in data["restatements"]
                ],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DataSourceError(
                f"split journal {path} is unreadable ({exc}); it records which splits the stored bars include, "
                "so restore it or re-backfill into a new warehouse"
            ) from exc

    def save(self) -> None:
        write_json_atomic(
            self.path,
            {
                "version": _JOURNAL_VERSION,
                "covered_from": _iso_or_none(self.covered_from),
                "covered_through": _iso_or_none(self.covered_through),
                "splits": [_split_to_json(s) for s in self.splits],
                "restatements": [
                    {"splits": [_split_to_json(s) for s in r.splits], "partitions": r.partitions}
                    for r in self.restatements
                ],
            },
        )

    def gaps(self, first: dt.date, last: dt.date) -> list[tuple[dt.date, dt.date]]:
        """Execution-date ranges inside [first, last] the journal does not cover yet."""
        if first > last:
            return []
        if self.covered_from is None or self.covered_through is None:
            return [(first, last)]
        gaps = []
        if first < self.covered_from:
            gaps.append((first, min(last, self.covered_from - dt.timedelta(days=1))))
        if last > self.covered_through:
            gaps.append((max(first, self.covered_through + dt.timedelta(days=1)), last))
        return gaps

    def add(self, splits: Iterable[Split], first: dt.date, last: dt.date) -> None:
        """Record `splits` and that [first, last] is now covered (it must touch the covered range)."""
        known = {(s.symbol, s.execution_date) for s in self.splits}
        for split in splits:
            if (split.symbol, split.execution_date) not in known:
                known.add((split.symbol, split.execution_date))
                self.splits.append(split)
        self.splits.sort(key=lambda s: (s.execution_date, s.symbol))
        self.covered_from = first if self.covered_from is None else min(self.covered_from, first)
        self.covered_through = last if self.covered_through is None else max(self.covered_through, last)


def _split_to_json(split: Split) -> list[object]:
    return [split.symbol, split.execution_date.isoformat(), split.split_from, split.split_to]


def _split_from_json(row: list[object]) -> Split:
    symbol, day, split_from, split_to = row
    return Split(str(symbol), dt.date.fromisoformat(str(day)), float(split_from), float(split_to))


def _date_or_none(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def _iso_or_none(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _file_sha256(path: AnyPath) -> str:
    """A stored partition's digest; read whole, which works for a local file and an object alike."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------- response parsing


def _aggregates_frame(rows: list[dict], symbol: str | None = None) -> pl.DataFrame:
    """Aggregate results as `schema.BARS`; each bar's session is the New York date of its stamp.

    `symbol` names the ticker of per-ticker results (which carry no `T`). Rows without a ticker or a
    timestamp cannot be placed and are dropped with a warning.
    """
    frame = pl.from_dicts(rows, schema=_AGG_FIELDS) if rows else pl.DataFrame(schema=_AGG_FIELDS)
    if symbol is not None:
        frame = frame.with_columns(pl.lit(symbol, dtype=pl.String).alias("T"))
    unplaceable = frame.filter(pl.col("T").is_null() | pl.col("t").is_null())
    if unplaceable.height:
        _log.warning("polygon dropped rows=%d reason='no ticker or timestamp'", unplaceable.height)
        frame = frame.filter(pl.col("T").is_not_null() & pl.col("t").is_not_null())
    session = (
        pl.from_epoch("t", "ms").dt.replace_time_zone("UTC").dt.convert_time_zone(calendar.NEW_YORK).dt.date()
    )
    return schema.conform(frame.rename(_AGG_NAMES).with_columns(session.alias("date")), schema.BARS, "polygon bars")


def _split_rows(rows: list[dict]) -> list[Split]:
    """Polygon split records as `Split`s; records without a positive ratio are skipped with a warning."""
    splits = []
    for row in rows:
        try:
            split = Split(
                str(row["ticker"]),
                dt.date.fromisoformat(str(row["execution_date"])),
                float(row["split_from"]),
                float(row["split_to"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            _log.warning("polygon skipped split record=%r reason=%r", row, str(exc))
            continue
        if split.split_from > 0 and split.split_to > 0:
            splits.append(split)
        else:
            _log.warning("polygon skipped split record=%r reason='non-positive ratio'", row)
    return splits


def _details_row(symbol: str, payload: dict | None, fetched: dt.date) -> dict[str, object]:
    """One `schema.TICKER_DETAILS` row from a details response (None: the ticker is unknown to Polygon,
    remembered as an empty row so it is not asked for again before the refresh interval)."""
    results = (payload or {}).get("results") or {}
    if not isinstance(results, dict):
        results = {}
    shares = results.get("weighted_shares_outstanding") or results.get("share_class_shares_outstanding")
    list_date = results.get("list_date")
    return {
        "date": fetched,
        "symbol": symbol,
        "name": results.get("name"),
        "sic_code": None if results.get("sic_code") is None else str(results["sic_code"]),
        "sic_description": results.get("sic_description"),
        "market_cap": results.get("market_cap"),
        "shares_outstanding": None if shares is None else int(shares),
        "list_date": _parse_date(list_date),
    }


def _parse_date(value: object) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _today_in_new_york() -> dt.date:
    return dt.datetime.now(ZoneInfo(calendar.NEW_YORK)).date()


# ---------------------------------------------------------------------------- the source


class PolygonSource:
    """`MarketDataSource` over Polygon's REST API; see the module docstring for calls, caches and splits.

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
        retry: RetryPolicy = RetryPolicy(),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        today: Callable[[], dt.date] = _today_in_new_york,
    ) -> None:
        """`clock`, `sleep` and `jitter` drive the limiter and backoff (tests pass a virtual clock);
        `today` dates details fetches and decides when they are stale; `volatility_index` asks `I:VIX` for the
        volatility index (an indices plan; one more call per update)."""
        if not api_key:
            raise ConfigError("polygon: an API key is required (POLYGON_API_KEY)")
        if concurrency < 1:
            raise ConfigError(f"polygon: concurrency {concurrency} must be at least 1")
        self.stats = SourceStats()
        self.warehouse = warehouse
        self.limiter = TokenBucket(calls_per_minute, clock=clock, sleep=sleep)
        self.retry = retry
        self.sleep = sleep
        self.jitter = jitter
        self.concurrency = concurrency
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
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
        """Always empty: Polygon's stock plans carry no earnings calendar (see the module docstring)."""
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
                    session, stray.height, stray.get_column("date")[0],
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
        rows = [self._volatility[s] for s in sessions if self._volatility.get(s) is not None]
        frame = pl.DataFrame(rows, schema=schema.BARS) if rows else schema.empty(schema.BARS)
        # an index level: no volume, vwap or trades, as in the simulated market
        return frame.with_columns(
            pl.lit(0.0).alias("volume"),
            pl.lit(None, dtype=pl.Float64).alias("vwap"),
            pl.lit(None, dtype=pl.Int64).alias("trades"),
        )

    # ------------------------------------------------------------------ splits

    def _splits_journal(self) -> SplitJournal:
        if self._journal is None:
            self._journal = SplitJournal.load(self.warehouse.root / JOURNAL_PATH)
        return self._journal

    def _adjusted(self, raw: pl.DataFrame) -> pl.DataFrame:
        return schema.conform(adjust_for_splits(raw, splits_frame(self._splits_journal().splits)), schema.BARS, "bars")

    def _sync_splits(self, first: dt.date, last: dt.date) -> None:
        """Make the journal cover splits that affect sessions from `first` on, through the newer of `last`
        and the newest stored session, restating stored partitions for splits learned after them."""
        journal = self._splits_journal()
        self._finish_restatements(journal)
        stored = self.warehouse.sessions("bars")
        basis = max(last, stored[-1]) if stored else last
        # splits after `first` adjust the bars returned; splits after the oldest stored session, stored ones
        lower = min([first, *stored[:1]]) + dt.timedelta(days=1)
        gaps = journal.gaps(lower, basis)
        if not gaps:
            self.stats.cache_hits += 1
            return

        async def fetch(requester: _Requester) -> list[dict]:
            rows: list[dict] = []
            for low, high in gaps:
                params = {
                    "execution_date.gte": low.isoformat(),
                    "execution_date.lte": high.isoformat(),
                    "order": "asc",
                    "sort": "execution_date",
                    "limit": str(_PAGE_LIMIT),
                }
                rows += await requester.pages("/v3/reference/splits", params, f"splits executed {low}..{high}")
            return rows

        splits = _split_rows(self._run(fetch))
        newer_than = journal.covered_through
        journal.add(splits, gaps[0][0], gaps[-1][1])
        later = [s for s in splits if newer_than is not None and s.execution_date > newer_than]
        if later and stored:
            horizon = max(s.execution_date for s in later)
            journal.restatements.append(_Restatement(later, self._partition_hashes(horizon)))
        journal.save()
        self._finish_restatements(journal)

    def _partition_hashes(self, before: dt.date) -> dict[str, str]:
        hashes = {}
        for dataset in ("bars", "index_bars"):
            for session in self.warehouse.sessions(dataset):
                if session < before:
                    for file in self.warehouse.partition_files(dataset, session):
                        hashes[f"{dataset}/{session.isoformat()}"] = _file_sha256(file)
        return hashes

    def _finish_restatements(self, journal: SplitJournal) -> None:
        """Apply pending restatements to partitions whose file is still the one planned for.

        A changed hash means the partition was restated already (a run died before saving the journal) or
        rewritten since with bars that include the split, so adjusting it again would be wrong.
        """
        while journal.restatements:
            restatement = journal.restatements[0]
            factors = splits_frame(restatement.splits)
            restated = 0
            for key, digest in sorted(restatement.partitions.items()):
                dataset, day = key.split("/")
                session = dt.date.fromisoformat(day)
                files = self.warehouse.partition_files(dataset, session)
                if len(files) != 1 or _file_sha256(files[0]) != digest:
                    continue
                stored = self.warehouse.read(dataset, session, session)
                adjusted = adjust_for_splits(stored, factors)
                if not adjusted.equals(stored):
                    self.warehouse.write_partition(dataset, session, adjusted)
                    restated += 1
            _log.info(
                "polygon restated splits=%d partitions=%d symbols=%s",
                len(restatement.splits), restated, sorted({s.symbol for s in restatement.splits})[:10],
            )
            journal.restatements.pop(0)
            journal.save()

    # ------------------------------------------------------------------ reference data

    def _listing_for(self, session: dt.date) -> pl.DataFrame:
        """The cached ticker snapshot serving `session`, fetching and caching one dated `session` if none."""
        if self._listing_sessions is None:
            self._listing_sessions = self.warehouse.sessions("ticker_listings")
        usable = [d for d in self._listing_sessions if session - self._reference_refresh <= d <= session]
        if usable:
            self.stats.cache_hits += 1
            snapshot = usable[-1]
            if snapshot not in self._listings:
                self._listings[snapshot] = self.warehouse.read("ticker_listings", snapshot, snapshot)
            return self._listings[snapshot].select("symbol", "name")
        params = {
            "market": "stocks",
            "type": "CS",
            "active": "true",
            "date": session.isoformat(),
            "sort": "ticker",
            "order": "asc",
            "limit": str(_PAGE_LIMIT),
        }
        rows = self._run(lambda r: r.pages("/v3/reference/tickers", params, f"common stocks listed on {session}"))
        listing = (
            pl.from_dicts(rows, schema={"ticker": pl.String, "name": pl.String}) if rows else pl.DataFrame()
        )
        if listing.is_empty():
            raise DataSourceError(f"Polygon listed no common stocks on {session}; refusing to cache an empty universe")
        frame = (
            listing.rename({"ticker": "symbol"})
            .filter(pl.col("symbol").is_not_null())
            .unique("symbol", keep="first", maintain_order=True)
            .with_columns(pl.lit(session).alias("date"))
        )
        self.warehouse.write_partition("ticker_listings", session, frame)
        self._listing_sessions = sorted({*self._listing_sessions, session})
        self._listings[session] = schema.conform(frame, schema.TICKER_LISTINGS, "ticker_listings")
        return self._listings[session].select("symbol", "name")

    def _session_bars(self, session: dt.date) -> pl.DataFrame:
        """Split-adjusted bars of `session` from this process, else from the warehouse, else none."""
        if session in self._grouped:
            return self._adjusted(self._grouped[session])
        if self.warehouse.has_partition("bars", session):
            return self.warehouse.read("bars", session, session)
        return schema.empty(schema.BARS)

    def _details_table(self) -> pl.DataFrame:
        """Newest cached details row per symbol."""
        if self._details is None:
            cached = self.warehouse.read("ticker_details")
            self._details = cached.sort("date").unique("symbol", keep="last").sort("symbol")
        return self._details

    def _details_for(self, symbols: pl.Series, session_bars: pl.DataFrame) -> pl.DataFrame:
        """Details of `symbols`, fetching missing and stale ones first within the per-process budget.

        Order of fetching: never fetched before stale; then the session's dollar volume (most liquid first,
        as those are the names screening keeps); then symbol.
        """
        known = self._details_table()
        today = self._today()
        candidates = (
            pl.DataFrame({"symbol": symbols})
            .join(known.select("symbol", "date"), on="symbol", how="left")
            .join(
                session_bars.select("symbol", (pl.col("close") * pl.col("volume")).alias("dollar_volume")),
                on="symbol",
                how="left",
            )
            .filter(pl.col("date").is_null() | (pl.col("date") < today - self._details_refresh))
            .sort(
                [pl.col("date").is_not_null(), "date", "dollar_volume", "symbol"],
                descending=[False, False, True, False],
                nulls_last=[False, False, True, False],
            )
        )
        take = candidates.get_column("symbol").to_list()[: int(min(candidates.height, self.details_budget))]
        if take:
            self.details_budget -= len(take)
            self._store_details(self._fetch_details(take, today), today)
            if len(take) < candidates.height:
                _log.info(
                    "polygon details budget spent; symbols=%d wait for a later run (TECHNIC_POLYGON_DETAILS_PER_RUN)",
                    candidates.height - len(take),
                )
        elif not candidates.height:
            self.stats.cache_hits += 1
        return self._details_table().drop("date")

    def _fetch_details(self, symbols: list[str], today: dt.date) -> pl.DataFrame:
        async def one(requester: _Requester, symbol: str) -> dict[str, object]:
            payload = await requester.get_optional(f"/v3/reference/tickers/{symbol}", {}, f"ticker details of {symbol}")
            return _details_row(symbol, payload, today)

        rows = self._run(lambda requester: requester.each(symbols, lambda s: one(requester, s)))
        _log.info("polygon fetched details symbols=%d", len(rows))
        return pl.DataFrame(rows, schema=schema.TICKER_DETAILS)

    def _store_details(self, fetched: pl.DataFrame, today: dt.date) -> None:
        """Merge `fetched` into today's `ticker_details` partition (a second run today adds to it)."""
        existing = self.warehouse.read("ticker_details", today, today)
        merged = pl.concat([existing, fetched]).unique("symbol", keep="last", maintain_order=True)
        self.warehouse.write_partition("ticker_details", today, merged)
        self._details = (
            pl.concat([self._details_table(), fetched]).sort("date").unique("symbol", keep="last").sort("symbol")
        )


def _sector_mapping(details: pl.DataFrame) -> dict[str, str | None]:
    codes = details.get_column("sic_code").drop_nulls().unique().to_list()
    return {code: sector_for_sic(code) for code in codes}
