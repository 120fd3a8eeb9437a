"""Prediction-model quality on the simulated market, in one run: alpha skill against the planted truth and
the baselines, scan-predictor errors against a rolling median, prediction latency and training time.

Steps (all through the production code paths, on a fresh warehouse in a temp directory):
  1. fill a warehouse with --symbols simulated names scanned daily from --start to --end (bars, universe,
     conditions, daily results, outcomes) with `technic_core.ml.sandbox.fill_warehouse`;
  2. alpha models: build the training panel from the warehouse, join the simulator's oracle expected
     returns (evaluation only), and walk-forward evaluate --folds blocks of 21 sessions for both horizons
     with purge + embargo, the baselines (mom_21, TechRating, ridge) and the oracle on the same rows;
  3. training time: one year of sessions × every symbol — features for the year, then the final fit of
     both horizons (`train_seconds`);
  4. scan predictors: replay 8 sampled scans on each of the last --replay-sessions sessions, train, and
     read the held-out MAE of count and duration against the rolling median; then time single predictions.

The simulated market plants a state-dependent alpha by default (`technic_core.sources.simulated`: momentum
crashes, volatility-scaled reversal); --linear-alpha runs the linear, regime-independent world of simulator
MODEL_VERSION 1 instead, where a linear model on the same features sits at the ceiling.

Targets (issue 6): rank_ic_5d ≥ 0.8 × oracle and above every baseline; count_mae < 5 and ≥ 30 % below the
baseline; predict p99 < 10 ms; training one year × 5,000 symbols < 60 s on 2 cores.
Writes bench/results/ml_quality.json (--output elsewhere).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import polars as pl

from technic_core import calendar
from technic_core.ml.alpha import COLUMN_BASELINES, PREDICTION, AlphaSpec, default_threads, fit_alpha
from technic_core.ml.evaluation import daily_rank_ic
from technic_core.ml.labels import HORIZONS, label_column
from technic_core.ml.registry import MODELS_DIR, ModelRegistry
from technic_core.ml.sandbox import fill_warehouse
from technic_core.ml.scan_history import latest_profile, recent_duration, record_replays, sample_configs
from technic_core.ml.scan_predictors import (
    MODEL_FILE,
    NAME,
    PredictorModels,
    ScanPredictors,
    current_conditions,
    load_scan_predictors,
    train_scan_predictors,
)
from technic_core.ml.scorer import alpha_scorer
from technic_core.ml.training import TrainingConfig, load_training_panel, train_and_register
from technic_core.sources.simulated import MODEL_VERSION, SimulatedMarket, SimulationConfig
from technic_core.warehouse import Warehouse

RESULTS = Path(__file__).parent / "results" / "ml_quality.json"
SESSIONS_PER_YEAR = 252
PREDICT_CALLS = 2_000

_log = logging.getLogger("bench.ml_quality")


def alpha_quality(store: Warehouse, market: SimulatedMarket, folds: int) -> dict[str, object]:
    """Walk-forward metrics of both horizons with baselines and the oracle on the same rows."""
    config = TrainingConfig(max_folds=folds)
    panel = load_training_panel(store, config.panel_sessions())
    first, last = panel.get_column("date").min(), panel.get_column("date").max()
    for horizon in HORIZONS:
        oracle = market.oracle_expected_return(first, last, horizon).select(
            "symbol", "date", pl.col("expected_return").alias(f"oracle_{horizon}d")
        )
        panel = panel.join(oracle, on=["symbol", "date"], how="left")
    registry = ModelRegistry(store)
    figures: dict[str, object] = {}
    for horizon in HORIZONS:
        report = train_and_register(
            registry, panel, AlphaSpec(horizon=horizon), config, extra_predictors={"oracle": f"oracle_{horizon}d"}
        )
        metrics = report.evaluation.metrics
        baselines = {name: metrics[name].rank_ic for name in ("mom_21", "tech_rating", "ridge")}
        figures[f"rank_ic_{horizon}d"] = metrics["model"].rank_ic
        figures[f"oracle_rank_ic_{horizon}d"] = metrics["oracle"].rank_ic
        figures[f"best_baseline_rank_ic_{horizon}d"] = max(baselines.values())
        figures[f"icir_{horizon}d"] = metrics["model"].icir
        figures[f"decile_spread_{horizon}d"] = metrics["model"].decile_spread
        figures[f"baselines_{horizon}d"] = {name: round(value, 4) for name, value in baselines.items()}
        figures[f"evaluated_sessions_{horizon}d"] = metrics["model"].sessions
        best = max(baselines, key=baselines.get)
        figures[f"model_vs_{best}_{horizon}d"] = paired_difference(
            report.evaluation.predictions, best, label_column(horizon)
        )
        figures[f"evaluation_window_{horizon}d"] = list(report.evaluation.window or ())
        _log.info("%s: %s", report.name, {name: m.as_dict() for name, m in metrics.items()})
    return figures


def paired_difference(predictions: pl.DataFrame, baseline: str, label: str) -> dict[str, float]:
    """Mean daily rank IC of the model minus `baseline`'s on the same sessions, and its t statistic
    (daily differences; overlapping labels make neighbouring days correlated, so |t| overstates the
    evidence a little) — whether a gap between two predictors is more than noise."""
    column = "ridge" if baseline == "ridge" else COLUMN_BASELINES[baseline]
    model = daily_rank_ic(predictions, PREDICTION, label).rename({"rank_ic": "model"})
    other = daily_rank_ic(predictions, column, label).rename({"rank_ic": "baseline"})
    difference = model.join(other, on="date").select(pl.col("model") - pl.col("baseline")).to_series()
    mean, deviation = float(difference.mean()), float(difference.std())
    return {
        "mean_difference": mean,
        "t_stat": mean / deviation * math.sqrt(difference.len()),
        "sessions": difference.len(),
    }


def training_time(store: Warehouse) -> dict[str, object]:
    """One year × every symbol: features and labels of 252 sessions, then both horizons' final fits."""
    started = time.perf_counter()
    panel = load_training_panel(store, SESSIONS_PER_YEAR)
    features_s = time.perf_counter() - started
    fits = {}
    for horizon in HORIZONS:
        fit_started = time.perf_counter()
        fit_alpha(panel, AlphaSpec(horizon=horizon))
        fits[f"fit_{horizon}d_s"] = round(time.perf_counter() - fit_started, 2)
    return {
        "train_seconds": time.perf_counter() - started,
        "train_features_s": round(features_s, 2),
        **fits,
        "train_rows": panel.height,
        "train_sessions": panel.get_column("date").n_unique(),
        "train_threads": default_threads(),
    }


def scan_predictor_quality(store: Warehouse, replay_sessions: int) -> dict[str, object]:
    """Replays, training, held-out MAE, and the latency of single predictions."""
    started = time.perf_counter()
    for session in store.sessions("results")[-replay_sessions:]:
        record_replays(store, session)
    replay_s = time.perf_counter() - started
    report = train_scan_predictors(store)
    predictors = load_scan_predictors(store)
    if predictors is None or predictors.version != report.version:
        # Not promoted (or an older champion serves): time the predictors this run trained all the same.
        predictors = ScanPredictors(
            latest_profile(store), _version_models(store, report.version), report.version, recent_duration(store)
        )
    conditions = current_conditions(store)
    configs = [c for s in store.sessions("results")[-PREDICT_CALLS // 8 :] for c in sample_configs(s)]
    latencies = []
    for config in configs[:PREDICT_CALLS]:
        call_started = time.perf_counter()
        predictors.predict(config, conditions)
        latencies.append(time.perf_counter() - call_started)
    latencies_ms = np.array(latencies) * 1e3
    return {
        **{
            key: report.metrics[key]
            for key in (
                "count_mae",
                "count_mae_baseline",
                "count_mae_emulation",
                "duration_mae_s",
                "duration_mae_baseline_s",
                "train_runs",
                "test_runs",
            )
        },
        "scan_predictors_promoted": report.promoted,
        "predict_p50_ms": float(np.percentile(latencies_ms, 50)),
        "predict_p99_ms": float(np.percentile(latencies_ms, 99)),
        "replay_seconds": round(replay_s, 1),
    }


def _version_models(store: Warehouse, version: str) -> PredictorModels:
    """The `PredictorModels` of one registered version (checksum-verified), champion or not."""
    return joblib.load(io.BytesIO(ModelRegistry(store).read_file(NAME, version, MODEL_FILE)))


def alpha_scoring_time(store: Warehouse) -> dict[str, float]:
    """Scoring a whole session (features of every symbol + both models), as a scan's enricher does."""
    session = store.sessions("results")[-1]
    bars = store.read("bars", calendar.sessions_back(session, 260)[0], session)
    scorer = alpha_scorer(store)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        scorer.score_session(session, bars)
        timings.append(time.perf_counter() - started)
    return {"alpha_score_session_ms": round(1e3 * float(np.median(timings)), 1)}


def shortfalls(figures: dict[str, object]) -> dict[str, str]:
    """For each missed target, what was measured that explains it (written next to the figures)."""
    notes = {}
    targets = figures["targets"]
    if not targets["rank_ic_5d_above_baselines"]:
        best = max(figures["baselines_5d"], key=figures["baselines_5d"].get)
        paired = figures.get(f"model_vs_{best}_5d", {})
        notes["rank_ic_5d_above_baselines"] = (
            f"the best baseline, {best}, reaches {figures['best_baseline_rank_ic_5d']:.4f} against the model's "
            f"{figures['rank_ic_5d']:.4f} (daily difference {paired.get('mean_difference', math.nan):+.4f}, "
            f"t {paired.get('t_stat', math.nan):+.1f} over {paired.get('sessions')} sessions); the oracle's is "
            f"{figures['oracle_rank_ic_5d']:.4f}"
            + (
                ", so both capture the known predictable part. The "
                if min(figures["rank_ic_5d"], figures["best_baseline_rank_ic_5d"]) >= figures["oracle_rank_ic_5d"]
                else ". The "
            )
            + (
                "simulator plants a linear combination of cross-sectionally standardized features "
                "(--linear-alpha), so a linear model on the same features sits at the ceiling and the trees on "
                "top of it have nothing left to add"
                if not figures["simulation"]["alpha_state_dependence"]
                else "model is the ridge plus trees on what it leaves, so the gap is what the trees lose out of "
                "sample: the state dependence the simulator plants (regime-dependent weights, volatility-scaled "
                "reversal) was not learned well enough in this window to pay for the trees' noise"
            )
        )
    if not targets["predict_p99_below_10ms"]:
        notes["predict_p99_below_10ms"] = (
            f"p50 {figures['predict_p50_ms']:.2f} ms; the tail is the scheduler on a shared 2-core machine "
            f"(load average {figures['machine']['load_average_end'][0]:.1f} at the end)"
        )
    if not targets["train_below_60s"]:
        notes["train_below_60s"] = (
            f"features {figures['train_features_s']} s, fits {figures.get('fit_5d_s')} s + {figures.get('fit_10d_s')} s "
            f"on {figures['train_rows']} rows with the same settings (the spread between the two is the machine's "
            f"load); load average {figures['machine']['load_average_end'][0]:.1f} on 2 cores"
        )
    return notes


def caveats(figures: dict[str, object]) -> dict[str, str]:
    """Targets met, but by a margin the paired daily difference cannot tell from noise (|t| < 2)."""
    notes = {}
    if figures["targets"]["rank_ic_5d_above_baselines"]:
        best = max(figures["baselines_5d"], key=figures["baselines_5d"].get)
        paired = figures.get(f"model_vs_{best}_5d", {})
        if abs(paired.get("t_stat", math.inf)) < 2:
            notes["rank_ic_5d_above_baselines"] = (
                f"met by {paired['mean_difference']:+.5f} rank IC a day over {best} (t {paired['t_stat']:+.2f} over "
                f"{paired['sessions']} sessions): within noise, a tie rather than a win"
            )
    return notes


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5_000)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2019, 1, 2))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2020, 12, 31))
    parser.add_argument("--folds", type=int, default=8, help="walk-forward test blocks of 21 sessions")
    parser.add_argument("--replay-sessions", type=int, default=120)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--linear-alpha",
        action="store_true",
        help="simulate the linear, regime-independent planted alpha (alpha_state_dependence=False)",
    )
    parser.add_argument(
        "--warehouse",
        type=Path,
        help="keep the filled warehouse here and reuse it when it already holds the same sessions of the same "
        "simulated market (models are deleted and retrained; for iterating on the models, not for the reported "
        "fill time)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    simulation = SimulationConfig(n_symbols=args.symbols, alpha_state_dependence=not args.linear_alpha)
    market = SimulatedMarket(simulation)
    sessions = calendar.sessions_between(args.start, args.end)
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        directory = args.warehouse or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="technic-ml-bench-")))
        store = Warehouse(directory)
        started = time.perf_counter()
        # a warehouse filled from another simulated market (world, version, size) is never reused
        identity = Path(directory) / "simulated_market.txt"
        market_id = f"MODEL_VERSION={MODEL_VERSION} {simulation!r}"
        reused = (
            store.sessions("results") == sessions
            and bool(store.sessions("outcomes"))
            and identity.is_file()
            and identity.read_text() == market_id
        )
        if reused:
            _log.info("reusing the filled warehouse %s", directory)
            shutil.rmtree(Path(directory) / MODELS_DIR, ignore_errors=True)  # every model trained afresh
        else:
            if store.sessions("results"):
                raise SystemExit(f"{directory} holds another market's or range's warehouse; pass an empty directory")
            fill_warehouse(store, market, sessions)
            identity.write_text(market_id)
        fill_s = time.perf_counter() - started
        _log.info("warehouse filled in %.0f s", fill_s)
        figures = {
            "symbols": args.symbols,
            "sessions": len(sessions),
            "first_session": sessions[0].isoformat(),
            "last_session": sessions[-1].isoformat(),
            "fill_seconds": None if reused else round(fill_s, 1),
            "simulation": {
                "model_version": MODEL_VERSION,
                "alpha_state_dependence": simulation.alpha_state_dependence,
                "alpha_volatility_interaction": simulation.alpha_volatility_interaction,
                "alpha_regime_multipliers": {name: list(m) for name, m in simulation.alpha_regime_multipliers},
            },
            **alpha_quality(store, market, args.folds),
            **training_time(store),
            **alpha_scoring_time(store),
            **scan_predictor_quality(store, args.replay_sessions),
        }
    figures["ratios"] = {
        "rank_ic_5d_to_oracle": figures["rank_ic_5d"] / figures["oracle_rank_ic_5d"],
        "rank_ic_5d_to_best_baseline": figures["rank_ic_5d"] / figures["best_baseline_rank_ic_5d"],
        "count_mae_to_baseline": figures["count_mae"] / figures["count_mae_baseline"],
        "duration_mae_to_baseline": figures["duration_mae_s"] / figures["duration_mae_baseline_s"],
        "train_seconds_to_60s": figures["train_seconds"] / 60,
        "predict_p99_ms_to_10ms": figures["predict_p99_ms"] / 10,
    }
    figures["targets"] = {
        "rank_ic_5d_vs_oracle": figures["rank_ic_5d"] >= 0.8 * figures["oracle_rank_ic_5d"],
        "rank_ic_5d_above_baselines": figures["rank_ic_5d"] > figures["best_baseline_rank_ic_5d"],
        "count_mae_below_5": figures["count_mae"] < 5,
        "count_mae_30pct_below_baseline": figures["count_mae"] <= 0.7 * figures["count_mae_baseline"],
        "predict_p99_below_10ms": figures["predict_p99_ms"] < 10,
        "train_below_60s": figures["train_seconds"] < 60,
    }
    figures["machine"] = {
        "cpus": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in load_before],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "note": "2-core machine shared with other work: timings may be inflated by the load average",
    }
    figures["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    figures["shortfalls"] = shortfalls(figures)
    figures["caveats"] = caveats(figures)
    rounded = _rounded(figures)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rounded, indent=2) + "\n")
    print(json.dumps(rounded, indent=2))


if __name__ == "__main__":
    main()
