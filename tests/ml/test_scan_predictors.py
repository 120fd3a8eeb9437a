"""Scan history replays, the count/duration predictors against the rolling median, the baseline that
answers before them, and the optimizer."""

from __future__ import annotations

import datetime as dt
import math
import statistics

import numpy as np
import polars as pl
import pytest

from technic_core import calendar, schema
from technic_core.config import SECTORS, ScanConfig
from technic_core.errors import ConfigError
from technic_core.ml import optimizer
from technic_core.ml.registry import ModelRegistry
from technic_core.ml.scan_history import (
    RatingProfile,
    history_features,
    latest_profile,
    record_replays,
    replay_session,
    sample_configs,
)
from technic_core.ml.scan_predictors import (
    BASELINE,
    BASELINE_SESSIONS,
    DEFAULT_SECONDS_PER_SYMBOL,
    NAME,
    BaselinePredictor,
    Prediction,
    Suggestion,
    _predict,
    current_conditions,
    load_scan_predictors,
    suggest,
    train_scan_predictors,
)
from technic_core.ml.training import InsufficientHistoryError
from technic_core.scan import run_scan
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


def test_emulation_of_a_watchlist_and_a_screen_reproduces_the_engine(store):
    session, before = store.sessions("results")[-1], store.sessions("results")[-2]
    profile = latest_profile(store)
    assert profile is not None and profile.session == session and profile.previous is not None
    bars = store.read("bars", calendar.sessions_back(session, ScanConfig().lookback_sessions)[0], session)
    universe = store.read("universe", session, session)
    previous = store.read("results", before, before)
    watchlist = tuple(profile.results.get_column("symbol").to_list()[::4])
    configs = [
        ScanConfig(symbols=watchlist),
        ScanConfig(where="rsi < 55 and change_1d > -0.01", min_tech_rating=40),
        ScanConfig(symbols=watchlist, where="close > prev(close) and rsi > prev(rsi)", max_symbols=60),
        ScanConfig(where="rsi > 40", max_signals=5, batch_size=7),
    ]
    for config in configs:
        run = run_scan(config, session, bars, universe, previous=previous)
        results = sum(batch.results.height for batch in run)
        emulated = profile.emulate(config)
        assert 0 < emulated["profile_results"] == results, config
        assert emulated["profile_visited"] == run.scanned, config
    plain = profile.emulate(ScanConfig())
    assert all(profile.emulate(config)["profile_results"] < plain["profile_results"] for config in configs)


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
    assert (
        isinstance(narrow, Prediction)
        and isinstance(narrow.result_count, float)
        and isinstance(narrow.duration_s, float)
    )
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
    replayed, report = trained_predictors
    suggestion = suggest(replayed, goal, current_conditions(replayed))
    assert isinstance(suggestion, Suggestion)
    assert (suggestion.answer.model, suggestion.answer.reason, suggestion.answer.basis) == (report.version, None, None)
    preset = optimizer.PRESETS[goal]
    assert suggestion.config.max_symbols == preset.max_symbols
    assert suggestion.config.min_tech_rating in preset.min_ratings
    assert suggestion.hot_sectors and set(suggestion.hot_sectors) <= set(SECTORS)
    if preset.hot_sectors_only:
        assert suggestion.config.sectors == tuple(suggestion.hot_sectors)
    else:
        assert suggestion.config.sectors is None
    predicted = suggestion.answer.predicted
    assert predicted.result_count >= 0
    assert suggestion.warnings == optimizer.config_warnings(suggestion.config, predicted.result_count)


def test_suggestions_before_any_training_come_from_the_baseline_and_say_so(store):
    suggestion = suggest(store, "deep", {})
    answer = suggestion.answer
    runs = store.read("scan_runs")
    assert answer.model == BASELINE
    assert answer.reason == (
        f"no trained scan predictor yet: {runs.height} scan runs over {runs.get_column('date').n_unique()} sessions, "
        "training needs 40 runs over 4 sessions"
    )
    # the stored runs are all default-config daily scans, so the deep preset is estimated from the ratings
    latest = store.sessions("results")[-1]
    assert answer.basis.startswith(f"these filters applied to the ratings of the {latest.isoformat()} scan")
    assert answer.predicted == BaselinePredictor.load(store).answer(suggestion.config, {}).predicted
    with pytest.raises(ConfigError, match="unknown goal 'fastest'"):
        suggest(store, "fastest", {})


# -------------------------------------------------------------------- the baseline

RUN_SESSIONS = [dt.date(2024, 6, day) for day in (3, 4, 5, 6, 7, 10, 11)]
NARROW = ScanConfig(sectors=("Energy", "Utilities"), max_symbols=50, min_tech_rating=70)
STRICT = ScanConfig(min_tech_rating=80, max_signals=5, batch_size=20)
#: (session, config, result_count, duration_s, symbols_scanned): NARROW every session — far off in the
#: two oldest, which the baseline's window leaves out — and STRICT in the latest session.
RUNS = [
    *((session, NARROW, count, duration, 50) for session, count, duration in zip(
        RUN_SESSIONS, [90, 80, 3, 5, 4, 9, 6], [9.0, 8.0, 0.3, 0.5, 0.2, 0.6, 0.4]
    )),
    (RUN_SESSIONS[-1], STRICT, 5, 1.5, 60),
]  # fmt: skip


def _store_runs(store: Warehouse) -> None:
    for number, (session, config, count, duration, scanned) in enumerate(RUNS):
        row = {
            "scan_id": f"adhoc-{number:02d}",
            "date": session,
            "started_at": dt.datetime.combine(session, dt.time(15), dt.UTC),
            "duration_s": duration,
            "config_json": config.model_dump_json(),
            "regime": None,
            "symbols_screened": 200,
            "symbols_scanned": scanned,
            "symbols_rejected": 0,
            "result_count": count,
            "signal_count": 0,
            "end_reason": "complete",
        }
        store.append_scan_run(pl.DataFrame([row], schema=schema.SCAN_RUNS))


def _store_results(store: Warehouse, session: dt.date) -> pl.DataFrame:
    """Forty rated symbols over four sectors (and one unrated), as the scan of `session`."""
    sectors = ["Energy", "Utilities", "Financials", "Materials"]
    frame = pl.DataFrame(
        {
            "date": session,
            "symbol": [f"S{i:03d}" for i in range(41)],
            "sector": [sectors[i % 4] for i in range(41)],
            "tech_rating": [float(37 * i % 101) for i in range(40)] + [None],
            "seq": list(range(41)),
            "batch": 0,
        }
    )
    filled = frame.with_columns(
        *(pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.RESULTS.items() if name not in frame.columns)
    )
    store.write_result_batch(session, 0, filled)
    return frame


def _window(rows: list[tuple]) -> list[tuple]:
    return [row for row in rows if row[0] in RUN_SESSIONS[-BASELINE_SESSIONS:]]


def test_the_baseline_takes_the_median_of_recent_runs_with_the_same_filters(tmp_path):
    store = Warehouse(tmp_path)
    _store_runs(store)
    baseline = BaselinePredictor.load(store)
    narrow = _window([row for row in RUNS if row[1] == NARROW])
    expected = Prediction(statistics.median(row[2] for row in narrow), statistics.median(row[3] for row in narrow))
    # sector order and batch size (without a signal stop) do not change which symbols a scan keeps
    same_filters = NARROW.model_copy(update={"sectors": ("Utilities", "Energy"), "batch_size": 7, "prioritize": False})
    for config in (NARROW, same_filters):
        answer = baseline.answer(config, {"regime": "bear_high"})
        assert answer.predicted == expected
        assert answer.model == BASELINE
        assert (
            answer.basis
            == f"median of {len(narrow)} scan runs with these filters in the latest 5 sessions of scan runs"
        )
        assert answer.reason == (
            "no trained scan predictor yet: 8 scan runs over 7 sessions, training needs 40 runs over 4 sessions"
        )
    # with a signal stop the batch size matters: another batch size is other filters
    assert baseline.answer(STRICT, {}).predicted == Prediction(5.0, 1.5)
    other_batches = baseline.answer(STRICT.model_copy(update={"batch_size": 40}), {})
    assert other_batches.basis.startswith("median of all 6 scan runs of the latest 5 sessions")


def test_without_similar_runs_the_baseline_applies_the_filters_to_the_latest_results(tmp_path):
    store = Warehouse(tmp_path)
    _store_runs(store)
    config = ScanConfig(sectors=("Energy", "Financials"), max_symbols=15, min_tech_rating=55)
    recent = _window(RUNS)
    without_results = BaselinePredictor.load(store).answer(config, {})
    assert without_results.predicted == Prediction(
        statistics.median(row[2] for row in recent), statistics.median(row[3] for row in recent)
    )
    assert without_results.basis == (
        "median of all 6 scan runs of the latest 5 sessions: none with these filters, and no scan results to apply "
        "them to"
    )

    results = _store_results(store, RUN_SESSIONS[-1])
    candidates = results.filter(pl.col("tech_rating").is_not_null() & pl.col("sector").is_in(config.sectors))
    visited = candidates.sort("symbol").head(config.max_symbols)
    per_symbol = statistics.median(row[3] / row[4] for row in recent)
    answer = BaselinePredictor.load(store).answer(config, {})
    assert answer.predicted.result_count == visited.filter(pl.col("tech_rating") >= 55).height
    assert answer.predicted.duration_s == pytest.approx(visited.height * per_symbol)
    assert answer.basis.startswith(f"these filters applied to the ratings of the {RUN_SESSIONS[-1].isoformat()} scan; ")
    assert answer.basis.endswith("s per scanned symbol (the median of 6 recent scan runs)")


def test_without_scan_runs_the_baseline_times_symbols_at_the_default_cost(tmp_path):
    store = Warehouse(tmp_path)
    results = _store_results(store, RUN_SESSIONS[0])
    answer = BaselinePredictor.load(store).answer(ScanConfig(min_tech_rating=60), {})
    rated = results.filter(pl.col("tech_rating").is_not_null())
    assert answer.predicted == Prediction(
        float(rated.filter(pl.col("tech_rating") >= 60).height), rated.height * DEFAULT_SECONDS_PER_SYMBOL
    )
    assert answer.basis.endswith("(a default per-symbol cost: no scan run timed yet)")
    assert answer.reason.startswith("no trained scan predictor yet: 0 scan runs over 0 sessions")


def test_an_empty_warehouse_gets_a_labeled_answer_without_numbers(tmp_path):
    store = Warehouse(tmp_path)
    answer = BaselinePredictor.load(store).answer(ScanConfig(), {})
    assert answer.predicted is None and answer.model == BASELINE
    assert answer.basis == "no scan runs or scan results in the warehouse yet: run the daily pipeline first"
    suggestion = suggest(store, "quick", {})
    assert suggestion.config is None and suggestion.answer == answer and suggestion.warnings == []


def test_the_reason_names_an_unpromoted_or_unloadable_predictor(tmp_path):
    store = Warehouse(tmp_path)
    _store_results(store, RUN_SESSIONS[-1])
    registry = ModelRegistry(store)
    version = registry.create_version(NAME, files={"predictors.joblib": b"not a model"}, manifest={}, metrics={})
    assert BaselinePredictor.load(store).reason == (
        f"no trained scan predictor promoted yet: the latest ({version}) did not beat the rolling-median baseline"
    )
    registry.promote(NAME, version, "test")
    assert load_scan_predictors(store) is None
    assert BaselinePredictor.load(store).reason == (
        f"the promoted scan predictor {version} cannot answer: it is not loaded (just promoted, or it failed to "
        "load: see the server log)"
    )


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
