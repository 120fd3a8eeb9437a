"""Alpha training against the simulator's ground truth, and the champion rule."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from technic_core.ml.alpha import AlphaSpec
from technic_core.ml.evaluation import evaluate
from technic_core.ml.registry import ModelRegistry
from technic_core.ml.training import (
    InsufficientHistoryError,
    load_training_panel,
    train_alpha_models,
    train_and_register,
)
from tests.ml.conftest import SMALL_TRAINING


@pytest.fixture(scope="module")
def oracle(trained, market) -> dict[int, pl.DataFrame]:
    """The simulator's expected returns over the sessions the training run tested on."""
    dates = pl.concat([r.evaluation.predictions.get_column("date") for r in trained[1].values()])
    return {
        h: market.oracle_expected_return(dates.min(), dates.max(), h).select(
            "symbol", "date", pl.col("expected_return").alias("oracle")
        )
        for h in (5, 10)
    }


@pytest.mark.parametrize("horizon", [5, 10])
def test_held_out_rank_ic_is_a_large_share_of_the_oracles(trained, oracle, horizon):
    report = trained[1][f"alpha_{horizon}d"]
    held_out = report.evaluation.predictions.join(oracle[horizon], on=["symbol", "date"], how="inner")
    model = evaluate(held_out, "prediction", f"fwd_ret_{horizon}d")
    truth = evaluate(held_out, "oracle", f"fwd_ret_{horizon}d")
    assert model.sessions == truth.sessions == 60
    assert truth.rank_ic > 0.08, "the simulator's planted alpha should be visible on 200 names"
    assert model.rank_ic >= 0.6 * truth.rank_ic
    assert model.icir > 0.5 and model.decile_spread > 0


def test_baselines_are_scored_on_the_same_rows(trained):
    metrics = trained[1]["alpha_5d"].evaluation.metrics
    assert set(metrics) == {"model", "mom_21", "tech_rating", "ridge"}
    assert len({m.sessions for m in metrics.values()}) == 1
    # the planted alpha is mostly short-term reversal, so momentum and TechRating point the wrong way
    assert metrics["model"].rank_ic > max(metrics["mom_21"].rank_ic, metrics["tech_rating"].rank_ic)


def test_registry_holds_model_features_window_and_metrics(trained):
    store, reports = trained
    registry = ModelRegistry(store)
    for name, report in reports.items():
        directory = registry.root / name / report.version
        assert {p.name for p in directory.iterdir()} == {"model.ubj", "features.json", "manifest.json", "metrics.json"}
        manifest = registry.manifest(name, report.version)
        assert manifest["training_window"]["sessions"] == SMALL_TRAINING.max_train_sessions
        assert json.loads((directory / "features.json").read_text()) == manifest["spec"]["features"]
        metrics = registry.metrics(name, report.version)
        assert metrics["walk_forward"]["model"]["rank_ic"] == pytest.approx(report.rank_ic, abs=1e-6)
        assert len(metrics["rank_ic_by_session"]) == 60
        assert registry.champion(name) == report.version and report.promoted


def test_retraining_the_same_spec_ties_and_takes_over_keeping_the_old_version(trained, trained_store):
    first = trained[1]
    second = {r.name: r for r in train_alpha_models(trained_store, SMALL_TRAINING)}
    registry = ModelRegistry(trained_store)
    for name in first:
        assert second[name].promoted and "same spec, same window" in second[name].reason
        assert registry.versions(name) == [first[name].version, second[name].version]
        assert registry.champion(name) == second[name].version
        pointer = json.loads((registry.root / name / "champion.json").read_text())
        assert pointer["previous"] == [first[name].version]


def test_a_weaker_challenger_is_registered_but_not_promoted(trained, trained_store):
    champion = trained[1]["alpha_5d"]
    registry = ModelRegistry(trained_store)
    panel = load_training_panel(trained_store, SMALL_TRAINING.panel_sessions())
    weak = AlphaSpec(horizon=5, features=("regime_trend", "atr_pct", "bb_width"), rounds=50)
    challenger = train_and_register(registry, panel, weak, SMALL_TRAINING)
    assert not challenger.promoted
    assert challenger.champion_rank_ic == pytest.approx(champion.rank_ic)
    assert "re-evaluated on the same folds" in challenger.reason
    assert registry.champion("alpha_5d") == champion.version
    assert registry.versions("alpha_5d") == [champion.version, challenger.version]


def test_too_little_history_stops_before_writing(store):
    keep = store.sessions("outcomes")[:50]
    for session in store.sessions("outcomes")[50:]:
        shutil.rmtree(store.root / "outcomes" / f"date={session.isoformat()}")
    assert len(store.sessions("outcomes")) == len(keep)
    with pytest.raises(
        InsufficientHistoryError, match=r"needs ≥ \d+ labeled sessions .* has 50\. The champion is unchanged"
    ):
        train_alpha_models(store, SMALL_TRAINING)
    assert not (store.root / "models").exists()
