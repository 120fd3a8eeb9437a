"""The simulated market: schemas, determinism, realism checks and the planted predictable part."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from technic_core import calendar, schema
from technic_core.config import SECTORS, Settings
from technic_core.errors import ConfigError, NotASessionError
from technic_core.sources import INDEX_SYMBOL, VOLATILITY_SYMBOL, MarketDataSource, make_source
from technic_core.sources.simulated import (
    ORACLE_SCHEMA,
    REGIMES_SCHEMA,
    SimulatedMarket,
    SimulationConfig,
)

D = dt.date
EPOCH = D(2018, 1, 2)
WINDOW_END = D(2019, 12, 31)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return SimulatedMarket(SimulationConfig(n_symbols=400))


@pytest.fixture(scope="module")
def bars(market: SimulatedMarket) -> pl.DataFrame:
    """Two years of bars with each symbol's log return since its previous bar."""
    return (
        market.bars(EPOCH, WINDOW_END)
        .sort("symbol", "date")
        .with_columns((pl.col("close") / pl.col("close").shift(1)).log().over("symbol").alias("log_return"))
    )


@pytest.fixture(scope="module")
def long_market() -> SimulatedMarket:
    """Few names over seven years: enough sessions for every regime to show up."""
    return SimulatedMarket(SimulationConfig(n_symbols=100))


def session_numbers(start: dt.date, end: dt.date) -> pl.DataFrame:
    return pl.DataFrame({"date": calendar.sessions_between(start, end)}).with_row_index("k")


# --- protocol, schemas, dates ------------------------------------------------------------------------------


def test_implements_the_source_protocol_and_is_the_registered_default():
    source = make_source(Settings(sim_symbols=30, sim_seed=3))
    assert isinstance(source, SimulatedMarket) and isinstance(source, MarketDataSource)
    assert source.name == "simulated"
    assert source.config == SimulationConfig(n_symbols=30, seed=3)


def test_an_object_store_warehouse_keeps_no_local_checkpoint_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = make_source(Settings(sim_symbols=30, sim_seed=3, warehouse="memory://sim/w"))
    day = D(2018, 6, 1)
    local = make_source(Settings(sim_symbols=30, sim_seed=3, warehouse=tmp_path / "w"))
    assert source.bars(day, day).equals(local.bars(day, day))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"], "nothing created under a path named after the URI"


def test_frames_follow_the_schemas(market: SimulatedMarket):
    day = D(2018, 6, 1)
    frames = {
        "bars": (market.bars(day, day), schema.BARS),
        "index": (market.index_bars(day, day), schema.BARS),
        "reference": (market.reference(day), schema.REFERENCE),
        "earnings": (market.earnings(D(2018, 4, 1), D(2018, 6, 1)), schema.EARNINGS),
        "oracle": (market.oracle_expected_return(day, day, 5), ORACLE_SCHEMA),
        "regimes": (market.market_regimes(day, day), REGIMES_SCHEMA),
    }
    for name, (frame, expected) in frames.items():
        assert dict(frame.schema) == expected, name
        assert frame.height > 0, name
    assert frames["bars"][0].select(pl.exclude("vwap", "trades")).null_count().sum_horizontal().item() == 0
    assert frames["reference"][0].get_column("symbol").is_sorted()


def test_only_nyse_sessions_get_bars():
    market = SimulatedMarket(SimulationConfig(n_symbols=40))
    frame = market.bars(D(2024, 11, 20), D(2024, 12, 3))
    dates = frame.get_column("date").unique().sort().to_list()
    assert dates == calendar.sessions_between(D(2024, 11, 20), D(2024, 12, 3))
    assert D(2024, 11, 28) not in dates  # Thanksgiving
    assert all(day.weekday() < 5 for day in dates)
    assert market.bars(D(2024, 11, 28), D(2024, 11, 28)).is_empty()
    with pytest.raises(NotASessionError, match="2024-11-28"):
        market.reference(D(2024, 11, 28))


def test_dates_before_the_epoch_are_empty_and_after_the_calendar_raise(market: SimulatedMarket):
    assert market.bars(D(2017, 6, 1), D(2017, 12, 29)).is_empty()
    assert market.reference(D(2017, 12, 29)).is_empty()
    assert market.index_bars(D(2017, 6, 1), D(2017, 12, 29)).is_empty()
    assert market.bars(D(2017, 12, 20), EPOCH).get_column("date").unique().to_list() == [EPOCH]
    beyond = calendar.last_known_session() + dt.timedelta(days=7)
    for call in (
        lambda: market.bars(EPOCH, beyond),
        lambda: market.reference(beyond),
        lambda: market.index_bars(EPOCH, beyond),
        lambda: market.earnings(EPOCH, beyond),
        lambda: market.oracle_expected_return(EPOCH, beyond, 5),
    ):
        with pytest.raises(ConfigError, match="last session"):
            call()


def test_invalid_configs_name_the_field():
    with pytest.raises(ConfigError, match="n_symbols"):
        SimulationConfig(n_symbols=0)
    with pytest.raises(ConfigError, match=r"alpha_weights.*momentum"):
        SimulationConfig(alpha_weights=(("momentum", 1.0),))
    with pytest.raises(ConfigError, match="history_end"):
        SimulationConfig(history_end=D(2017, 1, 1))
    with pytest.raises(ConfigError, match=r"alpha_regime_multipliers.*momentum"):
        SimulationConfig(alpha_regime_multipliers=(("momentum", (1.0, 1.0, 1.0)),))
    with pytest.raises(ConfigError, match=r"alpha_regime_multipliers.*one per regime"):
        SimulationConfig(alpha_regime_multipliers=(("mom_63", (1.0, -1.0)),))
    with pytest.raises(ConfigError, match="alpha_volatility_interaction"):
        SimulationConfig(alpha_volatility_interaction=0.5)  # 1 + 0.5 × (−3) < 0 would turn reversal around
    with pytest.raises(ConfigError, match="horizon"):
        SimulatedMarket(SimulationConfig(n_symbols=10)).oracle_expected_return(EPOCH, EPOCH, 0)


def test_stats_count_calls_and_cache_hits():
    market = SimulatedMarket(SimulationConfig(n_symbols=20))
    market.bars(EPOCH, D(2018, 2, 1))
    assert (market.stats.api_calls, market.stats.cache_hits) == (1, 0)
    market.bars(D(2018, 1, 10), D(2018, 1, 10))
    market.reference(D(2018, 1, 10))
    market.earnings(EPOCH, D(2018, 2, 1))
    assert (market.stats.api_calls, market.stats.cache_hits) == (4, 3)


# --- determinism -------------------------------------------------------------------------------------------


def test_same_seed_same_market_other_seed_other_market():
    start, end = D(2018, 3, 1), D(2018, 4, 30)
    first = SimulatedMarket(SimulationConfig(n_symbols=150, seed=11))
    second = SimulatedMarket(SimulationConfig(n_symbols=150, seed=11))
    other = SimulatedMarket(SimulationConfig(n_symbols=150, seed=12))
    assert first.bars(start, end).equals(second.bars(start, end))
    assert first.index_bars(start, end).equals(second.index_bars(start, end))
    assert first.reference(end).equals(second.reference(end))
    assert first.earnings(start, end).equals(second.earnings(start, end))
    assert not first.bars(start, end).equals(other.bars(start, end))
    assert first.reference(end).get_column("symbol").to_list() != other.reference(end).get_column("symbol").to_list()


def test_a_backfill_equals_day_by_day_requests_in_any_order():
    """Checkpoints and block caches must never change the data, whatever was asked first."""
    start, end, later = D(2018, 3, 1), D(2018, 5, 31), (D(2018, 9, 4), D(2018, 9, 28))
    backfill = SimulatedMarket(SimulationConfig(n_symbols=120))
    one_call = backfill.bars(start, end)
    one_call_later = backfill.bars(*later)

    daily = SimulatedMarket(SimulationConfig(n_symbols=120, checkpoint_interval=7))
    later_first = daily.bars(*later)
    day_by_day = pl.concat([daily.bars(day, day) for day in calendar.sessions_between(start, end)])
    assert day_by_day.equals(one_call)
    assert later_first.equals(one_call_later)
    assert daily.index_bars(start, end).equals(backfill.index_bars(start, end))
    assert daily.oracle_expected_return(start, end, 5).equals(backfill.oracle_expected_return(start, end, 5))
    assert daily.reference(end).equals(backfill.reference(end))


def test_symbol_filter_selects_rows_of_the_full_frame(market: SimulatedMarket, bars: pl.DataFrame):
    chosen = bars.get_column("symbol").unique().sort().to_list()[5:9]
    filtered = market.bars(D(2019, 5, 1), D(2019, 5, 31), [*reversed(chosen), "NOT-A-SYMBOL"])
    full = market.bars(D(2019, 5, 1), D(2019, 5, 31)).filter(pl.col("symbol").is_in(chosen))
    assert filtered.equals(full)
    assert market.bars(D(2019, 5, 1), D(2019, 5, 31), []).is_empty()


# --- bars ---------------------------------------------------------------------------------------------------


def test_ohlc_are_consistent_and_positive(bars: pl.DataFrame):
    o, h, lo, c, vwap = (pl.col(name) for name in ("open", "high", "low", "close", "vwap"))
    broken = bars.filter(
        (lo > pl.min_horizontal(o, c))
        | (pl.max_horizontal(o, c) > h)
        | (lo <= 0)
        | (vwap < lo)
        | (vwap > h)
        | (pl.col("volume") <= 0)
        | (pl.col("trades") < 1)
        | (pl.col("volume") != pl.col("volume").round())
    )
    assert broken.is_empty(), broken.head()
    assert bars.filter(h > lo).height > 0.95 * bars.height


def test_prices_are_mostly_between_5_and_500_with_some_penny_stocks(bars: pl.DataFrame):
    closes = bars.filter(pl.col("date") == WINDOW_END).get_column("close")
    assert closes.is_between(5, 500).mean() > 0.8
    assert (closes < 5).sum() >= 4


def test_volume_is_turnover_of_the_share_count(market: SimulatedMarket, bars: pl.DataFrame):
    reference = market.reference(WINDOW_END)
    per_symbol = (
        bars.filter(pl.col("date") > D(2019, 10, 1))
        .group_by("symbol")
        .agg(pl.col("volume").median(), (pl.col("volume") * pl.col("close")).median().alias("dollar_volume"))
        .join(reference, on="symbol")
    )
    turnover = (per_symbol["volume"] / per_symbol["shares_outstanding"]).median()
    assert 0.002 <= turnover <= 0.01
    size_link = per_symbol.select(pl.corr(pl.col("dollar_volume").log(), pl.col("market_cap").log())).item()
    assert size_link > 0.6


def test_small_caps_are_more_volatile(market: SimulatedMarket, bars: pl.DataFrame):
    caps = market.reference(EPOCH).select("symbol", "market_cap")
    volatility = bars.group_by("symbol").agg(pl.col("log_return").std().alias("volatility")).join(caps, on="symbol")
    small = volatility.filter(pl.col("market_cap") < pl.col("market_cap").quantile(1 / 3))
    large = volatility.filter(pl.col("market_cap") > pl.col("market_cap").quantile(2 / 3))
    assert small["volatility"].median() > 1.3 * large["volatility"].median()


def test_halts_are_rare_and_sometimes_last_several_sessions(bars: pl.DataFrame):
    """A listed symbol without a bar between its first and last bar was halted."""
    numbered = bars.join(session_numbers(EPOCH, WINDOW_END), on="date").sort("symbol", "k")
    gaps = numbered.with_columns((pl.col("k").diff().over("symbol") - 1).alias("missed")).filter(pl.col("missed") > 0)
    spans = numbered.group_by("symbol").agg((pl.col("k").max() - pl.col("k").min() + 1).alias("sessions"))
    rate = gaps["missed"].sum() / spans["sessions"].sum()
    assert 0.0003 <= rate <= 0.002
    assert gaps.filter(pl.col("missed") >= 2).height >= 1


def test_volatility_clusters(bars: pl.DataFrame, market: SimulatedMarket):
    index = market.index_bars(EPOCH, WINDOW_END).filter(pl.col("symbol") == INDEX_SYMBOL)
    index_moves = np.abs(np.diff(np.log(index["close"].to_numpy())))
    assert np.corrcoef(index_moves[:-1], index_moves[1:])[0, 1] > 0.05
    stock_clustering = (
        bars.with_columns(pl.col("log_return").abs().alias("move"))
        .with_columns(pl.col("move").shift(1).over("symbol").alias("previous_move"))
        .drop_nulls(["move", "previous_move"])
        .group_by("symbol")
        .agg(pl.corr("move", "previous_move").alias("autocorrelation"))
    )
    assert stock_clustering["autocorrelation"].median() > 0.03


# --- universe -----------------------------------------------------------------------------------------------


def test_tickers_are_unique_realistic_and_never_the_index_symbols():
    reference = SimulatedMarket(SimulationConfig(n_symbols=3000)).reference(EPOCH)
    tickers = reference.get_column("symbol")
    assert tickers.n_unique() == tickers.len()
    assert not tickers.is_in([INDEX_SYMBOL, VOLATILITY_SYMBOL]).any()
    lengths = tickers.str.len_chars()
    plain = tickers.str.contains(r"^[A-Z]+$")
    assert (plain & lengths.is_between(3, 4)).mean() > 0.8
    assert (plain & (lengths == 2)).sum() > 30 and (plain & (lengths == 5)).sum() > 30
    assert 1 <= (lengths == 1).sum() <= 26
    assert 1 <= tickers.str.contains(r"[0-9]").sum() <= 20
    names = reference.get_column("name")
    assert names.str.contains(r"^[A-Z][a-z]+ ").all() and names.n_unique() > 0.9 * names.len()


def test_sectors_industries_and_market_caps():
    reference = SimulatedMarket(SimulationConfig(n_symbols=3000)).reference(EPOCH)
    assert set(reference["sector"]) == set(SECTORS)
    industries = reference.group_by("sector").agg(pl.col("industry").n_unique())
    assert industries["industry"].is_between(2, 5).all()
    caps = reference.get_column("market_cap")
    assert caps.is_between(50e6, 2e12).all()
    assert 1e9 <= caps.median() <= 6e9
    assert (reference["market_cap"] / reference["shares_outstanding"]).is_between(0.1, 5000).all()


def test_ipos_and_delistings_come_and_go(market: SimulatedMarket, bars: pl.DataFrame):
    first_listed = set(market.reference(EPOCH)["symbol"])
    last_reference = market.reference(WINDOW_END)
    last_listed = set(last_reference["symbol"])
    spans = bars.group_by("symbol").agg(pl.col("date").min().alias("first"), pl.col("date").max().alias("last"))
    spans = dict(zip(spans["symbol"], zip(spans["first"], spans["last"])))

    ipos = last_listed - first_listed
    assert 3 <= len(ipos) <= 20
    list_dates = dict(zip(last_reference["symbol"], last_reference["list_date"]))
    for symbol in ipos:
        assert list_dates[symbol] > EPOCH
        assert spans[symbol][0] == list_dates[symbol]  # first bar on the listing session, none before
        assert symbol not in set(market.reference(calendar.previous_session(list_dates[symbol]))["symbol"])
    assert all(day < EPOCH for symbol, day in list_dates.items() if symbol not in ipos)

    delisted = first_listed - last_listed
    assert 3 <= len(delisted) <= 20
    for symbol in delisted:
        last_bar = spans[symbol][1]
        assert last_bar < WINDOW_END
        gone = calendar.next_session(last_bar)
        assert symbol not in set(market.reference(gone)["symbol"])
        assert market.bars(gone, WINDOW_END, [symbol]).is_empty()
        announced = market.reference(last_bar).filter(pl.col("symbol") == symbol)["delist_date"]
        # the announced date is the first session without a listing (a halt may end the bars earlier)
        assert announced.item() is not None and announced.item() > last_bar

    for day in (EPOCH, D(2019, 1, 2), WINDOW_END):
        assert market.reference(day).height >= 0.85 * 400


def test_delist_dates_are_unknown_before_the_announcement(market: SimulatedMarket):
    early = market.reference(EPOCH)
    assert early["delist_date"].null_count() == early.height


# --- earnings, index, volatility index, regimes ------------------------------------------------------------


def test_earnings_are_quarterly_and_move_the_next_session(market: SimulatedMarket, bars: pl.DataFrame):
    earnings = market.earnings(EPOCH, D(2019, 11, 29))
    per_symbol = earnings.group_by("symbol").len()["len"]
    assert per_symbol.median() in (7, 8)
    assert earnings["surprise_pct"].null_count() == 0
    assert earnings["surprise_pct"].abs().quantile(0.99) > 4 * earnings["surprise_pct"].abs().median()

    numbered = session_numbers(EPOCH, WINDOW_END)
    relative = bars.with_columns((pl.col("volume") / pl.col("volume").median().over("symbol")).alias("relative_volume"))
    reactions = (
        earnings.join(numbered, on="date")
        .with_columns(pl.col("k") + 1)
        .drop("date")
        .join(numbered, on="k")
        .join(relative, on=["symbol", "date"])
    )
    assert reactions.height > 0.9 * earnings.height
    normal_move = relative["log_return"].abs().mean()
    assert reactions["log_return"].abs().mean() > 1.8 * normal_move
    assert reactions["relative_volume"].mean() > 2 * relative["relative_volume"].mean()
    assert reactions.select(pl.corr("surprise_pct", "log_return", method="spearman")).item() > 0.3


def test_index_and_volatility_index_for_every_session(market: SimulatedMarket):
    index = market.index_bars(EPOCH, WINDOW_END)
    sessions = calendar.sessions_between(EPOCH, WINDOW_END)
    for symbol in (INDEX_SYMBOL, VOLATILITY_SYMBOL):
        assert index.filter(pl.col("symbol") == symbol)["date"].to_list() == sessions
    spy = index.filter(pl.col("symbol") == INDEX_SYMBOL)
    assert 250 <= spy["close"][0] <= 290
    assert spy["trades"].null_count() == 0 and (spy["volume"] > 1e7).all()
    vix = index.filter(pl.col("symbol") == VOLATILITY_SYMBOL)
    assert vix["vwap"].null_count() == vix.height and vix["trades"].null_count() == vix.height
    assert vix["close"].quantile(0.05) >= 9 and vix["close"].quantile(0.95) <= 50
    o, h, lo, c = (pl.col(name) for name in ("open", "high", "low", "close"))
    assert index.filter((lo > pl.min_horizontal(o, c)) | (h < pl.max_horizontal(o, c))).is_empty()


def test_volatility_index_is_higher_outside_bull_markets(long_market: SimulatedMarket):
    end = D(2024, 12, 31)
    vix = long_market.index_bars(EPOCH, end).filter(pl.col("symbol") == VOLATILITY_SYMBOL)
    by_regime = (
        vix.join(long_market.market_regimes(EPOCH, end), on="date")
        .group_by("regime")
        .agg(pl.col("close").mean(), pl.len())
    )
    mean = dict(zip(by_regime["regime"], by_regime["close"]))
    sessions = dict(zip(by_regime["regime"], by_regime["len"]))
    assert set(mean) == {"bull", "bear", "chop"} and min(sessions.values()) >= 20
    assert mean["bear"] > mean["bull"] + 5 and mean["chop"] > mean["bull"] + 3
    spy = long_market.index_bars(EPOCH, end).filter(pl.col("symbol") == INDEX_SYMBOL)
    realized = (
        spy.with_columns(pl.col("close").log().diff().rolling_std(20).alias("realized"))
        .join(vix.select("date", pl.col("close").alias("vix")), on="date")
        .drop_nulls()
    )
    assert realized.select(pl.corr("realized", "vix")).item() > 0.5


# --- planted predictable part ------------------------------------------------------------------------------


def mean_rank_ic(oracle: pl.DataFrame, bars: pl.DataFrame, start: dt.date, end: dt.date, horizon: int) -> float:
    """Mean over sessions of the Spearman correlation between the oracle and realized forward log returns."""
    numbered = bars.join(session_numbers(start, end), on="date").select("symbol", "date", "k", "close")
    future = numbered.select("symbol", (pl.col("k") - horizon).alias("k"), pl.col("close").alias("future_close"))
    realized = numbered.join(future, on=["symbol", "k"]).with_columns(
        (pl.col("future_close") / pl.col("close")).log().alias("realized")
    )
    daily = (
        oracle.join(realized, on=["symbol", "date"])
        .group_by("date")
        .agg(pl.corr(pl.col("expected_return").rank(), pl.col("realized").rank()).alias("ic"))
    )
    return daily["ic"].mean()


@pytest.fixture(scope="module")
def linear_market() -> SimulatedMarket:
    """The `market` fixture's names in the linear world (`alpha_state_dependence=False`, MODEL_VERSION 1)."""
    return SimulatedMarket(SimulationConfig(n_symbols=400, alpha_state_dependence=False))


@pytest.mark.parametrize("world", ["state-dependent", "linear"])
@pytest.mark.parametrize("horizon", [5, 10])
def test_oracle_rank_ic_is_within_the_documented_band(
    market: SimulatedMarket, linear_market: SimulatedMarket, bars: pl.DataFrame, horizon: int, world: str
):
    start = D(2018, 6, 1)
    if world == "linear":
        market = linear_market
        bars = market.bars(EPOCH, WINDOW_END)
    oracle = market.oracle_expected_return(start, D(2019, 12, 13), horizon)
    assert oracle["horizon"].unique().to_list() == [horizon]
    ic = mean_rank_ic(oracle, bars.filter(pl.col("date") >= start), start, WINDOW_END, horizon)
    assert 0.10 <= ic <= 0.20


def mom_63_oracle_correlation_by_regime(market: SimulatedMarket, end: dt.date) -> dict[str, float]:
    """Mean daily Spearman correlation of ln(C / C[-63]) with the oracle (h = 10), per hidden regime."""
    close = pl.col("close")
    bars = market.bars(EPOCH, end).sort("symbol", "date")
    momentum = bars.with_columns((close / close.shift(63)).log().over("symbol").alias("mom_63")).drop_nulls("mom_63")
    start = D(2018, 6, 1)
    daily = (
        momentum.join(market.oracle_expected_return(start, end, 10), on=["symbol", "date"])
        .join(market.market_regimes(start, end), on="date")
        .group_by("date", "regime")
        .agg(pl.corr("mom_63", "expected_return", method="spearman").alias("rho"))
        .group_by("regime")
        .agg(pl.col("rho").mean())
    )
    return dict(zip(daily["regime"], daily["rho"]))


def test_momentum_pays_in_bull_markets_and_crashes_in_bear_and_chop(long_market: SimulatedMarket):
    """Momentum crashes: mom_63 carries a positive weight in the bull regime and a negative one in the bear and
    chop regimes. Its marginal correlation with the planted part is negative throughout (mom_63 moves with the
    reversal features), but far less so in bull markets than in the others; in the linear world the regime
    makes no difference."""
    end = D(2024, 12, 31)
    state = mom_63_oracle_correlation_by_regime(long_market, end)
    linear = mom_63_oracle_correlation_by_regime(
        SimulatedMarket(SimulationConfig(n_symbols=100, alpha_state_dependence=False)), end
    )
    assert state["bull"] - max(state["bear"], state["chop"]) > 0.2
    assert max(linear.values()) - min(linear.values()) < 0.1


def test_without_alpha_strength_nothing_is_predictable():
    market = SimulatedMarket(SimulationConfig(n_symbols=100, alpha_strength=0.0))
    oracle = market.oracle_expected_return(D(2018, 6, 1), D(2018, 6, 29), 5)
    assert oracle.height > 0 and (oracle["expected_return"] == 0).all()


def wilder_rsi(closes: np.ndarray) -> np.ndarray:
    """RSI(14) per bar, TA-Lib's seeding; NaN while fewer than 14 changes or no movement at all."""
    rsi = np.full(len(closes), np.nan)
    gain = loss = 0.0
    for n in range(1, len(closes)):
        change = closes[n] - closes[n - 1]
        weight = 1.0 / min(n, 14)
        gain += weight * (max(change, 0.0) - gain)
        loss += weight * (max(-change, 0.0) - loss)
        if n >= 14 and gain + loss > 0:
            rsi[n] = 100.0 * gain / (gain + loss)
    return rsi


def cross_sectional_z(column: str) -> pl.Expr:
    value = pl.col(column).fill_nan(None)  # undefined features, NaN or null, are left out and scored 0
    z = ((value - value.mean()) / value.std(ddof=0)).clip(-3.0, 3.0)
    return z.over("date").fill_null(0.0).fill_nan(0.0)


@pytest.mark.parametrize("state_dependent", [True, False], ids=["state-dependent", "linear"])
def test_oracle_follows_the_documented_formula_from_past_bars(state_dependent: bool):
    """Recompute the planted score from the bars alone, as the module docstring defines it, and the oracle from
    the score: the planted part is a function of observable history and of the hidden regime of the session
    (state-dependent world), nothing else. The linear world (`alpha_state_dependence=False`) is the same
    recursion with the regime-independent weights and no volatility interaction."""
    config = SimulationConfig(n_symbols=150, alpha_state_dependence=state_dependent)
    market = SimulatedMarket(config)
    end = D(2018, 9, 28)
    bars = market.bars(EPOCH, end).sort("symbol", "date")
    close, high, volume = pl.col("close"), pl.col("high"), pl.col("volume")
    rsi = pl.concat(
        [
            group.select("symbol", "date", pl.Series("rsi_14", wilder_rsi(group["close"].to_numpy())))
            for group in bars.partition_by("symbol", maintain_order=True)
        ]
    )
    features = bars.join(rsi, on=["symbol", "date"]).with_columns(
        (close / close.shift(5)).log().over("symbol").alias("ret_5"),
        (close / close.shift(63)).log().over("symbol").alias("mom_63"),
        ((volume / volume.rolling_mean(20)).log().clip(lower_bound=0.0) * (close - close.shift(1)).sign())
        .over("symbol")
        .alias("volume_surge_sign"),
        (close / high.rolling_max(20) - 1.0).over("symbol").alias("dist_high_20"),
        # population std of the last 20 bar-to-bar log changes: defined from the 21st bar on
        (close / close.shift(1)).log().rolling_std(20, ddof=0).log().over("symbol").alias("log_volatility_20"),
    )
    regimes = market.market_regimes(EPOCH, end)
    assert regimes["regime"].n_unique() >= 2, "the window must cover more than one regime"
    weights = dict(config.alpha_weights)
    multipliers = dict(config.alpha_regime_multipliers) if state_dependent else {}
    regime_order = ["bull", "bear", "chop"]
    gamma = config.alpha_volatility_interaction if state_dependent else 0.0

    def weight(name: str) -> pl.Expr:
        by_regime = multipliers.get(name, (1.0, 1.0, 1.0))
        return pl.col("regime").replace_strict(regime_order, [weights[name] * m for m in by_regime])

    def term(name: str) -> pl.Expr:
        planted = weight(name) * cross_sectional_z(name)
        return planted * (1.0 + gamma * cross_sectional_z("log_volatility_20")) if name == "ret_5" else planted

    scores = (
        features.join(regimes, on="date")
        .with_columns(pl.sum_horizontal(term(name) for name in weights).alias("combined"))
        .with_columns(cross_sectional_z("combined").alias("score"))
        .pivot(on="symbol", index="date", values="score")
        .sort("date")
        .fill_null(0.0)
    )
    symbols = scores.columns[1:]
    score_matrix = scores.select(symbols).to_numpy()

    horizon_length = config.alpha_horizon
    w = np.arange(horizon_length, 0, -1) / (horizon_length * (horizon_length + 1) / 2)  # w_j = (H + 1 − j) / ...
    for horizon in (1, 5, 10):
        expected = np.zeros_like(score_matrix)
        for k in range(1, horizon + 1):  # return of session t + k ...
            for j in range(k, horizon_length + 1):  # ... from the score of session t + k − j ≤ t
                lag = j - k
                expected[lag:] += config.alpha_strength * w[j - 1] * score_matrix[: len(score_matrix) - lag]
        recomputed = (
            pl.DataFrame(expected, schema=symbols)
            .with_columns(scores["date"])
            .unpivot(index="date", variable_name="symbol", value_name="recomputed")
        )
        oracle = market.oracle_expected_return(EPOCH, end, horizon).join(recomputed, on=["date", "symbol"])
        assert oracle.height == bars.height
        np.testing.assert_allclose(oracle["expected_return"], oracle["recomputed"], rtol=1e-7, atol=1e-10)
    assert np.abs(score_matrix).max() <= 3.0 and (score_matrix[-1] != 0).mean() > 0.9


def test_the_oracle_is_used_nowhere_but_in_evaluation():
    """The oracle is ground truth: production code (features, scoring, scans, pipelines, API) must never read
    it. Only evaluation modules may compare models against it."""
    offenders = []
    for package in ("technic_core", "technic_pipelines", "api"):
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative.startswith("technic_core/sources/simulated/") or re.search(r"evaluat", path.name):
                continue
            if "oracle_expected_return" in path.read_text(encoding="utf-8"):
                offenders.append(relative)
    assert offenders == []


def test_persisted_checkpoints_resume_identically_and_survive_corruption(tmp_path):
    config = SimulationConfig(n_symbols=120, seed=5, checkpoint_interval=32)
    start, end = dt.date(2019, 6, 3), dt.date(2019, 6, 28)
    reference = SimulatedMarket(config).bars(start, end)

    first = SimulatedMarket(config, state_cache_dir=tmp_path)
    assert first.bars(start, end).equals(reference)
    saved = sorted(tmp_path.rglob("checkpoint-*.pkl"))
    assert saved, "a simulated range persists its newest checkpoint"

    resumed = SimulatedMarket(config, state_cache_dir=tmp_path)
    assert resumed.bars(start, end).equals(reference)
    assert min(n for n in resumed._checkpoints if n > 0) >= int(saved[0].stem.split("-")[1])

    saved[0].write_bytes(b"not a pickle")
    recovered = SimulatedMarket(config, state_cache_dir=tmp_path)
    assert recovered.bars(start, end).equals(reference)
    assert not saved[0].exists() or saved[0].read_bytes() != b"not a pickle", "the unreadable file is dropped"

    other = SimulatedMarket(SimulationConfig(n_symbols=120, seed=6, checkpoint_interval=32), state_cache_dir=tmp_path)
    assert not other.bars(start, end).equals(reference), "another market never resumes this one's state"
