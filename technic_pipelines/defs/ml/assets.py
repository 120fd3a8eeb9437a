"""Prediction-model assets and checks: labels, scan history, alpha models, scan predictors.

Thin wrappers over `technic_core.ml`, written like the session assets: each loops over its sessions, calls
the core, writes the warehouse and returns metadata, never data.

* `signal_outcomes` (per session): realized forward returns of the session's scanned symbols over the label
  horizons. A session is labeled only once the bars of its last horizon exist; asked earlier, the run fails
  saying which bars are missing.
* `scan_runs` (per session): replays of sampled user scans over the stored session, appended to the same
  `scan_runs` dataset the daily scan (`scan_results`) and the API write, to bootstrap the history the scan
  predictors learn from.
* `alpha_models`: trains, walk-forward evaluates and registers the alpha models; the champion switches only
  when the new model is at least as good on the same window.
* `scan_predictors`: result-count and duration predictors.
* Checks: the champions load (a fallback to a previous version fails the check), the new alpha model beats
  its baselines (a warning), the predictors beat the rolling median, outcomes are labeled.
"""

import datetime as dt
import time
from collections import Counter
from collections.abc import Mapping
from typing import cast

import matplotlib.pyplot as plt
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
    asset_check,
)

from technic_core import calendar
from technic_core.ml.labels import HORIZONS, label_column, label_ready, session_outcomes
from technic_core.ml.scan_history import DEFAULT_REPLAYS_PER_SESSION, record_replays
from technic_core.ml.scan_predictors import load_predictor_models, train_scan_predictors
from technic_core.ml.scorer import AlphaScorer
from technic_core.ml.training import InsufficientHistoryError, TrainingReport, train_alpha_models
from technic_core.quality import CheckOutcome, CheckRule
from technic_core.scalars import as_float
from technic_pipelines.metadata import (
    Metadata,
    check_results,
    check_severity,
    check_specs,
    markdown_image,
    markdown_table,
    run_sessions,
)
from technic_pipelines.partitions import session_partitions
from technic_pipelines.resources import WarehouseResource

LABEL_HORIZON = max(HORIZONS)
#: Share of a session's scanned symbols that must have both labels (halts and delistings lose some).
MIN_LABEL_COVERAGE = 0.9

OUTCOMES_LABELED = CheckRule(
    "outcomes_labeled",
    f"at least {MIN_LABEL_COVERAGE:.0%} of each session's scanned symbols have every label",
    blocking=False,
)
ALPHA_BEATS_BASELINES = CheckRule(
    "alpha_beats_baselines",
    "each new model's walk-forward rank IC beats mom_21, TechRating and ridge on the same sessions",
    blocking=False,
)
ALPHA_CHAMPIONS_LOAD = CheckRule(
    "alpha_champions_load",
    "the champion alpha models load; a fallback to an older version fails",
    blocking=False,
    serving=True,
)
PREDICTORS_BEAT_BASELINE = CheckRule(
    "scan_predictors_beat_baseline",
    "result-count and duration MAE on the latest sessions beat a rolling median of past runs",
    blocking=False,
)
PREDICTORS_CHAMPION_LOADS = CheckRule(
    "scan_predictors_champion_loads",
    "the champion scan predictors load; a fallback to an older version fails",
    blocking=False,
    serving=True,
)


@asset(
    partitions_def=session_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[
        "scan_results",
        AssetDep(
            "price_bars",
            partition_mapping=TimeWindowPartitionMapping(
                start_offset=0, end_offset=LABEL_HORIZON, allow_nonexistent_upstream_partitions=True
            ),
        ),
    ],
    group_name="ml",
    kinds={"polars", "parquet"},
    check_specs=check_specs("signal_outcomes", [OUTCOMES_LABELED]),
    description=(
        "Realized forward returns close(t) → close(t+5) and close(t+10 sessions) of each scanned symbol, with "
        "its signal and TechRating. Written only once the bars of t+10 exist; a symbol without a bar on "
        "t+h gets no label (null), never zero. outcomes/date=YYYY-MM-DD/."
    ),
)
def signal_outcomes(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    store = warehouse.get()
    sessions = run_sessions(context)
    bar_sessions = set(store.sessions("bars"))
    waiting = [session for session in sessions if not label_ready(session, bar_sessions)]
    if waiting:
        raise Failure(
            description=(
                f"{len(waiting)} session(s) cannot be labeled yet, first {waiting[0]}: their labels need the bars "
                f"of the session {LABEL_HORIZON} sessions later. Nothing was written."
            ),
            allow_retries=False,
        )
    unscanned = [session for session in sessions if not store.has_partition("results", session)]
    if unscanned:
        raise Failure(description=f"no scan results for {len(unscanned)} session(s), first {unscanned[0]}")
    coverage: dict[dt.date, float] = {}
    latest: pl.DataFrame | None = None
    for session in sessions:
        targets = calendar.sessions_between(session, session + dt.timedelta(days=3 * LABEL_HORIZON))[
            : LABEL_HORIZON + 1
        ]
        bars = store.read("bars", targets[0], targets[-1])
        latest = session_outcomes(store.read("results", session, session), bars, session)
        store.write_partition("outcomes", session, latest)
        labeled = latest.filter(pl.all_horizontal(pl.col(label_column(h)).is_not_null() for h in HORIZONS)).height
        coverage[session] = labeled / latest.height if latest.height else 1.0
    if latest is None:  # a run covers at least one partition
        raise Failure(description="no session to label", allow_retries=False)
    worst = min(coverage, key=coverage.__getitem__)
    by_signal = (
        latest.group_by("signal")
        .agg(
            pl.len().alias("symbols"),
            *(pl.col(label_column(h)).mean().alias(f"mean_{label_column(h)}") for h in HORIZONS),
        )
        .sort("signal")
    )
    return MaterializeResult(
        metadata={
            "dagster/row_count": latest.height,
            "sessions": len(sessions),
            "labeled_share_min": round(coverage[worst], 4),
            "forward_returns_by_signal": MetadataValue.md(markdown_table(by_signal, float_digits=4)),
        },
        check_results=check_results(
            [
                CheckOutcome(
                    OUTCOMES_LABELED.name,
                    coverage[worst] >= MIN_LABEL_COVERAGE,
                    f"lowest labeled share {coverage[worst]:.1%} on {worst}",
                    {"worst_session": worst.isoformat(), "labeled_share": round(coverage[worst], 4)},
                )
            ],
            [OUTCOMES_LABELED],
        ),
    )


@asset(
    partitions_def=session_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=["universe", "market_conditions", "price_bars"],
    group_name="ml",
    kinds={"polars", "parquet"},
    description=(
        f"Replays {DEFAULT_REPLAYS_PER_SESSION} sampled user scans (sectors, max symbols, min TechRating, signal "
        "stops) per stored session with the real scan engine, appended to scan_runs/ next to the daily scan's "
        "row and the API's: the history the result-count and duration predictors learn from."
    ),
)
def scan_runs(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    store = warehouse.get()
    started = time.perf_counter()
    rows = [record_replays(store, session) for session in run_sessions(context)]
    replays = pl.concat(rows)
    return MaterializeResult(
        metadata={
            "dagster/row_count": replays.height,
            "sessions": len(rows),
            "median_result_count": as_float(replays.get_column("result_count").median()),
            "median_duration_s": round(as_float(replays.get_column("duration_s").median()), 4),
            "end_reasons": MetadataValue.md(
                markdown_table(
                    pl.DataFrame(
                        Counter(replays.get_column("end_reason")).most_common(),
                        schema=["end_reason", "runs"],
                        orient="row",
                    )
                )
            ),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )


@asset(
    deps=["signal_outcomes"],
    group_name="ml",
    kinds={"xgboost"},
    check_specs=check_specs("alpha_models", [ALPHA_BEATS_BASELINES]),
    description=(
        "xgboost (hist) models of the 5- and 10-session cross-sectional return rank, trained on indicator "
        "features, per-session ranks and the regime; walk-forward evaluated with purge and embargo against "
        "mom_21, TechRating and ridge; registered under models/alpha_<h>d/ and promoted only when at least "
        "as good as the champion on the same window."
    ),
)
def alpha_models(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    store = warehouse.get()
    try:
        reports = train_alpha_models(store)
    except InsufficientHistoryError as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc
    metadata: Metadata = {}
    losers = []
    for report in reports:
        metrics = report.evaluation.metrics
        metadata[f"{report.name}_version"] = report.version
        metadata[f"{report.name}_promoted"] = report.promoted
        metadata[f"{report.name}_rank_ic"] = round(metrics["model"].rank_ic, 6)
        metadata[f"{report.name}_icir"] = round(metrics["model"].icir, 6)
        metadata[f"{report.name}_decile_spread"] = round(metrics["model"].decile_spread, 6)
        metadata[f"{report.name}_metrics"] = MetadataValue.md(_metrics_table(report))
        metadata[f"{report.name}_decision"] = report.reason
        best = max((name for name in metrics if name != "model"), key=lambda name: metrics[name].rank_ic)
        if not metrics["model"].rank_ic > metrics[best].rank_ic:
            losers.append(f"{report.name} {metrics['model'].rank_ic:.4f} ≤ {best} {metrics[best].rank_ic:.4f}")
        context.log.info("%s %s: %s", report.name, report.version, report.reason)
    metadata["rank_ic_by_session"] = MetadataValue.md(_rank_ic_chart(reports))
    metadata["train_seconds"] = round(sum(report.train_seconds for report in reports), 3)
    return MaterializeResult(
        metadata=metadata,
        check_results=check_results(
            [
                CheckOutcome(
                    ALPHA_BEATS_BASELINES.name,
                    not losers,
                    "; ".join(losers) or "every model beats every baseline on its evaluation window",
                )
            ],
            [ALPHA_BEATS_BASELINES],
        ),
    )


@asset_check(
    asset=alpha_models,
    name=ALPHA_CHAMPIONS_LOAD.name,
    description=ALPHA_CHAMPIONS_LOAD.description,
    blocking=ALPHA_CHAMPIONS_LOAD.blocking,
)
def alpha_champions_load(warehouse: WarehouseResource) -> AssetCheckResult:
    scorer = AlphaScorer.load(warehouse.get())
    statuses = [loaded.status() for loaded in scorer.models.values()]
    return AssetCheckResult(
        passed=not scorer.problems(),
        severity=check_severity(ALPHA_CHAMPIONS_LOAD),
        description="; ".join(statuses),
        metadata={loaded.name: loaded.version or "none" for loaded in scorer.models.values()},
    )


@asset(
    deps=["scan_runs", "scan_results"],
    group_name="ml",
    kinds={"scikitlearn"},
    check_specs=check_specs("scan_predictors", [PREDICTORS_BEAT_BASELINE]),
    description=(
        "Result-count and duration predictors (scikit-learn gradient boosting) from the scan history, "
        "evaluated on the latest quarter of runs against a rolling median and promoted only when both beat it; "
        "they back the API's scan predictions and parameter suggestions."
    ),
)
def scan_predictors(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    try:
        report = train_scan_predictors(warehouse.get())
    except InsufficientHistoryError as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc
    context.log.info("scan predictors %s: %s", report.version, report.reason)
    return MaterializeResult(
        metadata={
            "version": report.version,
            "promoted": report.promoted,
            "decision": report.reason,
            # Every field of the `PredictorMetrics` TypedDict is a float, int or str; mypy types its values `object`.
            **cast(Mapping[str, float | int | str], report.metrics),
        },
        check_results=check_results(
            [CheckOutcome(PREDICTORS_BEAT_BASELINE.name, report.promoted, report.reason)], [PREDICTORS_BEAT_BASELINE]
        ),
    )


@asset_check(
    asset=scan_predictors,
    name=PREDICTORS_CHAMPION_LOADS.name,
    description=PREDICTORS_CHAMPION_LOADS.description,
    blocking=PREDICTORS_CHAMPION_LOADS.blocking,
)
def scan_predictors_champion_loads(warehouse: WarehouseResource) -> AssetCheckResult:
    loaded = load_predictor_models(warehouse.get())
    return AssetCheckResult(
        passed=loaded.healthy,
        severity=check_severity(PREDICTORS_CHAMPION_LOADS),
        description=loaded.status(),
        metadata={"version": loaded.version or "none"},
    )


def _metrics_table(report: TrainingReport) -> str:
    """Model and baselines side by side, best rank IC first."""
    rows = [{"predictor": name, **metrics.as_dict()} for name, metrics in report.evaluation.metrics.items()]
    frame = pl.DataFrame(rows).sort("rank_ic", descending=True, nulls_last=True)
    return markdown_table(frame, float_digits=4)


def _rank_ic_chart(reports: list[TrainingReport]) -> str:
    """Daily walk-forward rank IC of each new model, with its 21-session rolling mean."""
    figure, axis = plt.subplots(figsize=(7, 3))
    for report in reports:
        daily = report.evaluation.rank_ic_by_session
        if daily.height == 0:
            continue
        dates = daily.get_column("date").to_list()
        line = axis.plot(dates, daily.get_column("rank_ic").to_list(), linewidth=0.6, alpha=0.5, label=report.name)
        rolling = daily.get_column("rank_ic").rolling_mean(21, min_samples=5).to_list()
        axis.plot(dates, rolling, color=line[0].get_color(), linewidth=1.8)
    axis.axhline(0.0, color="#666666", linewidth=0.8)
    axis.set_ylabel("rank IC")
    axis.set_title("Walk-forward rank IC by session (thick: 21-session mean)")
    axis.legend(fontsize=7)
    figure.autofmt_xdate()
    return markdown_image(figure, "rank IC by session")
