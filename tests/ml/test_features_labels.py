"""Features and labels: vectorized over the panel, null where undefined, and never looking ahead."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from technic_core import calendar
from technic_core.errors import ConfigError
from technic_core.ml.features import FEATURES, RANK_FEATURES, build_features, feature_matrix, regime_conditions
from technic_core.ml.labels import forward_returns, label_ready, session_outcomes, target_session

START, END = dt.date(2019, 1, 2), dt.date(2019, 9, 30)


@pytest.fixture(scope="module")
def bars(market) -> pl.DataFrame:
    return market.bars(START, END)


def test_features_at_t_ignore_every_later_bar(bars):
    cutoff = dt.date(2019, 6, 28)
    full = build_features(bars).filter(pl.col("date") <= cutoff)
    truncated = build_features(bars.filter(pl.col("date") <= cutoff))
    assert full.height == truncated.height > 0
    assert full.equals(truncated)


def test_one_session_equals_the_whole_panel_computation(bars):
    session = dt.date(2019, 8, 15)
    alone = build_features(bars, sessions=[session])
    whole = build_features(bars).filter(pl.col("date") == session)
    # equal up to the rounding of rolling sums that start at different rows
    assert_frame_equal(alone.sort("symbol"), whole.sort("symbol"), rel_tol=1e-9, abs_tol=1e-12)


def test_ranks_are_centered_per_session_and_undefined_stays_null(bars):
    features = build_features(bars)
    session = features.filter(pl.col("date") == dt.date(2019, 9, 3))
    for name in RANK_FEATURES:
        ranks = session.get_column(name).drop_nulls()
        if name == "rank_close_to_sma_200":  # needs 200 bars; the panel starts in January
            assert ranks.len() == 0
            continue
        assert ranks.min() > -0.5 and ranks.max() < 0.5
        assert abs(ranks.mean()) < 1e-9
    # mom_126 needs 127 bars: undefined (null, not zero) for everyone in the first months
    early = features.filter(pl.col("date") == dt.date(2019, 3, 1))
    assert early.get_column("mom_126").null_count() == early.height
    assert early.get_column("rank_mom_126").null_count() == early.height


def test_regime_features_come_from_the_conditions(bars):
    session = dt.date(2019, 8, 15)
    features = build_features(bars, regime_conditions(session, "bear_high"), sessions=[session])
    assert features.get_column("regime_trend").unique().to_list() == [-1.0]
    assert features.get_column("regime_high_volatility").unique().to_list() == [1.0]
    assert build_features(bars, sessions=[session]).get_column("regime_trend").null_count() == features.height


def test_a_missing_feature_column_is_named(bars):
    features = build_features(bars, sessions=[dt.date(2019, 8, 15)]).drop("rank_ret_5")
    with pytest.raises(ConfigError, match="rank_ret_5"):
        feature_matrix(features, FEATURES)


def test_target_sessions_skip_holidays():
    # 2019-07-04 is a holiday: five sessions after July 1 is July 9
    assert target_session(dt.date(2019, 7, 1), 5) == dt.date(2019, 7, 9)
    assert target_session(calendar.last_known_session(), 5) is None


def test_forward_returns_are_close_to_close_over_sessions(bars):
    labels = forward_returns(bars)
    symbol = bars.get_column("symbol")[0]
    session = dt.date(2019, 5, 1)
    closes = dict(bars.filter(pl.col("symbol") == symbol).select("date", "close").iter_rows())
    row = labels.filter((pl.col("symbol") == symbol) & (pl.col("date") == session)).row(0, named=True)
    for horizon in (5, 10):
        expected = closes[target_session(session, horizon)] / closes[session] - 1.0
        assert row[f"fwd_ret_{horizon}d"] == pytest.approx(expected, rel=1e-12)


def test_missing_future_bar_gives_no_label_never_zero(bars):
    symbol, session = bars.get_column("symbol")[0], dt.date(2019, 5, 1)
    halted_on = target_session(session, 5)
    holed = bars.filter(~((pl.col("symbol") == symbol) & (pl.col("date") == halted_on)))
    row = forward_returns(holed).filter((pl.col("symbol") == symbol) & (pl.col("date") == session)).row(0, named=True)
    assert row["fwd_ret_5d"] is None
    assert row["fwd_ret_10d"] is not None
    # the last sessions of the panel have no future at all
    tail = forward_returns(bars).filter(pl.col("date") == END)
    assert tail.get_column("fwd_ret_5d").null_count() == tail.height


def test_labels_depend_only_on_t_and_t_plus_h(bars):
    session = dt.date(2019, 5, 1)
    untouched = {session, target_session(session, 5), target_session(session, 10)}
    scrambled = bars.with_columns(
        pl.when(pl.col("date").is_in(list(untouched))).then(pl.col("close")).otherwise(pl.col("close") * 3.0)
    )
    before = forward_returns(bars).filter(pl.col("date") == session)
    after = forward_returns(scrambled).filter(pl.col("date") == session)
    assert before.equals(after)


def test_outcomes_wait_for_the_bars_of_t_plus_10(bars, market):
    session = dt.date(2019, 9, 20)  # t + 10 is in October, beyond the panel
    results = pl.DataFrame(
        {"date": [session], "symbol": [bars.get_column("symbol")[0]], "signal": ["Buy"], "tech_rating": [72.0]}
    )
    assert not label_ready(session, set(bars.get_column("date").unique()))
    with pytest.raises(ConfigError, match="not yet loaded"):
        session_outcomes(results, bars, session)
    ready = session_outcomes(results.with_columns(pl.lit(dt.date(2019, 9, 3)).alias("date")), bars, dt.date(2019, 9, 3))
    assert ready.get_column("fwd_ret_10d").null_count() == 0
