"""Alpha in scans: whole-session predictions joined per batch, loaded once, degraded never crashed."""

from __future__ import annotations

import logging

import polars as pl
import pytest

import technic_core.ml.scorer as scorer_module
from technic_core import calendar
from technic_core.config import ScanConfig
from technic_core.errors import ConfigError
from technic_core.ml.features import build_features
from technic_core.ml.registry import ModelRegistry
from technic_core.ml.scorer import AlphaScorer, alpha_enricher, alpha_scorer
from technic_core.scan import ScanHooks, run_scan


def _scan(store, batch_size: int) -> pl.DataFrame:
    session = store.sessions("results")[-1]
    bars = store.read("bars", calendar.sessions_back(session, 260)[0], session)
    universe = store.read("universe", session, session)
    regime = store.read("conditions", session, session).get_column("regime")[0]
    enrich = alpha_enricher(store, session, bars, universe, regime)
    run = run_scan(
        ScanConfig(batch_size=batch_size), session, bars, universe, regime=regime, hooks=ScanHooks(enrich=enrich)
    )
    return pl.concat([batch.results for batch in run])


def test_scan_results_gain_alpha_for_every_symbol_whatever_the_batching(trained_store, monkeypatch):
    calls = []
    original = scorer_module.predict_alpha
    monkeypatch.setattr(scorer_module, "predict_alpha", lambda *a: calls.append(a[1].height) or original(*a))
    small = _scan(trained_store, batch_size=25)
    assert len(calls) == 2, "one prediction call per model for the whole session, not one per batch"
    large = _scan(trained_store, batch_size=1_000)
    columns = ["symbol", "alpha_5d", "alpha_10d", "alpha_score"]
    assert small.select(columns).sort("symbol").equals(large.select(columns).sort("symbol"))
    assert small.select(pl.col("alpha_5d", "alpha_10d", "alpha_score").null_count()).row(0) == (0, 0, 0)
    scores = small.get_column("alpha_score")
    assert 0 < scores.min() < 1 and 99 < scores.max() < 100  # percentiles over the scanned symbols
    assert small.select(pl.corr("alpha_5d", "alpha_score", method="spearman")).item() > 0.8


def test_the_scorer_is_loaded_once_and_reloaded_after_a_promotion(trained_store):
    first = alpha_scorer(trained_store)
    assert alpha_scorer(trained_store) is first
    registry = ModelRegistry(trained_store)
    registry.promote("alpha_5d", registry.champion("alpha_5d"), "re-promotion changes the pointer")
    assert alpha_scorer(trained_store) is not first


def test_a_corrupt_champion_falls_back_and_the_scan_goes_on(trained_store, caplog):
    registry = ModelRegistry(trained_store)
    for name in ("alpha_5d", "alpha_10d"):
        champion = registry.champion(name)
        registry.promote(
            name,
            registry.create_version(
                name,
                {"model.ubj": b"not a model", "features.json": b"[]"},
                registry.manifest(name, champion),
                {},
            ),
            "a broken champion",
        )
    with caplog.at_level(logging.WARNING):
        results = _scan(trained_store, batch_size=100)
    assert results.get_column("alpha_score").null_count() == 0
    assert any("falling back to v0001" in record.message for record in caplog.records)
    assert all("falling back" in problem for problem in alpha_scorer(trained_store).problems())


def test_without_a_loadable_model_the_alpha_columns_stay_null(store):
    results = _scan(store, batch_size=100)
    assert results.height > 0
    assert results.select(pl.col("alpha_5d", "alpha_10d", "alpha_score").null_count()).row(0) == (results.height,) * 3


def test_a_missing_feature_column_is_a_clear_error(trained_store):
    session = trained_store.sessions("results")[-1]
    bars = trained_store.read("bars", calendar.sessions_back(session, 260)[0], session)
    features = build_features(bars, sessions=[session]).drop("rank_rsi")
    with pytest.raises(ConfigError, match="rank_rsi"):
        AlphaScorer.load(trained_store).predict(features)
