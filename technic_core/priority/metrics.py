"""How early a scan's visiting order met the session's signals: the per-session prioritization metrics."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from technic_core.priority.config import TIERS
from technic_core.scalars import as_float
from technic_core.scoring import BUY_SIGNALS


@dataclass(frozen=True)
class OrderMetrics:
    """How early a visiting order met the session's signals.

    Counts include the signal's own symbol, so a signal scanned first counts 1 (and a ratio against random
    order stays defined); None when the scan met fewer signals.
    """

    signals: int
    share_signals_first_quarter: float | None
    symbols_to_first_signal: int | None
    symbols_to_fifth_signal: int | None


def order_metrics(positions: pl.DataFrame, scanned: int) -> OrderMetrics:
    """Metrics of a visiting order from `positions` (`position`: 0-based index in the order, `hit`: bool) of
    the scanned symbols; `scanned` counts every symbol visited, rated or not."""
    hits = positions.filter(pl.col("hit")).get_column("position").sort()
    count = hits.len()
    return OrderMetrics(
        signals=count,
        share_signals_first_quarter=as_float((hits < 0.25 * scanned).mean()) if count else None,
        symbols_to_first_signal=int(hits[0]) + 1 if count >= 1 else None,
        symbols_to_fifth_signal=int(hits[4]) + 1 if count >= 5 else None,
    )


def scan_positions(results: pl.DataFrame, batch_size: int) -> pl.DataFrame:
    """`symbol`, `position`, `hit` of a scan's results: batch × batch_size + the row's place in its batch's
    publication (`seq`) order — what a stream consumer sees. Rejected symbols leave no row, so within a batch
    they are not counted."""
    return results.select(
        "symbol",
        (pl.col("batch") * batch_size + pl.col("seq").rank("ordinal").over("batch") - 1)
        .cast(pl.Int64)
        .alias("position"),
        pl.col("signal").is_in(BUY_SIGNALS).fill_null(False).alias("hit"),
    )


def session_metrics(
    plan: pl.DataFrame,
    results: pl.DataFrame,
    scanned: int,
    batch_size: int,
    prioritization_s: float | None = None,
    scan_s: float | None = None,
) -> dict[str, float | int | None]:
    """Per-session prioritization metrics of a scan that followed `plan`.

    Share of the signals found in the first 25 % of the `scanned` symbols, symbols scanned up to the first
    and fifth signal, the signal rate per tier of the plan (None for an empty tier) and, given the time spent
    on prioritization and the scan's duration, the overhead as % of scan time.
    """
    measured = order_metrics(scan_positions(results, batch_size), scanned)
    by_tier = (
        results.select("symbol", pl.col("signal").is_in(BUY_SIGNALS).fill_null(False).alias("hit"))
        .join(plan.select("symbol", "priority_tier"), on="symbol", how="left")
        .group_by("priority_tier")
        .agg(pl.col("hit").mean().alias("rate"), pl.len().alias("count"))
    )
    rates = {tier: rate for tier, rate, _ in by_tier.iter_rows()}
    counts = {tier: count for tier, _, count in by_tier.iter_rows()}
    overhead = 100.0 * prioritization_s / scan_s if prioritization_s is not None and scan_s else None
    return {
        "signals": measured.signals,
        "share_signals_first_quarter": measured.share_signals_first_quarter,
        "symbols_to_first_signal": measured.symbols_to_first_signal,
        "symbols_to_fifth_signal": measured.symbols_to_fifth_signal,
        **{f"signal_rate_{tier}": rates.get(tier) for tier in TIERS},
        **{f"scanned_{tier}": counts.get(tier, 0) for tier in TIERS},
        "overhead_pct": overhead,
    }
