"""Model structures: the linear-residual model (the ridge plus state-conditioned trees) and the
additive-monotone structure's feature directions, estimated on a spread-out sample of the rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import xgboost as xgb

from technic_core.errors import ConfigError
from technic_core.ml import alpha
from technic_core.ml.features import feature_matrix
from technic_core.ml.labels import ranked_label


def test_feature_directions_come_from_a_sample_and_keep_their_signs(monkeypatch):
    rng = np.random.default_rng(0)
    n = 20_000
    up, down, noise, regime = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n), rng.integers(-1, 2, n)
    rows = pl.DataFrame(
        {
            "up": up,
            "down": down,
            "noise": noise,
            "regime_trend": regime.astype(float),
            "target": up - down + rng.normal(size=n),
        }
    )
    monkeypatch.setattr(alpha, "SIGN_SAMPLE_ROWS", 2_000)  # every 10th row
    constraints = alpha._additive_monotone_constraints(rows, ("up", "down", "noise", "regime_trend"))
    signs = constraints["monotone_constraints"].strip("()").split(",")
    assert signs[:2] == ["1", "-1"] and signs[3] == "0"  # the regime feature is never constrained
    assert constraints["interaction_constraints"] == [[name, "regime_trend"] for name in ("up", "down", "noise")]


def _panel(seed: int = 0, sessions: int = 40, names: int = 200) -> pl.DataFrame:
    """A synthetic panel: label = x − y + (x × regime_trend) + noise, so a linear part and a state-dependent one."""
    rng = np.random.default_rng(seed)
    n = sessions * names
    x, y, regime = rng.normal(size=n), rng.normal(size=n), np.repeat(rng.integers(-1, 2, sessions), names)
    y[::9] = np.nan  # missing values take the training mean in the linear part
    label = x - np.nan_to_num(y) + x * regime + rng.normal(size=n)
    return pl.DataFrame(
        {
            "date": np.repeat(np.arange(sessions), names),
            "x": x,
            "y": y,
            "regime_trend": regime.astype(float),
            "fwd_ret_5d": label,
        }
    )


def test_linear_residual_is_the_ridge_baseline_plus_trees_and_carries_its_base():
    panel = _panel()
    features = ("x", "y", "regime_trend")
    ridge = alpha.fit_ridge(panel, alpha.AlphaSpec(horizon=5, features=features))
    expected = ridge.predict(feature_matrix(panel, features))

    no_trees = alpha.fit_alpha(panel, alpha.AlphaSpec(horizon=5, features=features, rounds=0))
    np.testing.assert_allclose(alpha.predict_alpha(no_trees, panel, features), expected, atol=1e-5)  # just the ridge

    # 8,000 rows and three columns, not a year of a million rows and sixty columns
    quick = {**alpha.DEFAULT_PARAMS, "eta": 0.3, "min_child_weight": 20.0, "colsample_bytree": 1.0}
    booster = alpha.fit_alpha(panel, alpha.AlphaSpec(horizon=5, features=features, params=quick, rounds=60))
    reloaded = xgb.Booster()
    reloaded.load_model(bytearray(booster.save_raw("ubj")))  # the registry stores this file alone
    predicted = alpha.predict_alpha(reloaded, panel, features)
    np.testing.assert_allclose(predicted, alpha.predict_alpha(booster, panel, features), rtol=1e-6)
    target = panel.select(ranked_label("fwd_ret_5d")).to_series().to_numpy()
    # the trees learn what the ridge cannot: x's effect changes with the regime
    assert np.corrcoef(predicted, target)[0, 1] > np.corrcoef(expected, target)[0, 1] + 0.02
    with pytest.raises(ConfigError, match="linear base"):
        alpha.predict_alpha(booster, panel.rename({"x": "z"}), ("z", "y", "regime_trend"))


def test_linear_residual_trees_pair_each_feature_with_the_conditioning_features():
    groups = alpha._conditioned_groups(("x", "regime_trend", "rank_volatility_20", "y", "regime_high_volatility"))
    assert groups == [
        ["x", "regime_trend", "rank_volatility_20", "regime_high_volatility"],
        ["y", "regime_trend", "rank_volatility_20", "regime_high_volatility"],
    ]
