"""Building blocks shared by the API tests and `bench/streaming.py`: a small warehouse of the simulated
market, a real uvicorn server on a free loopback port, and waiting on conditions with a deadline."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import polars as pl
import uvicorn

from technic_core import calendar, schema
from technic_core.config import ScanConfig, ScreeningRules
from technic_core.daily import index_closes
from technic_core.scan import run_scan
from technic_core.scoring import market_conditions
from technic_core.screening import screen
from technic_core.sources.simulated import SimulatedMarket, SimulationConfig
from technic_core.warehouse import Warehouse

SESSION = dt.date(2024, 6, 28)


@dataclass(frozen=True)
class MarketFixture:
    """One session of the simulated market, screened and scanned, plus a priority plan for it."""

    session: dt.date
    bars: pl.DataFrame
    #: The index bars (SPY, VIX) over the same sessions as `bars`.
    index_bars: pl.DataFrame
    universe: pl.DataFrame
    conditions: pl.DataFrame
    #: The pipeline's scan of the session, one frame per result batch (seq 1..n across them).
    batches: list[pl.DataFrame]
    #: A priority plan that ranks symbols in reverse alphabetical order, so prioritized order is visible.
    priority: pl.DataFrame

    @property
    def results(self) -> pl.DataFrame:
        return pl.concat(self.batches)


def simulate(n_symbols: int = 150, session: dt.date = SESSION, batch_size: int = 25) -> MarketFixture:
    """Bars and index bars over the default lookback, the screened universe, conditions and the scan of
    `session` (as the pipeline scans it: against the index closes)."""
    market = SimulatedMarket(SimulationConfig(n_symbols=n_symbols))
    lookback = calendar.sessions_back(session, ScanConfig().lookback_sessions)
    bars = market.bars(lookback[0], session)
    index_bars = market.index_bars(lookback[0], session)
    universe = screen(market.reference(session), bars, session, ScreeningRules())
    conditions = market_conditions(bars, index_bars, session)
    run = run_scan(
        ScanConfig(batch_size=batch_size),
        session,
        bars,
        universe,
        regime=conditions["regime"][0],
        index=index_closes(index_bars),
    )
    batches = [batch.results for batch in run]
    passed = universe.filter(pl.col("passed")).get_column("symbol").sort(descending=True)
    priority = pl.DataFrame(
        {
            "date": session,
            "symbol": passed,
            "historical_score": 50.0,
            "activity_score": 50.0,
            "fundamental_score": 50.0,
            "setup_score": 50.0,
            "fundamental_reason": "no_fundamentals",
            "priority_score": [100.0 - 0.5 * i for i in range(passed.len())],
            "priority_tier": "high",
            "exploration": False,
            "batch": [i // batch_size for i in range(passed.len())],
            "rank": list(range(1, passed.len() + 1)),
        }
    )
    return MarketFixture(
        session, bars, index_bars, universe, conditions, batches, schema.conform(priority, schema.PRIORITY, "priority")
    )


def daily_history_row(session: dt.date, result_count: int, end_reason: str = "complete") -> pl.DataFrame:
    """The scan-history row the pipeline writes after a session's last batch (what ends a partition tail)."""
    return pl.DataFrame(
        [
            {
                "scan_id": f"daily-{session.isoformat()}",
                "date": session,
                "started_at": dt.datetime(2024, 7, 1, tzinfo=dt.UTC),
                "duration_s": 1.0,
                "config_json": ScanConfig().model_dump_json(),
                "regime": None,
                "symbols_screened": result_count,
                "symbols_scanned": result_count,
                "symbols_rejected": 0,
                "result_count": result_count,
                "signal_count": 0,
                "end_reason": end_reason,
            }
        ],
        schema=schema.SCAN_RUNS,
    )


def write_session_batches(store: Warehouse, session: dt.date, batches: list[pl.DataFrame]) -> None:
    """Write `batches` (computed for any session) as the results of `session`, one file per batch."""
    store.begin_results(session)
    for number, frame in enumerate(batches):
        store.write_result_batch(session, number, frame.with_columns(pl.lit(session).alias("date")))


def build_warehouse(store: Warehouse, market: MarketFixture, *, with_priority: bool = True) -> Warehouse:
    """Bars and index bars over the lookback, universe, conditions, the session's complete results and
    (optionally) priority."""
    for (day,), frame in market.index_bars.partition_by("date", as_dict=True).items():
        store.write_partition("index_bars", day, frame)
    for (day,), frame in market.bars.partition_by("date", as_dict=True).items():
        store.write_partition("bars", day, frame)
    store.write_partition("universe", market.session, market.universe)
    store.write_partition("conditions", market.session, market.conditions)
    write_session_batches(store, market.session, market.batches)
    store.finish_results(market.session, len(market.batches))
    store.append_scan_run(daily_history_row(market.session, market.results.height))
    if with_priority:
        store.write_partition("priority", market.session, market.priority)
    return store


def wait_for(condition: Callable[[], object], timeout_s: float = 10.0, what: str = "condition") -> object:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.005)


def free_socket() -> socket.socket:
    """A listening-ready socket bound to a free loopback port (handed to uvicorn, so no port race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def serve_process(
    root: Path, log: Path, env: Mapping[str, str], timeout_s: float = 120.0
) -> tuple[subprocess.Popen[bytes], int]:
    """A `technic serve` subprocess over `root` on a free loopback port, returned once `/health` answers.

    `env` is added to this process's environment (`TECHNIC_WAREHOUSE` left out: `root` is the warehouse). Its
    output (an access-log line per request) goes to `log`, never to a pipe nobody drains, which would block
    the server once full."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # uvicorn binds it again; nothing else on the box races for an ephemeral port here
    environment = {name: value for name, value in os.environ.items() if name != "TECHNIC_WAREHOUSE"} | dict(env)
    with log.open("ab") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "technic_pipelines.cli", "serve", "--port", str(port), "--warehouse", str(root)],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server, port
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"technic serve did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)


@contextmanager
def running_server(app: object, **config: object) -> Iterator[str]:
    """Serve `app` with uvicorn in a thread; yields its base URL and shuts it down (lifespan included)."""
    sock = free_socket()
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5, **config)  # type: ignore[arg-type]
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), what="uvicorn to start")
        if not server.started:
            raise RuntimeError("uvicorn failed to start")
        host, port = sock.getsockname()
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
