"""Prediction endpoints: the baseline answers (labeled, with its reason) until a trained champion exists — on
a fresh warehouse, from stored scan runs, and with nothing stored at all — and the champion, a stand-in
through the `deps.optional_scan_predictors` override, answers once it does. None of these is ever a 5xx."""

from __future__ import annotations

import statistics

import polars as pl
import pytest
from fastapi.testclient import TestClient

from api import deps
from api.routers.predictions import OPTIMIZER_GOALS
from technic_core import calendar
from technic_core.config import ScanConfig
from technic_core.ml import optimizer
from technic_core.ml.scan_predictors import Prediction, ScanPredictors
from tests.api.conftest import AUTH
from tests.api.support import daily_history_row

FRESH_REASON = "no trained scan predictor yet: 1 scan run over 1 session, training needs 40 runs over 4 sessions"


class FakeChampion(ScanPredictors):
    """A promoted champion stand-in: one result per symbol to scan (100 without a cap) and 10 ms per
    symbol; remembers what it was asked. `answer` is the real one."""

    def __init__(self) -> None:
        self.version = "v0007"
        self.calls: list[tuple[ScanConfig, dict]] = []

    def predict(self, config: ScanConfig, conditions: dict) -> Prediction:
        self.calls.append((config, conditions))
        symbols = config.max_symbols or 100
        return Prediction(result_count=float(symbols), duration_s=symbols * 0.01)


def _with_champion(make_app) -> tuple[TestClient, FakeChampion]:
    champion = FakeChampion()
    app = make_app()
    app.dependency_overrides[deps.optional_scan_predictors] = lambda: champion
    return TestClient(app), champion


def test_a_fresh_warehouse_is_answered_by_the_baseline_with_its_reason(client, market):
    response = client.post("/scan/predict", json={}, headers=AUTH)
    assert response.status_code == 200, response.text
    # the only scan run is the pipeline's, with the default config: the baseline repeats it
    assert response.json() == {
        "model": "baseline",
        "reason": FRESH_REASON,
        "basis": "median of 1 scan run with these filters in the latest 1 session of scan runs",
        "session": market.session.isoformat(),
        "predicted": {"result_count": float(market.results.height), "duration_s": 1.0},
    }

    suggested = client.get("/scan/suggest", params={"goal": "speed"})
    assert suggested.status_code == 200, suggested.text
    body = suggested.json()
    assert (body["model"], body["reason"], body["session"]) == ("baseline", FRESH_REASON, market.session.isoformat())
    assert body["config"]["max_symbols"] == optimizer.PRESETS["quick"].max_symbols
    # the suggestion's prediction is what /scan/predict says about the suggested config
    same = client.post("/scan/predict", json=body["config"], headers=AUTH).json()
    assert (body["predicted"], body["basis"]) == (same["predicted"], same["basis"])

    started = client.post("/scan/stream", json={"max_symbols": 3}, headers=AUTH)
    assert started.status_code == 202 and started.json()["predicted"] is None  # only a champion predicts scans


def test_scan_runs_without_a_predictor_give_the_baseline_from_those_runs(make_app, warehouse, market):
    config = ScanConfig(min_tech_rating=60, max_symbols=40)
    # (result_count, duration_s) of ad-hoc runs of `config` on the three latest sessions
    runs = dict(zip(calendar.sessions_back(market.session, 3), [(11, 0.5), (14, 0.4), (12, 0.9)]))
    for number, (session, (count, duration)) in enumerate(runs.items()):
        row = daily_history_row(session, count).with_columns(
            pl.lit(f"adhoc-{number}").alias("scan_id"),
            pl.lit(config.model_dump_json()).alias("config_json"),
            pl.lit(duration).alias("duration_s"),
            pl.lit(config.max_symbols, dtype=pl.Int64).alias("symbols_scanned"),
        )
        warehouse.append_scan_run(row)
    other = ScanConfig(sectors=("Energy", "Utilities"), min_tech_rating=50)
    with TestClient(make_app()) as client:
        similar = client.post("/scan/predict", json=config.model_dump(mode="json"), headers=AUTH)
        emulated = client.post("/scan/predict", json=other.model_dump(mode="json"), headers=AUTH)
    assert similar.status_code == emulated.status_code == 200

    reason = "no trained scan predictor yet: 4 scan runs over 3 sessions, training needs 40 runs over 4 sessions"
    assert similar.json()["model"] == "baseline" and similar.json()["reason"] == reason
    assert similar.json()["predicted"] == {
        "result_count": statistics.median(count for count, _ in runs.values()),
        "duration_s": statistics.median(duration for _, duration in runs.values()),
    }
    assert similar.json()["basis"] == "median of 3 scan runs with these filters in the latest 3 sessions of scan runs"

    # no run with these filters: they are applied to the latest results, timed per symbol by the runs
    visited = market.results.filter(pl.col("tech_rating").is_not_null() & pl.col("sector").is_in(other.sectors))
    per_symbol = statistics.median(
        [duration / config.max_symbols for _, duration in runs.values()] + [1.0 / market.results.height]
    )
    assert emulated.json()["reason"] == reason
    assert emulated.json()["predicted"]["result_count"] == visited.filter(pl.col("tech_rating") >= 50).height
    assert emulated.json()["predicted"]["duration_s"] == pytest.approx(visited.height * per_symbol)


def test_an_empty_warehouse_is_a_labeled_answer_without_numbers(make_app, tmp_path):
    with TestClient(make_app(root=tmp_path / "empty")) as client:
        predict = client.post("/scan/predict", json={"max_symbols": 20}, headers=AUTH)
        suggest = client.get("/scan/suggest", params={"goal": "quality"})
    assert predict.status_code == suggest.status_code == 200
    labels = {
        "model": "baseline",
        "reason": "no trained scan predictor yet: 0 scan runs over 0 sessions, training needs 40 runs over 4 sessions",
        "basis": "no scan runs or scan results in the warehouse yet: run the daily pipeline first",
        "session": None,
        "predicted": None,
    }
    assert predict.json() == labels
    assert suggest.json() == {**labels, "goal": "quality", "config": None, "warnings": [], "hot_sectors": []}


def test_the_champion_answers_predictions_with_the_latest_conditions(make_app, market):
    client, champion = _with_champion(make_app)
    with client:
        response = client.post("/scan/predict", json={"max_symbols": 40}, headers=AUTH)
        started = client.post("/scan/stream", json={"max_symbols": 7}, headers=AUTH).json()
    assert response.status_code == 200, response.text
    assert response.json() == {
        "model": "v0007",
        "reason": None,
        "basis": None,
        "session": market.session.isoformat(),
        "predicted": {"result_count": 40.0, "duration_s": 0.4},
    }
    config, conditions = champion.calls[0]
    assert config.max_symbols == 40 and conditions["regime"] == market.conditions["regime"][0]
    assert started["predicted"] == {"result_count": 7.0, "duration_s": 0.07}


@pytest.mark.parametrize("goal", ["speed", "quality", "balanced"])
def test_the_champion_answers_suggestions_for_the_goals_preset(make_app, warehouse, market, goal):
    client, champion = _with_champion(make_app)
    with client:
        response = client.get("/scan/suggest", params={"goal": goal})
    assert response.status_code == 200, response.text
    body = response.json()
    preset = optimizer.PRESETS[OPTIMIZER_GOALS[goal]]
    assert champion.calls and all(conditions["date"] == market.session for _, conditions in champion.calls)
    config = ScanConfig.model_validate(body["config"])
    expected = champion.predict(config, {})
    assert (body["model"], body["reason"], body["basis"]) == ("v0007", None, None)
    assert body["goal"] == goal and body["session"] == market.session.isoformat()
    assert config.max_symbols == preset.max_symbols and config.min_tech_rating in preset.min_ratings
    assert body["predicted"] == {"result_count": expected.result_count, "duration_s": expected.duration_s}
    assert body["warnings"] == optimizer.config_warnings(config, expected.result_count)
    assert body["hot_sectors"] == optimizer.hot_sectors(warehouse)


def test_bad_prediction_input_is_422_naming_the_field(client):
    assert client.get("/scan/suggest", params={"goal": "fastest"}).status_code == 422
    response = client.post("/scan/predict", json={"max_symbols": -5}, headers=AUTH)
    assert response.status_code == 422 and "body.max_symbols" in response.json()["message"]
