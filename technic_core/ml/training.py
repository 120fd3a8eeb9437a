"""Training runs of the alpha models: warehouse → panel → walk-forward → registry → champion decision.

One run per horizon: build the panel of labeled sessions (features from bars, labels from the `outcomes`
dataset that `signal_outcomes` writes only once they are known), evaluate the spec walk-forward with its
baselines, fit the final model on the latest training window, store it as a new registry version, and
switch the champion only if the new model's walk-forward rank IC is at least the champion's *on the same
window* (`_champion_rank_ic`). Too little history stops the run before anything is written, with a message
saying how much is needed, so the champion is untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from technic_core import calendar
from technic_core.errors import TechnicError
from technic_core.ml.alpha import AlphaSpec, WalkForwardResult, fit_alpha, walk_forward
from technic_core.ml.evaluation import Fold, minimum_labeled_sessions, walk_forward_folds
from technic_core.ml.features import FEATURE_LOOKBACK_SESSIONS, REGIME_COLUMNS, build_features
from technic_core.ml.labels import HORIZONS, label_column
from technic_core.ml.registry import ModelRegistry
from technic_core.warehouse import Warehouse

_log = logging.getLogger(__name__)

MODEL_FILE = "model.ubj"
FEATURES_FILE = "features.json"


class InsufficientHistoryError(TechnicError):
    """Too few labeled sessions to train and evaluate a model; nothing was written."""


@dataclass(frozen=True)
class TrainingConfig:
    """Walk-forward shape and training window, shared by every horizon.

    The defaults evaluate on the latest six blocks of a month (about half a year) and train on at most a
    year of sessions: long enough to span regimes, short enough that 5,000 symbols train in seconds.
    """

    test_sessions: int = 21
    min_train_sessions: int = 60
    max_train_sessions: int = 252
    max_folds: int = 6
    threads: int | None = None

    def min_labeled_sessions(self, horizon: int) -> int:
        return minimum_labeled_sessions(horizon, self.test_sessions, self.min_train_sessions)

    def panel_sessions(self) -> int:
        """Labeled sessions a run reads: the training window, the largest purge + embargo, the test blocks."""
        return self.max_train_sessions + 2 * max(HORIZONS) + self.max_folds * self.test_sessions

    def folds(self, sessions: Sequence[dt.date], horizon: int) -> list[Fold]:
        return walk_forward_folds(
            sessions,
            horizon,
            test_sessions=self.test_sessions,
            min_train_sessions=self.min_train_sessions,
            max_train_sessions=self.max_train_sessions,
            max_folds=self.max_folds,
        )


@dataclass(frozen=True)
class TrainingReport:
    """What one horizon's training run did and found."""

    name: str
    version: str
    promoted: bool
    reason: str
    champion_before: str | None
    champion_rank_ic: float | None
    evaluation: WalkForwardResult
    training_window: dict[str, object]
    train_seconds: float
    evaluation_seconds: float

    @property
    def rank_ic(self) -> float:
        return self.evaluation.metrics["model"].rank_ic


def default_specs() -> list[AlphaSpec]:
    return [AlphaSpec(horizon=horizon) for horizon in HORIZONS]


def load_training_panel(store: Warehouse, max_sessions: int) -> pl.DataFrame:
    """Labeled rows of the latest `max_sessions` outcome sessions joined with their features.

    Labels and the scan's `tech_rating` come from `outcomes`; features are built from the bars (with
    `FEATURE_LOOKBACK_SESSIONS` of history before the first session) and the regime from `conditions`.
    """
    sessions = store.sessions("outcomes")[-max_sessions:]
    if not sessions:
        return pl.DataFrame()
    outcomes = store.read("outcomes", sessions[0], sessions[-1]).select(
        "date", "symbol", "tech_rating", *(label_column(h) for h in HORIZONS)
    )
    first_bar = calendar.sessions_back(sessions[0], FEATURE_LOOKBACK_SESSIONS)[0]
    bars = store.read("bars", first_bar, sessions[-1])
    conditions = store.read("conditions", sessions[0], sessions[-1]).select(REGIME_COLUMNS)
    features = build_features(bars, conditions, sessions=sessions)
    return outcomes.join(features, on=["symbol", "date"], how="inner")


def train_alpha_models(
    store: Warehouse, config: TrainingConfig = TrainingConfig(), specs: Sequence[AlphaSpec] | None = None
) -> list[TrainingReport]:
    """Train, evaluate and register one model per spec (default: one per horizon) from the warehouse.

    Raises `InsufficientHistoryError` before writing anything when any horizon lacks the labeled sessions
    its walk-forward needs.
    """
    specs = list(specs or default_specs())
    panel = load_training_panel(store, config.panel_sessions())
    for spec in specs:
        check_history(panel, spec, config)
    registry = ModelRegistry(store)
    return [train_and_register(registry, panel, spec, config) for spec in specs]


def check_history(panel: pl.DataFrame, spec: AlphaSpec, config: TrainingConfig) -> None:
    """Raise `InsufficientHistoryError` unless `panel` has enough sessions labeled for `spec`'s horizon."""
    needed = config.min_labeled_sessions(spec.horizon)
    have = _labeled_sessions(panel, spec.label)
    if len(have) < needed:
        raise InsufficientHistoryError(
            f"{spec.name} needs ≥ {needed} labeled sessions (training window {config.min_train_sessions}, "
            f"purge + embargo {2 * spec.horizon}, one test block {config.test_sessions}); the warehouse has "
            f"{len(have)}. The champion is unchanged."
        )


def train_and_register(
    registry: ModelRegistry,
    panel: pl.DataFrame,
    spec: AlphaSpec,
    config: TrainingConfig = TrainingConfig(),
    extra_predictors: Mapping[str, str] | None = None,
) -> TrainingReport:
    """Walk-forward evaluate `spec` on `panel`, fit it on the latest window, register it, maybe promote it.

    `extra_predictors` (panel columns) are evaluated alongside the baselines — benchmarks pass the
    simulator's oracle here. The champion is switched only when the new rank IC is at least the
    champion's on the same folds.
    """
    check_history(panel, spec, config)
    threads = config.threads
    sessions = _labeled_sessions(panel, spec.label)
    folds = config.folds(sessions, spec.horizon)
    started = time.perf_counter()
    evaluation = walk_forward(panel, spec, folds, extra_predictors=extra_predictors, threads=threads)
    evaluation_seconds = time.perf_counter() - started

    window = sessions[-config.max_train_sessions :]
    train = panel.filter(pl.col("date").is_in(window))
    started = time.perf_counter()
    booster = fit_alpha(train, spec, threads)
    train_seconds = time.perf_counter() - started

    champion_before = registry.champion(spec.name)
    champion_ic, reason = _champion_rank_ic(registry, spec, panel, folds, evaluation, threads)
    challenger_ic = evaluation.metrics["model"].rank_ic
    promoted = champion_ic is None or (not math.isnan(challenger_ic) and challenger_ic >= champion_ic)
    if champion_ic is not None:
        verdict = "≥" if promoted else "<"
        reason = f"rank IC {challenger_ic:.4f} {verdict} champion {champion_before}'s {champion_ic:.4f} ({reason})"
    training_window = {
        "start": window[0].isoformat(),
        "end": window[-1].isoformat(),
        "sessions": len(window),
        "rows": int(train.get_column(spec.label).is_not_null().sum()),
    }
    evaluation_window = evaluation.window
    version = registry.create_version(
        spec.name,
        files={MODEL_FILE: bytes(booster.save_raw("ubj")), FEATURES_FILE: json.dumps(list(spec.features)).encode()},
        manifest={
            "kind": "xgboost",
            "spec": spec.as_dict(),
            "training_window": training_window,
            "evaluation_window": list(evaluation_window) if evaluation_window else None,
        },
        metrics={
            "walk_forward": {name: metrics.as_dict() for name, metrics in evaluation.metrics.items()},
            "folds": len(folds),
            "rank_ic_by_session": [
                {"date": day.isoformat(), "rank_ic": round(ic, 6)}
                for day, ic in evaluation.rank_ic_by_session.iter_rows()
            ],
            "promotion": {
                "promoted": promoted,
                "reason": reason,
                "champion_before": champion_before,
                "champion_rank_ic": champion_ic,
            },
            "train_seconds": round(train_seconds, 3),
            "evaluation_seconds": round(evaluation_seconds, 3),
        },
    )
    if promoted:
        registry.promote(spec.name, version, reason)
    else:
        _log.info("%s %s not promoted: %s", spec.name, version, reason)
    return TrainingReport(
        name=spec.name,
        version=version,
        promoted=promoted,
        reason=reason,
        champion_before=champion_before,
        champion_rank_ic=champion_ic,
        evaluation=evaluation,
        training_window=training_window,
        train_seconds=train_seconds,
        evaluation_seconds=evaluation_seconds,
    )


def _champion_rank_ic(
    registry: ModelRegistry,
    spec: AlphaSpec,
    panel: pl.DataFrame,
    folds: Sequence[Fold],
    challenger: WalkForwardResult,
    threads: int | None,
) -> tuple[float | None, str]:
    """The champion's walk-forward rank IC on the challenger's folds, and how it was obtained.

    The champion is judged by its spec — retrained per fold exactly like the challenger — because its
    fitted model has seen much of the window and would be graded in-sample. A champion with the same spec
    scores the same by construction (the walk-forward is deterministic), so it is not recomputed: a
    retrain on fresher data then ties and wins. (None, reason) when there is no champion to beat or its spec
    cannot be evaluated any more (e.g. a feature it needs is no longer built).
    """
    champion = registry.champion(spec.name)
    if champion is None:
        return None, "first model of this name"
    try:
        champion_spec = AlphaSpec.from_dict(registry.manifest(spec.name, champion)["spec"])
    except Exception as exc:  # noqa: BLE001 - an unreadable champion cannot defend its title
        return None, f"champion {champion}'s manifest is unreadable ({exc})"
    if champion_spec.same_as(spec):
        return challenger.metrics["model"].rank_ic, "same spec, same window"
    missing = [name for name in champion_spec.features if name not in panel.columns]
    if missing:
        return None, f"champion {champion} needs features no longer built: {', '.join(missing)}"
    rerun = walk_forward(panel, champion_spec, folds, baselines=False, threads=threads)
    return rerun.metrics["model"].rank_ic, "champion's spec re-evaluated on the same folds"


def _labeled_sessions(panel: pl.DataFrame, label: str) -> list[dt.date]:
    if panel.height == 0 or label not in panel.columns:
        return []
    return panel.filter(pl.col(label).is_not_null()).get_column("date").unique().sort().to_list()
