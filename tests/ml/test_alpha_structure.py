"""The additive-monotone structure's feature directions, estimated on a spread-out sample of the rows."""

from __future__ import annotations

import numpy as np
import polars as pl

from technic_core.ml import alpha


def test_feature_directions_come_from_a_sample_and_keep_their_signs(monkeypatch):
    rng = np.random.default_rng(0)
    n = 20_000
    up, down, noise, regime = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n), rng.integers(-1, 2, n)
    rows = pl.DataFrame(
        {"up": up, "down": down, "noise": noise, "regime_trend": regime.astype(float), "target": up - down + rng.normal(size=n)}
    )
    monkeypatch.setattr(alpha, "SIGN_SAMPLE_ROWS", 2_000)  # every 10th row
    constraints = alpha._additive_monotone_constraints(rows, ("up", "down", "noise", "regime_trend"))
    signs = constraints["monotone_constraints"].strip("()").split(",")
    assert signs[:2] == ["1", "-1"] and signs[3] == "0"  # the regime feature is never constrained
    assert constraints["interaction_constraints"] == [[name, "regime_trend"] for name in ("up", "down", "noise")]
