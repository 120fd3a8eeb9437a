"""Walk-forward folds keep purge + embargo between training and test; metrics mean what they say."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import polars as pl
import pytest

from technic_core import calendar
from technic_core.errors import ConfigError
from technic_core.ml.evaluation import evaluate, walk_forward_folds
from technic_core.ml.labels import target_session

SESSIONS = calendar.sessions_between(dt.date(2019, 1, 2), dt.date(2019, 12, 31))


@pytest.mark.parametrize("horizon", [5, 10])
def test_folds_leave_purge_and_embargo_before_each_test_block(horizon):
    folds = walk_forward_folds(SESSIONS, horizon, test_sessions=21, min_train_sessions=60, max_train_sessions=100)
    position = {day: i for i, day in enumerate(SESSIONS)}
    assert len(folds) >= 3
    for fold in folds:
        # the last training label ends (close of s + h) at least an embargo before the test block starts
        assert position[fold.test[0]] - position[target_session(fold.train[-1], horizon)] >= horizon
        assert position[fold.test[0]] - position[fold.train[-1]] >= 2 * horizon
        assert 60 <= len(fold.train) <= 100
    # blocks are consecutive, laid back from the latest session, and each is full
    assert folds[-1].test[-1] == SESSIONS[-1]
    assert all(len(fold.test) == 21 for fold in folds)
    assert all(a.test[-1] < b.test[0] for a, b in itertools.pairwise(folds))


def test_purge_and_embargo_below_the_horizon_are_refused():
    with pytest.raises(ConfigError, match="at least the horizon"):
        walk_forward_folds(SESSIONS, 10, test_sessions=21, min_train_sessions=60, max_train_sessions=100, purge=5)


def test_max_folds_keeps_the_latest_blocks():
    folds = walk_forward_folds(SESSIONS, 5, 21, 60, 252, max_folds=2)
    assert len(folds) == 2 and folds[-1].test[-1] == SESSIONS[-1]


def test_rank_ic_icir_and_decile_spread():
    rng = np.random.default_rng(0)
    days = SESSIONS[:30]
    signal = rng.standard_normal((len(days), 200))
    label = signal + rng.standard_normal(signal.shape)
    frame = pl.DataFrame(
        {
            "date": pl.Series(days, dtype=pl.Date).gather(np.repeat(np.arange(len(days)), 200)),
            "signal": signal.ravel(),
            "label": label.ravel(),
        }
    ).with_columns((-pl.col("signal")).alias("reversed"), pl.col("label").alias("oracle"))
    perfect = evaluate(frame, "oracle", "label")
    assert perfect.rank_ic == pytest.approx(1.0) and perfect.sessions == 30
    good, bad = evaluate(frame, "signal", "label"), evaluate(frame, "reversed", "label")
    assert 0.6 < good.rank_ic < 0.8 and bad.rank_ic == pytest.approx(-good.rank_ic)
    assert good.icir > 5 and good.decile_spread > 2.0 and bad.decile_spread < -2.0
