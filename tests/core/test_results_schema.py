"""Result partitions written before the catalog's columns existed, next to partitions written after: every
reader — polars (`Warehouse.read` / `scan`), the in-memory DuckDB views and the catalog file — sees the current
schema, with the columns an old file lacks as nulls. (The API over such a warehouse: tests/api/test_reads.py.)"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from technic_core import schema
from technic_core.catalog import CATALOG
from technic_core.warehouse import DATASETS, Warehouse
from tests.core.test_warehouse import make_frame

OLD, NEW = dt.date(2024, 1, 2), dt.date(2024, 1, 3)
#: The results schema before the catalog: the scored row, then the ML, priority, batch and seq columns.
OLD_RESULTS = {name: dtype for name, dtype in schema.RESULTS.items() if name not in schema.CATALOG_RESULT_COLUMNS}
ROWS = 6


def write_old_results(store: Warehouse, session: dt.date, frame: pl.DataFrame) -> Path:
    """`frame` (results) written as one batch the way the writer wrote it before the catalog columns existed."""
    directory = Path(store.root) / "results" / f"date={session.isoformat()}"
    directory.mkdir(parents=True)
    path = directory / "batch=00000.parquet"
    frame.select(list(OLD_RESULTS)).sort("seq").write_parquet(path, compression="zstd")
    return path


def _old_partition(store: Warehouse, session: dt.date) -> Path:
    return write_old_results(store, session, make_frame(DATASETS["results"], session, ROWS))


@pytest.fixture
def store(tmp_path: Path) -> Warehouse:
    store = Warehouse(tmp_path / "warehouse")
    _old_partition(store, OLD)
    store.begin_results(NEW)
    store.write_result_batch(NEW, 0, make_frame(DATASETS["results"], NEW, ROWS))
    store.finish_results(NEW, 1)
    return store


def test_the_schema_has_every_catalog_column_between_the_scored_row_and_the_later_stages():
    names = list(schema.RESULTS)
    catalog = [column.name for column in CATALOG]
    assert set(catalog) <= set(names)
    assert names[: names.index("regime") + 1] == list(OLD_RESULTS)[: list(OLD_RESULTS).index("regime") + 1]
    assert names[-7:] == ["alpha_5d", "alpha_10d", "alpha_score", "priority_score", "priority_tier", "batch", "seq"]
    added = names[names.index("regime") + 1 : -7]
    assert added == [name for name in catalog if name not in OLD_RESULTS]
    assert all(schema.RESULTS[column.name] == column.dtype for column in CATALOG)


def test_polars_reads_old_and_new_partitions_in_the_current_schema(store):
    both = store.read("results")
    assert both.schema == pl.Schema(schema.RESULTS)
    old, new = (both.filter(pl.col("date") == day) for day in (OLD, NEW))
    assert old.height == new.height == ROWS
    for name in schema.CATALOG_RESULT_COLUMNS:
        assert old.get_column(name).null_count() == ROWS, name
    assert new.get_column("beta_252").null_count() < ROWS and new.get_column("name").null_count() == 0
    # The columns both have agree with what was written, whatever the file's age.
    assert_frame_equal(old.select(list(OLD_RESULTS)), store.read("results", OLD, OLD).select(list(OLD_RESULTS)))
    alone = store.read("results", OLD, OLD)
    assert alone.schema == pl.Schema(schema.RESULTS) and alone.get_column("consensus_signal").null_count() == ROWS
    projected = store.scan("results").select("date", "rs_63", "golden_cross").collect()
    assert projected.height == 2 * ROWS and projected.schema["golden_cross"] == pl.Boolean


def _null_counts(connection: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return connection.execute(
        "SELECT date, count(*), count(beta_252), count(consensus_signal), count(golden_cross), count(tech_rating) "
        "FROM results GROUP BY date ORDER BY date"
    ).fetchall()


def test_duckdb_views_and_the_catalog_file_read_both_with_nulls_for_the_old(store):
    connection = store.connect()
    assert connection.sql("SELECT * FROM results").columns == list(schema.RESULTS)
    counts = _null_counts(connection)
    assert [row[:2] for row in counts] == [(OLD, ROWS), (NEW, ROWS)]
    assert counts[0][2:5] == (0, 0, 0) and counts[0][5] == counts[1][5] > 0
    assert all(count > 0 for count in counts[1][2:5])
    ordered = connection.execute(
        "SELECT date FROM results ORDER BY beta_252 DESC NULLS LAST, symbol LIMIT 1"
    ).fetchone()
    assert ordered == (NEW,)
    catalog = duckdb.connect(str(store.refresh_catalog()), read_only=True)
    try:
        assert _null_counts(catalog) == counts
    finally:
        catalog.close()


def test_a_warehouse_of_old_partitions_only_still_has_every_column(tmp_path):
    store = Warehouse(tmp_path / "old-only")
    _old_partition(store, OLD)
    connection = store.connect()
    assert connection.sql("SELECT * FROM results").columns == list(schema.RESULTS)
    assert connection.execute("SELECT count(*), count(rs_63) FROM results").fetchone() == (ROWS, 0)
    assert store.read("results").schema == pl.Schema(schema.RESULTS)
