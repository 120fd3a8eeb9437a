"""Scan compute speed: our vectorized indicators + scoring against per-symbol loops, in the same run.

Panel: the simulated market, 5,000 symbols × the 252 sessions ending BENCH_END (override with
--symbols/--days), as a source delivers it (session-major rows). Every contender starts from that panel.
Peers compute the same indicators symbol by symbol:
  (a) TA-Lib's C functions called in a Python loop over symbols; the loop has to split the panel into
      per-symbol arrays first, and that split is timed with it (`talib_loop_s`). The loop alone over
      arrays prepared in advance is reported too (`talib_loop_presplit_s`), so nothing is hidden;
  (b) pandas rolling/ewm per symbol, the predecessor's style (split outside the timing, as in (a)'s
      pre-split figure, which only flatters pandas).
Each contender runs several times; medians and ratios (ours / peer; < 1 means we are faster) are printed
and written to bench/results/scan_speed.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import talib

from technic_core import calendar
from technic_core.indicators import compute_indicators
from technic_core.scoring import score
from technic_core.sources.simulated import SimulatedMarket, SimulationConfig

BENCH_END = dt.date(2026, 10, 30)
RESULTS = Path(__file__).parent / "results" / "scan_speed.json"


def ours(panel: pl.DataFrame) -> int:
    """Indicators for every bar of every symbol, then scores for each symbol's latest bar."""
    full = compute_indicators(panel)
    latest = full.group_by("symbol").tail(1)
    return score(latest).height


def _split(panel: pl.DataFrame) -> list[dict[str, np.ndarray]]:
    """Per-symbol numpy arrays, prepared outside the timed region for both loops."""
    return [
        {c: part.get_column(c).to_numpy() for c in ("open", "high", "low", "close", "volume")}
        for part in panel.sort("symbol", "date").partition_by("symbol", maintain_order=True)
    ]


def talib_loop(series: list[dict[str, np.ndarray]]) -> int:
    """The same indicators with TA-Lib, one symbol at a time."""
    done = 0
    for s in series:
        high, low, close, volume = s["high"], s["low"], s["close"], s["volume"]
        talib.RSI(close, 14)
        talib.MACD(close, 12, 26, 9)
        upper, middle, lower = talib.BBANDS(close, 20, 2, 2, 0)
        _ = (upper - lower) / middle
        atr = talib.ATR(high, low, close, 14)
        _ = 100 * atr / close
        _ = volume / talib.SMA(volume, 20)
        for n in (21, 63, 126):
            talib.ROC(close, n)
        talib.SMA(close, 50)
        talib.SMA(close, 200)
        _ = close / talib.MAX(high, 20) - 1
        _ = close / talib.MIN(low, 20) - 1
        done += 1
    return done


def _wilder(series: pd.Series, n: int) -> pd.Series:
    return series.ewm(alpha=1 / n, adjust=False).mean()


def pandas_loop(frames: list[pd.DataFrame]) -> int:
    """The predecessor's style: a DataFrame per symbol, pandas rolling/ewm per indicator."""
    done = 0
    for df in frames:
        close, high, low, volume = df["close"], df["high"], df["low"], df["volume"]
        delta = close.diff()
        gain, loss = _wilder(delta.clip(lower=0), 14), _wilder(-delta.clip(upper=0), 14)
        df["rsi"] = 100 - 100 / (1 + gain / loss)
        macd = close.ewm(span=12, adjust=False).mean() - close.ewm(span=26, adjust=False).mean()
        df["macd"], df["macd_signal"] = macd, macd.ewm(span=9, adjust=False).mean()
        mid, std = close.rolling(20).mean(), close.rolling(20).std(ddof=0)
        df["bb_width"] = 4 * std / mid
        true_range = pd.concat([high - low, (high - close.shift()).abs(), (low - close.shift()).abs()], axis=1).max(
            axis=1
        )
        df["atr_pct"] = 100 * _wilder(true_range, 14) / close
        df["volume_ratio"] = volume / volume.rolling(20).mean()
        for n in (21, 63, 126):
            df[f"mom_{n}"] = close.pct_change(n)
        df["sma_50"], df["sma_200"] = close.rolling(50).mean(), close.rolling(200).mean()
        df["dist_high_20"] = close / high.rolling(20).max() - 1
        df["dist_low_20"] = close / low.rolling(20).min() - 1
        done += 1
    return done


def timed(fn: Callable[[], int], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=252)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    sessions = calendar.sessions_back(BENCH_END, args.days)
    # IPOs and delistings leave some simulated names without bars in any window: simulate a larger market
    # and keep the first `--symbols` names that trade in it, so the panel has exactly that many symbols.
    market = SimulatedMarket(SimulationConfig(n_symbols=int(args.symbols * 1.15)))
    panel = market.bars(sessions[0], sessions[-1])
    kept = panel.get_column("symbol").unique().sort().head(args.symbols)
    panel = panel.filter(pl.col("symbol").is_in(kept.implode()))
    series = _split(panel)
    frames = [pd.DataFrame(s) for s in series]
    print(f"panel: {panel.get_column('symbol').n_unique()} symbols × {len(sessions)} sessions, {panel.height:,} bars")

    ours_s = statistics.median(timed(lambda: ours(panel), args.repeats))
    talib_s = statistics.median(timed(lambda: talib_loop(_split(panel)), args.repeats))
    talib_presplit_s = statistics.median(timed(lambda: talib_loop(series), args.repeats))
    pandas_s = statistics.median(timed(lambda: pandas_loop(frames), max(1, args.repeats // 2)))
    result = {
        "symbols": panel.get_column("symbol").n_unique(),
        "days": len(sessions),
        "ours_s": round(ours_s, 4),
        "talib_loop_s": round(talib_s, 4),
        "talib_loop_presplit_s": round(talib_presplit_s, 4),
        "pandas_loop_s": round(pandas_s, 4),
        "ratio_vs_talib": round(ours_s / talib_s, 4),
        "ratio_vs_pandas": round(ours_s / pandas_s, 5),
    }
    contenders = (
        ("ours (indicators + scoring)", ours_s),
        ("TA-Lib per-symbol loop", talib_s),
        ("  of which the loop alone", talib_presplit_s),
        ("pandas per-symbol loop", pandas_s),
    )
    for name, seconds in contenders:
        print(f"{name:30s} median {seconds:8.3f} s")
    print(f"ratio vs TA-Lib  {result['ratio_vs_talib']:.3f}  (≤ 1.0 means at least as fast)")
    print(f"ratio vs pandas  {result['ratio_vs_pandas']:.4f}  (target ≤ 0.02)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
