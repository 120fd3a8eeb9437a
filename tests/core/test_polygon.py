"""Polygon source against a respx-mocked Polygon whose responses follow the documented schemas.

A `FakePolygon` serves grouped daily bars (16:00 New York stamps), per-ticker ranges (midnight New York),
paginated ticker lists with `next_url`, ticker details, splits and the VIX index; faults are queued per
route. The limiter and backoff run on a virtual clock, so retries cost no wall time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import logging
import uuid
from collections import defaultdict
from zoneinfo import ZoneInfo

import httpx
import polars as pl
import pytest
import respx
from dagster import DagsterInstance

from technic_core import calendar, schema
from technic_core.config import Settings
from technic_core.errors import ConfigError, DataSourceError
from technic_core.sources import INDEX_SYMBOL, SOURCE_FACTORIES, VOLATILITY_SYMBOL, MarketDataSource, make_source
from technic_core.sources.polygon import (
    JOURNAL_PATH,
    NotEntitledError,
    PolygonSource,
    RetryPolicy,
    TokenBucket,
    retry_after_seconds,
    sector_for_sic,
)
from technic_core.warehouse import Warehouse
from technic_pipelines.defs.ml.sensors import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG

BASE = "https://polygon.test"
NEW_YORK = ZoneInfo("America/New_York")
GROUPED = r"^/v2/aggs/grouped/locale/us/market/stocks/(?P<day>\d{4}-\d{2}-\d{2})$"
TICKER_RANGE = r"^/v2/aggs/ticker/(?P<ticker>[^/]+)/range/1/day/(?P<first>[\d-]+)/(?P<last>[\d-]+)$"
DETAILS = r"^/v3/reference/tickers/(?P<ticker>[^/]+)$"

#: symbol → (SIC code, SIC description, weighted shares); None: Polygon answers 404 for its details.
COMPANIES = {
    "AAPL": ("3571", "ELECTRONIC COMPUTERS", 15_000_000_000),
    "JNJ": ("2834", "PHARMACEUTICAL PREPARATIONS", 2_400_000_000),
    "O": ("6798", "REAL ESTATE INVESTMENT TRUSTS", 870_000_000),
    "XOM": ("2911", "PETROLEUM REFINING", 4_000_000_000),
    "ZZZQ": None,
}
COMMON_STOCKS = list(COMPANIES)
TRADED = [*COMMON_STOCKS, INDEX_SYMBOL]  # the grouped response also holds ETFs such as SPY


def stamp(session: dt.date, hour: int) -> int:
    """Milliseconds since the epoch of `hour`:00 New York time on `session`, as Polygon stamps bars."""
    return int(dt.datetime.combine(session, dt.time(hour), NEW_YORK).timestamp() * 1000)


class VirtualClock:
    """A monotonic clock that `sleep` advances instantly, recording each sleep."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakePolygon:
    """Deterministic Polygon responses. True (split-adjusted) prices follow `adjusted_bar`; raw responses
    undo every split the fake knows, as Polygon's `adjusted=false` does."""

    def __init__(self, splits: list[dict] | None = None, listing_page_size: int = 2, vix_entitled: bool = True):
        self.splits = splits or []
        self.listing_page_size = listing_page_size
        self.vix_entitled = vix_entitled
        self.faults: dict[tuple[str, str | None], list[object]] = defaultdict(list)
        self.always_failing: set[tuple[str, str]] = set()
        self.empty_sessions: set[dt.date] = set()
        self.requests: list[httpx.Request] = []

    # --- market -----------------------------------------------------------------------------------------

    def adjusted_bar(self, symbol: str, session: dt.date) -> dict[str, float]:
        i = TRADED.index(symbol) if symbol in TRADED else 7
        close = 20.0 + 8 * i + 0.25 * (session.toordinal() % 40)
        volume = 100_000.0 * (i + 1)
        return {"o": close - 0.5, "h": close + 1.0, "l": close - 1.0, "c": close, "v": volume, "vw": close - 0.25}

    def factor(self, symbol: str, session: dt.date) -> float:
        """Product of the price factors of splits of `symbol` executed after `session`."""
        product = 1.0
        for split in self.splits:
            if split["ticker"] == symbol and dt.date.fromisoformat(split["execution_date"]) > session:
                product *= split["split_from"] / split["split_to"]
        return product

    def raw_bar(self, symbol: str, session: dt.date, hour: int) -> dict[str, object]:
        bar, factor = self.adjusted_bar(symbol, session), self.factor(symbol, session)
        raw: dict[str, object] = {key: value / factor for key, value in bar.items() if key != "v"}
        raw.update(v=bar["v"] * factor, n=1_000 + len(symbol), t=stamp(session, hour))
        return raw

    # --- routing ----------------------------------------------------------------------------------------

    def mock(self) -> respx.MockRouter:
        router = respx.mock(base_url=BASE, assert_all_called=False)
        router.get(path__regex=GROUPED).mock(side_effect=self._grouped)
        router.get(path__regex=TICKER_RANGE).mock(side_effect=self._ticker_range)
        router.get(path="/v3/reference/splits").mock(side_effect=self._splits)
        router.get(path="/v3/reference/tickers").mock(side_effect=self._tickers)
        router.get(path__regex=DETAILS).mock(side_effect=self._details)
        return router

    def count(self, kind: str) -> int:
        prefixes = {
            "grouped": "/v2/aggs/grouped/",
            "ticker": "/v2/aggs/ticker/",
            "splits": "/v3/reference/splits",
            "details": "/v3/reference/tickers/",
        }
        if kind == "tickers":
            return sum(r.url.path == "/v3/reference/tickers" for r in self.requests)
        return sum(r.url.path.startswith(prefixes[kind]) for r in self.requests)

    def _fault(self, request: httpx.Request, route: str, key: str | None) -> httpx.Response | None:
        self.requests.append(request)
        if (route, key) in self.always_failing:
            return httpx.Response(503, json={"status": "ERROR", "message": "overloaded"})
        for queue_key in ((route, key), (route, None)):
            if self.faults[queue_key]:
                fault = self.faults[queue_key].pop(0)
                if isinstance(fault, Exception):
                    raise fault
                assert isinstance(fault, httpx.Response)
                return fault
        return None

    def _grouped(self, request: httpx.Request, day: str) -> httpx.Response:
        session = dt.date.fromisoformat(day)
        fault = self._fault(request, "grouped", day)
        if fault is not None:
            return fault
        assert request.url.params["adjusted"] == "false"
        envelope = {"adjusted": False, "status": "OK", "request_id": f"grouped-{day}"}
        if session in self.empty_sessions or not calendar.is_session(session):
            return httpx.Response(200, json={**envelope, "queryCount": 0, "resultsCount": 0})
        results = [{"T": symbol, **self.raw_bar(symbol, session, 16)} for symbol in TRADED]
        counts = {"queryCount": len(results), "resultsCount": len(results)}
        return httpx.Response(200, json={**envelope, **counts, "results": results})

    def _ticker_range(self, request: httpx.Request, ticker: str, first: str, last: str) -> httpx.Response:
        fault = self._fault(request, "ticker", ticker)
        if fault is not None:
            return fault
        sessions = calendar.sessions_between(dt.date.fromisoformat(first), dt.date.fromisoformat(last))
        if ticker == "I:VIX":
            if not self.vix_entitled:
                message = "You are not entitled to this data. Please upgrade your plan at https://polygon.io/pricing"
                return httpx.Response(403, json={"status": "NOT_AUTHORIZED", "request_id": "vix", "message": message})
            results = [
                {"o": 14.0, "h": 15.5, "l": 13.5, "c": 15.0 + (s.toordinal() % 5), "t": stamp(s, 0)} for s in sessions
            ]
        else:
            assert request.url.params["adjusted"] == "false"
            results = [self.raw_bar(ticker, s, 0) for s in sessions]
        body = {
            "ticker": ticker,
            "adjusted": False,
            "queryCount": len(results),
            "resultsCount": len(results),
            "status": "OK",
            "request_id": f"range-{ticker}",
            "results": results,
        }
        return httpx.Response(200, json=body)

    def _splits(self, request: httpx.Request) -> httpx.Response:
        fault = self._fault(request, "splits", None)
        if fault is not None:
            return fault
        low = dt.date.fromisoformat(request.url.params["execution_date.gte"])
        high = dt.date.fromisoformat(request.url.params["execution_date.lte"])
        results = [
            {"id": f"E{n}", **split}
            for n, split in enumerate(self.splits)
            if low <= dt.date.fromisoformat(split["execution_date"]) <= high
        ]
        return httpx.Response(200, json={"status": "OK", "request_id": "splits", "results": results})

    def _tickers(self, request: httpx.Request) -> httpx.Response:
        fault = self._fault(request, "tickers", None)
        if fault is not None:
            return fault
        params = request.url.params
        offset = int(params.get("cursor", "0"))
        if offset == 0:
            assert params["type"] == "CS" and params["market"] == "stocks" and params["active"] == "true"
            calendar.require_session(dt.date.fromisoformat(params["date"]))
        page = COMMON_STOCKS[offset : offset + self.listing_page_size]
        body: dict[str, object] = {
            "status": "OK",
            "request_id": f"tickers-{offset}",
            "count": len(page),
            "results": [
                {
                    "ticker": t,
                    "name": f"{t} Inc.",
                    "market": "stocks",
                    "locale": "us",
                    "primary_exchange": "XNYS",
                    "type": "CS",
                    "active": True,
                    "currency_name": "usd",
                    "last_updated_utc": "2024-01-02T00:00:00Z",
                }
                for t in page
            ],
        }
        if offset + self.listing_page_size < len(COMMON_STOCKS):
            # Polygon's next_url always names its own host, whatever base URL the client used
            body["next_url"] = f"https://api.polygon.io/v3/reference/tickers?cursor={offset + self.listing_page_size}"
        return httpx.Response(200, json=body)

    def _details(self, request: httpx.Request, ticker: str) -> httpx.Response:
        fault = self._fault(request, "details", ticker)
        if fault is not None:
            return fault
        company = COMPANIES.get(ticker)
        if company is None:
            return httpx.Response(404, json={"status": "NOT_FOUND", "request_id": "d", "message": "Ticker not found."})
        sic_code, sic_description, shares = company
        results = {
            "ticker": ticker,
            "name": f"{ticker} Corporation",
            "market": "stocks",
            "locale": "us",
            "type": "CS",
            "active": True,
            "currency_name": "usd",
            "market_cap": 1.0e9,
            "sic_code": sic_code,
            "sic_description": sic_description,
            "list_date": "1990-05-01",
            "round_lot": 100,
            "share_class_shares_outstanding": shares // 2,
            "weighted_shares_outstanding": shares,
        }
        return httpx.Response(200, json={"status": "OK", "request_id": "d", "results": results})


def source_for(
    warehouse: Warehouse, clock: VirtualClock | None = None, *, today: dt.date = dt.date(2024, 6, 3), **options
) -> PolygonSource:
    clock = clock or VirtualClock()
    options.setdefault("calls_per_minute", 0)
    return PolygonSource(
        "test-key",
        warehouse,
        base_url=BASE,
        clock=clock,
        sleep=clock.sleep,
        jitter=lambda: 0.5,
        today=lambda: today,
        **options,
    )


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse")


@pytest.fixture(params=["local", "object-store"])
def any_warehouse(request, tmp_path) -> Warehouse:
    """A local warehouse and one on fsspec's in-memory object store, for what must work on both."""
    if request.param == "local":
        return Warehouse(tmp_path / "warehouse")
    return Warehouse(f"memory://polygon-{uuid.uuid4().hex}/warehouse")


def expected_bars(fake: FakePolygon, sessions: list[dt.date], symbols: list[str] = TRADED) -> pl.DataFrame:
    names = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume", "vw": "vwap"}
    rows = [
        {
            "symbol": symbol,
            "date": session,
            "trades": 1_000 + len(symbol),
            **{name: fake.adjusted_bar(symbol, session)[key] for key, name in names.items()},
        }
        for session in sessions
        for symbol in sorted(symbols)
    ]
    frame = pl.DataFrame(rows)
    return schema.conform(frame, schema.BARS, "expected")


# ---------------------------------------------------------------------------- bars


def test_one_year_backfill_is_one_call_per_session_and_reruns_are_free(warehouse):
    fake = FakePolygon()
    source = source_for(warehouse)
    with fake.mock():
        bars = source.bars(dt.date(2024, 1, 1), dt.date(2024, 12, 31))
        sessions = calendar.sessions_between(dt.date(2024, 1, 1), dt.date(2024, 12, 31))
        assert len(sessions) == 252
        assert source.stats.api_calls <= 260
        assert (fake.count("grouped"), fake.count("splits"), source.stats.api_calls) == (252, 1, 253)
        requested = {r.url.path.rsplit("/", 1)[1] for r in fake.requests if r.url.path.startswith("/v2/aggs/grouped/")}
        assert "2024-07-04" not in requested and "2024-12-25" not in requested
        assert bars.height == 252 * len(TRADED)
        assert bars.equals(expected_bars(fake, sessions))

        again = source.bars(dt.date(2024, 3, 1), dt.date(2024, 3, 28))
    assert source.stats.api_calls == 253, "a second request inside the process is served from its cache"
    assert source.stats.cache_hits >= 20
    assert again.equals(bars.filter(pl.col("date").is_between(dt.date(2024, 3, 1), dt.date(2024, 3, 28))))


@pytest.mark.parametrize("volatility_index", [False, True], ids=["default", "with-vix"])
def test_a_daily_update_makes_two_calls(warehouse, volatility_index):
    """Everything the daily run asks the source for a new session — bars, index bars, the screened
    universe — costs the grouped call and the splits call; `I:VIX` is the one opt-in extra."""
    fake = FakePolygon()
    week = calendar.sessions_between(dt.date(2024, 4, 1), dt.date(2024, 4, 5))
    session = dt.date(2024, 4, 8)
    with fake.mock():
        backfill = source_for(warehouse, volatility_index=volatility_index)
        store(warehouse, backfill.bars(week[0], week[-1]), backfill.index_bars(week[0], week[-1]))
        backfill.reference(week[-1])
        daily = source_for(warehouse, volatility_index=volatility_index)  # the next day's run, in a new process
        bars = daily.bars(session, session)
        index = daily.index_bars(session, session)
        reference = daily.reference(session)
    assert daily.stats.api_calls == (3 if volatility_index else 2)
    assert (fake.count("grouped"), fake.count("splits")) == (6, 2)
    assert bars.height == len(TRADED) and reference.height > 0
    assert index.get_column("symbol").to_list() == (
        [INDEX_SYMBOL, VOLATILITY_SYMBOL] if volatility_index else [INDEX_SYMBOL]
    )


def test_sessions_come_from_new_york_stamps_and_requests_carry_a_bearer_key(warehouse):
    fake = FakePolygon()
    source = source_for(warehouse)
    winter, summer = dt.date(2024, 1, 2), dt.date(2024, 7, 5)  # 16:00 New York is 21:00 / 20:00 UTC
    with fake.mock():
        grouped = source.bars(winter, winter).vstack(source.bars(summer, summer))
        per_ticker = source.ticker_bars(["AAPL"], dt.date(2024, 3, 8), dt.date(2024, 3, 12))  # spans the DST change
    assert grouped.get_column("date").unique().sort().to_list() == [winter, summer]
    assert per_ticker.get_column("date").to_list() == [dt.date(2024, 3, 8), dt.date(2024, 3, 11), dt.date(2024, 3, 12)]
    assert all(r.headers["Authorization"] == "Bearer test-key" for r in fake.requests)
    assert all("apiKey" not in r.url.params for r in fake.requests)


def test_targeted_repair_uses_per_ticker_ranges(warehouse):
    fake = FakePolygon()
    source = source_for(warehouse)
    start, end = dt.date(2024, 2, 1), dt.date(2024, 2, 29)
    with fake.mock():
        repaired = source.bars(start, end, symbols=["XOM"])
    sessions = calendar.sessions_between(start, end)
    assert (fake.count("ticker"), fake.count("grouped")) == (1, 0)
    assert repaired.equals(expected_bars(fake, sessions, ["XOM"]))


def test_an_empty_response_for_a_session_gives_no_rows_and_is_asked_again(warehouse, caplog):
    fake = FakePolygon()
    fake.empty_sessions.add(dt.date(2024, 5, 14))
    source = source_for(warehouse)
    with fake.mock():
        first = source.bars(dt.date(2024, 5, 13), dt.date(2024, 5, 15))
        fake.empty_sessions.clear()
        second = source.bars(dt.date(2024, 5, 13), dt.date(2024, 5, 15))
    assert first.get_column("date").unique().sort().to_list() == [dt.date(2024, 5, 13), dt.date(2024, 5, 15)]
    assert "returned no bars" in caplog.text
    assert second.get_column("date").n_unique() == 3
    assert fake.count("grouped") == 4, "only the empty session is fetched again"


def test_requests_run_at_most_concurrency_at_once(warehouse):
    fake, in_flight = FakePolygon(), {"now": 0, "most": 0}

    async def slow_grouped(request: httpx.Request, day: str) -> httpx.Response:
        in_flight["now"] += 1
        in_flight["most"] = max(in_flight["most"], in_flight["now"])
        for _ in range(5):  # yield to the loop so other requests could start if allowed
            await asyncio.sleep(0)
        in_flight["now"] -= 1
        return fake._grouped(request, day)

    router = fake.mock()
    router.get(path__regex=GROUPED).mock(side_effect=slow_grouped)
    with router:
        bars = source_for(warehouse, concurrency=3).bars(dt.date(2024, 4, 1), dt.date(2024, 4, 12))
    assert in_flight["most"] == 3
    assert bars.get_column("date").n_unique() == 10


def test_works_when_called_inside_a_running_event_loop(warehouse):
    async def notebook_cell() -> pl.DataFrame:
        return source_for(warehouse).bars(dt.date(2024, 4, 1), dt.date(2024, 4, 2))

    with FakePolygon().mock():
        bars = asyncio.run(notebook_cell())
    assert bars.height == 2 * len(TRADED)


# ---------------------------------------------------------------------------- faults


def retry_cases() -> list[tuple[str, object]]:
    return [
        ("429 with Retry-After", httpx.Response(429, headers={"Retry-After": "7"}, json={"status": "ERROR"})),
        ("429 without Retry-After", httpx.Response(429, json={"status": "ERROR", "message": "too many"})),
        ("500", httpx.Response(500, text="internal error")),
        ("502", httpx.Response(502, text="<html>bad gateway</html>")),
        ("503", httpx.Response(503, json={"status": "ERROR"})),
        ("read timeout", httpx.ReadTimeout("timed out")),
        ("connect timeout", httpx.ConnectTimeout("timed out")),
        ("malformed JSON", httpx.Response(200, text='{"results": [{"T": "AAPL", "o": 1')),
    ]


@pytest.mark.parametrize(("label", "fault"), retry_cases(), ids=[label for label, _ in retry_cases()])
def test_transient_faults_are_retried_and_lose_no_rows(warehouse, label, fault):
    start, end = dt.date(2024, 4, 1), dt.date(2024, 4, 5)
    with FakePolygon().mock():
        clean = source_for(Warehouse(warehouse.root / "clean")).bars(start, end)

    fake, clock = FakePolygon(), VirtualClock()
    fake.faults[("grouped", "2024-04-03")].extend([fault, fault])
    source = source_for(warehouse, clock)
    with fake.mock():
        bars = source.bars(start, end)
    assert bars.equals(clean)
    assert fake.count("grouped") == 5 + 2
    assert source.stats.api_calls == 1 + 5 + 2
    if label == "429 with Retry-After":
        assert clock.now - 1_000.0 >= 14.0, "each Retry-After of 7 s held the limiter back"
    else:
        assert clock.sleeps == [0.5, 1.0], "full-jitter backoff: half of 1 s, then half of 2 s"


def test_the_last_failure_names_the_endpoint_and_date_and_nothing_is_written(warehouse):
    fake = FakePolygon()
    fake.always_failing.add(("grouped", "2024-04-03"))
    source = source_for(warehouse, retry=RetryPolicy(attempts=4))
    with fake.mock(), pytest.raises(DataSourceError) as raised:
        source.bars(dt.date(2024, 4, 1), dt.date(2024, 4, 5))
    message = str(raised.value)
    assert "grouped daily bars for 2024-04-03" in message
    assert "/v2/aggs/grouped/locale/us/market/stocks/2024-04-03" in message
    assert "after 4 attempts" in message and "HTTP 503" in message
    assert warehouse.sessions("bars") == []
    assert fake.count("grouped") - 4 <= 4, "the other sessions were fetched at most once each"


def test_a_refused_key_fails_at_once_without_retries(warehouse):
    fake = FakePolygon()
    fake.faults[("grouped", None)].append(httpx.Response(401, json={"status": "ERROR", "message": "Unknown API Key"}))
    source = source_for(warehouse)
    with fake.mock(), pytest.raises(NotEntitledError, match="Unknown API Key"):
        source.bars(dt.date(2024, 4, 1), dt.date(2024, 4, 1))
    assert fake.count("grouped") == 1


def test_a_failed_backfill_run_writes_no_partition_and_a_rerun_completes(tmp_path, monkeypatch):
    """Through the real `price_bars` asset: a session failing after every retry fails the run before any
    partition is written; the rerun (in the same process, so the sessions already fetched are cached)
    writes them all."""
    from technic_pipelines.definitions import BARS_BACKFILL_JOB, defs

    root = tmp_path / "warehouse"
    fake = FakePolygon()
    fake.always_failing.add(("grouped", "2024-04-04"))
    clock = VirtualClock()
    monkeypatch.setitem(SOURCE_FACTORIES, "polygon", lambda settings: source_for(Warehouse(settings.warehouse), clock))
    monkeypatch.setenv("TECHNIC_SOURCE", "polygon")
    monkeypatch.setenv("TECHNIC_WAREHOUSE", str(root))
    tags = {PARTITION_RANGE_START_TAG: "2024-04-01", PARTITION_RANGE_END_TAG: "2024-04-05"}
    job = defs.resolve_job_def(BARS_BACKFILL_JOB)
    with fake.mock():
        failed = job.execute_in_process(instance=DagsterInstance.ephemeral(), tags=tags, raise_on_error=False)
        assert not failed.success
        assert Warehouse(root).sessions("bars") == [] and Warehouse(root).sessions("index_bars") == []
        fake.always_failing.clear()
        grouped_before = fake.count("grouped")
        rerun = job.execute_in_process(instance=DagsterInstance.ephemeral(), tags=tags, raise_on_error=False)
    assert rerun.success
    assert fake.count("grouped") - grouped_before == 1, "only the failed session is fetched again"
    assert Warehouse(root).sessions("bars") == calendar.sessions_between(dt.date(2024, 4, 1), dt.date(2024, 4, 5))
    metadata = rerun.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["source"].value == "polygon" and metadata["api_calls"].value > 0


def test_a_retry_warning_reaches_the_event_log_of_the_run_it_happened_in(tmp_path, monkeypatch):
    """With the project's instance config (managed Python loggers), the client's retry warning is an event of
    the Dagster run, so the UI shows it in that run's log."""
    from dagster import DagsterInstance

    from technic_pipelines import cli
    from technic_pipelines.definitions import BARS_BACKFILL_JOB, defs

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    cli._ensure_dagster_home()
    root = tmp_path / "warehouse"
    fake = FakePolygon()
    fake.faults[("grouped", "2024-04-03")].append(httpx.Response(503, json={"status": "ERROR"}))
    monkeypatch.setitem(SOURCE_FACTORIES, "polygon", lambda settings: source_for(Warehouse(settings.warehouse)))
    monkeypatch.setenv("TECHNIC_SOURCE", "polygon")
    monkeypatch.setenv("TECHNIC_WAREHOUSE", str(root))
    tags = {PARTITION_RANGE_START_TAG: "2024-04-01", PARTITION_RANGE_END_TAG: "2024-04-05"}
    with DagsterInstance.get() as instance, fake.mock():
        result = defs.resolve_job_def(BARS_BACKFILL_JOB).execute_in_process(instance=instance, tags=tags)
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert result.success
    retries = [message for message in messages if "polygon retry" in message]
    assert len(retries) == 1 and "2024-04-03" in retries[0] and "attempt=1/" in retries[0]


# ---------------------------------------------------------------------------- limiter and Retry-After


def test_token_bucket_spaces_calls_and_honours_pauses():
    clock = VirtualClock()
    free_tier = TokenBucket(5, clock=clock, sleep=clock.sleep)
    assert [free_tier.reserve() for _ in range(3)] == [0.0, 12.0, 24.0]

    clock = VirtualClock()
    bursty = TokenBucket(60, burst=3, clock=clock, sleep=clock.sleep)
    assert [bursty.reserve() for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]

    clock = VirtualClock()
    unlimited = TokenBucket(0, clock=clock, sleep=clock.sleep)
    assert [unlimited.reserve() for _ in range(100)] == [0.0] * 100
    unlimited.pause(30)
    assert unlimited.reserve() == 30.0

    with pytest.raises(ConfigError):
        TokenBucket(-1)


def test_retry_after_accepts_seconds_and_http_dates_and_clips():
    now = dt.datetime(2024, 4, 1, 12, 0, tzinfo=dt.UTC)

    def response(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert retry_after_seconds(response("12")) == 12.0
    in_90_s = email.utils.format_datetime(now + dt.timedelta(seconds=90))
    assert retry_after_seconds(response(in_90_s), lambda: now) == 90.0
    assert retry_after_seconds(response("-3")) == 0.0
    assert retry_after_seconds(response("86400")) == 600.0
    assert retry_after_seconds(response("soon")) is None
    assert retry_after_seconds(httpx.Response(429)) is None


def test_the_rate_limit_spaces_real_requests_on_the_clock(warehouse):
    clock = VirtualClock()
    source = source_for(warehouse, clock, calls_per_minute=5)
    with FakePolygon().mock():
        source.bars(dt.date(2024, 4, 1), dt.date(2024, 4, 3))
    assert source.stats.api_calls == 4
    assert clock.now - 1_000.0 == pytest.approx(36.0), "4 calls at 5 a minute: the last starts 36 s after the first"


# ---------------------------------------------------------------------------- splits


APPLE_SPLIT = {"ticker": "AAPL", "execution_date": "2024-02-15", "split_from": 1, "split_to": 4}
XOM_REVERSE = {"ticker": "XOM", "execution_date": "2024-02-20", "split_from": 2, "split_to": 1}


def test_bars_are_adjusted_locally_for_splits_inside_the_range(warehouse):
    fake = FakePolygon(splits=[APPLE_SPLIT, XOM_REVERSE])
    source = source_for(warehouse)
    sessions = calendar.sessions_between(dt.date(2024, 2, 12), dt.date(2024, 2, 23))
    with fake.mock():
        bars = source.bars(sessions[0], sessions[-1])
    assert bars.equals(expected_bars(fake, sessions))
    raw_close = fake.raw_bar("AAPL", dt.date(2024, 2, 14), 16)["c"]
    adjusted_close = bars.filter((pl.col("symbol") == "AAPL") & (pl.col("date") == dt.date(2024, 2, 14)))["close"][0]
    assert adjusted_close == pytest.approx(raw_close / 4)


def store(warehouse: Warehouse, bars: pl.DataFrame, index: pl.DataFrame) -> None:
    """What the price_bars asset does with a source's output."""
    for (session,), frame in bars.partition_by("date", as_dict=True).items():
        warehouse.write_partition("index_bars", session, index.filter(pl.col("date") == session))
        warehouse.write_partition("bars", session, frame)


def test_a_split_learned_later_restates_stored_partitions_once(any_warehouse, monkeypatch):
    warehouse = any_warehouse
    fake = FakePolygon(splits=[APPLE_SPLIT])
    january = calendar.sessions_between(dt.date(2024, 1, 22), dt.date(2024, 2, 9))
    with fake.mock():
        first = source_for(warehouse)
        store(warehouse, first.bars(january[0], january[-1]), first.index_bars(january[0], january[-1]))
        assert warehouse.read("bars").filter(pl.col("symbol") == "AAPL")["close"][0] == pytest.approx(
            4 * fake.adjusted_bar("AAPL", january[0])["c"]
        ), "before the split is known, stored bars are in the old share basis"

        # a run dies after restating one partition: the journal still lists the restatement
        writes = []
        real_write = Warehouse.write_partition

        def dying_write(self, dataset, session, frame):
            if dataset == "bars" and len(writes) == 1:
                raise OSError("killed")
            writes.append(session)
            return real_write(self, dataset, session, frame)

        monkeypatch.setattr(Warehouse, "write_partition", dying_write)
        with pytest.raises(OSError, match="killed"):
            source_for(warehouse).bars(dt.date(2024, 2, 12), dt.date(2024, 2, 23))
        monkeypatch.setattr(Warehouse, "write_partition", real_write)
        pending = json.loads((warehouse.root / JOURNAL_PATH).read_text())["restatements"]
        assert len(pending) == 1 and pending[0]["splits"] == [["AAPL", "2024-02-15", 1.0, 4.0]]

        resumed = source_for(warehouse)
        february = resumed.bars(dt.date(2024, 2, 12), dt.date(2024, 2, 23))
        rematerialized = source_for(warehouse).bars(january[0], january[-1])

    stored = warehouse.read("bars", january[0], january[-1])
    assert stored.equals(expected_bars(fake, january)), "every stored session restated exactly once"
    assert stored.equals(rematerialized), "re-materializing a restated session gives the same data"
    assert february.equals(expected_bars(fake, calendar.sessions_between(dt.date(2024, 2, 12), dt.date(2024, 2, 23))))
    journal = json.loads((warehouse.root / JOURNAL_PATH).read_text())
    assert journal["restatements"] == [] and journal["covered_through"] == "2024-02-23"


# ---------------------------------------------------------------------------- index, earnings


def test_index_bars_take_spy_from_grouped_bars_and_vix_from_the_indices_endpoint(warehouse):
    fake = FakePolygon()
    source = source_for(warehouse, volatility_index=True)
    start, end = dt.date(2024, 4, 1), dt.date(2024, 4, 5)
    with fake.mock():
        source.bars(start, end)
        index = source.index_bars(start, end)
        source.index_bars(start, end)
    assert (fake.count("grouped"), fake.count("ticker")) == (5, 1), "SPY from the cache, I:VIX once"
    assert index.filter(pl.col("symbol") == INDEX_SYMBOL).height == 5
    vix = index.filter(pl.col("symbol") == VOLATILITY_SYMBOL)
    assert vix.height == 5 and vix["volume"].to_list() == [0.0] * 5 and vix["vwap"].null_count() == 5
    assert vix.filter(pl.col("date") == dt.date(2024, 4, 2))["close"][0] == 15.0 + dt.date(2024, 4, 2).toordinal() % 5


def test_without_index_access_vix_is_skipped_with_one_warning(warehouse, caplog):
    fake = FakePolygon(vix_entitled=False)
    source = source_for(warehouse, volatility_index=True)
    with fake.mock(), caplog.at_level(logging.WARNING):
        first = source.index_bars(dt.date(2024, 4, 1), dt.date(2024, 4, 5))
        second = source.index_bars(dt.date(2024, 4, 8), dt.date(2024, 4, 9))
    assert first.get_column("symbol").unique().to_list() == [INDEX_SYMBOL] and first.height == 5
    assert second.height == 2
    vix_requests = [r for r in fake.requests if "I:VIX" in r.url.path]
    assert len(vix_requests) == 1, "a refused plan is not asked again"
    assert caplog.text.count("volatility index unavailable") == 1


def test_the_volatility_index_is_not_asked_for_unless_switched_on(warehouse):
    fake = FakePolygon()
    with fake.mock():
        index = source_for(warehouse).index_bars(dt.date(2024, 4, 1), dt.date(2024, 4, 5))
    assert index.get_column("symbol").unique().to_list() == [INDEX_SYMBOL]
    assert not [r for r in fake.requests if "I:VIX" in r.url.path]


def test_earnings_are_empty_with_the_earnings_schema(warehouse):
    frame = source_for(warehouse).earnings(dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    assert frame.is_empty() and frame.schema == pl.Schema(schema.EARNINGS)


# ---------------------------------------------------------------------------- reference data


def test_reference_follows_next_url_maps_sectors_and_caches_in_the_warehouse(warehouse):
    fake = FakePolygon(listing_page_size=2)
    session = dt.date(2024, 4, 3)
    with fake.mock():
        source = source_for(warehouse)
        store(warehouse, source.bars(session, session), schema.empty(schema.BARS))
        reference = source.reference(session)
        calls_after_first = source.stats.api_calls

        again = source_for(warehouse).reference(session)  # a new process: answered from the warehouse
        later = source_for(warehouse).reference(dt.date(2024, 4, 24))  # 21 days on: the snapshot is reused
    assert fake.count("tickers") == 3, "five common stocks in pages of two, following next_url"
    assert all(r.url.host == "polygon.test" for r in fake.requests), "next_url re-rooted to the base URL"
    assert fake.count("details") == 5
    assert calls_after_first == 1 + 3 + 5, "grouped, three list pages, five details (no split can matter yet)"
    assert source.stats.api_calls == calls_after_first and fake.count("tickers") == 3 and fake.count("details") == 5
    assert reference.equals(again) and later.get_column("symbol").to_list() == COMMON_STOCKS

    rows = {row["symbol"]: row for row in reference.iter_rows(named=True)}
    assert reference.get_column("symbol").to_list() == sorted(COMMON_STOCKS) and INDEX_SYMBOL not in rows
    assert rows["AAPL"]["sector"] == "Information Technology" and rows["AAPL"]["industry"] == "Electronic Computers"
    assert [rows[s]["sector"] for s in ("JNJ", "O", "XOM")] == ["Health Care", "Real Estate", "Energy"]
    assert rows["AAPL"]["market_cap"] == pytest.approx(15e9 * fake.adjusted_bar("AAPL", session)["c"])
    assert rows["AAPL"]["name"] == "AAPL Corporation" and rows["AAPL"]["list_date"] == dt.date(1990, 5, 1)
    assert rows["ZZZQ"]["sector"] is None and rows["ZZZQ"]["name"] == "ZZZQ Inc.", "a 404 keeps the listing's name"
    assert warehouse.sessions("ticker_listings") == [session]
    assert warehouse.read("ticker_details").height == 5


def test_stale_reference_data_is_refetched(warehouse):
    fake = FakePolygon(listing_page_size=10)
    with fake.mock():
        source_for(warehouse, today=dt.date(2024, 1, 10)).reference(dt.date(2024, 1, 10))
        source_for(warehouse, today=dt.date(2024, 3, 1)).reference(dt.date(2024, 3, 1))
        assert (fake.count("tickers"), fake.count("details")) == (2, 5), "a list older than 28 days is refetched"
        source_for(warehouse, today=dt.date(2024, 4, 15)).reference(dt.date(2024, 3, 4))
        assert (fake.count("tickers"), fake.count("details")) == (2, 10), "details older than 90 days are refetched"
    assert warehouse.sessions("ticker_listings") == [dt.date(2024, 1, 10), dt.date(2024, 3, 1)]


def test_the_details_budget_goes_to_the_most_liquid_names_first(warehouse):
    fake = FakePolygon(listing_page_size=10)
    session = dt.date(2024, 4, 3)
    with fake.mock():
        source = source_for(warehouse, details_per_run=2)
        source.bars(session, session)
        first = source.reference(session)
        fetched_first = [
            r.url.path.rsplit("/", 1)[1] for r in fake.requests if r.url.path.startswith("/v3/reference/tickers/")
        ]
        second = source_for(warehouse, details_per_run=10).reference(session)
    assert sorted(fetched_first) == ["XOM", "ZZZQ"], "highest close × volume first"
    assert first.filter(pl.col("sector").is_not_null()).get_column("symbol").to_list() == ["XOM"]
    assert second.filter(pl.col("sector").is_null()).get_column("symbol").to_list() == ["ZZZQ"]
    assert fake.count("details") == 5


def test_default_details_budget_is_ten_minutes_of_the_rate_limit(warehouse):
    assert source_for(warehouse, calls_per_minute=5).details_budget == 50
    assert source_for(warehouse, calls_per_minute=0).details_budget == float("inf")
    assert source_for(warehouse, calls_per_minute=5, details_per_run=0).details_budget == 0


@pytest.mark.parametrize(
    ("code", "sector"),
    [
        ("3571", "Information Technology"),
        ("3674", "Information Technology"),
        ("7372", "Information Technology"),
        ("2834", "Health Care"),
        ("3841", "Health Care"),
        ("6022", "Financials"),
        ("6798", "Real Estate"),
        ("4911", "Utilities"),
        ("4813", "Communication Services"),
        ("1311", "Energy"),
        ("5411", "Consumer Staples"),
        ("5812", "Consumer Discretionary"),
        ("3711", "Consumer Discretionary"),
        ("3721", "Industrials"),
        ("1000", "Materials"),
        ("9995", None),
        (None, None),
        ("n/a", None),
    ],
)
def test_sic_codes_map_to_gics_sectors(code, sector):
    assert sector_for_sic(code) == sector


# ---------------------------------------------------------------------------- selection


def test_make_source_builds_polygon_from_settings(tmp_path):
    with pytest.raises(ConfigError, match="POLYGON_API_KEY"):
        make_source(Settings(source="polygon", warehouse=tmp_path))
    env = {
        "TECHNIC_SOURCE": "polygon",
        "POLYGON_API_KEY": "pk-secret-4711",
        "POLYGON_BASE_URL": "http://127.0.0.1:9",
        "POLYGON_CALLS_PER_MINUTE": "0",
        "TECHNIC_WAREHOUSE": str(tmp_path),
    }
    source = make_source(Settings.from_env(env))
    assert isinstance(source, PolygonSource) and isinstance(source, MarketDataSource)
    assert source.base_url == "http://127.0.0.1:9" and source.limiter.interval == 0.0
    assert source.warehouse.root == tmp_path
    assert "pk-secret-4711" not in repr(Settings.from_env(env))
