"""Screens over the warehouse: one screen on the latest session, one over a year of history, and
`GET /results/latest?where=…` under 50 concurrent clients.

The warehouse is the simulated market filled by the daily pipeline's own steps
(`technic_core.ml.sandbox.fill_warehouse`: bars, universe, conditions, priority plans, the daily scan's
results in batches of 250, outcomes) over `--sessions` sessions ending at `--end`. Filling a year of 5,000
symbols takes a while; with `--warehouse DIR` the filled warehouse is kept there and reused by later runs
(only when it holds the same market and sessions).

Figures, all from one run (written to `bench/results/screens.json`):

* `latest_screen_ms` — server time of `GET /results/latest?where=SCREEN` over the latest session's 5,000 rows:
  the endpoint's own work (compile the screen — a cache hit after the first request —, select the session's
  rows, screen, order, take the first 100, encode the JSON answer), median of `--repeat` calls in this
  process with the session's rows cached, as a server holds them; also with a screen that reads `prev()`, and
  the first (uncached) call. The pre-screen passes about three in four simulated symbols, so the stored
  session (`latest_stored_rows`) is padded to `--latest-rows` with earlier sessions' rows under other symbols.
* `history_year_s` — one saved screen evaluated over the year of stored results (`GET
  /screens/{name}/history`'s work: `hits_between` over every session's results, ranked per session, with the
  hit rows' default columns): the first request, which reads the columns from the year's files, and
  (`_kept_s`) the median of three more, which find them kept by the server (`api.queries.ResultColumns`); a
  screen with `prev()` (the heavier: it joins each session with the previous one) and one without.
* `p99_ms_50_clients` — latency of `GET /results/latest?where=SCREEN` (100 rows, every column) seen by 50
  concurrent keep-alive clients against a real `technic serve` process (uvicorn, one worker), each sending
  `--requests` requests back to back after a warm-up; the clients run in this process on raw HTTP/1.1, so
  their overhead stays small next to the server's. All clients send the same screen, as viewers of one
  dashboard do: the server answers repeats from its response cache while the session's files are unchanged.
  `_distinct`: the same with a screen of its own per request (a threshold no other request uses), so every
  request is evaluated.

    python bench/screens.py [--symbols 5000] [--sessions 252] [--warehouse DIR] [--clients 50] [--requests 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests.api.support`, shared with the API tests

from api.queries import (
    ResultColumns,
    ResultQueries,
    RowRequest,
    SessionFrames,
    history_hits,
    hit_columns,
    page_response,
    where_screen,
)
from technic_core import calendar
from technic_core.ml.sandbox import fill_warehouse
from technic_core.screens import ScreenLibrary
from technic_core.sources.simulated import SimulatedMarket, SimulationConfig
from technic_core.warehouse import Warehouse
from tests.api.support import serve_process

RESULTS = Path(__file__).parent / "results" / "screens.json"
KEY = "bench-key"
#: What the latest-session and concurrency figures screen with (a typical user screen: three columns).
SCREEN = "rsi < 45 and close > sma_200 and rel_volume > 0.8"
PREV_SCREEN = "close > prev(close) and rsi > prev(rsi)"
#: Saved screens the history figures evaluate: with prev() (joins each session with the one before) and without.
HISTORY_SCREEN = "cross-above-sma-200"
HISTORY_PLAIN_SCREEN = "pullback-sma-50"
TARGETS = {"latest_screen_ms": 20.0, "history_year_s": 1.0, "p99_ms_50_clients": 100.0}

_log = logging.getLogger("bench.screens")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# ------------------------------------------------------------------ warehouse


def filled_warehouse(directory: Path, symbols: int, sessions: list[dt.date]) -> tuple[Warehouse, float | None]:
    """The simulated market's warehouse over `sessions`, reused when `directory` already holds it; the fill
    time (None when reused)."""
    store = Warehouse(directory)
    identity = directory / "simulated_market.txt"
    market_id = f"{SimulationConfig(n_symbols=symbols)!r} sessions={sessions[0]}..{sessions[-1]}"
    if identity.is_file() and identity.read_text() == market_id and store.sessions("results") == sessions:
        _log.info("reusing the filled warehouse %s", directory)
        return store, None
    if store.sessions("results"):
        raise SystemExit(f"{directory} holds another market's or range's warehouse; pass an empty directory")
    started = time.perf_counter()
    fill_warehouse(store, SimulatedMarket(SimulationConfig(n_symbols=symbols)), sessions)
    identity.write_text(market_id)
    return store, time.perf_counter() - started


# ------------------------------------------------------------------ in-process figures


def _handler_ms(queries: ResultQueries, session: dt.date, where: str) -> float:
    """The results endpoint's own work for `?where=`: compile (cached), select, screen, order, page, encode."""
    started = time.perf_counter()
    request = RowRequest(where=where_screen(where))
    page = queries.page(session, request, wire=True)
    page_response({"date": session}, page, "json", "results")
    return (time.perf_counter() - started) * 1000


class _Padded(SessionFrames):
    """The stored sessions, the latest one padded to `rows` rows with earlier sessions' rows under other
    symbols: the pre-screen passes about three in four simulated symbols, the figure is for 5,000 rows."""

    def __init__(self, store: Warehouse, latest: dt.date, rows: int) -> None:
        super().__init__(store)
        self.latest, self.rows = latest, rows
        self._padded: pl.DataFrame | None = None

    def get(self, session: dt.date) -> pl.DataFrame:
        frame = super().get(session)
        if session != self.latest or frame.height >= self.rows:
            return frame
        if self._padded is None:
            extra, day = [], session
            while frame.height + sum(part.height for part in extra) < self.rows:
                day = calendar.previous_session(day)
                earlier = super().get(day)
                extra.append(earlier.with_columns(pl.col("symbol") + f"-{len(extra)}", pl.lit(session).alias("date")))
            padded = pl.concat([frame, *extra]).head(self.rows)
            self._padded = padded.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("seq"))
        return self._padded


def latest_figures(store: Warehouse, repeat: int, rows: int) -> dict[str, object]:
    session = store.sessions("results")[-1]
    queries = ResultQueries(store)
    try:
        first_ms = _handler_ms(queries, session, SCREEN)  # reads the session's files
        stored_rows = queries.frames.get(session).height
        queries.frames = _Padded(store, session, rows)
        _handler_ms(queries, session, SCREEN)  # pads the session's rows
        _handler_ms(queries, session, PREV_SCREEN)  # and the previous session's
        plain = [_handler_ms(queries, session, SCREEN) for _ in range(repeat)]
        previous = [_handler_ms(queries, session, PREV_SCREEN) for _ in range(repeat)]
        screened_rows = queries.frames.get(session).height
        hits = queries.page(session, RowRequest(where=where_screen(SCREEN), limit=None)).total
    finally:
        queries.close()
    return {
        "latest_screen_ms": round(statistics.median(plain), 2),
        "latest_screen_p90_ms": round(_percentile(plain, 0.9), 2),
        "latest_prev_screen_ms": round(statistics.median(previous), 2),
        "latest_first_call_ms": round(first_ms, 1),
        "latest_session": session.isoformat(),
        "latest_rows": screened_rows,
        "latest_stored_rows": stored_rows,
        "latest_hits": hits,
    }


def history_figures(store: Warehouse, sessions: int) -> dict[str, object]:
    """Each history screen over the year: its first request (the server's result columns not yet read) and
    the median of three more (the columns it read kept)."""
    library = ScreenLibrary(store)
    last = store.sessions("results")[-1]
    first = calendar.sessions_back(last, sessions)[0]
    figures: dict[str, object] = {"history_from": first.isoformat(), "history_to": last.isoformat()}
    for key, name in (("history_year", HISTORY_SCREEN), ("history_year_no_prev", HISTORY_PLAIN_SCREEN)):
        saved = library.get(name)
        columns = hit_columns(saved, None)
        kept = ResultColumns(store)
        times, cpu, hits = [], [], 0
        for _ in range(4):
            started, started_cpu = time.perf_counter(), time.process_time()
            hits = history_hits(store, saved, first, last, columns, kept).frame.height
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        figures[f"{key}_s"] = round(times[0], 3)
        figures[f"{key}_kept_s"] = round(statistics.median(times[1:]), 3)
        figures[f"{key}_cpu_s"] = round(cpu[0], 3)  # every thread of this process: the work, whatever the load
        figures[f"{key}_kept_cpu_s"] = round(statistics.median(cpu[1:]), 3)
        figures[f"{key}_hits"] = hits
        figures[f"{key}_screen"] = f"{name}: {saved.expression}"
        figures[f"{key}_columns"] = len(columns)
    return figures


# ------------------------------------------------------------------ the server and its clients


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_until_idle(pid: int, timeout_s: float = 300) -> None:
    """Until the server spends under 5 % of a core (it preloads the ad-hoc scan inputs after start-up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = _cpu_seconds(pid)
        time.sleep(1.0)
        if _cpu_seconds(pid) - before < 0.05:
            return


async def _client(port: int, targets: list[bytes], latencies: list[float]) -> None:
    """One keep-alive HTTP/1.1 client sending a request per target back to back; a request's latency runs from
    its write to the last byte of its body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for target in targets:
            request = b"GET " + target + b" HTTP/1.1\r\nHost: bench\r\nAccept: application/json\r\n\r\n"
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"GET {target.decode()} answered {status}")
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()


def _target(where: str) -> bytes:
    return ("/results/latest?" + urlencode({"where": where})).encode()


async def _load(port: int, targets: list[list[bytes]]) -> tuple[list[float], float]:
    """Every client (one list of targets each) at once; all latencies and the wall time."""
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(_client(port, mine, latencies) for mine in targets))
    return latencies, time.perf_counter() - started


def concurrency_figures(root: Path, clients: int, requests: int) -> dict[str, object]:
    """Two runs of `clients` concurrent clients: all sending the same screen (the server answers repeats from
    its response cache while the session is unchanged), then every request a screen of its own (a threshold
    no other request uses: each is evaluated)."""
    with tempfile.TemporaryDirectory(prefix="technic-screens-server-") as temp:
        return _concurrency_figures(root, Path(temp) / "server.log", clients, requests)


def _concurrency_figures(root: Path, log: Path, clients: int, requests: int) -> dict[str, object]:
    server, port = serve_process(root, log, {"TECHNIC_API_KEYS": KEY})
    figures: dict[str, object] = {}
    try:
        _wait_until_idle(server.pid)
        single, _ = asyncio.run(_load(port, [[_target(SCREEN)] * 50]))  # warm-up: the session's rows, the screen
        distinct = [
            [_target(f"rsi < {30 + (client * requests + i) / 1000} and close > sma_200") for i in range(requests)]
            for client in range(clients)
        ]
        one, _ = asyncio.run(_load(port, [[_target(f"rsi < {20 + i / 1000} and close > sma_200") for i in range(50)]]))
        for suffix, targets in (("", [[_target(SCREEN)] * requests] * clients), ("_distinct", distinct)):
            cpu_before = _cpu_seconds(server.pid)
            latencies, elapsed = asyncio.run(_load(port, targets))
            server_cpu = _cpu_seconds(server.pid) - cpu_before
            figures |= {
                f"p99_ms_50_clients{suffix}": round(_percentile(latencies, 0.99), 1),
                f"p50_ms_50_clients{suffix}": round(statistics.median(latencies), 1),
                f"max_ms_50_clients{suffix}": round(max(latencies), 1),
                f"requests_per_s_50_clients{suffix}": round(len(latencies) / elapsed, 1),
                f"server_cpu_ms_per_request{suffix}": round(server_cpu * 1000 / len(latencies), 2),
            }
    finally:
        server.terminate()
        server.wait(timeout=30)
    return figures | {
        "one_client_http_ms": round(statistics.median(single[10:]), 2),
        "one_client_http_distinct_ms": round(statistics.median(one[10:]), 2),
        "clients": clients,
        "requests_per_client": requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=5_000)
    parser.add_argument("--sessions", type=int, default=252, help="sessions of results (a year: 252)")
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2024, 6, 28))
    parser.add_argument("--warehouse", type=Path, help="keep (and reuse) the filled warehouse here")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=60, help="requests per client")
    parser.add_argument("--repeat", type=int, default=200, help="calls per in-process timing")
    parser.add_argument("--latest-rows", type=int, default=5_000, help="rows of the latest session screened")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    load_before = os.getloadavg()[0]
    sessions = calendar.sessions_back(args.end, args.sessions)
    with contextlib.ExitStack() as stack:
        directory = args.warehouse or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="technic-screens-")))
        directory.mkdir(parents=True, exist_ok=True)
        store, fill_s = filled_warehouse(directory, args.symbols, sessions)
        _log.info("warehouse ready (%s)", "reused" if fill_s is None else f"filled in {fill_s:.0f} s")
        files = sum(len(store.partition_files("results", session)) for session in sessions)
        figures: dict[str, object] = {
            "symbols": args.symbols,
            "sessions": len(sessions),
            "results_files": files,
            "fill_seconds": None if fill_s is None else round(fill_s, 1),
            "screen": SCREEN,
            "prev_screen": PREV_SCREEN,
        }
        figures |= latest_figures(store, args.repeat, args.latest_rows)
        _log.info("latest: %s", {k: v for k, v in figures.items() if k.startswith("latest")})
        figures |= history_figures(store, args.sessions)
        _log.info("history: %s", {k: v for k, v in figures.items() if k.startswith("history")})
        figures |= concurrency_figures(directory, args.clients, args.requests)
    figures["targets"] = TARGETS
    figures["met"] = {name: float(figures[name]) < target for name, target in TARGETS.items()}  # type: ignore[arg-type]
    figures["machine"] = {"cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg()[0]}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
