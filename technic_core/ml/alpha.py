"""Alpha models: xgboost regressors (hist) of per-session ranked forward returns, and their walk-forward test.

A model predicts, for one horizon, where a stock's return over the next h sessions will rank among that
session's stocks (`labels.ranked_label`). What it learns from is an `AlphaSpec` — horizon, feature list,
booster parameters, rounds and structure — so that two specs can be compared on exactly the same folds,
which is how the registry decides whether a newly trained model may replace the champion.

Structure ("linear_residual", the default): next-week returns are mostly noise, and most of what is
predictable in a cross-section is a sum of roughly linear effects of standardized features (oversold is
better, …) — which boosted trees, step functions of one feature at a time, approximate less closely than a
linear model does. What a linear model cannot express is how those effects change with the state: a
momentum tilt that pays in a calm bull market and crashes in a volatile bear market, a reversal that is
stronger in volatile names. So the model is a ridge regression (exactly the ridge baseline's fit, on the
same rows and features) plus boosted trees fitted to what the ridge leaves: the ridge's prediction is the
booster's base margin, and each tree uses one feature together with the conditioning features
(`features.CONDITIONING_FEATURES`: the regime flags and the stock's own volatility rank) — a feature's effect
may change with the state, and that is the only structure the trees add. The ridge's coefficients travel
inside the booster (attribute `LINEAR_BASE_ATTRIBUTE`), so one model file predicts. Because the ridge is
part of the model, the model beats the ridge baseline only by what the trees add out of sample.

"additive_monotone" is the trees alone, each on one feature plus the conditioning features, each feature's
effect monotone in the direction of its rank correlation with the target on the training rows (no
constraint where that correlation is below `MIN_SIGN_CORRELATION`); "free" drops every constraint.

Baselines are evaluated on the same test rows in the same run, so a figure is never compared with one from
another window: `mom_21` (one-month momentum), the scan's `tech_rating`, and a ridge regression on the
model's own features (the strongest linear competitor: if it matched the model, the trees would add nothing).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np
import polars as pl
import xgboost as xgb
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from technic_core.errors import ConfigError
from technic_core.ml.evaluation import Fold, Metrics, daily_rank_ic, evaluate
from technic_core.ml.features import CONDITIONING_FEATURES, FEATURES, feature_matrix
from technic_core.ml.labels import label_column, ranked_label
from technic_core.scalars import as_date, as_int

_log = logging.getLogger(__name__)

#: Shallow trees, strong leaf minimums and shrinkage: next-week returns are mostly noise (an R² of a few
#: percent is skill), so the booster must average over many rows rather than chase them — the more so on
#: top of the ridge, where what is left to learn is small: a low learning rate over many rounds with large
#: leaves, shallow trees (deeper ones or faster rates overfit the residual; the sweep is in docs/ml.md). 32
#: bins are plenty for rank features, and a year × 5,000 symbols must train in well under a minute on two
#: cores.
DEFAULT_PARAMS: dict[str, object] = {
    "objective": "reg:squarederror",
    "tree_method": "hist",
    "max_depth": 3,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.5,
    "min_child_weight": 500.0,
    "lambda": 1.0,
    "max_bin": 32,
    "seed": 0,
}
DEFAULT_ROUNDS = 100
STRUCTURES = ("linear_residual", "additive_monotone", "free")
#: Booster attribute holding the linear base of a "linear_residual" model (JSON, see `_linear_base`).
LINEAR_BASE_ATTRIBUTE = "linear_base"
#: Below this |Spearman ρ| with the target on the training rows a feature's direction is left free.
MIN_SIGN_CORRELATION = 0.005
#: Rows (evenly spaced) the feature directions are estimated on; ρ's standard error is then ~0.0045.
SIGN_SAMPLE_ROWS = 50_000
#: Ridge penalty on standardized features; large data makes the exact value unimportant.
RIDGE_ALPHA = 10.0
#: Baselines read straight from a feature column: the predictor is the column itself.
COLUMN_BASELINES: dict[str, str] = {"mom_21": "mom_21", "tech_rating": "tech_rating"}
PREDICTION = "prediction"


@dataclass(frozen=True)
class AlphaSpec:
    """Everything that decides what a trained alpha model is, apart from its data."""

    horizon: int
    features: tuple[str, ...] = FEATURES
    params: Mapping[str, object] = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    rounds: int = DEFAULT_ROUNDS
    structure: str = "linear_residual"

    def __post_init__(self) -> None:
        if self.structure not in STRUCTURES:
            raise ConfigError(f"unknown structure {self.structure!r}; known: {', '.join(STRUCTURES)}")

    @property
    def name(self) -> str:
        """Registry name of the model: one per horizon."""
        return f"alpha_{self.horizon}d"

    @property
    def label(self) -> str:
        return label_column(self.horizon)

    def as_dict(self) -> dict[str, object]:
        return {
            "horizon": self.horizon,
            "features": list(self.features),
            "params": dict(sorted(self.params.items())),
            "rounds": self.rounds,
            "structure": self.structure,
        }

    @classmethod
    def from_dict(cls, raw: object) -> AlphaSpec:
        """The spec `as_dict` wrote, as JSON decoded it (a manifest's "spec"); a malformed one raises
        `ValueError` (or `KeyError` for a missing field)."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"a spec is a JSON object, got {raw!r}")
        features, params = raw["features"], raw["params"]
        if not isinstance(features, list | tuple) or not all(isinstance(name, str) for name in features):
            raise ValueError(f"spec features must be a list of names, got {features!r}")
        if not isinstance(params, Mapping):
            raise ValueError(f"spec params must be a JSON object, got {params!r}")
        return cls(
            horizon=int(raw["horizon"]),
            features=tuple(features),
            params=dict(params),
            rounds=int(raw["rounds"]),
            structure=str(raw.get("structure", "free")),
        )

    def same_as(self, other: AlphaSpec) -> bool:
        """True when both specs train identical models on identical data (compared as canonical JSON)."""
        return json.dumps(self.as_dict(), sort_keys=True) == json.dumps(other.as_dict(), sort_keys=True)


@dataclass(frozen=True)
class WalkForwardResult:
    """Out-of-sample predictions of one spec over a set of folds, and their metrics (baselines included)."""

    predictions: pl.DataFrame  # date, symbol, label and one column per predictor
    metrics: dict[str, Metrics]  # "model" plus each baseline
    rank_ic_by_session: pl.DataFrame  # date, rank_ic of the model

    @property
    def window(self) -> tuple[str, str] | None:
        """First and last test session (ISO), the window a champion must be compared on."""
        if self.predictions.height == 0:
            return None
        dates = self.predictions.get_column("date")
        return as_date(dates.min()).isoformat(), as_date(dates.max()).isoformat()


#: Rows per xgboost thread: below this, OpenMP's per-round synchronization costs more than a second
#: thread saves, and on a busy machine spinning threads make training many times slower.
ROWS_PER_THREAD = 200_000


def default_threads() -> int:
    """Threads for xgboost: every CPU this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_for(rows: int, threads: int | None = None) -> int:
    """Threads to train on `rows` rows: at most `threads` (default: every CPU), one per `ROWS_PER_THREAD`."""
    return max(1, min(threads or default_threads(), rows // ROWS_PER_THREAD))


def fit_alpha(train: pl.DataFrame, spec: AlphaSpec, threads: int | None = None) -> xgb.Booster:
    """Fit the booster of `spec` on the rows of `train` that have a label for its horizon."""
    rows = train.filter(pl.col(spec.label).is_not_null()).with_columns(ranked_label(spec.label).alias("target"))
    if rows.height == 0:
        raise ValueError(f"{spec.name}: no labeled rows to train on")
    params = {**spec.params, "nthread": threads_for(rows.height, threads)}
    features = feature_matrix(rows, spec.features)
    target = rows.get_column("target").to_numpy()
    base = None
    if spec.structure == "additive_monotone":
        params.update(_additive_monotone_constraints(rows, spec.features))
    elif spec.structure == "linear_residual":
        params["interaction_constraints"] = _conditioned_groups(spec.features)
        base = _linear_base(fit_ridge_matrix(features, target), spec.features)
    matrix = xgb.QuantileDMatrix(
        features,
        label=target,
        base_margin=None if base is None else _linear_margin(base, features),
        max_bin=as_int(params.get("max_bin", 256)),
        feature_names=list(spec.features),
        nthread=params["nthread"],
    )
    booster = xgb.train(params, matrix, num_boost_round=spec.rounds)
    if base is not None:
        booster.set_attr(**{LINEAR_BASE_ATTRIBUTE: json.dumps(base)})
    return booster


def _conditioned_groups(features: Sequence[str]) -> list[list[str]]:
    """Interaction groups: each feature with the conditioning features (each tree stays inside one group)."""
    conditioning = [name for name in features if name in CONDITIONING_FEATURES]
    return [[name, *conditioning] for name in features if name not in CONDITIONING_FEATURES]


class _LinearBase(TypedDict):
    """The linear base of a "linear_residual" model, as stored (JSON) in its booster's attribute."""

    features: list[str]
    fill: list[float]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float


def _linear_base(model: Pipeline, features: Sequence[str]) -> _LinearBase:
    """A fitted `fit_ridge_matrix` pipeline as plain numbers: missing → `fill`, then ((x − mean) / scale) ·
    coef + intercept. Stored as floats so the prediction does not depend on scikit-learn's pickles."""
    imputer, scaler, ridge = (model.named_steps[name] for name in ("simpleimputer", "standardscaler", "ridge"))
    return {
        "features": list(features),
        "fill": np.nan_to_num(imputer.statistics_.astype(float), nan=0.0).tolist(),
        "mean": scaler.mean_.astype(float).tolist(),
        "scale": scaler.scale_.astype(float).tolist(),
        "coef": ridge.coef_.astype(float).tolist(),
        "intercept": float(ridge.intercept_),
    }


def _linear_margin(base: _LinearBase, features: np.ndarray) -> np.ndarray:
    """The linear base's prediction for a feature matrix (NaN = missing), in float64."""
    values = features.astype(np.float64)
    fill = np.asarray(base["fill"])
    values = np.where(np.isnan(values), fill, values)
    weights = np.asarray(base["coef"]) / np.asarray(base["scale"])
    return (values - np.asarray(base["mean"])) @ weights + float(base["intercept"])


def _additive_monotone_constraints(rows: pl.DataFrame, features: Sequence[str]) -> dict[str, object]:
    """xgboost's interaction and monotone constraints for the "additive_monotone" structure (module doc);
    the conditioning features are never constrained in direction."""
    others = [name for name in features if name not in CONDITIONING_FEATURES]
    # The signs need a rough correlation, not all of a year's rows: a spread-out sample keeps this a fixed
    # cost (Spearman over 1.2 M rows × 45 features took longer than the fit).
    sample = rows.gather_every(max(1, rows.height // SIGN_SAMPLE_ROWS))
    correlations = sample.select(
        pl.corr(name, "target", method="spearman").fill_nan(0.0).fill_null(0.0).alias(name) for name in others
    ).row(0, named=True)
    signs = {
        name: (0 if abs(rho) < MIN_SIGN_CORRELATION else (1 if rho > 0 else -1)) for name, rho in correlations.items()
    }
    return {
        "interaction_constraints": _conditioned_groups(features),
        "monotone_constraints": "(" + ",".join(str(signs.get(name, 0)) for name in features) + ")",
    }


def predict_alpha(booster: xgb.Booster, frame: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    """Predictions for every row of `frame` in one call (missing feature columns raise, naming them)."""
    if frame.height == 0:
        return np.empty(0)
    values = feature_matrix(frame, features)
    linear = booster.attr(LINEAR_BASE_ATTRIBUTE)
    base = None
    if linear is not None:
        stored = json.loads(linear)
        if list(stored["features"]) != list(features):
            raise ConfigError("the model's linear base was fitted on another feature list")
        base = _linear_margin(stored, values)
    matrix = xgb.DMatrix(values, base_margin=base, feature_names=list(features), missing=np.nan)
    return booster.predict(matrix)


def fit_ridge(train: pl.DataFrame, spec: AlphaSpec) -> Pipeline:
    """Ridge on the same features and target as the booster; missing values take the training mean."""
    rows = train.filter(pl.col(spec.label).is_not_null()).with_columns(ranked_label(spec.label).alias("target"))
    return fit_ridge_matrix(feature_matrix(rows, spec.features), rows.get_column("target").to_numpy())


def fit_ridge_matrix(features: np.ndarray, target: np.ndarray) -> Pipeline:
    """The ridge of `fit_ridge` on a feature matrix (NaN = missing) and its ranked target."""
    model = make_pipeline(SimpleImputer(keep_empty_features=True), StandardScaler(), Ridge(alpha=RIDGE_ALPHA))
    return model.fit(features, target)


def walk_forward(
    panel: pl.DataFrame,
    spec: AlphaSpec,
    folds: Sequence[Fold],
    baselines: bool = True,
    extra_predictors: Mapping[str, str] | None = None,
    threads: int | None = None,
) -> WalkForwardResult:
    """Train `spec` on each fold's training sessions and predict its test sessions; score everything.

    With `baselines`, the same test rows are also scored by `COLUMN_BASELINES` and a ridge refitted per
    fold. `extra_predictors` maps more names to columns of `panel` evaluated the same way (the simulator's
    oracle, in benchmarks). Rows without a label are neither trained on nor scored.
    """
    columns = {**(COLUMN_BASELINES if baselines else {}), **(extra_predictors or {})}
    labeled = panel.filter(pl.col(spec.label).is_not_null())
    pieces = []
    for number, fold in enumerate(folds):
        train = labeled.filter(pl.col("date").is_in(fold.train))
        test = labeled.filter(pl.col("date").is_in(fold.test))
        if test.height == 0 or train.height == 0:
            continue
        booster = fit_alpha(train, spec, threads)
        scored = test.select("date", "symbol", spec.label, *columns.values()).with_columns(
            pl.Series(PREDICTION, predict_alpha(booster, test, spec.features))
        )
        if baselines:
            ridge = fit_ridge(train, spec)
            scored = scored.with_columns(pl.Series("ridge", ridge.predict(feature_matrix(test, spec.features))))
        pieces.append(scored)
        _log.info(
            "%s fold %d/%d: %d train rows, %d test rows", spec.name, number + 1, len(folds), train.height, test.height
        )
    if not pieces:
        empty = pl.DataFrame(
            schema={"date": pl.Date, "symbol": pl.String, spec.label: pl.Float64, PREDICTION: pl.Float64}
        )
        return WalkForwardResult(
            empty, {"model": evaluate(empty, PREDICTION, spec.label)}, daily_rank_ic(empty, PREDICTION, spec.label)
        )
    predictions = pl.concat(pieces, how="vertical_relaxed")
    metrics = {"model": evaluate(predictions, PREDICTION, spec.label)}
    for name, column in columns.items():
        metrics[name] = evaluate(predictions, column, spec.label)
    if baselines:
        metrics["ridge"] = evaluate(predictions, "ridge", spec.label)
    return WalkForwardResult(predictions, metrics, daily_rank_ic(predictions, PREDICTION, spec.label))
