"""A small warehouse for the browser tests and `bench/web.py`, and a real `technic serve` over it.

The warehouse holds the simulated market's bars over a year and a half, a handful of complete scanned
sessions with their saved-screen hits, the forward-return evidence of the oldest ones (so screens have a
performance), and a newest session whose scan is still landing: some of its batches are written, the rest
are kept back for a test to land (`land_next_batch`) the way the pipeline writes them.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import polars as pl

from technic_core import calendar
from technic_core.config import ScanConfig, ScreeningRules
from technic_core.ml.labels import HORIZONS, session_outcomes
from technic_core.scan import run_scan
from technic_core.scoring import market_conditions
from technic_core.screening import screen
from technic_core.screens import ScreenLibrary
from technic_core.screens.evaluation import saved_screen_hits, session_evidence
from technic_core.sources.simulated import SimulatedMarket, SimulationConfig
from technic_core.warehouse import Warehouse
from tests.api.support import daily_history_row

#: The newest session of the test warehouse (its scan is in progress).
LAST_SESSION = dt.date(2024, 6, 28)
#: Sessions of bars: enough for a year's chart plus the 200 sessions its SMA 200 needs first.
BAR_SESSIONS = 460
#: Sessions scanned, the newest included.
SCANNED_SESSIONS = 14
#: The newest session's batches written before the tests start; the rest are landed by the tests.
LIVE_BATCHES_WRITTEN = 1
API_KEY = "web-test-key"


@dataclass
class WebWarehouse:
    """What the builder wrote, for tests to compare the page against."""

    root: Path
    #: Scanned sessions, oldest first; the last is `live_session`.
    sessions: list[dt.date]
    live_session: dt.date
    #: The live session's batches not yet written (each a frame of result rows), in batch order.
    pending: list[pl.DataFrame]
    written: int
    symbols: list[str] = field(default_factory=list)

    @property
    def store(self) -> Warehouse:
        return Warehouse(self.root)

    @property
    def complete_sessions(self) -> list[dt.date]:
        return self.sessions[:-1]

    def land_next_batch(self) -> pl.DataFrame:
        """Write the live session's next batch as the pipeline does (one atomic file); returns its rows."""
        frame = self.pending.pop(0)
        self.store.write_result_batch(self.live_session, self.written, frame)
        self.written += 1
        return frame

    def finish_live_session(self, result_count: int) -> None:
        """Record the live session's scan in scan history, as the pipeline does after its last batch."""
        self.store.finish_results(self.live_session, self.written)
        self.store.append_scan_run(daily_history_row(self.live_session, result_count))


def build_web_warehouse(
    root: Path,
    *,
    n_symbols: int = 60,
    last: dt.date = LAST_SESSION,
    bar_sessions: int = BAR_SESSIONS,
    scanned_sessions: int = SCANNED_SESSIONS,
    batch_size: int = 20,
    live_batches_written: int = LIVE_BATCHES_WRITTEN,
) -> WebWarehouse:
    """Write the warehouse under `root` (see the module docstring) and describe it."""
    store = Warehouse(root)
    market = SimulatedMarket(SimulationConfig(n_symbols=n_symbols))
    days = calendar.sessions_back(last, bar_sessions)
    bars = market.bars(days[0], last)
    index_bars = market.index_bars(days[0], last)
    for (day,), frame in bars.partition_by("date", as_dict=True).items():
        store.write_partition("bars", day, frame)
    for (day,), frame in index_bars.partition_by("date", as_dict=True).items():
        store.write_partition("index_bars", day, frame)

    scanned = days[-scanned_sessions:]
    live_batches: list[pl.DataFrame] = []
    for session in scanned:
        history = bars.filter(pl.col("date") <= session)
        universe = screen(market.reference(session), history, session, ScreeningRules())
        conditions = market_conditions(history, index_bars.filter(pl.col("date") <= session), session)
        store.write_partition("universe", session, universe)
        store.write_partition("conditions", session, conditions)
        config = ScanConfig(batch_size=batch_size, prioritize=False)
        batches = [batch.results for batch in run_scan(config, session, history, universe, conditions["regime"][0])]
        store.begin_results(session)
        if session == last:
            live_batches = batches
            batches = batches[:live_batches_written]
        for number, frame in enumerate(batches):
            store.write_result_batch(session, number, frame)
        if session != last:
            store.finish_results(session, len(batches))
            store.append_scan_run(daily_history_row(session, sum(frame.height for frame in batches)))

    complete = scanned[:-1]
    library = ScreenLibrary(store).load()
    hits, failures = saved_screen_hits(store, list(library.screens.values()), complete[0], complete[-1])
    if failures:
        raise RuntimeError(f"saved screens failed on the test warehouse: {failures}")
    for session in complete:
        store.write_partition("screens", session, hits.filter(pl.col("date") == session))
    labeled = [session for session in complete if days.index(session) + max(HORIZONS) <= len(days) - 1]
    for session in labeled:
        results = store.read("results", session, session)
        store.write_partition("outcomes", session, session_outcomes(results, bars, session))
        evidence, ic = session_evidence(store, session)
        store.write_partition("screen_outcomes", session, evidence)
        store.write_partition("rating_ic", session, ic)

    return WebWarehouse(
        root=root,
        sessions=scanned,
        live_session=last,
        pending=live_batches[live_batches_written:],
        written=live_batches_written,
        symbols=sorted(bars.get_column("symbol").unique().to_list()),
    )


def copy_warehouse(template: WebWarehouse, root: Path) -> WebWarehouse:
    """A copy of `template`'s files under `root`, with its own pending batches."""
    shutil.copytree(template.root, root)
    return WebWarehouse(root, template.sessions, template.live_session, list(template.pending), template.written)


# ------------------------------------------------------------------------------------------ the server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(port: int, root: Path) -> list[str]:
    """`technic serve` of this virtualenv on `port` over `root`."""
    technic = Path(sys.executable).with_name("technic")
    return [str(technic), "serve", "--host", "127.0.0.1", "--port", str(port), "--warehouse", str(root)]


class ServeProcess:
    """A `technic serve` subprocess over `root` on a loopback port, which a test may stop and start again on
    the same port (a dropped connection for every client). Output goes to `log`."""

    def __init__(self, root: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.log = log
        self.env = {
            **os.environ,
            "TECHNIC_API_KEYS": API_KEY,
            "TECHNIC_API_HEARTBEAT_S": "5",
            "TECHNIC_API_POLL_INTERVAL_S": "0.2",
            **(env or {}),
        }
        self.env.pop("TECHNIC_WAREHOUSE", None)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        """Start on the current port (a free one the first time; a port taken meanwhile is retried on another)."""
        repository = Path(__file__).resolve().parents[2]
        for attempt in range(3):
            if not self.port or attempt:
                self.port = _free_port()
            with self.log.open("ab") as output:
                self.process = subprocess.Popen(
                    serve_command(self.port, self.root),
                    cwd=repository,
                    env=self.env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            if _wait_until_up(self.base_url, self.process):
                return self.base_url
            self.stop()
        raise RuntimeError(f"technic serve did not start; its output is in {self.log}:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@contextmanager
def technic_serve(root: Path, log: Path, *, env: dict[str, str] | None = None) -> Iterator[ServeProcess]:
    """A running `ServeProcess` over `root`, stopped on exit."""
    server = ServeProcess(root, log, env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _wait_until_up(base_url: str, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if httpx.get(f"{base_url}/health", timeout=2.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False
