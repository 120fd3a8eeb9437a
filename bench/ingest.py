"""Ingest: a one-year backfill the grouped way (one call per session) against the per-symbol way (one call
per symbol, the predecessor's), in the same run, against the same local Polygon-compatible server.

The server runs in its own process on loopback and answers Polygon's grouped-daily, per-ticker range and
splits endpoints with a deterministic market (`--symbols` × `--sessions` + one more session for the daily
update), adding `--latency-ms` to every response and answering every `--throttle-every`-th request with a
429 (every other one with `Retry-After: 1`, the rest without, so both retry paths run). A few symbols split
during the year, so both ways exercise the local split adjustment.

Both ways use `PolygonSource` with the same concurrency and no client-side rate limit (the server's 429s are
the limit), and must return identical frames with every row: "zero rows lost under injected faults". After
the grouped backfill is stored like the pipeline stores it, a new source makes the next day's update and its
calls are counted. Figures go to bench/results/ingest.json: `calls_grouped`, `calls_per_symbol`,
`seconds_grouped`, `seconds_per_symbol`, `ratio` (grouped seconds / per-symbol seconds; < 1 means the grouped
way is faster), plus the settings and checks behind them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import multiprocessing
import re
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from technic_core import calendar
from technic_core.sources.polygon import PolygonSource
from technic_core.warehouse import Warehouse

RESULTS = Path(__file__).parent / "results" / "ingest.json"
BENCH_START = dt.date(2025, 1, 2)
API_KEY = "bench-key"
NEW_YORK = ZoneInfo("America/New_York")
SPLIT_SYMBOLS = 10  # symbols that split during the year (alternately 2-for-1 and 1-for-4 reverse)
_GROUPED = re.compile(r"^/v2/aggs/grouped/locale/us/market/stocks/(\d{4}-\d{2}-\d{2})$")
_RANGE = re.compile(r"^/v2/aggs/ticker/([^/]+)/range/1/day/(\d{4}-\d{2}-\d{2})/(\d{4}-\d{2}-\d{2})$")


def tickers(count: int) -> list[str]:
    """Distinct 4-letter tickers, deterministic."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return ["".join(letters[(i // 26**k) % 26] for k in (3, 2, 1, 0)) for i in range(count)]


class Market:
    """Raw (unadjusted) daily bars of `symbols` over `sessions`, as Polygon's adjusted=false serves them."""

    def __init__(self, symbols: int, sessions: list[dt.date]) -> None:
        rng = np.random.default_rng(2025)
        self.symbols = tickers(symbols)
        self.sessions = sessions
        self.session_index = {s: i for i, s in enumerate(sessions)}
        returns = rng.normal(0.0003, 0.02, size=(len(sessions), symbols))
        close = np.round(rng.lognormal(3.3, 0.8, size=symbols) * np.exp(np.cumsum(returns, axis=0)), 2)
        factor = np.ones_like(close)  # raw = adjusted / (product of later splits' price factors)
        self.splits = []
        for n, column in enumerate(rng.choice(symbols, SPLIT_SYMBOLS, replace=False)):
            row = int(rng.integers(20, len(sessions) - 20))
            split_from, split_to = (1, 2) if n % 2 == 0 else (4, 1)
            self.splits.append(
                {
                    "ticker": self.symbols[column],
                    "execution_date": sessions[row].isoformat(),
                    "split_from": split_from,
                    "split_to": split_to,
                    "id": f"S{n}",
                }
            )
            factor[:row, column] *= split_from / split_to
        self.close = close / factor
        self.open = np.round(close * (1 + rng.normal(0, 0.005, close.shape)), 2) / factor
        self.high = np.maximum(self.open, self.close) * 1.01
        self.low = np.minimum(self.open, self.close) * 0.99
        self.volume = np.round(rng.lognormal(13, 1, close.shape)) * factor
        self.trades = (self.volume / 100).astype(np.int64) + 1
        self.grouped_stamp = [_ms(s, 16) for s in sessions]
        self.daily_stamp = [_ms(s, 0) for s in sessions]

    def bar(self, row: int, column: int, stamp: int) -> dict[str, object]:
        close = float(self.close[row, column])
        return {
            "v": float(self.volume[row, column]),
            "vw": round((close + float(self.open[row, column])) / 2, 4),
            "o": float(self.open[row, column]),
            "c": close,
            "h": float(self.high[row, column]),
            "l": float(self.low[row, column]),
            "t": stamp,
            "n": int(self.trades[row, column]),
        }


def _ms(session: dt.date, hour: int) -> int:
    return int(dt.datetime.combine(session, dt.time(hour), NEW_YORK).timestamp() * 1000)


def serve(market_args: tuple[int, list[dt.date]], latency_s: float, throttle_every: int, port_out, throttled) -> None:
    """Run the Polygon-compatible server forever (in its own process); report the port through `port_out`."""
    market = Market(*market_args)
    column_of = {symbol: i for i, symbol in enumerate(market.symbols)}
    counter = {"requests": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # the benchmark prints its own summary
            return

        def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            time.sleep(latency_s)
            with lock:
                counter["requests"] += 1
                number = counter["requests"]
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                self._send(401, {"status": "ERROR", "message": "Unknown API Key"})
                return
            if number % throttle_every == 0:
                with throttled.get_lock():
                    throttled.value += 1
                retry = {"Retry-After": "1"} if (number // throttle_every) % 2 else {}
                self._send(429, {"status": "ERROR", "message": "You've exceeded the maximum requests"}, retry)
                return
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if grouped := _GROUPED.match(url.path):
                row = market.session_index.get(dt.date.fromisoformat(grouped[1]))
                results = (
                    []
                    if row is None
                    else [
                        {"T": symbol, **market.bar(row, column, market.grouped_stamp[row])}
                        for column, symbol in enumerate(market.symbols)
                    ]
                )
                self._send(
                    200,
                    {
                        "adjusted": False,
                        "queryCount": len(results),
                        "resultsCount": len(results),
                        "status": "OK",
                        "request_id": "g",
                        "results": results,
                    },
                )
            elif ranged := _RANGE.match(url.path):
                column = column_of.get(ranged[1])
                first, last = dt.date.fromisoformat(ranged[2]), dt.date.fromisoformat(ranged[3])
                rows = [r for s, r in market.session_index.items() if first <= s <= last] if column is not None else []
                results = [market.bar(r, column, market.daily_stamp[r]) for r in rows]
                self._send(
                    200,
                    {
                        "ticker": ranged[1],
                        "adjusted": False,
                        "queryCount": len(results),
                        "resultsCount": len(results),
                        "status": "OK",
                        "request_id": "r",
                        "results": results,
                    },
                )
            elif url.path == "/v3/reference/splits":
                low, high = query["execution_date.gte"], query["execution_date.lte"]
                results = [s for s in market.splits if low <= s["execution_date"] <= high]
                self._send(200, {"status": "OK", "request_id": "s", "results": results})
            else:
                self._send(404, {"status": "NOT_FOUND", "message": f"no route {url.path}"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_out.send(server.server_address[1])
    server.serve_forever()


def backfill(way: str, base_url: str, root: Path, symbols: list[str], sessions: list[dt.date], concurrency: int):
    """One backfill with a fresh source (empty caches); returns (bars, calls, seconds)."""
    source = PolygonSource(API_KEY, Warehouse(root), base_url=base_url, calls_per_minute=0, concurrency=concurrency)
    started = time.perf_counter()
    if way == "grouped":
        bars = source.bars(sessions[0], sessions[-1])
    else:
        bars = source.ticker_bars(symbols, sessions[0], sessions[-1])
    return bars.sort("date", "symbol"), source.stats.api_calls, time.perf_counter() - started


def daily_update_calls(base_url: str, root: Path, bars: pl.DataFrame, session: dt.date) -> tuple[int, int]:
    """Store the backfill as price_bars does, then count the calls (and rows) of the next session's update:
    its bars and index bars, as the price_bars asset asks for them."""
    store = Warehouse(root)
    for (day,), frame in bars.partition_by("date", as_dict=True).items():
        store.write_partition("bars", day, frame)
    source = PolygonSource(API_KEY, store, base_url=base_url, calls_per_minute=0)
    update = source.bars(session, session)
    source.index_bars(session, session)
    return source.stats.api_calls, update.height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5_000)
    parser.add_argument("--sessions", type=int, default=252)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--throttle-every", type=int, default=100, help="every n-th request gets a 429")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # each retry logs a warning; the summary counts the 429s instead

    all_sessions = calendar.sessions_between(BENCH_START, calendar.last_known_session())[: args.sessions + 1]
    sessions, next_session = all_sessions[:-1], all_sessions[-1]
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    throttled = context.Value("i", 0)
    server = context.Process(
        target=serve,
        args=((args.symbols, all_sessions), args.latency_ms / 1000, args.throttle_every, send, throttled),
        daemon=True,
    )
    server.start()
    try:
        base_url = f"http://127.0.0.1:{receive.recv()}"
        symbols = tickers(args.symbols)
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            grouped, calls_grouped, seconds_grouped = backfill(
                "grouped", base_url, root / "grouped", symbols, sessions, args.concurrency
            )
            throttled_grouped = throttled.value
            per_symbol, calls_per_symbol, seconds_per_symbol = backfill(
                "per_symbol", base_url, root / "per_symbol", symbols, sessions, args.concurrency
            )
            throttled_per_symbol = throttled.value - throttled_grouped
            daily_calls, daily_rows = daily_update_calls(base_url, root / "grouped", grouped, next_session)
    finally:
        server.terminate()
        server.join()

    expected_rows = args.symbols * len(sessions)
    result = {
        "symbols": args.symbols,
        "sessions": len(sessions),
        "first_session": sessions[0].isoformat(),
        "last_session": sessions[-1].isoformat(),
        "latency_ms": args.latency_ms,
        "throttle_every": args.throttle_every,
        "concurrency": args.concurrency,
        "calls_grouped": calls_grouped,
        "calls_per_symbol": calls_per_symbol,
        "seconds_grouped": round(seconds_grouped, 3),
        "seconds_per_symbol": round(seconds_per_symbol, 3),
        "ratio": round(seconds_grouped / seconds_per_symbol, 4),
        "throttled_grouped": throttled_grouped,
        "throttled_per_symbol": throttled_per_symbol,
        "rows_expected": expected_rows,
        "rows_grouped": grouped.height,
        "rows_per_symbol": per_symbol.height,
        "frames_identical": grouped.equals(per_symbol),
        "calls_daily_update": daily_calls,
        "rows_daily_update": daily_rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not (result["frames_identical"] and grouped.height == expected_rows == per_symbol.height):
        raise SystemExit("rows were lost or differ between the two ways")


if __name__ == "__main__":
    main()
