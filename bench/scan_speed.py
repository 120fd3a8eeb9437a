"""Scan speed: the column catalog against TA-Lib called symbol by symbol, and what a scan's batches cost.

Panel: the simulated market, 5,000 symbols × the 252 sessions ending BENCH_END (override with
--symbols/--days), as a source delivers it (session-major rows), with the index (SPY) closes and the screened
universe of the last session. In the same run:

  ours (`ours_s`)       `compute_catalog(panel, index, universe, last_only=True)`: every catalog column for
                        each symbol's latest session, computed over its whole history — what a scan asks for;
  ours, full panel      the same for every bar of every symbol, as a frame in the input's row order
                        (`ours_full_panel_s`);
  TA-Lib loop           every catalog indicator TA-Lib has a function for, called per symbol over arrays split
                        in advance (`talib_loop_presplit_s`), and with the split from the panel timed too
                        (`talib_loop_s`); TA-Lib computes every bar, it has no other way. Only the TA-Lib calls
                        are timed: the columns derived from them (distances, crosses, %B, consensus …) are not
                        computed on that side, which only flatters TA-Lib;
  scan                  `run_scan` of every screened symbol in batches of the daily scan's size (`scan_s`:
                        catalog, scores, judging and cutting batches), and of the first --scan-symbols screened
                        symbols twice — in one batch (`single_batch_s`) and one symbol per batch
                        (`batch_size_1_s`) — over the history prepared once, as the API scans it. Target: one
                        symbol per batch costs at most twice one batch (`batch_size_1_vs_single`).

Each contender runs several times; medians and the ratios ours / TA-Lib (< 1 means we are faster; target
≤ 0.5) are printed and written to bench/results/scan_speed.json. With 252 sessions no symbol has the 253 bars
beta_252 and change_252d need, on either side; --days 300 includes them.

Memory: each of our two catalog calls runs once more in a fresh process that loads the same panel, and
reports its peak resident memory above what the process held before the call (Linux VmHWM, reset through
/proc/self/clear_refs), against the panel's own size (polars' estimated size; target ≤ 3×). The full-panel
figure includes its output, the panel's rows with every catalog column, itself several times the panel.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import talib

from technic_core import calendar
from technic_core.catalog import CATALOG, compute_catalog
from technic_core.config import ScanConfig, ScreeningRules
from technic_core.daily import DEFAULT_SCAN, index_closes
from technic_core.scan import ScanHistory, run_scan, scan_candidates
from technic_core.screening import screen
from technic_core.sources.simulated import SimulatedMarket, SimulationConfig

BENCH_END = dt.date(2026, 10, 30)
RESULTS = Path(__file__).parent / "results" / "scan_speed.json"
PRICES = ("open", "high", "low", "close", "volume")


def build(symbols: int, days: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The bars panel (session-major), the index closes and the screened universe of the last session."""
    sessions = calendar.sessions_back(BENCH_END, days)
    # IPOs and delistings leave some simulated names without bars in any window: simulate a larger market
    # and keep the first `symbols` names that trade in it, so the panel has exactly that many symbols.
    market = SimulatedMarket(SimulationConfig(n_symbols=int(symbols * 1.15)))
    panel = market.bars(sessions[0], sessions[-1])
    kept = panel.get_column("symbol").unique().sort().head(symbols)
    panel = panel.filter(pl.col("symbol").is_in(kept.implode()))
    index = index_closes(market.index_bars(sessions[0], sessions[-1]))
    reference = market.reference(sessions[-1]).filter(pl.col("symbol").is_in(kept.implode()))
    return panel, index, screen(reference, panel, sessions[-1], ScreeningRules())


def split(panel: pl.DataFrame, index: pl.DataFrame) -> list[dict[str, np.ndarray]]:
    """Per-symbol numpy arrays (the index close on each of the symbol's dates too)."""
    joined = panel.join(index.rename({"close": "index_close"}), on="date", how="left")
    return [
        {name: part.get_column(name).to_numpy() for name in (*PRICES, "index_close")}
        for part in joined.sort("symbol", "date").partition_by("symbol", maintain_order=True)
    ]


def talib_loop(series: list[dict[str, np.ndarray]]) -> int:
    """Every catalog indicator TA-Lib has, one symbol at a time."""
    for s in series:
        high, low, close, volume, index = s["high"], s["low"], s["close"], s["volume"], s["index_close"]
        for period in (10, 20, 50, 100, 200):
            talib.SMA(close, period)
        for period in (10, 20, 50, 200):
            talib.EMA(close, period)
        talib.ADX(high, low, close, 14)
        talib.PLUS_DI(high, low, close, 14)
        talib.MINUS_DI(high, low, close, 14)
        talib.AROON(high, low, 25)
        talib.RSI(close, 14)
        talib.MACD(close, 12, 26, 9)
        talib.STOCH(high, low, close, 14, 3, 0, 3, 0)
        talib.WILLR(high, low, close, 14)
        talib.CCI(high, low, close, 20)
        talib.MFI(high, low, close, volume, 14)
        talib.ROC(close, 10)
        talib.BBANDS(close, 20, 2, 2, 0)
        talib.ATR(high, low, close, 14)
        returns = talib.ROCP(close, 1)
        talib.STDDEV(returns, 21)
        talib.BETA(index, close, 252)
        talib.ROCP(index, 63)
        talib.SMA(volume, 20)
        talib.SMA(close * volume, 20)
        for sessions in (5, 21, 63, 126, 252):
            talib.ROCP(close, sessions)
        talib.MAX(high, 252)
        talib.MIN(low, 252)
        talib.MAX(high, 20)
        talib.MIN(low, 20)
    return len(series)


def scan(
    config: ScanConfig,
    session: dt.date,
    history: ScanHistory | pl.DataFrame,
    universe: pl.DataFrame,
    index: pl.DataFrame,
) -> int:
    """Every batch of one scan; returns its result rows."""
    return sum(batch.results.height for batch in run_scan(config, session, history, universe, index=index))


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def _memory_kib(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def memory_probe(directory: Path, last_only: bool) -> None:
    """(Run in a fresh process.) Load the saved panel, then print the peak memory of one compute above it."""
    panel, index, universe = (pl.read_parquet(directory / f"{name}.parquet") for name in ("panel", "index", "universe"))
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    before = _memory_kib("VmRSS")
    compute_catalog(panel, index, universe, last_only=last_only)
    print(json.dumps({"peak_bytes": (_memory_kib("VmHWM") - before) * 1024}))


def peak_memory(panel: pl.DataFrame, index: pl.DataFrame, universe: pl.DataFrame, last_only: bool) -> int:
    """Peak resident memory of one compute above the loaded panel, measured in a fresh process."""
    with tempfile.TemporaryDirectory() as directory:
        for name, frame in (("panel", panel), ("index", index), ("universe", universe)):
            frame.write_parquet(Path(directory) / f"{name}.parquet")
        command = [sys.executable, __file__, "--memory-probe", directory, *(["--last-only"] if last_only else [])]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return int(json.loads(output.strip().splitlines()[-1])["peak_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=252)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--scan-symbols", type=int, default=242, help="symbols of the batch-size comparison")
    parser.add_argument("--memory-probe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--last-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe, args.last_only)
        return

    panel, index, universe = build(args.symbols, args.days)
    session = panel.get_column("date").max()
    assert isinstance(session, dt.date)
    series = split(panel, index)
    symbols = panel.get_column("symbol").n_unique()
    load = os.getloadavg()[0]
    print(f"panel: {symbols} symbols × {args.days} sessions, {panel.height:,} bars, {len(CATALOG)} catalog columns")

    ours_s = statistics.median(timed(lambda: compute_catalog(panel, index, universe, last_only=True), args.repeats))
    full_s = statistics.median(timed(lambda: compute_catalog(panel, index, universe), args.repeats))
    talib_s = statistics.median(timed(lambda: talib_loop(split(panel, index)), args.repeats))
    talib_presplit_s = statistics.median(timed(lambda: talib_loop(series), args.repeats))

    # A scan as the daily pipeline runs it (plain bars, its batch size) ...
    daily = ScanConfig(batch_size=DEFAULT_SCAN.batch_size, lookback_sessions=args.days, prioritize=False)
    scan_s = statistics.median(timed(lambda: scan(daily, session, panel, universe, index), args.repeats))
    screened = len(scan_candidates(universe, daily))
    # ... and a smaller one as the API runs it (history prepared once), in one batch and a symbol per batch.
    history = ScanHistory.of(panel.sort("symbol", "date"))
    few = ScanConfig(max_symbols=args.scan_symbols, lookback_sessions=args.days, prioritize=False)
    single, one_each = (few.model_copy(update={"batch_size": size}) for size in (args.scan_symbols, 1))
    scan(single, session, history, universe, index)  # warm: nothing is cached between scans, but imports are
    single_s = statistics.median(timed(lambda: scan(single, session, history, universe, index), args.repeats))
    one_each_s = statistics.median(timed(lambda: scan(one_each, session, history, universe, index), args.repeats))

    panel_bytes = panel.estimated_size()
    peak = peak_memory(panel, index, universe, last_only=True)
    full_peak = peak_memory(panel, index, universe, last_only=False)
    output_bytes = compute_catalog(panel, index, universe).estimated_size()
    result = {
        "symbols": symbols,
        "days": args.days,
        "bars": panel.height,
        "catalog_columns": len(CATALOG),
        "repeats": args.repeats,
        "load_average_1m": round(load, 2),
        "ours_s": round(ours_s, 4),
        "talib_loop_s": round(talib_s, 4),
        "talib_loop_presplit_s": round(talib_presplit_s, 4),
        "ratio_vs_talib": round(ours_s / talib_s, 4),
        "ratio_vs_talib_presplit": round(ours_s / talib_presplit_s, 4),
        "ours_full_panel_s": round(full_s, 4),
        "ratio_full_panel_vs_talib_presplit": round(full_s / talib_presplit_s, 4),
        "panel_mb": round(panel_bytes / 1e6, 1),
        "peak_memory_mb": round(peak / 1e6, 1),
        "peak_memory_vs_panel": round(peak / panel_bytes, 2),
        "full_panel_output_mb": round(output_bytes / 1e6, 1),
        "full_panel_peak_memory_mb": round(full_peak / 1e6, 1),
        "full_panel_peak_memory_vs_panel": round(full_peak / panel_bytes, 2),
        "scan_symbols_screened": screened,
        "scan_batch_size": daily.batch_size,
        "scan_s": round(scan_s, 4),
        "batch_scan_symbols": args.scan_symbols,
        "single_batch_s": round(single_s, 4),
        "batch_size_1_s": round(one_each_s, 4),
        "batch_size_1_vs_single": round(one_each_s / single_s, 3),
    }
    for name, seconds in (
        ("catalog, latest rows", ours_s),
        ("catalog, full panel", full_s),
        ("TA-Lib loop, split included", talib_s),
        ("TA-Lib loop, pre-split", talib_presplit_s),
        (f"scan of {screened} symbols", scan_s),
        (f"scan of {args.scan_symbols}, one batch", single_s),
        (f"scan of {args.scan_symbols}, batch size 1", one_each_s),
    ):
        print(f"{name:32s} median {seconds:8.4f} s")
    print(
        f"ratio vs TA-Lib  {result['ratio_vs_talib_presplit']:.3f} pre-split (target ≤ 0.5), "
        f"{result['ratio_vs_talib']:.3f} split included"
    )
    print(f"  full panel     {result['ratio_full_panel_vs_talib_presplit']:.3f}")
    print(f"batch size 1 vs one batch {result['batch_size_1_vs_single']:.2f}× (target ≤ 2)")
    print(f"peak memory      {result['peak_memory_mb']} MB = {result['peak_memory_vs_panel']}× the panel (target ≤ 3×)")
    print(
        f"  full panel     {result['full_panel_peak_memory_mb']} MB = {result['full_panel_peak_memory_vs_panel']}×, "
        f"its output alone {result['full_panel_output_mb']} MB (panel {result['panel_mb']} MB)"
    )
    print(f"load average (1 min) at the start: {load:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
