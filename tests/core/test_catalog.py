"""compute_catalog against TA-Lib run symbol by symbol (and, where TA-Lib has no function, plain per-symbol
Python written here), on panels with missing sessions, late listings, incomplete bars (NaN close), flat
prices, long trending histories and histories shorter than the lookbacks; plus the registry's own
consistency. (What tests/core/test_indicators.py checked of the scan's fifteen indicators before the catalog
replaced `compute_indicators` is checked here, on the catalog.)"""

import datetime as dt

import numpy as np
import polars as pl
import pytest
import talib
from polars.testing import assert_frame_equal

from technic_core import schema
from technic_core.catalog import CATALOG, COLUMNS, SOURCES, UNITS, compute_catalog, consensus, engine
from technic_core.errors import ConfigError

FIRST_DAY = np.datetime64("2021-06-01")
#: Relative tolerance against the references after warm-up, and the absolute one near zero, where a relative
#: error is meaningless (a flat close over TA-Lib's SMA of it is −5.6e-16 there, exactly 0 here).
RTOL, ATOL = 1e-6, 1e-9
#: Sessions of the index series: every weekday the panel spans.
SESSIONS = 460


def _dates(first_session: int, sessions: int) -> np.ndarray:
    return np.busday_offset(FIRST_DAY, np.arange(first_session, first_session + sessions), roll="forward")


def _symbol_bars(
    symbol: str, first_session: int, sessions: int, seed: int, drop: float = 0.0, drift: float = 0.0005
) -> pl.DataFrame:
    """A geometric random walk on weekdays with realistic OHLC; `drop` removes that share of sessions at
    random, as halts do."""
    rng = np.random.default_rng(seed)
    close = 40.0 * np.exp(np.cumsum(rng.normal(drift, 0.02, sessions)))
    open_ = close * np.exp(rng.normal(0.0, 0.006, sessions))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.01, sessions)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.01, sessions)))
    volume = rng.lognormal(13.0, 0.5, sessions)
    kept = rng.random(sessions) >= drop
    kept[0] = True
    frame = pl.DataFrame(
        {
            "symbol": symbol,
            "date": _dates(first_session, sessions)[kept],
            "open": open_[kept],
            "high": high[kept],
            "low": low[kept],
            "close": close[kept],
            "volume": volume[kept],
            "vwap": ((high + low + close) / 3)[kept],
            "trades": rng.integers(100, 5_000, sessions)[kept],
        }
    )
    return schema.conform(frame, schema.BARS, "bars")


def _pinned(bars: pl.DataFrame, from_row: int, price: float) -> pl.DataFrame:
    """`bars` with open, high, low and close all at `price` from row `from_row` on (a flat tail)."""
    pinned = pl.int_range(pl.len()) >= from_row
    return bars.with_columns(
        pl.when(pinned).then(price).otherwise(pl.col(name)).alias(name) for name in ("open", "high", "low", "close")
    )


def _panel() -> pl.DataFrame:
    """Symbols over two calendar years: long ones (beta_252 and change_252d get values), halts, a late
    listing, incomplete bars, a flat tail, a flat series, and histories too short for most windows; rows in
    date-major order, as sources return them."""
    with_gaps = _symbol_bars("GAP", 0, SESSIONS, seed=3, drop=0.08)
    incomplete = _symbol_bars("NAN", 0, 330, seed=4).with_columns(
        pl.when(pl.int_range(pl.len()).is_in([40, 41, 200, 329])).then(None).otherwise(pl.col("close")).alias("close"),
        pl.when(pl.int_range(pl.len()) == 120).then(float("nan")).otherwise(pl.col("volume")).alias("volume"),
    )
    return pl.concat(
        [
            _symbol_bars("AAA", 0, SESSIONS, seed=1),
            _symbol_bars("BBB", 20, SESSIONS - 20, seed=2, drift=-0.001),
            with_gaps,
            incomplete,
            _pinned(_symbol_bars("PIN", 150, 300, seed=5), 240, 25.37),
            _symbol_bars("FLT", 300, 160, seed=6).with_columns(
                pl.lit(10.0).alias(c) for c in ("open", "high", "low", "close")
            ),
            _symbol_bars("DDD", 400, 60, seed=7),
            _symbol_bars("EEE", 448, 12, seed=8),
            *(_symbol_bars(f"R{i}", 100 + 10 * i, 300, seed=10 + i, drop=0.03 * i) for i in range(4)),
        ]
    ).sort("date", "symbol")


def _index() -> pl.DataFrame:
    """The index (SPY) on every session of the panel."""
    bars = _symbol_bars("SPY", 0, SESSIONS, seed=99, drift=0.0003)
    return bars.select("date", "close")


# --- references: TA-Lib symbol by symbol, plain Python where TA-Lib has no function --------------------


def _year_to_date(dates: np.ndarray, close: np.ndarray) -> np.ndarray:
    years = dates.astype("datetime64[Y]")
    result = np.full(len(close), np.nan)
    for bar in range(len(close)):
        earlier = np.flatnonzero(years[:bar] < years[bar])
        if earlier.size:
            result[bar] = close[bar] / close[earlier[-1]] - 1
    return result


def _sample_volatility(close: np.ndarray, returns_count: int) -> np.ndarray:
    result = np.full(len(close), np.nan)
    returns = close[1:] / close[:-1] - 1
    for bar in range(returns_count, len(close)):
        result[bar] = np.std(returns[bar - returns_count : bar], ddof=1)
    return result


def _crossed(fast: np.ndarray, slow: np.ndarray, above: bool) -> np.ndarray:
    result = np.full(len(fast), np.nan)
    for bar in range(1, len(fast)):
        if not np.isnan(fast[bar - 1] + slow[bar - 1] + fast[bar] + slow[bar]):
            if above:
                result[bar] = fast[bar] > slow[bar] and fast[bar - 1] <= slow[bar - 1]
            else:
                result[bar] = fast[bar] < slow[bar] and fast[bar - 1] >= slow[bar - 1]
    return result


def _consensus(close: np.ndarray, ref: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rules of technic_core.catalog.consensus, bar by bar."""
    tie = consensus.TIE

    def compare(a: float, b: float, tolerance: float) -> float:
        return np.nan if np.isnan(a - b) else float(a - b > tolerance) - float(a - b < -tolerance)

    result = {
        name: np.full(len(close), np.nan) for name in ("consensus_ma", "consensus_oscillators", "consensus_rating")
    }
    for bar in range(1, len(close)):
        ma_votes = [compare(close[bar], ref[name][bar], tie * close[bar]) for name in consensus.MOVING_AVERAGES]
        oscillator_votes = []
        for name, low, high in (
            ("rsi", 30, 70),
            ("cci_20", -100, 100),
            ("willr_14", -80, -20),
            ("roc_10", np.inf, -np.inf),
        ):
            now, direction = ref[name][bar], compare(ref[name][bar], ref[name][bar - 1], tie)
            oscillator_votes.append(
                direction
                if np.isnan(direction)
                else float(now < low and direction > 0) - float(now > high and direction < 0)
            )
        k, d = ref["stoch_k"][bar], ref["stoch_d"][bar]
        k_vs_d = compare(k, d, tie)
        oscillator_votes.append(
            k_vs_d
            if np.isnan(k_vs_d)
            else float(k < 20 and d < 20 and k_vs_d > 0) - float(k > 80 and d > 80 and k_vs_d < 0)
        )
        adx, di = ref["adx_14"][bar], compare(ref["plus_di_14"][bar], ref["minus_di_14"][bar], tie)
        oscillator_votes.append(np.nan if np.isnan(adx) else float(adx > 20) * di)
        oscillator_votes.append(compare(ref["macd"][bar], ref["macd_signal"][bar], tie * close[bar]))
        sides = []
        for name, votes in (("consensus_ma", ma_votes), ("consensus_oscillators", oscillator_votes)):
            cast = [vote for vote in votes if not np.isnan(vote)]
            if cast:
                result[name][bar] = np.mean(cast)
                sides.append(result[name][bar])
        if sides:
            result["consensus_rating"][bar] = np.mean(sides)
    return result


def _reference(bars: pl.DataFrame, index_by_date: dict[dt.date, float] | None) -> dict[str, np.ndarray]:
    """Every computed catalog column over one symbol's complete bars (in date order)."""
    open_, high, low, close, volume = (bars.get_column(name).to_numpy() for name in engine.PRICES)
    dates = bars.get_column("date").to_numpy()
    ref: dict[str, np.ndarray] = {f"sma_{n}": talib.SMA(close, n) for n in (10, 20, 50, 100, 200)}
    ref |= {f"ema_{n}": talib.EMA(close, n) for n in (10, 20, 50, 200)}
    ref |= {f"close_vs_sma_{n}": close / ref[f"sma_{n}"] - 1 for n in (20, 50, 200)}
    ref["golden_cross"] = _crossed(ref["sma_50"], ref["sma_200"], above=True)
    ref["death_cross"] = _crossed(ref["sma_50"], ref["sma_200"], above=False)
    ref["adx_14"] = talib.ADX(high, low, close, 14)
    ref["plus_di_14"] = talib.PLUS_DI(high, low, close, 14)
    ref["minus_di_14"] = talib.MINUS_DI(high, low, close, 14)
    ref["aroon_down_25"], ref["aroon_up_25"] = talib.AROON(high, low, 25)
    ref["rsi"] = talib.RSI(close, 14)
    ref["macd"], ref["macd_signal"], ref["macd_hist"] = talib.MACD(close, 12, 26, 9)
    ref["stoch_k"], ref["stoch_d"] = talib.STOCH(high, low, close, 14, 3, 0, 3, 0)
    ref["willr_14"] = talib.WILLR(high, low, close, 14)
    ref["cci_20"] = talib.CCI(high, low, close, 20)
    ref["mfi_14"] = talib.MFI(high, low, close, volume, 14)
    ref["roc_10"] = talib.ROC(close, 10) / 100
    upper, middle, lower = talib.BBANDS(close, 20, 2, 2, 0)
    ref["bb_upper"], ref["bb_lower"], ref["bb_width"] = upper, lower, (upper - lower) / middle
    flat = upper == lower
    ref["bb_pct_b"] = np.where(flat, 0.5, (close - lower) / np.where(flat, 1.0, upper - lower))
    ref["atr"] = talib.ATR(high, low, close, 14)
    ref["atr_pct"] = 100 * ref["atr"] / close
    ref["volatility_21"] = _sample_volatility(close, 21)
    if index_by_date is None:
        ref["beta_252"] = ref["rs_63"] = np.full(len(close), np.nan)
    else:
        index = np.array([index_by_date.get(day, np.nan) for day in bars.get_column("date").to_list()])
        ref["beta_252"] = talib.BETA(index, close, 252)
        ref["rs_63"] = talib.ROCP(close, 63) - talib.ROCP(index, 63)
    ref["avg_volume_20"] = talib.SMA(volume, 20)
    ref["avg_dollar_volume_20"] = talib.SMA(close * volume, 20)
    ref["volume_ratio"] = volume / ref["avg_volume_20"]
    ref |= {f"change_{n}d": talib.ROCP(close, n) for n in (1, 5, 252)}
    ref |= {f"mom_{n}": talib.ROC(close, n) / 100 for n in (21, 63, 126)}
    ref["change_ytd"] = _year_to_date(dates, close)
    ref["gap"] = np.append(np.nan, open_[1:] / close[:-1] - 1)
    ref["high_52w"], ref["low_52w"] = talib.MAX(high, 252), talib.MIN(low, 252)
    ref["high_52w_dist"], ref["low_52w_dist"] = close / ref["high_52w"] - 1, close / ref["low_52w"] - 1
    ref["new_high_52w"] = np.where(np.isnan(ref["high_52w"]), np.nan, high == ref["high_52w"])
    ref["new_low_52w"] = np.where(np.isnan(ref["low_52w"]), np.nan, low == ref["low_52w"])
    ref["dist_high_20"] = close / talib.MAX(high, 20) - 1
    ref["dist_low_20"] = close / talib.MIN(low, 20) - 1
    return ref | _consensus(close, ref)


def _as_float(series: pl.Series) -> np.ndarray:
    return series.cast(pl.Float64).fill_null(np.nan).to_numpy().copy()


def _assert_matches_references(result: pl.DataFrame, bars: pl.DataFrame, index: pl.DataFrame | None) -> None:
    """Per symbol: nulls exactly where the reference has NaN (and on incomplete bars), values to RTOL."""
    index_by_date = None if index is None else dict(index.iter_rows())
    result = result.sort("symbol", "date")
    for (symbol,), ours in result.partition_by("symbol", as_dict=True).items():
        rows = bars.filter(pl.col("symbol") == symbol).sort("date")
        complete = rows.select(
            pl.all_horizontal(pl.col(engine.PRICES).is_not_null() & pl.col(engine.PRICES).is_not_nan())
        )
        complete = complete.to_series().to_numpy()
        reference = _reference(rows.filter(complete), index_by_date)
        assert set(reference) == set(engine._COMPUTED)
        for column, values in reference.items():
            expected = np.full(len(rows), np.nan)
            expected[complete] = values
            actual = ours.get_column(column)
            assert not np.isnan(actual.cast(pl.Float64).drop_nulls().to_numpy()).any(), f"{symbol} {column}: NaN"
            warmup = np.isnan(expected)
            assert np.array_equal(actual.is_null().to_numpy(), warmup), f"{symbol} {column}: null pattern"
            np.testing.assert_allclose(
                _as_float(actual)[~warmup], expected[~warmup], rtol=RTOL, atol=ATOL, err_msg=f"{symbol} {column}"
            )
        history = np.cumsum(complete)
        assert ours.get_column("history_sessions").to_list() == history.tolist()


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    return _panel()


@pytest.fixture(scope="module")
def index() -> pl.DataFrame:
    return _index()


@pytest.fixture(scope="module")
def result(panel: pl.DataFrame, index: pl.DataFrame) -> pl.DataFrame:
    return compute_catalog(panel, index)


def test_every_column_matches_talib_or_the_plain_reference_on_each_symbols_own_bars(panel, index, result):
    _assert_matches_references(result, panel, index)


def test_aliases_carry_their_columns_values(result):
    for column in CATALOG:
        if column.alias_of:
            assert_frame_equal(
                result.select(column.alias_of), result.select(pl.col(column.name).alias(column.alias_of))
            )


def test_halted_sessions_get_no_rows_and_windows_skip_them(index):
    halted = _symbol_bars("HLT", 0, 320, seed=21, drop=0.2)
    every_session = _symbol_bars("HLT", 0, 320, seed=21)
    result = compute_catalog(halted, index)
    missing = every_session.join(halted, on="date", how="anti").get_column("date")
    assert missing.len() > 30
    assert not result.get_column("date").is_in(missing.implode()).any()
    _assert_matches_references(result, halted, index)


def test_long_trending_series_stays_within_tolerance():
    # 3,000 bars falling then rising a hundredfold: sums over long histories must not drift.
    falling = _symbol_bars("LNG", 0, 1_500, seed=31, drift=-0.003)
    rising = _symbol_bars("LNG", 1_500, 1_500, seed=32, drift=0.003)
    rising = rising.with_columns(
        pl.col("open", "high", "low", "close", "vwap") * (falling.get_column("close")[-1] / 40.0)
    )
    series = pl.concat([falling, rising])
    _assert_matches_references(compute_catalog(series), series, None)
    last = compute_catalog(series, last_only=True)
    assert_frame_equal(last, compute_catalog(series).tail(1), rel_tol=1e-9)


def test_a_pinned_price_gives_zero_band_width_and_volatility():
    bars = _pinned(_symbol_bars("PIN", 0, 80, seed=41), 40, 25.37)
    result = compute_catalog(bars)
    _assert_matches_references(result, bars, None)
    last = result.row(-1, named=True)
    assert last["bb_width"] == 0.0 and last["volatility_21"] == 0.0 and last["bb_pct_b"] == 0.5


def test_rows_keep_the_input_order_and_get_no_invented_rows(panel, index, result):
    assert_frame_equal(result.select(panel.columns), panel)
    shuffled = panel.sample(fraction=1.0, shuffle=True, seed=7)
    assert_frame_equal(compute_catalog(shuffled, index).select(panel.columns), shuffled)


def test_row_order_does_not_change_any_value(panel, index, result):
    # Not even in the last bit: the scan's batches, the API's symbol-sorted history and the pipeline's
    # date-major one give the same values.
    shuffled_panel = panel.sample(fraction=1.0, shuffle=True, seed=7)
    shuffled = compute_catalog(shuffled_panel, index)
    assert_frame_equal(shuffled.sort("symbol", "date"), result.sort("symbol", "date"), check_exact=True)
    for rows in (shuffled_panel, panel.sort("symbol", "date")):
        assert_frame_equal(
            compute_catalog(rows, index, last_only=True),
            compute_catalog(panel, index, last_only=True),
            check_exact=True,
        )


def test_chunking_does_not_change_results(panel, index, result, monkeypatch):
    # A few symbols per chunk: chunks of equal and of mixed history lengths.
    monkeypatch.setattr(engine, "_CHUNK_CELLS", 3 * SESSIONS)
    assert_frame_equal(compute_catalog(panel, index), result)


@pytest.mark.parametrize("symbols_per_chunk", [1, 20])
def test_last_only_is_each_symbols_latest_row(panel, index, result, monkeypatch, symbols_per_chunk):
    # One symbol per chunk: every chunk is of one length, computes only its last two rows and takes the
    # linear averages from impulse weights instead of recursing.
    monkeypatch.setattr(engine, "_CHUNK_CELLS", symbols_per_chunk * SESSIONS)
    last = compute_catalog(panel, index, last_only=True)
    expected = result.sort("symbol", "date").group_by("symbol", maintain_order=True).tail(1)
    assert_frame_equal(last, expected, rel_tol=1e-9)
    # NAN's latest bar lacks its close: the row is there, its computed columns are null.
    row = last.filter(pl.col("symbol") == "NAN").row(0, named=True)
    assert row["close"] is None and row["sma_10"] is None and row["history_sessions"] == 325


def test_a_short_history_gets_values_for_short_windows_and_nulls_for_long_ones(panel, index):
    young = compute_catalog(panel, index, last_only=True).filter(pl.col("symbol") == "DDD").row(0, named=True)
    assert young["history_sessions"] == 60
    for name in (
        "rsi",
        "macd",
        "macd_signal",
        "bb_width",
        "atr_pct",
        "volume_ratio",
        "mom_21",
        "sma_50",
        "dist_low_20",
    ):
        assert young[name] is not None, name
    for name in ("mom_63", "mom_126", "sma_200", "ema_200", "high_52w", "beta_252", "rs_63"):
        assert young[name] is None, name


def test_short_histories_get_nulls_never_numbers(result):
    newest = result.filter(pl.col("symbol") == "EEE")
    assert newest.height == 12
    for column in CATALOG:
        if column.lookback >= 12 and column.dtype != pl.String:
            assert newest.get_column(column.name).null_count() == 12, column.name


def test_every_columns_first_value_comes_right_after_its_lookback(result):
    # On a long symbol without halts or incomplete bars, a column is null on exactly its first `lookback` bars.
    rows = result.filter(pl.col("symbol") == "AAA").sort("date")
    for column in CATALOG:
        if column.source in ("bars", "index", "derived") and column.name not in (
            "change_ytd",
            "golden_cross",
            "death_cross",
        ):
            nulls = rows.get_column(column.name).is_null().to_numpy()
            assert nulls[: column.lookback].all() and not nulls[column.lookback], column.name
    for name in ("golden_cross", "death_cross"):
        assert rows.get_column(name).is_null().arg_min() == COLUMNS[name].lookback


def test_flat_prices_give_talibs_values_and_documented_ones():
    flat = _symbol_bars("FLT", 0, 80, seed=42).with_columns(
        pl.lit(25.37).alias(c) for c in ("open", "high", "low", "close")
    )
    last = compute_catalog(flat, last_only=True).row(0, named=True)
    for name in ("rsi", "stoch_k", "stoch_d", "willr_14", "cci_20", "mfi_14", "plus_di_14", "minus_di_14", "adx_14"):
        assert last[name] == 0.0, name
    assert last["bb_width"] == 0.0 and last["bb_pct_b"] == 0.5 and last["volatility_21"] == 0.0
    assert last["aroon_up_25"] == last["aroon_down_25"] == 100.0
    assert last["consensus_ma"] == 0.0 and last["consensus_signal"] == "Neutral"


def test_a_symbol_without_a_complete_bar_keeps_its_rows_with_nulls(index):
    broken = _symbol_bars("BRK", 0, 40, seed=52).with_columns(pl.lit(None, dtype=pl.Float64).alias("close"))
    bars = pl.concat([_symbol_bars("AAA", 0, 40, seed=1), broken])
    for last_only in (False, True):
        rows = compute_catalog(bars, index, last_only=last_only).filter(pl.col("symbol") == "BRK")
        assert rows.height == (1 if last_only else 40)
        assert rows.get_column("history_sessions").unique().to_list() == [0]
        for column in CATALOG:
            if column.source != "universe" and column.name != "history_sessions":
                assert rows.get_column(column.name).null_count() == rows.height, column.name


def test_a_zero_price_gives_nulls_not_infinities():
    bars = _symbol_bars("ZRO", 0, 120, seed=51).with_columns(
        pl.when(pl.int_range(pl.len()) == 60).then(0.0).otherwise(pl.col(c)).alias(c) for c in ("close", "low")
    )
    result = compute_catalog(bars, _index())
    assert result.get_column("atr_pct")[60] is None
    assert result.get_column("change_21d")[81] is None
    for column in CATALOG:
        if column.dtype == pl.Float64:
            assert not result.get_column(column.name).is_infinite().any(), column.name


def test_without_an_index_beta_and_relative_strength_are_null(result, panel):
    alone = compute_catalog(panel)
    assert alone.get_column("beta_252").null_count() == alone.height
    assert alone.get_column("rs_63").null_count() == alone.height
    assert_frame_equal(alone.drop("beta_252", "rs_63"), result.drop("beta_252", "rs_63"))


def test_an_index_missing_a_date_nulls_only_what_reads_it(panel, index, result):
    # (TA-Lib's BETA is no reference here: after a NaN it reports 0 for good.)
    missing = index.get_column("date")[SESSIONS - 30]
    gappy = compute_catalog(panel, index.filter(pl.col("date") != missing))
    assert_frame_equal(gappy.drop("beta_252", "rs_63"), result.drop("beta_252", "rs_63"))
    for symbol in ("AAA", "GAP"):
        ours, full = (frame.filter(pl.col("symbol") == symbol).sort("date") for frame in (gappy, result))
        bar = ours.get_column("date").search_sorted(missing)
        for name, nulled in (("rs_63", [bar, bar + 63]), ("beta_252", range(bar, bar + 253))):
            expected = _as_float(full.get_column(name))
            expected[[row for row in nulled if row < len(expected)]] = np.nan
            np.testing.assert_array_equal(_as_float(ours.get_column(name)), expected, err_msg=f"{symbol} {name}")


def test_descriptive_columns_pass_through_from_the_universe(panel):
    universe = pl.DataFrame(
        {
            "date": [dt.date(2022, 1, 3), dt.date(2023, 1, 3), dt.date(2023, 1, 3)],
            "symbol": ["AAA", "AAA", "BBB"],
            "name": ["Old Name Inc.", "Alpha Corp.", "Beta Corp."],
            "market_cap": [1.0e9, 2.0e9, None],
        }
    )
    last = compute_catalog(panel, universe=universe, last_only=True)
    rows = {row["symbol"]: row for row in last.select("symbol", "name", "market_cap", "exchange").iter_rows(named=True)}
    assert rows["AAA"] == {"symbol": "AAA", "name": "Alpha Corp.", "market_cap": 2.0e9, "exchange": None}
    assert rows["BBB"]["name"] == "Beta Corp." and rows["BBB"]["market_cap"] is None
    assert rows["DDD"]["name"] is None
    with_exchange = universe.with_columns(pl.lit("XNAS").alias("exchange"))
    full = compute_catalog(panel, universe=with_exchange)
    assert full.filter(pl.col("symbol") == "AAA").get_column("exchange").unique().to_list() == ["XNAS"]
    assert full.schema["market_cap"] == pl.Float64 and full.schema["exchange"] == pl.String


def test_output_schema_is_the_input_then_the_registry():
    bars = _symbol_bars("AAA", 0, 30, seed=1)
    for last_only in (False, True):
        result = compute_catalog(bars, last_only=last_only)
        assert result.schema == pl.Schema({**schema.BARS, **{column.name: column.dtype for column in CATALOG}})
        empty = compute_catalog(schema.empty(schema.BARS), last_only=last_only)
        assert empty.height == 0 and empty.schema == result.schema


@pytest.mark.parametrize("column", ["symbol", "date", "open", "high", "low", "close", "volume"])
def test_a_missing_required_column_is_named(column):
    with pytest.raises(ConfigError, match=column):
        compute_catalog(_symbol_bars("AAA", 0, 30, seed=1).drop(column))


def test_a_repeated_session_is_rejected_naming_symbol_and_date():
    bars = _symbol_bars("DUP", 0, 30, seed=61)
    with pytest.raises(ConfigError, match=f"DUP on {bars.get_column('date')[10]}"):
        compute_catalog(pl.concat([bars, bars.slice(10, 1)]))
    with pytest.raises(ConfigError, match="index repeats"):
        compute_catalog(bars, pl.concat([_index(), _index().slice(3, 1)]))


def test_a_date_that_is_not_a_date_is_rejected():
    bars = _symbol_bars("DTM", 0, 30, seed=81)
    with pytest.raises(ConfigError, match="not Date"):
        compute_catalog(bars.with_columns(pl.col("date").cast(pl.Datetime("us"))))
    with pytest.raises(ConfigError, match="not Date"):
        compute_catalog(bars, _index().with_columns(pl.col("date").cast(pl.Datetime("us"))))


@pytest.mark.parametrize("column", ["symbol", "date"])
def test_a_null_key_is_rejected(column):
    bars = _symbol_bars("NUL", 0, 30, seed=71).with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col(column)).alias(column)
    )
    with pytest.raises(ConfigError, match=f"null {column}"):
        compute_catalog(bars)


def test_the_consensus_votes_both_ways_on_the_panel(result):
    assert set(result.get_column("consensus_signal").drop_nulls().unique()) == set(schema.SIGNALS)


def test_consensus_signal_bands_are_symmetric():
    ratings = np.array([-1.0, -0.5, -0.49, -0.1, 0.0, 0.1, 0.11, 0.5, 1.0, np.nan])
    signals = consensus.signal(ratings).to_list()
    assert signals == [
        "Strong Sell",
        "Strong Sell",
        "Sell",
        "Neutral",
        "Neutral",
        "Neutral",
        "Buy",
        "Strong Buy",
        "Strong Buy",
        None,
    ]
    assert set(signals) - {None} == set(schema.SIGNALS)


# --- the registry ---------------------------------------------------------------------------------------


def test_registry_names_are_unique_and_number_fifty_or_more():
    names = [column.name for column in CATALOG]
    assert len(names) == len(set(names)) >= 50


def test_registry_units_sources_and_reasons_are_from_the_allowed_sets():
    for column in CATALOG:
        assert column.unit in UNITS and column.source in SOURCES, column.name
        assert column.lookback >= 0 and column.description, column.name
        if column.source in ("index", "universe"):
            assert column.null_reason, column.name
        if column.alias_of:
            assert COLUMNS[column.alias_of].alias_of is None and COLUMNS[column.alias_of].unit == column.unit


def test_registry_keeps_the_existing_indicator_names_and_documents_their_units():
    for name in schema.INDICATORS:
        assert COLUMNS[name].dtype == schema.INDICATORS[name]
    assert COLUMNS["atr_pct"].unit == "percent"
    assert {COLUMNS[name].unit for name in ("mom_21", "dist_high_20", "bb_width")} == {"fraction"}


def test_every_engine_column_is_in_the_registry_and_vice_versa(result, panel):
    assert result.columns[len(panel.columns) :] == [column.name for column in CATALOG]


@pytest.mark.parametrize(
    "columns",
    [
        ("rsi", "macd", "sma_50", "dist_high_20", "mom_126", "history_sessions"),  # what the ML features read
        ("rel_volume", "consensus_signal", "name"),  # an alias, the band over the rating, a pass-through
        ("beta_252", "high_52w", "volatility_21", "cci_20"),
    ],
)
def test_a_subset_of_columns_has_the_same_values_to_the_last_bit(panel, index, result, columns):
    for last_only in (False, True):
        everything = result if not last_only else compute_catalog(panel, index, last_only=True)
        subset = compute_catalog(panel, index, last_only=last_only, columns=columns)
        kept = [column.name for column in CATALOG if column.name in columns]
        assert subset.columns == [*panel.columns, *kept]
        assert_frame_equal(subset, everything.select(subset.columns), check_exact=True)


def test_an_unknown_column_is_named():
    with pytest.raises(ConfigError, match="no catalog column"):
        compute_catalog(_symbol_bars("AAA", 0, 30, seed=1), columns=("rsi", "rsi_7"))
