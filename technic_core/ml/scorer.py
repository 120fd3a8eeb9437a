"""Alpha scoring for scans: the champion models, loaded once per process, fill `alpha_5d`, `alpha_10d` and
`alpha_score` for every symbol of a session in one prediction call per model.

Why a whole session at once rather than per scan batch: ranks and the percentile `alpha_score` are
cross-sectional, so a batch of 250 symbols scored alone would rank against itself and the same stock could
get a different score depending on which batch it landed in. `alpha_enricher` therefore builds the
features of every symbol with a bar on the session and predicts them all when the scan starts; the
`ScanHooks.enrich` function it returns only joins the scan's results to those predictions.

`alpha_<h>d` is the model's prediction: the expected percentile rank (centered, in about ±0.5) of the
symbol's return over the next h sessions. `alpha_score` (0–100) is the cross-sectional percentile of the
mean of the available horizons' predictions among the session's scanned symbols.

Loading is cached per process and warehouse; the cache re-checks the champion pointers' (mtime, size) so a
newly promoted champion is picked up by the next scan without a restart. A champion that fails to load
falls back to the previous champion (`ModelRegistry.load`) with a warning; with no loadable model the
enricher is None and scans simply leave the alpha columns null.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl
import xgboost as xgb

from technic_core import calendar
from technic_core.ml.alpha import AlphaSpec, predict_alpha
from technic_core.ml.features import FEATURE_LOOKBACK_SESSIONS, build_features, regime_conditions
from technic_core.ml.labels import HORIZONS
from technic_core.ml.registry import Loaded, ModelRegistry
from technic_core.ml.training import FEATURES_FILE, MODEL_FILE
from technic_core.warehouse import Warehouse

_log = logging.getLogger(__name__)

ALPHA_COLUMNS = ("alpha_5d", "alpha_10d", "alpha_score")


@dataclass(frozen=True)
class AlphaModel:
    """A loaded booster and the feature columns it was trained on, in order."""

    booster: xgb.Booster
    features: tuple[str, ...]


class AlphaScorer:
    """The champion alpha model of each horizon (or its fallback), ready to predict."""

    def __init__(self, models: dict[int, Loaded[AlphaModel]]) -> None:
        self.models = models

    @classmethod
    def load(cls, store: Warehouse) -> AlphaScorer:
        registry = ModelRegistry(store)
        return cls({horizon: load_alpha_model(registry, f"alpha_{horizon}d") for horizon in HORIZONS})

    @property
    def available(self) -> bool:
        return any(loaded.available for loaded in self.models.values())

    def problems(self) -> list[str]:
        """Status lines of every model not served by its own champion."""
        return [loaded.status() for loaded in self.models.values() if not loaded.healthy]

    def predict(self, features: pl.DataFrame) -> pl.DataFrame:
        """`symbol` plus `alpha_<h>d` for each row of a `build_features` frame (one call per model).

        A column a model needs but `features` lacks raises `ConfigError` naming it.
        """
        columns = []
        for horizon in HORIZONS:
            name, loaded = f"alpha_{horizon}d", self.models.get(horizon)
            if loaded is not None and loaded.model is not None:
                values = predict_alpha(loaded.model.booster, features, loaded.model.features)
                columns.append(pl.Series(name, values, dtype=pl.Float64))
            else:
                columns.append(pl.repeat(None, features.height, dtype=pl.Float64, eager=True).alias(name))
        return features.select("symbol").with_columns(columns)

    def score_session(
        self,
        session: dt.date,
        bars: pl.DataFrame,
        regime: str | None = None,
        symbols: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """`symbol`, `alpha_5d`, `alpha_10d`, `alpha_score` for the symbols with a bar on `session`.

        `bars` is the history up to `session` (more is ignored); `symbols`, when given, is the population
        `alpha_score` ranks within (the scan's screened symbols) and the rows returned.
        """
        history = bars.filter(pl.col("date") <= session)
        features = build_features(history, regime_conditions(session, regime), sessions=[session])
        if symbols is not None:
            features = features.filter(pl.col("symbol").is_in(list(symbols)))
        predicted = self.predict(features)
        horizons = [pl.col(f"alpha_{h}d") for h in HORIZONS]
        combined = pl.mean_horizontal(horizons)
        return predicted.with_columns(
            (100.0 * ((combined.rank("average") - 0.5) / combined.count())).alias("alpha_score")
        )


def load_alpha_model(registry: ModelRegistry, name: str) -> Loaded[AlphaModel]:
    """The champion of `name` (or its fallback), checked against its manifest before xgboost parses it."""

    def loader(version: str) -> AlphaModel:
        features = tuple(json.loads(registry.read_file(name, version, FEATURES_FILE)))
        booster = xgb.Booster()
        booster.load_model(bytearray(registry.read_file(name, version, MODEL_FILE)))
        if booster.num_features() != len(features):
            raise ValueError(f"model has {booster.num_features()} features, its list {len(features)}")
        spec = AlphaSpec.from_dict(registry.manifest(name, version)["spec"])
        if spec.features != features:
            raise ValueError("feature list differs from the manifest's spec")
        return AlphaModel(booster, features)

    return registry.load(name, loader)


_cache_lock = threading.Lock()
_cache: dict[str, tuple[tuple[object, ...], AlphaScorer]] = {}


def alpha_scorer(store: Warehouse) -> AlphaScorer:
    """The process-wide scorer of `store`'s champions, reloaded only when a champion pointer changes."""
    registry = ModelRegistry(store)
    fingerprint = tuple(registry.pointer_fingerprint(f"alpha_{h}d") for h in HORIZONS)
    key = str(store.root)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        scorer = AlphaScorer.load(store)
        for problem in scorer.problems():
            _log.warning(problem)
        _cache[key] = (fingerprint, scorer)
        return scorer


def alpha_enricher(
    store: Warehouse,
    session: dt.date,
    bars: pl.DataFrame,
    universe: pl.DataFrame | None = None,
    regime: str | None = None,
) -> Callable[[pl.DataFrame], pl.DataFrame] | None:
    """A `ScanHooks.enrich` function adding the alpha columns to the results of a scan of `session`.

    Pass the scan's own inputs: `bars` (history up to the session; the last `FEATURE_LOOKBACK_SESSIONS`
    are used), `universe` (its screened symbols are the population of `alpha_score`) and `regime`. Returns
    None when no alpha model is loadable, so `ScanHooks(enrich=alpha_enricher(...))` leaves the columns
    null instead of failing the scan.
    """
    scorer = alpha_scorer(store)
    if not scorer.available:
        return None
    first = calendar.sessions_back(session, FEATURE_LOOKBACK_SESSIONS)[0]
    symbols = universe.filter(pl.col("passed")).get_column("symbol").to_list() if universe is not None else None
    scores = scorer.score_session(session, bars.filter(pl.col("date") >= first), regime, symbols)

    def enrich(batch: pl.DataFrame) -> pl.DataFrame:
        return batch.drop(ALPHA_COLUMNS, strict=False).join(scores, on="symbol", how="left", maintain_order="left")

    return enrich
