"""Prioritization benchmark: how early the priority plan meets a session's Buy/Strong Buy signals, against
random order, against plain score order, and against the ceiling of a clairvoyant order.

Setup: the simulated market (default 5,000 symbols, seed 7), `--warmup` sessions (default 10) that only
build up scan history, then `--sessions` evaluated sessions (default 250, the year 2024) ending BENCH_END. Every session is
pre-screened, planned (`technic_core.priority.prioritize` from the previous sessions' results, the bars of
the 22 sessions before it and the earnings reported before it) and scanned for real with `run_scan`, in plan
order with the sector/industry reorder hook — its results are the next sessions' history, as in the
pipeline. The same session's signals are then located in four visiting orders of the same screened symbols:

* plan        — the order the scan actually visited (plan + exploration + reordering after each batch);
* plan_static — the plan as written (exploration, no reordering): isolates what reordering adds;
* score order — the plan's scores without exploration or reordering: isolates what exploration costs;
* random      — a seeded random permutation (one per session);
* oracle      — sorted by the session's own tech_rating: the ceiling no pre-session information can beat.

Per session: the share of its signals in the first 25 % of the visiting order, and the symbols visited up to
and including the first and the fifth signal (so a first-visited signal counts 1 and ratios stay defined).
Aggregates are means over sessions; a speed-up is mean(random) / mean(order). `overhead_pct` is all the
prioritization work — scores and plan from loaded inputs, building the hooks and their calls (annotating
each batch, reordering after it) — as % of the scan's own compute time (loading bars is I/O for both, and
excluded from both); `overhead_in_scan_pct` counts only the hooks, i.e. what the pipeline's scan pays, the
plan being made beforehand by its own asset.

Why the oracle matters: when a quarter or more of the screened symbols signal, no order can put 90 % of
them in the first quarter, and random order already meets the first one within a few symbols, which caps
the possible first-signal speed-up. The oracle figures show where those caps lie for the simulated market,
and `strong_buy_only` scores the same plans and scans against Strong Buy alone (a few % of the names), to
show what the plan does where signals are as sparse as the targets presume.

Writes bench/results/prioritization.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from pathlib import Path

import numpy as np
import polars as pl

from technic_core import calendar, schema
from technic_core.daily import DEFAULT_PRIORITY, DEFAULT_SCAN
from technic_core.priority import (
    ACTIVITY_SESSIONS,
    TIERS,
    PlanAnnotator,
    SectorHitRateReorder,
    build_plan,
    order_metrics,
    score_symbols,
    session_metrics,
)
from technic_core.scan import ScanHooks, run_scan, scan_candidates
from technic_core.scoring import BUY_SIGNALS
from technic_core.screening import screen
from technic_core.sources.simulated import SimulatedMarket, SimulationConfig

BENCH_END = dt.date(2024, 12, 31)
RESULTS = Path(__file__).parent / "results" / "prioritization.json"
ORDERS = ("plan", "plan_static", "score_order", "random", "oracle")
SIGNAL_SHARE_BANDS = ((0.0, 0.15), (0.15, 0.25), (0.25, 0.35), (0.35, 1.01))
#: Which signals count as hits, by key prefix: the plan's own target (Buy or Strong Buy), and Strong Buy
#: alone — a rarer signal, to show what the same plan does where signals are sparse (the plan is not retuned).
SIGNAL_VIEWS = {"": BUY_SIGNALS, "strong_": ("Strong Buy",)}
TARGETS = {"share_signals_first_quarter": 0.90, "first_signal_speedup_vs_random": 10.0, "overhead_pct": 2.0}


def _positions(order: list[str], signals: pl.DataFrame) -> pl.DataFrame:
    """`position`, `hit` of every symbol of a visiting order; `signals` holds `symbol`, `hit` of the results."""
    visits = pl.DataFrame({"symbol": order}, schema={"symbol": pl.String}).with_row_index("position")
    return visits.join(signals, on="symbol", how="left").select(
        pl.col("position").cast(pl.Int64), pl.col("hit").fill_null(False)
    )


class _Recorder:
    """Wraps the reorder hook to record the order the scan actually visits: each batch is the head of the
    order the hook returned after the previous one."""

    def __init__(self, hook: SectorHitRateReorder, first: list[str], batch_size: int) -> None:
        self.hook, self.batch_size = hook, batch_size
        self.visited, self._pending = [], first

    def __call__(self, remaining: list[str], results: pl.DataFrame) -> list[str]:
        self.visited.extend(self._pending[: self.batch_size])
        self._pending = self.hook(remaining, results)
        return self._pending

    def order(self, scanned: int) -> list[str]:
        return (self.visited + self._pending[: self.batch_size])[:scanned]


def run(symbols: int, sessions: int, warmup: int, seed: int, end: dt.date) -> dict[str, object]:
    scan_config = DEFAULT_SCAN
    config = DEFAULT_PRIORITY
    without_exploration = config.model_copy(update={"exploration_share": 0.0})
    days = calendar.sessions_back(end, warmup + sessions)
    first_bar = calendar.sessions_back(days[0], scan_config.lookback_sessions + 1)[0]
    market = SimulatedMarket(SimulationConfig(n_symbols=symbols, seed=seed))
    loaded = time.perf_counter()
    bars = market.bars(first_bar, end)
    earnings = market.earnings(first_bar, end)
    print(f"simulated {bars.height:,} bars in {time.perf_counter() - loaded:.1f} s")

    history: list[pl.DataFrame] = [schema.empty(schema.RESULTS)]
    rows: list[dict[str, object]] = []
    rng = np.random.default_rng(seed)
    for number, session in enumerate(days):
        window = bars.filter(
            pl.col("date").is_between(calendar.sessions_back(session, scan_config.lookback_sessions)[0], session)
        )
        universe = screen(market.reference(session), window, session, scan_config.screening)
        activity_bars = window.filter(
            pl.col("date") >= calendar.sessions_back(session, ACTIVITY_SESSIONS + 1)[0], pl.col("date") < session
        )
        past = pl.concat(history)
        started = time.perf_counter()
        screened = universe.get_column("symbol").filter(universe.get_column("passed"))
        scores = score_symbols(screened, past, activity_bars, earnings, session, config)
        plan = build_plan(scores, session, scan_config.batch_size, config)
        plan_s = time.perf_counter() - started
        order = plan.get_column("symbol").to_list()
        started = time.perf_counter()
        hook = SectorHitRateReorder(plan, universe, config)
        annotator = PlanAnnotator(plan)
        hook_setup_s = time.perf_counter() - started
        recorder = _Recorder(hook, order, scan_config.batch_size)
        hooks = ScanHooks(enrich=annotator, reorder=recorder)
        scan = run_scan(scan_config, session, window, universe, order=order, hooks=hooks)
        results = pl.concat([batch.results for batch in scan])
        history = [*history, results][-config.history_sessions :]
        if number < warmup:
            continue

        candidates = scan_candidates(universe, scan_config)
        orders = {
            "plan": recorder.order(scan.scanned),
            "plan_static": order,
            "score_order": build_plan(scores, session, scan_config.batch_size, without_exploration)
            .get_column("symbol")
            .to_list(),
            "random": np.array(candidates, dtype=object)[rng.permutation(len(candidates))].tolist(),
            "oracle": results.sort("tech_rating", descending=True).get_column("symbol").to_list()
            + sorted(set(candidates) - set(results.get_column("symbol").to_list())),
        }
        row: dict[str, object] = {"session": session.isoformat(), "scanned": scan.scanned}
        for prefix, wanted in SIGNAL_VIEWS.items():
            signals = results.select("symbol", pl.col("signal").is_in(wanted).alias("hit"))
            for name, visiting in orders.items():
                measured = order_metrics(_positions(visiting, signals), scan.scanned)
                row[f"{prefix}{name}_share_first_quarter"] = measured.share_signals_first_quarter
                row[f"{prefix}{name}_to_first"] = measured.symbols_to_first_signal
                row[f"{prefix}{name}_to_fifth"] = measured.symbols_to_fifth_signal
            row[f"{prefix}signals"] = int(signals.get_column("hit").sum())
        hook_s = hook_setup_s + hook.elapsed_s + annotator.elapsed_s
        scan_s = scan.elapsed_s - hook.elapsed_s - annotator.elapsed_s
        reported = session_metrics(plan, results, scan.scanned, scan_config.batch_size, plan_s + hook_s, scan_s)
        row.update({key: reported[key] for key in ("overhead_pct", *(f"signal_rate_{tier}" for tier in TIERS))})
        row["reported_share_first_quarter"] = reported["share_signals_first_quarter"]
        row.update(plan_s=plan_s, hook_s=hook_s, scan_s=scan_s)
        rows.append(row)
        print(
            f"{session}  signals {row['signals']:5d}/{scan.scanned}  first quarter: plan "
            f"{row['plan_share_first_quarter']:.3f} static {row['plan_static_share_first_quarter']:.3f} score "
            f"{row['score_order_share_first_quarter']:.3f} random {row['random_share_first_quarter']:.3f} oracle "
            f"{row['oracle_share_first_quarter']:.3f}  "
            f"overhead {row['overhead_pct']:.2f} %"
        )
    return _summary(rows, symbols, warmup, seed, scan_config.batch_size)


def _mean(rows: list[dict[str, object]], key: str) -> float:
    values = [row[key] for row in rows if row[key] is not None]
    return statistics.fmean(values) if values else float("nan")


def _summary(rows: list[dict[str, object]], symbols: int, warmup: int, seed: int, batch_size: int) -> dict:
    means = _order_means(rows)
    total_plan = sum(row["plan_s"] + row["hook_s"] for row in rows)
    total_scan = sum(row["scan_s"] for row in rows)
    signal_shares = [row["signals"] / row["scanned"] for row in rows]
    return {
        "sessions": len(rows),
        "symbols": symbols,
        "screened_mean": round(statistics.fmean(row["scanned"] for row in rows)),
        "batch_size": batch_size,
        "warmup_sessions": warmup,
        "seed": seed,
        "first_session": rows[0]["session"],
        "last_session": rows[-1]["session"],
        "signal_share_mean": round(statistics.fmean(signal_shares), 4),
        "signal_share_min": round(min(signal_shares), 4),
        "signal_share_max": round(max(signal_shares), 4),
        **_headline(means),
        "share_signals_first_quarter_without_reorder": round(means["plan_static_share_first_quarter"], 4),
        "symbols_to_first_signal": round(means["plan_to_first"], 3),
        "symbols_to_first_signal_random": round(means["random_to_first"], 3),
        "symbols_to_first_signal_score_order": round(means["score_order_to_first"], 3),
        "symbols_to_fifth_signal": round(means["plan_to_fifth"], 3),
        "symbols_to_fifth_signal_random": round(means["random_to_fifth"], 3),
        "symbols_to_fifth_signal_score_order": round(means["score_order_to_fifth"], 3),
        "fifth_signal_speedup_ceiling": round(means["random_to_fifth"] / means["oracle_to_fifth"], 3),
        "signal_rate_by_tier": {tier: round(_mean(rows, f"signal_rate_{tier}"), 4) for tier in TIERS},
        "overhead_pct": round(100.0 * total_plan / total_scan, 3),
        "overhead_in_scan_pct": round(100.0 * sum(row["hook_s"] for row in rows) / total_scan, 3),
        "reorder_gain_share_first_quarter": round(
            means["plan_share_first_quarter"] - means["plan_static_share_first_quarter"], 4
        ),
        "exploration_cost_share_first_quarter": round(
            means["score_order_share_first_quarter"] - means["plan_static_share_first_quarter"], 4
        ),
        "reported_share_signals_first_quarter": round(_mean(rows, "reported_share_first_quarter"), 4),
        "plan_ms_mean": round(1000 * statistics.fmean(row["plan_s"] for row in rows), 2),
        "hooks_ms_mean": round(1000 * statistics.fmean(row["hook_s"] for row in rows), 2),
        "scan_s_mean": round(statistics.fmean(row["scan_s"] for row in rows), 3),
        "by_signal_share": _by_signal_share(rows),
        "strong_buy_only": _strong_buy_only(rows),
        "targets": TARGETS,
    }


def _order_means(rows: list[dict[str, object]], prefix: str = "") -> dict[str, float]:
    """Mean of each order's measures over `rows`, for the signal view `prefix` (`SIGNAL_VIEWS`)."""
    return {
        f"{name}_{measure}": _mean(rows, f"{prefix}{name}_{measure}")
        for name in ORDERS
        for measure in ("share_first_quarter", "to_first", "to_fifth")
    }


def _headline(mean: dict[str, float]) -> dict[str, float]:
    """The figures the targets speak of, with the random and oracle references, from `_order_means`."""
    return {
        "share_signals_first_quarter": round(mean["plan_share_first_quarter"], 4),
        "share_signals_first_quarter_score_order": round(mean["score_order_share_first_quarter"], 4),
        "share_signals_first_quarter_oracle": round(mean["oracle_share_first_quarter"], 4),
        "share_signals_first_quarter_random": round(mean["random_share_first_quarter"], 4),
        "first_signal_speedup_vs_random": round(mean["random_to_first"] / mean["plan_to_first"], 3),
        "fifth_signal_speedup_vs_random": round(mean["random_to_fifth"] / mean["plan_to_fifth"], 3),
        "first_signal_speedup_ceiling": round(mean["random_to_first"] / mean["oracle_to_first"], 3),
    }


def _strong_buy_only(rows: list[dict[str, object]]) -> dict[str, float]:
    """The headline figures when only Strong Buy counts as a signal (`SIGNAL_VIEWS`), same plans and scans."""
    share = statistics.fmean(row["strong_signals"] / row["scanned"] for row in rows)
    return {"signal_share_mean": round(share, 4), **_headline(_order_means(rows, "strong_"))}


def _by_signal_share(rows: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    """The headline figures per band of the session's signal share: how dense the signals are decides what
    any order can reach, so the bands show where the targets are within reach."""
    bands = {}
    for low, high in SIGNAL_SHARE_BANDS:
        members = [row for row in rows if low <= row["signals"] / row["scanned"] < high]
        if members:
            bands[f"{low:.0%}-{min(high, 1):.0%}"] = {"sessions": len(members), **_headline(_order_means(members))}
    return bands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5_000)
    parser.add_argument("--sessions", type=int, default=250)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end", type=dt.date.fromisoformat, default=BENCH_END)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    summary = run(args.symbols, args.sessions, args.warmup, args.seed, args.end)
    summary["bench_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
