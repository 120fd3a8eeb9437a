"""Prediction endpoints: 503 with the reason while no predictor exists; a fake predictor through dependency
overrides for the success path (the contract of `technic_core.ml.scan_predictors`)."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from api import deps
from api.predictions import MODULE
from technic_core.config import ScanConfig
from tests.api.conftest import AUTH


@dataclass(frozen=True)
class Outcome:
    result_count: float
    duration_s: float


@dataclass
class FakePredictors:
    """Predicts one result per scanned symbol and 10 ms per symbol; remembers what it was asked."""

    calls: list[tuple[ScanConfig, dict]] = field(default_factory=list)

    def predict(self, config: ScanConfig, conditions: dict) -> Outcome:
        self.calls.append((config, conditions))
        symbols = config.max_symbols or 100
        return Outcome(result_count=float(symbols), duration_s=symbols * 0.01)


@dataclass(frozen=True)
class Suggestion:
    config: object
    predicted: Outcome | None
    warnings: list[str]
    hot_sectors: list[str]


def test_without_the_ml_module_predictions_are_503_with_the_reason(client, monkeypatch):
    monkeypatch.setitem(sys.modules, MODULE, None)  # a deployment without the ML package
    predict = client.post("/scan/predict", json={}, headers=AUTH)
    suggest = client.get("/scan/suggest", params={"goal": "speed"})
    for response in (predict, suggest):
        assert response.status_code == 503
        assert "technic_core.ml.scan_predictors is not installed" in response.json()["detail"]
    started = client.post("/scan/stream", json={"max_symbols": 3}, headers=AUTH)
    assert started.status_code == 202 and started.json()["predicted"] is None


def test_an_untrained_predictor_is_503_saying_so(client, monkeypatch):
    module = types.ModuleType(MODULE)
    module.load_scan_predictors = lambda store: None
    monkeypatch.setitem(sys.modules, MODULE, module)
    response = client.post("/scan/predict", json={}, headers=AUTH)
    assert response.status_code == 503 and "no scan predictor is trained yet" in response.json()["detail"]


def test_predict_uses_the_predictor_and_the_latest_conditions(make_app, market):
    predictors = FakePredictors()
    app = make_app()
    app.dependency_overrides[deps.optional_scan_predictors] = lambda: predictors
    with TestClient(app) as client:
        response = client.post("/scan/predict", json={"max_symbols": 40}, headers=AUTH)
        started = client.post("/scan/stream", json={"max_symbols": 7}, headers=AUTH).json()
    assert response.status_code == 200, response.text
    assert response.json() == {"session": market.session.isoformat(), "predicted": {"result_count": 40.0, "duration_s": 0.4}}
    config, conditions = predictors.calls[0]
    assert config.max_symbols == 40 and conditions["regime"] == market.conditions["regime"][0]
    assert started["predicted"] == {"result_count": 7.0, "duration_s": 0.07}


@pytest.mark.parametrize("goal", ["speed", "quality", "balanced"])
def test_suggest_returns_the_suggested_config(make_app, market, goal):
    seen = []

    def suggester(requested_goal: str, conditions: dict) -> Suggestion:
        seen.append((requested_goal, conditions["date"]))
        return Suggestion(
            config={"max_symbols": 50 if requested_goal == "speed" else 500, "sectors": ["Energy"]},
            predicted=Outcome(12.0, 1.5),
            warnings=["too broad"] if requested_goal == "quality" else [],
            hot_sectors=["Energy", "Utilities"],
        )

    app = make_app()
    app.dependency_overrides[deps.optional_parameter_suggester] = lambda: suggester
    with TestClient(app) as client:
        response = client.get("/scan/suggest", params={"goal": goal})
    assert response.status_code == 200, response.text
    body = response.json()
    assert seen == [(goal, market.session)]
    assert body["goal"] == goal and body["session"] == market.session.isoformat()
    assert body["config"]["max_symbols"] == (50 if goal == "speed" else 500)
    assert body["config"]["sectors"] == ["Energy"] and body["config"]["batch_size"] == ScanConfig().batch_size
    assert body["predicted"] == {"result_count": 12.0, "duration_s": 1.5}
    assert body["hot_sectors"] == ["Energy", "Utilities"]


def test_bad_prediction_input_is_422_even_without_a_predictor(client):
    assert client.get("/scan/suggest", params={"goal": "fastest"}).status_code == 422
    response = client.post("/scan/predict", json={"max_symbols": -5}, headers=AUTH)
    assert response.status_code == 422 and "body.max_symbols" in response.json()["message"]


def test_the_api_goals_reach_the_optimizer_as_its_preset_names(client, monkeypatch):
    asked = []

    def suggest(store, goal: str, conditions: dict) -> Suggestion:
        asked.append(goal)
        return Suggestion(config=ScanConfig(), predicted=None, warnings=[], hot_sectors=[])

    module = types.ModuleType(MODULE)
    module.load_scan_predictors = lambda store: FakePredictors()
    module.suggest = suggest
    monkeypatch.setitem(sys.modules, MODULE, module)
    bodies = [client.get("/scan/suggest", params={"goal": goal}).json() for goal in ("speed", "quality", "balanced")]
    assert asked == ["quick", "deep", "balanced"]
    assert [body["goal"] for body in bodies] == ["speed", "quality", "balanced"]
    assert all(body["predicted"] is None for body in bodies)
