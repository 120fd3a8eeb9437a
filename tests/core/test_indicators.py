"""compute_indicators against TA-Lib run symbol by symbol (the independent reference), plus its contract:
row handling (gaps, late listings, order), warm-up nulls, last_only, history_sessions and input errors."""

import numpy as np
import polars as pl
import pytest
import talib
from polars.testing import assert_frame_equal

from technic_core import indicators, schema
from technic_core.errors import ConfigError
from technic_core.indicators import compute_indicators

FIRST_DAY = np.datetime64("2022-01-03")
#: Relative tolerance against TA-Lib after warm-up.
RTOL = 1e-6


def _symbol_bars(
    symbol: str, first_session: int, sessions: int, seed: int, drop: float = 0.0, drift: float = 0.0005
) -> pl.DataFrame:
    """A geometric random walk on weekdays with realistic OHLC (low ≤ open, close ≤ high); `drop` removes
    that share of sessions at random, as halts do."""
    rng = np.random.default_rng(seed)
    dates = np.busday_offset(FIRST_DAY, np.arange(first_session, first_session + sessions), roll="forward")
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
            "date": dates[kept],
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


def _panel() -> pl.DataFrame:
    """Symbols listed on different days, some with halts, one too young for the long windows and one too
    young for anything; rows in date-major order, as sources return them."""
    return pl.concat(
        [
            _symbol_bars("AAA", 0, 420, seed=1, drop=0.05),
            _symbol_bars("BBB", 40, 360, seed=2),
            _symbol_bars("CCC", 10, 330, seed=3, drop=0.10),
            _symbol_bars("DDD", 380, 60, seed=4),
            _symbol_bars("EEE", 400, 12, seed=5),
            *(_symbol_bars(f"R{i:02d}", 100, 320, seed=10 + i) for i in range(8)),
        ]
    ).sort("date", "symbol")


def _talib_reference(bars: pl.DataFrame) -> dict[str, np.ndarray]:
    """Every indicator column for one symbol's bars (in date order), straight from TA-Lib."""
    high, low, close, volume = (bars.get_column(c).to_numpy() for c in ("high", "low", "close", "volume"))
    macd, signal, hist = talib.MACD(close, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(close, 20, 2, 2, 0)
    atr = talib.ATR(high, low, close, 14)
    return {
        "rsi": talib.RSI(close, 14),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "bb_width": (upper - lower) / middle,
        "atr": atr,
        "atr_pct": 100 * atr / close,
        "volume_ratio": volume / talib.SMA(volume, 20),
        **{f"mom_{n}": talib.ROC(close, n) / 100 for n in (21, 63, 126)},
        "sma_50": talib.SMA(close, 50),
        "sma_200": talib.SMA(close, 200),
        "dist_high_20": close / talib.MAX(high, 20) - 1,
        "dist_low_20": close / talib.MIN(low, 20) - 1,
    }


def _assert_matches_talib(result: pl.DataFrame, bars: pl.DataFrame) -> None:
    """Per symbol: nulls exactly where TA-Lib has NaN, values equal to RTOL elsewhere."""
    for (symbol,), ours in result.partition_by("symbol", as_dict=True).items():
        expected = _talib_reference(bars.filter(pl.col("symbol") == symbol).sort("date"))
        for column, reference in expected.items():
            actual = ours.get_column(column)
            warmup = np.isnan(reference)
            assert np.array_equal(actual.is_null().to_numpy(), warmup), f"{symbol} {column}: null pattern"
            np.testing.assert_allclose(
                actual.to_numpy()[~warmup], reference[~warmup], rtol=RTOL, err_msg=f"{symbol} {column}"
            )


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    return _panel()


@pytest.fixture(scope="module")
def result(panel: pl.DataFrame) -> pl.DataFrame:
    return compute_indicators(panel)


def test_every_column_matches_talib_on_each_symbols_own_bars(panel, result):
    _assert_matches_talib(result, panel)


def test_chunking_does_not_change_results(panel, result, monkeypatch):
    # Tiny chunks: some hold only equal-length symbols (the transpose path), others mixed lengths.
    monkeypatch.setattr(indicators, "_RECURSIVE_CHUNK_CELLS", 3 * 420)
    monkeypatch.setattr(indicators, "_WINDOW_CHUNK_CELLS", 2 * 420)
    assert_frame_equal(compute_indicators(panel), result)


def test_output_has_input_columns_then_indicators_sorted_and_no_invented_rows(panel, result):
    assert result.columns == [*schema.BARS, *schema.INDICATORS, "history_sessions"]
    assert result.schema == pl.Schema({**schema.BARS, **schema.INDICATORS, "history_sessions": pl.Int64})
    assert_frame_equal(result.select(list(schema.BARS)), panel.sort("symbol", "date"))


def test_halted_sessions_get_no_rows_and_windows_skip_them():
    halted = _symbol_bars("HLT", 0, 320, seed=21, drop=0.2)
    every_session = _symbol_bars("HLT", 0, 320, seed=21)
    result = compute_indicators(halted)
    missing = every_session.join(halted, on="date", how="anti").get_column("date")
    assert missing.len() > 30
    assert not result.get_column("date").is_in(missing.implode()).any()
    _assert_matches_talib(result, halted)


def test_row_order_does_not_matter(panel, result):
    shuffled = panel.sample(fraction=1.0, shuffle=True, seed=7)
    assert_frame_equal(compute_indicators(shuffled), result)
    assert_frame_equal(compute_indicators(panel.sort("symbol", "date")), result)


def test_last_only_is_the_last_row_of_each_symbol(panel, result):
    last = compute_indicators(panel, last_only=True)
    assert_frame_equal(last, result.group_by("symbol", maintain_order=True).tail(1))
    assert last.get_column("symbol").to_list() == sorted(panel.get_column("symbol").unique().to_list())


def test_history_sessions_counts_each_symbols_bars(panel, result):
    expected = result.select(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("symbol"))
    assert result.get_column("history_sessions").to_list() == expected.to_series().to_list()
    counts = dict(panel.group_by("symbol").len().iter_rows())
    last = compute_indicators(panel, last_only=True)
    assert dict(zip(last.get_column("symbol"), last.get_column("history_sessions"))) == counts


def test_short_history_gets_nulls_for_long_windows_and_values_for_short_ones(panel):
    last = compute_indicators(panel, last_only=True)
    young = last.filter(pl.col("symbol") == "DDD").row(0, named=True)
    assert young["history_sessions"] == 60
    for column in ("rsi", "macd", "macd_signal", "macd_hist", "bb_width", "atr", "atr_pct", "volume_ratio"):
        assert young[column] is not None, column
    for column in ("mom_21", "sma_50", "dist_high_20", "dist_low_20"):
        assert young[column] is not None, column
    for column in ("mom_63", "mom_126", "sma_200"):
        assert young[column] is None, column
    newest = last.filter(pl.col("symbol") == "EEE").row(0, named=True)
    assert newest["history_sessions"] == 12
    assert all(newest[column] is None for column in schema.INDICATORS)


def test_long_trending_series_stays_within_tolerance():
    # 3,000 bars falling then rising a hundredfold: sums over long histories must not drift.
    falling = _symbol_bars("LNG", 0, 1_500, seed=31, drift=-0.003)
    rising = _symbol_bars("LNG", 1_500, 1_500, seed=32, drift=0.003)
    rising = rising.with_columns(
        pl.col("open", "high", "low", "close", "vwap") * (falling.get_column("close")[-1] / 40.0)
    )
    series = pl.concat([falling, rising])
    _assert_matches_talib(compute_indicators(series), series)


def test_flat_prices_match_talib_zero_band_width_and_rsi():
    pinned_later = _symbol_bars("PIN", 0, 80, seed=41)
    pinned = pl.int_range(pl.len()) >= 40
    pinned_later = pinned_later.with_columns(
        pl.when(pinned).then(25.37).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close")
    )
    flat = _symbol_bars("FLT", 0, 40, seed=42).with_columns(
        pl.lit(10.0).alias(c) for c in ("open", "high", "low", "close")
    )
    bars = pl.concat([pinned_later, flat])
    result = compute_indicators(bars)
    _assert_matches_talib(result, bars)
    last = result.group_by("symbol").tail(1).sort("symbol")
    assert last.get_column("bb_width").to_list() == [0.0, 0.0]
    assert last.get_column("rsi")[0] == 0.0


def test_a_zero_price_gives_nulls_not_infinities():
    bars = _symbol_bars("ZRO", 0, 120, seed=51).with_columns(
        pl.when(pl.int_range(pl.len()) == 60).then(0.0).otherwise(pl.col("close")).alias("close")
    )
    result = compute_indicators(bars)
    assert result.get_column("atr_pct")[60] is None
    assert result.get_column("mom_21")[81] is None
    for column in schema.INDICATORS:
        assert not result.get_column(column).is_infinite().any(), column


def test_empty_input_gives_an_empty_frame_with_the_output_schema():
    expected = pl.Schema({**schema.BARS, **schema.INDICATORS, "history_sessions": pl.Int64})
    for last_only in (False, True):
        result = compute_indicators(schema.empty(schema.BARS), last_only=last_only)
        assert result.height == 0
        assert result.schema == expected


@pytest.mark.parametrize("column", indicators.REQUIRED_COLUMNS)
def test_a_missing_required_column_is_named(column):
    with pytest.raises(ConfigError, match=column):
        compute_indicators(_symbol_bars("AAA", 0, 30, seed=1).drop(column))


def test_a_repeated_session_is_rejected_naming_symbol_and_date():
    bars = _symbol_bars("DUP", 0, 30, seed=61)
    repeated = pl.concat([bars, bars.slice(10, 1)])
    day = bars.get_column("date")[10]
    with pytest.raises(ConfigError, match=f"DUP on {day}"):
        compute_indicators(repeated)


@pytest.mark.parametrize("column", ["symbol", "date"])
def test_a_null_key_is_rejected(column):
    bars = _symbol_bars("NUL", 0, 30, seed=71).with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col(column)).alias(column)
    )
    with pytest.raises(ConfigError, match=f"null {column}"):
        compute_indicators(bars)
