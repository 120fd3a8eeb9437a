"""Result-count and duration predictors for scans, and the parameter optimizer built on them.

Contract (used by the API):

* `load_scan_predictors(store) -> ScanPredictors | None` — the champion predictors (None when none was
  trained yet, or none loads), cached per process.
* `BaselinePredictor.load(store)` — what answers until a champion exists (docs/predictions.md): the
  median of recent scan runs with the same filters, else the config applied to the latest scan's ratings.
* Both have `answer(config, conditions) -> Answer(predicted, model, reason, basis)`: `model` is
  "baseline" or the champion's version; `predicted` (`Prediction(result_count, duration_s)`) is None only
  when the warehouse holds nothing to estimate from. `ScanPredictors.predict` gives the bare `Prediction`.
* `suggest(store, goal, conditions, predictors=None) -> Suggestion(config, answer, warnings, hot_sectors)`
  with goal "quick", "balanced" or "deep" (`technic_core.ml.optimizer`).
* `conditions` is a mapping like a `schema.CONDITIONS` row (`current_conditions(store)` gives the latest):
  `regime` or `trend` + `volatility_state`, `vix`, `pct_advancing`, `pct_above_sma_50`,
  `index_volatility_20d`; missing keys are fine.

Models: scikit-learn gradient boosting on `scan_history.PREDICTOR_FEATURES`, absolute-error loss because
MAE is what they are judged by. The count model learns the *correction* to the emulated count (the config
applied to the latest rating profile, `scan_history.RatingProfile.emulate`): with little history it stays
close to the emulation instead of to an average of unrelated configs. (`GradientBoostingRegressor` rather
than the histogram variant: single-row prediction costs a fraction of a millisecond with no thread-pool
start-up, which is what an API call needs.) They are evaluated on the latest quarter of sessions against a
rolling median of the previous runs and promoted only when both beat it.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

import joblib
import numpy as np
import polars as pl
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline

try:  # scikit-learn's compiled tree-summing routine (private; `_predict` falls back without it)
    from sklearn.ensemble._gradient_boosting import predict_stages as _predict_stages
except ImportError:  # pragma: no cover
    _predict_stages = None

from technic_core.config import ScanConfig
from technic_core.ml import optimizer
from technic_core.ml.registry import Loaded, ModelRegistry
from technic_core.ml.scan_history import (
    PREDICTOR_FEATURES,
    RECENT_RUNS,
    RatingProfile,
    feature_row,
    history_features,
    latest_profile,
    recent_duration,
)
from technic_core.ml.training import InsufficientHistoryError
from technic_core.scalars import as_float
from technic_core.warehouse import Warehouse

_log = logging.getLogger(__name__)

NAME = "scan_predictors"
MODEL_FILE = "predictors.joblib"
#: Runs a training needs, over at least `MIN_SESSIONS` sessions (a test quarter needs a few sessions).
MIN_RUNS = 40
MIN_SESSIONS = 4
#: Share of the latest sessions held out to evaluate against the baseline.
TEST_SHARE = 0.25
#: Previous runs the rolling-median baseline takes the median of (for durations it is the
#: `recent_duration_s` feature, the same median).
BASELINE_WINDOW = RECENT_RUNS
#: What `Answer.model` says while no trained predictor answers.
BASELINE = "baseline"
#: Sessions of scan runs the baseline draws on: ratings drift, so older runs describe another market.
BASELINE_SESSIONS = 5
#: Seconds per visited symbol the baseline assumes before any scan run was timed: a documented default of
#: the order of a warehouse scan, not a measurement.
DEFAULT_SECONDS_PER_SYMBOL = 5e-4


@dataclass(frozen=True)
class Prediction:
    """Predicted outcome of one scan."""

    result_count: float
    duration_s: float


@dataclass(frozen=True)
class Answer:
    """A prediction labeled with what gave it: `model` is `BASELINE` or the champion's version. For the
    baseline, `reason` says why no trained predictor answers and `basis` what the numbers come from (or why
    there are none: `predicted` is None only when the warehouse holds nothing to estimate from)."""

    predicted: Prediction | None
    model: str
    reason: str | None = None
    basis: str | None = None


@dataclass(frozen=True)
class Suggestion:
    """A config for a goal, what it is predicted to give, and what to watch out for. `config` is None only
    when nothing can be estimated (`answer.basis` says why)."""

    config: ScanConfig | None
    answer: Answer
    warnings: list[str]
    hot_sectors: list[str]


@dataclass(frozen=True)
class PredictorModels:
    """The fitted pair, stored as one joblib file. Each learns a correction to a reference value:
    the count to the emulated count (`profile_results`), the duration to the recent median duration."""

    count: Pipeline
    duration: Pipeline
    features: tuple[str, ...]
    #: Stands in for `recent_duration_s` when no recent run is known: the training median.
    typical_duration_s: float

    @classmethod
    def fit(cls, history: pl.DataFrame) -> PredictorModels:
        """Both models fitted on every row of `history` (`history_features` output with an emulation)."""
        typical = as_float(history.get_column("duration_s").median())
        x = history.select(PREDICTOR_FEATURES).to_numpy()
        count_reference, duration_reference = cls._references(x, PREDICTOR_FEATURES, typical)
        return cls(
            count=_regressor().fit(x, history.get_column("result_count").to_numpy() - count_reference),
            duration=_regressor().fit(x, history.get_column("duration_s").to_numpy() - duration_reference),
            features=PREDICTOR_FEATURES,
            typical_duration_s=typical,
        )

    def predict_rows(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(result counts, durations) for rows of `x` in `features` order, never negative."""
        count_reference, duration_reference = self._references(x, self.features, self.typical_duration_s)
        counts = np.maximum(count_reference + _predict(self.count, x), 0.0)
        durations = np.maximum(duration_reference + _predict(self.duration, x), 0.0)
        return counts, durations

    @staticmethod
    def _references(
        x: np.ndarray, features: tuple[str, ...], typical_duration_s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        recent = x[:, features.index("recent_duration_s")]
        return x[:, features.index("profile_results")], np.where(np.isnan(recent), typical_duration_s, recent)


class PredictorMetrics(TypedDict):
    """`evaluate_predictors`' findings: mean absolute errors on the test sessions, and the split."""

    count_mae: float
    count_mae_baseline: float
    count_mae_emulation: float
    duration_mae_s: float
    duration_mae_baseline_s: float
    train_runs: int
    test_runs: int
    test_start: str  # ISO date of the first test session


@dataclass(frozen=True)
class PredictorReport:
    """What a training run found and did."""

    version: str
    promoted: bool
    reason: str
    metrics: PredictorMetrics


class ScanPredictors:
    """Predicts scans of the session after `profile.session` with the trained `models` (version
    `version`), from the latest rating profile and how long the latest scans took (`recent_duration_s`)."""

    def __init__(
        self, profile: RatingProfile, models: PredictorModels, version: str, recent_duration_s: float = math.nan
    ) -> None:
        self.profile = profile
        self.models = models
        self.version = version
        self.recent_duration_s = recent_duration_s

    def predict(self, config: ScanConfig, conditions: Mapping[str, object]) -> Prediction:
        row = feature_row(config, conditions, self.profile, recent_duration_s=self.recent_duration_s)
        counts, durations = self.models.predict_rows(np.array([[row[name] for name in self.models.features]]))
        return Prediction(result_count=float(counts[0]), duration_s=float(durations[0]))

    def answer(self, config: ScanConfig, conditions: Mapping[str, object]) -> Answer:
        return Answer(self.predict(config, conditions), model=self.version)


class BaselinePredictor:
    """What answers until a trained champion does, from the stored scan runs and results alone (market
    conditions are not modeled). For a config, the first that applies:

    1. the median result count and duration of the scan runs of the latest `BASELINE_SESSIONS` sessions
       with the same filters (`filter_shape`);
    2. the config applied to the latest stored results (`RatingProfile.emulate`: how many screened symbols
       pass its filters), timed at the median seconds per scanned symbol of those runs, or at
       `DEFAULT_SECONDS_PER_SYMBOL` when none was timed;
    3. the median of all those runs (they exist, but no results to apply the config to);
    4. nothing (`predicted` None) on a warehouse without scan runs or results.

    Similar runs come first because they are the engine's own answer for these filters; the emulation
    comes before unrelated runs because a config's filters change its count more than a few sessions of
    market drift do.
    """

    def __init__(self, runs: pl.DataFrame, profile: RatingProfile | None, reason: str) -> None:
        """`runs`: the `scan_runs` rows to draw on (with `result_count` and `duration_s`); `reason`: why no
        trained predictor answers (`untrained_reason`)."""
        self.runs = runs
        self.profile = profile
        self.reason = reason
        self.shapes = [filter_shape(ScanConfig.model_validate_json(text)) for text in runs.get_column("config_json")]
        scanned = runs.get_column("symbols_scanned").fill_null(0).to_numpy()
        durations = runs.get_column("duration_s").to_numpy()
        timed = scanned > 0
        self.seconds_per_symbol = (
            float(np.median(durations[timed] / scanned[timed])) if timed.any() else DEFAULT_SECONDS_PER_SYMBOL
        )
        self.timed_runs = int(timed.sum())

    @classmethod
    def load(cls, store: Warehouse) -> BaselinePredictor:
        """The baseline over the runs of the latest `BASELINE_SESSIONS` sessions and the latest results."""
        runs = store.read("scan_runs").filter(pl.col("result_count").is_not_null() & pl.col("duration_s").is_not_null())
        recent = runs.get_column("date").unique().sort().tail(BASELINE_SESSIONS).to_list()
        return cls(runs.filter(pl.col("date").is_in(recent)), latest_profile(store), untrained_reason(store, runs))

    def answer(self, config: ScanConfig, conditions: Mapping[str, object]) -> Answer:
        """`conditions` is accepted for the shared contract and ignored: the baseline has no market model."""
        predicted, basis = self._estimate(config)
        return Answer(predicted, BASELINE, self.reason, basis)

    def _estimate(self, config: ScanConfig) -> tuple[Prediction | None, str]:
        sessions = self.runs.get_column("date").n_unique()
        shape = filter_shape(config)
        similar = self.runs.filter(pl.Series([candidate == shape for candidate in self.shapes], dtype=pl.Boolean))
        if similar.height:
            return _median_outcome(similar), (
                f"median of {_count(similar.height, 'scan run')} with these filters in the latest "
                f"{_count(sessions, 'session')} of scan runs"
            )
        if self.profile is not None:
            emulated = self.profile.emulate(config)
            timing = (
                f"the median of {_count(self.timed_runs, 'recent scan run')}"
                if self.timed_runs
                else "a default per-symbol cost: no scan run timed yet"
            )
            predicted = Prediction(emulated["profile_results"], emulated["profile_visited"] * self.seconds_per_symbol)
            return predicted, (
                f"these filters applied to the ratings of the {self.profile.session.isoformat()} scan; "
                f"{self.seconds_per_symbol:.3g} s per scanned symbol ({timing})"
            )
        if self.runs.height:
            return _median_outcome(self.runs), (
                f"median of all {_count(self.runs.height, 'scan run')} of the latest {_count(sessions, 'session')}: "
                "none with these filters, and no scan results to apply them to"
            )
        return None, "no scan runs or scan results in the warehouse yet: run the daily pipeline first"


#: Either kind of predictor: both `answer(config, conditions)`.
Predictors = ScanPredictors | BaselinePredictor


def filter_shape(config: ScanConfig) -> tuple[object, ...]:
    """What decides which symbols a scan visits and keeps — the fields `RatingProfile.emulate` reads;
    batch size only matters with a signal stop, which is checked per batch."""
    return (
        None if config.sectors is None else frozenset(config.sectors),
        None if config.symbols is None else frozenset(config.symbols),
        None if config.where is None else " ".join(config.where.split()),
        config.max_symbols,
        config.min_tech_rating,
        config.max_signals,
        None if config.max_signals is None else config.batch_size,
    )


def untrained_reason(store: Warehouse, runs: pl.DataFrame) -> str:
    """Why no trained predictor answers, given the stored scan `runs`."""
    registry = ModelRegistry(store)
    champion = registry.champion(NAME)
    if champion is not None:
        problem = (
            "it is not loaded (just promoted, or it failed to load: see the server log)"
            if store.sessions("results")
            else "no scan results to apply it to"
        )
        return f"the promoted scan predictor {champion} cannot answer: {problem}"
    versions = registry.versions(NAME)
    if versions:
        return (
            f"no trained scan predictor promoted yet: the latest ({versions[-1]}) did not beat the rolling-median "
            "baseline"
        )
    sessions = runs.get_column("date").n_unique()
    return (
        f"no trained scan predictor yet: {_count(runs.height, 'scan run')} over {_count(sessions, 'session')}, "
        f"training needs {MIN_RUNS} runs over {MIN_SESSIONS} sessions"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _median_outcome(runs: pl.DataFrame) -> Prediction:
    return Prediction(
        as_float(runs.get_column("result_count").median()), as_float(runs.get_column("duration_s").median())
    )


# -------------------------------------------------------------------- training


def train_scan_predictors(store: Warehouse, min_runs: int = MIN_RUNS) -> PredictorReport:
    """Fit both predictors on the stored scan history, evaluate them, register them, promote if they win.

    Raises `InsufficientHistoryError` (nothing written) with fewer than `min_runs` usable runs or fewer
    than `MIN_SESSIONS` sessions.
    """
    history = history_features(store)
    usable = history.filter(pl.col("profile_results").is_not_nan()) if history.height else history
    sessions = usable.get_column("date").unique().sort().to_list() if usable.height else []
    if usable.height < min_runs or len(sessions) < MIN_SESSIONS:
        raise InsufficientHistoryError(
            f"scan predictors need ≥ {min_runs} scan runs over ≥ {MIN_SESSIONS} sessions with an earlier "
            f"results session; the warehouse has {usable.height} over {len(sessions)}. "
            "Materialize scan_runs (replays) for more sessions. The champion is unchanged."
        )
    metrics = evaluate_predictors(usable, sessions)
    models = PredictorModels.fit(usable)
    beats = (
        metrics["count_mae"] < metrics["count_mae_baseline"]
        and metrics["duration_mae_s"] < metrics["duration_mae_baseline_s"]
    )
    reason = (
        f"count MAE {metrics['count_mae']:.2f} vs baseline {metrics['count_mae_baseline']:.2f}, "
        f"duration MAE {metrics['duration_mae_s']:.3f}s vs {metrics['duration_mae_baseline_s']:.3f}s"
    )
    buffer = io.BytesIO()
    joblib.dump(models, buffer)
    registry = ModelRegistry(store)
    version = registry.create_version(
        NAME,
        files={MODEL_FILE: buffer.getvalue()},
        manifest={
            "kind": "sklearn",
            "features": list(models.features),
            "training_window": {
                "start": sessions[0].isoformat(),
                "end": sessions[-1].isoformat(),
                "runs": usable.height,
            },
        },
        metrics={**metrics, "promotion": {"promoted": beats, "reason": reason}},
    )
    if beats:
        registry.promote(NAME, version, reason)
    else:
        _log.warning("scan predictors %s not promoted: they do not beat the rolling median (%s)", version, reason)
    return PredictorReport(version, beats, reason, metrics)


def evaluate_predictors(history: pl.DataFrame, sessions: list[dt.date]) -> PredictorMetrics:
    """MAE of the predictors (fitted on earlier sessions) and of the rolling median on the latest sessions.

    The split is by session — all runs of a session on one side, the latest sessions holding about
    `TEST_SHARE` of the runs — so a test run never has a same-session twin in training. The baseline at each run is the median of the `BASELINE_WINDOW` runs before it.
    """
    runs_before = history.group_by("date").len().sort("date").with_columns(pl.col("len").cum_sum().alias("runs"))
    cut = runs_before.filter(pl.col("runs") >= (1 - TEST_SHARE) * history.height).get_column("date")[0]
    first_test = sessions[min(sessions.index(cut) + 1, len(sessions) - 1)]
    ordered = history.with_columns(
        pl.col("result_count").shift(1).rolling_median(BASELINE_WINDOW, min_samples=1).alias("result_count_baseline"),
        pl.col("recent_duration_s").alias("duration_s_baseline"),
    )
    train = ordered.filter(pl.col("date") < first_test)
    test = ordered.filter(pl.col("date") >= first_test)
    counts, durations = PredictorModels.fit(train).predict_rows(test.select(PREDICTOR_FEATURES).to_numpy())
    actual_counts = test.get_column("result_count").to_numpy()
    actual_durations = test.get_column("duration_s").to_numpy()
    return PredictorMetrics(
        count_mae=_mae(counts, actual_counts),
        count_mae_baseline=_mae(test.get_column("result_count_baseline").to_numpy(), actual_counts),
        count_mae_emulation=_mae(test.get_column("profile_results").to_numpy(), actual_counts),
        duration_mae_s=_mae(durations, actual_durations),
        duration_mae_baseline_s=_mae(test.get_column("duration_s_baseline").to_numpy(), actual_durations),
        train_runs=train.height,
        test_runs=test.height,
        test_start=first_test.isoformat(),
    )


def _regressor() -> Pipeline:
    """Shallow boosted trees with absolute-error loss; the imputer covers unknown market conditions."""
    return make_pipeline(
        SimpleImputer(keep_empty_features=True),
        GradientBoostingRegressor(
            loss="absolute_error", n_estimators=300, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=0
        ),
    )


def _predict(model: Pipeline, x: np.ndarray) -> np.ndarray:
    """`model.predict(x)` without scikit-learn's per-call input validation.

    Why: an API call predicts one row, and validating it (dtype checks, dataframe detection, fitted-ness,
    twice per pipeline) costs most of what a one-row prediction takes, and far more on a loaded machine.
    The imputer's step is a `where`; the boosted trees are summed by scikit-learn's own compiled
    `predict_stages` — the same arithmetic `GradientBoostingRegressor.predict` does after validation
    (a test checks they agree). Anything unexpected (another pipeline shape, a scikit-learn without the
    routine) takes the validated path.
    """
    steps = [step for _, step in model.steps]
    if (
        len(steps) != 2
        or not isinstance(steps[0], SimpleImputer)
        or not isinstance(steps[1], GradientBoostingRegressor)
    ):
        return model.predict(x)
    imputer, boosted = steps
    init = getattr(boosted, "init_", None)
    constant = getattr(init, "constant_", None)
    if _predict_stages is None or constant is None or np.size(constant) != 1 or x.shape[1] != imputer.statistics_.size:
        return model.predict(x)
    filled = np.where(np.isnan(x), imputer.statistics_, x).astype(np.float32)
    raw = np.full((x.shape[0], 1), float(np.ravel(constant)[0]), dtype=np.float64)
    _predict_stages(boosted.estimators_, np.ascontiguousarray(filled), boosted.learning_rate, raw)
    return raw[:, 0]


def _mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    return round(float(np.mean(np.abs(predicted - actual))), 4)


# -------------------------------------------------------------------- loading


def load_predictor_models(store: Warehouse) -> Loaded[PredictorModels]:
    """The champion predictors (or their fallback), checksum-verified before unpickling."""
    registry = ModelRegistry(store)

    def loader(version: str) -> PredictorModels:
        models = joblib.load(io.BytesIO(registry.read_file(NAME, version, MODEL_FILE)))
        if not isinstance(models, PredictorModels):
            raise ValueError(f"unexpected {type(models).__name__} in {MODEL_FILE}")
        return models

    return registry.load(NAME, loader)


_cache_lock = threading.Lock()
_cache: dict[str, tuple[tuple[object, ...], ScanPredictors | None]] = {}


def load_scan_predictors(store: Warehouse) -> ScanPredictors | None:
    """The champion predictors with the latest rating profile; None without a loadable champion or results.

    Cached per process and warehouse; reloaded when the champion pointer or the latest results session
    changes.
    """
    registry = ModelRegistry(store)
    results = store.sessions("results")
    key = (registry.pointer_fingerprint(NAME), results[-1] if results else None)
    with _cache_lock:
        cached = _cache.get(str(store.root))
        if cached is not None and cached[0] == key:
            return cached[1]
        loaded = load_predictor_models(store)
        profile = latest_profile(store)
        predictors = None
        if loaded.model is not None and loaded.version is not None and profile is not None:  # a model has one
            predictors = ScanPredictors(profile, loaded.model, loaded.version, recent_duration_s=recent_duration(store))
        _cache[str(store.root)] = (key, predictors)
        return predictors


def current_conditions(store: Warehouse) -> dict[str, object]:
    """The latest stored market conditions as a plain dict (empty when none are stored)."""
    sessions = store.sessions("conditions")
    if not sessions:
        return {}
    return store.read("conditions", sessions[-1], sessions[-1]).row(0, named=True)


# -------------------------------------------------------------------- optimizer


def suggest(
    store: Warehouse, goal: str, conditions: Mapping[str, object], predictors: Predictors | None = None
) -> Suggestion:
    """The config for `goal` (quick / balanced / deep) whose predicted result count fits its target best.

    `predictors` defaults to the champion, or the baseline while there is none; the suggestion carries
    their label (`Suggestion.answer`). Without anything to estimate from, `config` is None.
    """
    chosen = optimizer.preset(goal)
    if predictors is None:
        predictors = load_scan_predictors(store) or BaselinePredictor.load(store)
    hot = optimizer.hot_sectors(store)
    answers = [(config, predictors.answer(config, conditions)) for config in optimizer.candidate_configs(goal, hot)]
    estimated = [(config, answer, answer.predicted) for config, answer in answers if answer.predicted is not None]
    if not estimated:
        return Suggestion(config=None, answer=answers[0][1], warnings=[], hot_sectors=hot)
    config, answer, predicted = min(
        estimated,
        key=lambda scored: (
            optimizer.distance_to_band(scored[2].result_count, chosen.target),
            -scored[0].min_tech_rating,
        ),
    )
    warnings = optimizer.config_warnings(config, predicted.result_count)
    return Suggestion(config=config, answer=answer, warnings=warnings, hot_sectors=hot)
