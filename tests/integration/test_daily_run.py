"""Two consecutive sessions through Dagster via the `technic` CLI: contents, idempotency, exit codes."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import talib
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from technic_core import calendar, daily, schema
from technic_core.catalog import CATALOG, compute_catalog
from technic_core.config import ScanConfig
from technic_core.warehouse import Warehouse
from technic_pipelines.cli import app

DAY_1 = dt.date(2024, 6, 27)
DAY_2 = dt.date(2024, 6, 28)
SYMBOLS = "120"
PARTITIONED = ("bars", "universe", "conditions", "results", "rejections")


def _technic(*args: str):
    return CliRunner().invoke(app, ["run", *args], catch_exceptions=False)


def _digest(root: Path, session: dt.date) -> dict[str, str]:
    """sha256 of every file of every dataset's partition for `session`."""
    digests = {}
    for dataset in PARTITIONED:
        for path in sorted((root / dataset / f"date={session.isoformat()}").glob("*.parquet")):
            digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


@pytest.fixture(scope="module")
def warehouse_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("warehouse")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path_factory.mktemp("dagster_home")))
    for var in ("TECHNIC_SOURCE", "TECHNIC_SIM_SEED", "TECHNIC_WAREHOUSE", "TECHNIC_SIM_SYMBOLS"):
        monkeypatch.delenv(var, raising=False)
    first = _technic("--date", DAY_1.isoformat(), "--symbols", SYMBOLS, "--warehouse", str(root))
    assert first.exit_code == 0, first.output
    assert "backfill" in first.output
    assert "Top 20 by TechRating" in first.output
    second = _technic("--date", DAY_2.isoformat(), "--symbols", SYMBOLS, "--warehouse", str(root))
    assert second.exit_code == 0, second.output
    assert "backfill" not in second.output, "the next session must be incremental"
    yield root
    monkeypatch.undo()


def test_first_run_backfills_the_lookback_history(warehouse_root):
    store = Warehouse(warehouse_root)
    lookback = calendar.sessions_back(DAY_2, ScanConfig().lookback_sessions)
    assert set(lookback) <= set(store.sessions("bars"))
    for dataset in ("universe", "conditions", "results"):
        assert store.sessions(dataset) == [DAY_1, DAY_2]


def test_partition_contents(warehouse_root):
    store = Warehouse(warehouse_root)
    universe = store.read("universe", DAY_2, DAY_2)
    results = store.read("results", DAY_2, DAY_2)
    rejections = store.read("rejections", DAY_2, DAY_2)
    conditions = store.read("conditions", DAY_2, DAY_2)
    bars = store.read("bars", DAY_2, DAY_2)

    assert universe.get_column("symbol").is_unique().all()
    assert universe.filter(~pl.col("passed") & pl.col("reason").is_null()).height == 0
    screened = set(universe.filter(pl.col("passed")).get_column("symbol"))
    assert 0 < len(screened) < universe.height
    assert set(results.get_column("symbol")) | set(rejections.get_column("symbol")) == screened
    assert results.height > 0
    assert results.get_column("seq").sort().to_list() == list(range(1, results.height + 1))
    assert results.get_column("tech_rating").is_null().sum() == 0
    assert results.get_column("tech_rating").is_between(0, 100).all()
    assert results.get_column("rsi").drop_nulls().is_between(0, 100).all()
    assert (results.get_column("date") == DAY_2).all()
    # the scan's close is the session's bar
    joined = results.select("symbol", "close").join(bars.select("symbol", "close"), on="symbol", suffix="_bar")
    assert joined.height == results.height
    assert (joined.get_column("close") == joined.get_column("close_bar")).all()
    assert conditions.height == 1 and conditions.get_column("regime")[0]
    assert bars.get_column("symbol").n_unique() == bars.height


def test_results_carry_every_catalog_column_as_compute_catalog_computes_it(warehouse_root):
    store = Warehouse(warehouse_root)
    results = store.read("results", DAY_2, DAY_2)
    assert results.schema == pl.Schema(schema.RESULTS)
    first = calendar.sessions_back(DAY_2, ScanConfig().lookback_sessions)[0]
    bars = store.read("bars", first, DAY_2)
    index = daily.read_index_closes(store, first, DAY_2)
    assert index.height == bars.get_column("date").n_unique()
    expected = compute_catalog(bars, index, store.read("universe", DAY_2, DAY_2), last_only=True)
    columns = ["symbol", *(column.name for column in CATALOG)]
    # The scan computed its screened symbols alone, the reference every symbol: chunks of other widths, so
    # the matrix products of the latest rows may round differently in the last bits.
    assert_frame_equal(
        results.select(columns).sort("symbol"),
        expected.filter(pl.col("symbol").is_in(results.get_column("symbol").implode())).select(columns),
        rel_tol=1e-9,
    )
    for name in ("beta_252", "rs_63", "name", "market_cap", "consensus_rating", "adx_14", "high_52w"):
        assert results.get_column(name).null_count() < results.height, name


def test_stored_catalog_columns_match_talib_for_a_symbol(warehouse_root):
    """An independent check of the stored values: TA-Lib over the stored bars of one long-listed symbol."""
    store = Warehouse(warehouse_root)
    results = store.read("results", DAY_2, DAY_2)
    row = results.sort("history_sessions", "symbol", descending=[True, False]).row(0, named=True)
    first = calendar.sessions_back(DAY_2, ScanConfig().lookback_sessions)[0]
    bars = store.read("bars", first, DAY_2).filter(pl.col("symbol") == row["symbol"]).sort("date")
    index = daily.read_index_closes(store, first, DAY_2)
    high, low, close, volume = (bars.get_column(name).to_numpy() for name in ("high", "low", "close", "volume"))
    index_close = bars.select("date").join(index, on="date", how="left").get_column("close").to_numpy()
    assert row["history_sessions"] == bars.height > 253
    stoch_k, stoch_d = talib.STOCH(high, low, close, 14, 3, 0, 3, 0)
    aroon_down, aroon_up = talib.AROON(high, low, 25)
    upper, _, lower = talib.BBANDS(close, 20, 2, 2, 0)
    reference = {
        "sma_50": talib.SMA(close, 50),
        "ema_200": talib.EMA(close, 200),
        "rsi": talib.RSI(close, 14),
        "adx_14": talib.ADX(high, low, close, 14),
        "cci_20": talib.CCI(high, low, close, 20),
        "mfi_14": talib.MFI(high, low, close, volume, 14),
        "willr_14": talib.WILLR(high, low, close, 14),
        "stoch_k": stoch_k,
        "stoch_d": stoch_d,
        "aroon_up_25": aroon_up,
        "aroon_down_25": aroon_down,
        "bb_upper": upper,
        "bb_lower": lower,
        "high_52w": talib.MAX(high, 252),
        "change_5d": talib.ROCP(close, 5),
        "beta_252": talib.BETA(index_close, close, 252),
        "rs_63": talib.ROCP(close, 63) - talib.ROCP(index_close, 63),
    }
    for name, values in reference.items():
        assert row[name] == pytest.approx(float(values[-1]), rel=1e-6, abs=1e-9), name
    assert np.isfinite([row[name] for name in reference]).all()


def test_rerun_is_idempotent_byte_for_byte(warehouse_root):
    before = _digest(warehouse_root, DAY_2)
    assert {key.split("/")[0] for key in before} == set(PARTITIONED)
    again = _technic("--date", DAY_2.isoformat(), "--symbols", SYMBOLS, "--warehouse", str(warehouse_root))
    assert again.exit_code == 0, again.output
    assert _digest(warehouse_root, DAY_2) == before


def test_duckdb_catalog_reads_the_same_rows(warehouse_root):
    store = Warehouse(warehouse_root)
    con = store.connect()
    count = con.execute("SELECT count(*) FROM results WHERE date = ?", [DAY_2]).fetchone()[0]
    assert count == store.read("results", DAY_2, DAY_2).height


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--date", "2024-06-29"], "2024-06-28"),  # Saturday: names the nearest sessions
        (["--date", "2024-07-04"], "2024-07-05"),  # Independence Day
        (["--date", "06/28/2024"], "YYYY-MM-DD"),
        (["--symbols", "0"], "--symbols"),
        (["--symbols", "-5"], "--symbols"),
        (["--source", "bloomberg"], "simulated"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(args, expected, tmp_path):
    result = _technic(*args, "--warehouse", str(tmp_path))
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output
    assert not any(tmp_path.iterdir()), "a usage error must not write anything"


def test_corrupt_parquet_fails_naming_the_file_and_touches_nothing_else(warehouse_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(warehouse_root, root)
    victim = next((root / "bars" / f"date={calendar.previous_session(DAY_2).isoformat()}").glob("*.parquet"))
    victim.write_bytes(b"PAR1 this is not a parquet file")
    before = {p: p.read_bytes() for p in root.rglob("*.parquet")}
    result = _technic("--date", DAY_2.isoformat(), "--symbols", SYMBOLS, "--warehouse", str(root))
    assert result.exit_code == 1
    assert victim.name in result.output and "Traceback" not in result.output
    after = {p: p.read_bytes() for p in root.rglob("*.parquet")}
    assert after == before


def test_a_warehouse_refuses_another_market(warehouse_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(warehouse_root, root)
    result = _technic("--date", DAY_2.isoformat(), "--symbols", "50", "--warehouse", str(root))
    assert result.exit_code == 1
    assert "TECHNIC_WAREHOUSE" in result.output
