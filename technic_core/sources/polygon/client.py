"""Polygon's HTTP side: the rate limit, the retry policy and the requests of one batch.

A token bucket spaces requests (`POLYGON_CALLS_PER_MINUTE`, held across processes by `shared_limit`) and
honours `Retry-After`; 429s, 5xx, timeouts, network errors and malformed JSON are retried with exponential
backoff and full jitter, with bounded concurrency. See the package docstring (`technic_core.sources.polygon`) for why.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import email.utils
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from technic_core.errors import ConfigError, DataSourceError
from technic_core.sources.polygon.shared_limit import LocalRateState, RateState, Slots

if TYPE_CHECKING:
    from technic_core.sources.polygon.source import PolygonSource

_log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.polygon.io"
#: Longest `Retry-After` honoured; a larger value is clipped so a bad header cannot stall a run for hours.
MAX_RETRY_AFTER_S = 600.0
_PAGE_LIMIT = 1_000  # the reference endpoints' maximum page size
_AGGS_LIMIT = 50_000  # the aggregates endpoint's maximum bars per response


class TokenBucket:
    """Spaces requests to `calls_per_minute` (0 = unlimited) and holds everyone back after a `Retry-After`.

    Implemented as a generic cell-rate algorithm: each caller reserves the next free slot synchronously (so
    concurrent tasks in one event loop, and threads, never claim the same slot), then sleeps until it. The
    state is plain numbers, not asyncio primitives, so one bucket outlives the per-call event loops and the
    rate holds across calls. `burst` slots may be used back to back; the default of one keeps a sliding
    one-minute window, which is how Polygon counts, within the limit. `clock` and `sleep` are injectable so
    tests run on a virtual clock.

    `state` is where those numbers live: in this bucket (the default), or in a `SharedRateState` file that
    every process using the same key changes under a lock, so the rate holds across all of them.
    """

    def __init__(
        self,
        calls_per_minute: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        state: RateState | None = None,
    ) -> None:
        if calls_per_minute < 0 or burst < 1:
            raise ConfigError(f"token bucket: calls_per_minute {calls_per_minute} must be ≥ 0 and burst {burst} ≥ 1")
        self.interval = 60.0 / calls_per_minute if calls_per_minute > 0 else 0.0
        self._tolerance = (burst - 1) * self.interval
        self._clock = clock
        self._sleep = sleep
        self.state: RateState = state or LocalRateState()

    def reserve(self) -> float:
        """Claim the next slot; return the seconds to wait before using it."""
        now = self._clock()

        def claim(slots: Slots) -> tuple[Slots, float]:
            start = max(now, slots.paused_until, slots.theoretical_arrival - self._tolerance)
            arrival = max(slots.theoretical_arrival, start) + self.interval
            return replace(slots, theoretical_arrival=arrival), start - now

        return self.state.change(now, claim)

    def pause(self, seconds: float) -> None:
        """Let nobody start a request for `seconds` (a server's `Retry-After`)."""
        now = self._clock()
        self.state.change(
            now, lambda slots: (replace(slots, paused_until=max(slots.paused_until, now + seconds)), None)
        )

    def paused(self) -> bool:
        """Whether a pause is still running."""
        now = self._clock()
        return self.state.change(now, lambda slots: (slots, now < slots.paused_until))

    async def acquire(self) -> None:
        """Wait for a slot; a pause that began while waiting is waited out too."""
        while True:
            wait = self.reserve()
            if wait > 0:
                await self._sleep(wait)
            if not self.paused():
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


#: The retry policy of a source built without one.
DEFAULT_RETRY = RetryPolicy()


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
        current = now() if now else dt.datetime.now(dt.UTC)
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
                what,
                path,
                attempt,
                policy.attempts,
                problem,
                retry_after,
                wait,
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


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
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
