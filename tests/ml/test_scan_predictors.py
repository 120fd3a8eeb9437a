"""Scan history replays, the count/duration predictors against the rolling median, and the optimizer."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from technic_core import schema
from technic_core.config import SECTORS, ScanConfig
from technic_core.errors import ConfigError
from technic_core.ml import optimizer
from technic_core.ml.scan_history import RatingProfile, history_features, record_replays, replay_session, sample_configs
from technic_core.ml.scan_predictors import (
    Prediction,
    Suggestion,
    _predict,
    current_conditions,
    load_scan_predictors,
    suggest,
    train_scan_predictors,
)
from technic_core.ml.training import InsufficientHistoryError
from technic_core.warehouse import Warehouse
from tests.ml.conftest import copy_warehouse

REPLAYED_SESSIONS = 30


def _with_deterministic_durations(store: Warehouse) -> None:
    """Replace measured durations by a fixed cost model, so predictor tests do not depend on machine load:
    a fixed load time plus a cost per scanned symbol."""
    runs = store.read("scan_runs").with_columns(
        (0.05 + 2e-4 * pl.col("symbols_scanned").cast(pl.Float64)).alias("duration_s")
    )
    for row in runs.iter_slices(1):
        store.append_scan_run(row)


@pytest.fixture(scope="module")
def replayed_root(sandbox_root, tmp_path_factory):
    """The sandbox plus 8 replayed scans on each of its last 30 scanned sessions."""
    store = copy_warehouse(sandbox_root, tmp_path_factory.mktemp("replayed"))
    for session in store.sessions("results")[-REPLAYED_SESSIONS:]:
        record_replays(store, session)
    _with_deterministic_durations(store)
    return store.root


@pytest.fixture
def replayed(replayed_root, tmp_path) -> Warehouse:
    return copy_warehouse(replayed_root, tmp_path)


@pytest.fixture(scope="module")
def trained_predictors(replayed_root, tmp_path_factory):
    """The replayed warehouse after one predictor training, and its report."""
    store = copy_warehouse(replayed_root, tmp_path_factory.mktemp("predictors"))
    return store, train_scan_predictors(store)


def test_sampled_configs_are_reproducible_and_replays_are_recorded(replayed):
    session = replayed.sessions("results")[-1]
    assert sample_configs(session) == sample_configs(session)
    assert sample_configs(session) != sample_configs(replayed.sessions("results")[-2])
    runs = replayed.read("scan_runs", session, session)
    assert sorted(runs.get_column("scan_id")) == [f"daily-{session}"] + [f"replay-{session}-{n:02d}" for n in range(8)]
    configs = [ScanConfig.model_validate_json(text) for text in runs.get_column("config_json")]
    assert all(50 <= c.min_tech_rating <= 90 and c.max_symbols is not None for c in configs if c != ScanConfig())


def test_emulation_on_the_sessions_own_ratings_reproduces_the_engine(store):
    for session in store.sessions("results")[-5:]:
        configs = sample_configs(session, 12)
        rows = replay_session(store, session, configs)
        profile = RatingProfile.from_results(session, store.read("results", session, session))
        for config, actual in zip(configs, rows.iter_rows(named=True)):
            emulated = profile.emulate(config)
            assert emulated["profile_results"] == actual["result_count"], config
            assert emulated["profile_visited"] == actual["symbols_scanned"], config


def test_predictors_beat_the_rolling_median_and_are_promoted(trained_predictors):
    report = trained_predictors[1]
    metrics = report.metrics
    assert report.promoted and report.version == "v0001"
    assert metrics["count_mae"] < 5
    assert metrics["count_mae"] <= 0.7 * metrics["count_mae_baseline"]
    assert metrics["duration_mae_s"] < metrics["duration_mae_baseline_s"]
    assert metrics["test_runs"] > 40


def test_loaded_predictors_follow_the_contract(trained_predictors):
    replayed = trained_predictors[0]
    predictors = load_scan_predictors(replayed)
    assert predictors is not None and load_scan_predictors(replayed) is predictors
    conditions = current_conditions(replayed)
    assert conditions["date"] == replayed.sessions("conditions")[-1]
    narrow = predictors.predict(ScanConfig(min_tech_rating=90, max_symbols=25), conditions)
    broad = predictors.predict(ScanConfig(min_tech_rating=50), conditions)
    assert isinstance(narrow, Prediction) and isinstance(narrow.result_count, float) and isinstance(narrow.duration_s, float)
    assert 0 <= narrow.result_count < broad.result_count
    assert 0 < narrow.duration_s < broad.duration_s
    # conditions may be partial or empty: unknown inputs are imputed, never an error
    assert math.isfinite(predictors.predict(ScanConfig(), {}).result_count)


def test_fast_prediction_path_matches_scikit_learns_validated_predict(trained_predictors):
    store = trained_predictors[0]
    models = load_scan_predictors(store).models
    history = history_features(store)
    x = history.select(models.features).to_numpy()
    x[::7, models.features.index("vix")] = np.nan  # missing inputs go through the imputer the same way
    for model in (models.count, models.duration):
        np.testing.assert_allclose(_predict(model, x), model.predict(x), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(_predict(model, x[:1]), model.predict(x[:1]), rtol=1e-6, atol=1e-6)


def test_no_trained_predictors_means_none(store):
    assert load_scan_predictors(store) is None


def test_too_little_history_is_refused(store):
    with pytest.raises(InsufficientHistoryError, match=r"need ≥ 10000 scan runs over ≥ 4 sessions .* has 145 over 145"):
        train_scan_predictors(store, min_runs=10_000)


@pytest.mark.parametrize("goal", ["quick", "balanced", "deep"])
def test_suggestions_follow_the_goal(trained_predictors, goal):
    replayed = trained_predictors[0]
    suggestion = suggest(replayed, goal, current_conditions(replayed))
    assert isinstance(suggestion, Suggestion)
    preset = optimizer.PRESETS[goal]
    assert suggestion.config.max_symbols == preset.max_symbols
    assert suggestion.config.min_tech_rating in preset.min_ratings
    assert suggestion.hot_sectors and set(suggestion.hot_sectors) <= set(SECTORS)
    if preset.hot_sectors_only:
        assert suggestion.config.sectors == tuple(suggestion.hot_sectors)
    else:
        assert suggestion.config.sectors is None
    assert suggestion.predicted.result_count >= 0
    assert suggestion.warnings == optimizer.config_warnings(suggestion.config, suggestion.predicted.result_count)


def test_suggestions_before_any_training_use_the_emulation_and_say_so(store):
    suggestion = suggest(store, "deep", {})
    assert any("no trained scan predictors" in warning for warning in suggestion.warnings)
    with pytest.raises(ConfigError, match="unknown goal 'fastest'"):
        suggest(store, "fastest", {})


def test_warnings_for_restrictive_broad_and_strong_buy_only_scans():
    assert "too restrictive" in optimizer.config_warnings(ScanConfig(min_tech_rating=60), 0.2)[0]
    assert "too broad" in optimizer.config_warnings(ScanConfig(), 250.0)[0]
    strict = optimizer.config_warnings(ScanConfig(min_tech_rating=85), 12.0)
    assert len(strict) == 1 and "limits results" in strict[0]
    assert optimizer.config_warnings(ScanConfig(min_tech_rating=70), 30.0) == []


def test_hot_sectors_are_those_with_above_market_buy_rates(tmp_path):
    store = Warehouse(tmp_path)
    session = dt.date(2024, 6, 3)
    signals = {"Energy": ["Buy", "Strong Buy", "Buy", "Neutral"], "Utilities": ["Buy", "Neutral", "Neutral", "Sell"]}
    signals |= {"Financials": ["Neutral"] * 4, "Materials": ["Buy", "Buy", "Neutral", "Neutral"]}
    rows = [
        {"date": session, "symbol": f"{sector[:3].upper()}{i}", "sector": sector, "signal": signal, "seq": 0}
        for sector, values in signals.items()
        for i, signal in enumerate(values)
    ]
    frame = pl.DataFrame(rows).with_columns(pl.lit(0, dtype=pl.Int64).alias("batch"))
    filled = frame.with_columns(
        *(pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.RESULTS.items() if name not in frame.columns)
    )
    store.write_result_batch(session, 0, filled)
    # market buy rate 7/16: Energy (3/4) and Materials (2/4) beat it, Utilities (1/4) does not
    assert optimizer.hot_sectors(store) == ["Energy", "Materials"]
