"""Warehouse: round trips, atomic and deterministic writes, result-batch re-runs, corruption, DuckDB views."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from technic_core import schema
from technic_core.config import Settings
from technic_core.errors import ConfigError, CorruptFileError, WarehouseError
from technic_core.warehouse import (
    DATASETS,
    Dataset,
    Layout,
    Warehouse,
    write_bytes_atomic,
    write_json_atomic,
)

DAYS = [dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4), dt.date(2024, 1, 5)]
SESSION_DATASETS = [name for name, spec in DATASETS.items() if spec.layout is Layout.SESSION]


def make_frame(
    spec: Dataset, session: dt.date, rows: int, *, batch: int = 0, first_seq: int = 1, scan_id: str = "scan-1"
) -> pl.DataFrame:
    """Deterministic rows for any dataset, derived from its schema (nulls included), in reverse key order."""
    columns: dict[str, list[object]] = {}
    for name, dtype in spec.schema.items():
        index = range(rows - 1, -1, -1)
        if name == "date":
            values: list[object] = [session] * rows
        elif name == "symbol":
            values = [f"S{i:04d}" for i in index]
        elif name == "batch":
            values = [batch] * rows
        elif name == "seq":
            values = [first_seq + i for i in index]
        elif name == "scan_id":
            values = [scan_id] * rows
        elif dtype == pl.String:
            values = [f"{name}-{i % 3}" for i in index]
        elif dtype == pl.Float64:
            values = [None if i % 7 == 3 else i * 1.25 + len(name) for i in index]
        elif dtype == pl.Int64:
            values = [i * 10 for i in index]
        elif dtype == pl.Boolean:
            values = [i % 2 == 0 for i in index]
        elif dtype == pl.Date:
            values = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in index]
        else:
            values = [dt.datetime(2024, 1, 2, 14, 30, i % 60, tzinfo=dt.UTC) for i in index]
        columns[name] = values
    return pl.DataFrame(columns, schema=spec.schema)


def in_key_order(spec: Dataset, frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(list(spec.sort_key), maintain_order=True)


def write_results_run(warehouse: Warehouse, session: dt.date, batches: int, rows: int = 4) -> pl.DataFrame:
    """A complete results run of `batches` batches; returns every row written, in read order."""
    spec = DATASETS["results"]
    warehouse.begin_results(session)
    written = []
    for batch_no in range(batches):
        frame = make_frame(spec, session, rows, batch=batch_no, first_seq=1 + batch_no * rows)
        warehouse.write_result_batch(session, batch_no, frame)
        written.append(in_key_order(spec, frame))
    warehouse.finish_results(session, batches)
    return pl.concat(written)


def hidden_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def dead_pid() -> int:
    """The pid of a child that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse")


# ------------------------------------------------------------------ datasets and construction


def test_unknown_dataset_names_it_and_lists_the_known_ones(warehouse):
    with pytest.raises(ConfigError, match="'prices'") as raised:
        warehouse.read("prices")
    for known in DATASETS:
        assert known in str(raised.value)


def test_each_dataset_is_written_only_by_its_own_writer(warehouse):
    results = make_frame(DATASETS["results"], DAYS[0], 2)
    with pytest.raises(ConfigError, match="write_result_batch"):
        warehouse.write_partition("results", DAYS[0], results)
    with pytest.raises(ConfigError, match="append_scan_run"):
        warehouse.write_partition("scan_runs", DAYS[0], make_frame(DATASETS["scan_runs"], DAYS[0], 1))
    with pytest.raises(ConfigError, match="not partitioned"):
        warehouse.sessions("scan_runs")


def test_root_is_created_on_first_write_not_on_construction(tmp_path):
    root = tmp_path / "elsewhere" / "warehouse"
    warehouse = Warehouse.from_settings(Settings(warehouse=root))
    assert warehouse.root == root
    assert warehouse.sessions("bars") == [] and not root.exists()
    warehouse.write_partition("bars", DAYS[0], make_frame(DATASETS["bars"], DAYS[0], 3))
    assert (root / "bars" / "date=2024-01-02" / "part-00000.parquet").is_file()


# ------------------------------------------------------------------ round trips and ranges


@pytest.mark.parametrize("name", SESSION_DATASETS)
def test_session_dataset_round_trip(warehouse, name):
    spec = DATASETS[name]
    frame = make_frame(spec, DAYS[1], 12)
    path = warehouse.write_partition(name, DAYS[1], frame)
    assert path == warehouse.root / name / "date=2024-01-03" / "part-00000.parquet"
    back = warehouse.read(name)
    assert back.schema == pl.Schema(spec.schema)
    assert_frame_equal(back, in_key_order(spec, frame))


def test_results_round_trip_in_batch_then_seq_order(warehouse):
    written = write_results_run(warehouse, DAYS[0], batches=3)
    back = warehouse.read("results")
    assert back.schema == pl.Schema(schema.RESULTS)
    assert_frame_equal(back, written)
    assert back["seq"].to_list() == list(range(1, 13))


def test_scan_runs_round_trip_one_file_per_scan(warehouse):
    spec = DATASETS["scan_runs"]
    first = make_frame(spec, DAYS[0], 1, scan_id="daily-2024-01-02")
    second = make_frame(spec, DAYS[2], 1, scan_id="adhoc-7")
    assert warehouse.append_scan_run(first).name == "daily-2024-01-02.parquet"
    warehouse.append_scan_run(second)
    warehouse.append_scan_run(first)  # re-writing a scan replaces its file
    back = warehouse.read("scan_runs")
    assert back.schema == pl.Schema(schema.SCAN_RUNS)
    assert_frame_equal(back, pl.concat([second, first]))
    assert_frame_equal(warehouse.read("scan_runs", DAYS[1], DAYS[3]), second)


@pytest.mark.parametrize("scan_ids", [["a", "b"], [None], [".hidden"], ["../escape"]])
def test_scan_run_needs_one_file_safe_scan_id(warehouse, scan_ids):
    frame = pl.concat([make_frame(DATASETS["scan_runs"], DAYS[0], 1, scan_id=s) for s in scan_ids])
    with pytest.raises(ConfigError, match="scan_id"):
        warehouse.append_scan_run(frame)


def test_date_range_reads_only_partitions_in_range(warehouse):
    spec = DATASETS["bars"]
    for day in DAYS:
        warehouse.write_partition("bars", day, make_frame(spec, day, 3))
    assert warehouse.read("bars", DAYS[1], DAYS[2])["date"].unique().sort().to_list() == DAYS[1:3]
    assert warehouse.read("bars", start=DAYS[2])["date"].unique().sort().to_list() == DAYS[2:]
    assert warehouse.read("bars", end=DAYS[0])["date"].unique().to_list() == DAYS[:1]
    # Out-of-range files are never opened: garbage there does not disturb an in-range read.
    warehouse.partition_files("bars", DAYS[3])[0].write_bytes(b"not parquet")
    assert warehouse.scan("bars", DAYS[0], DAYS[2]).collect().height == 9


def test_empty_range_gives_an_empty_frame_with_the_schema(warehouse):
    warehouse.write_partition("bars", DAYS[0], make_frame(DATASETS["bars"], DAYS[0], 3))
    for name in DATASETS:
        empty = warehouse.read(name, DAYS[2], DAYS[3])
        assert empty.height == 0 and empty.schema == pl.Schema(DATASETS[name].schema)


def test_sessions_lists_partitions_with_data_sorted(warehouse):
    spec = DATASETS["universe"]
    for day in (DAYS[2], DAYS[0], DAYS[3]):
        warehouse.write_partition("universe", day, make_frame(spec, day, 2))
    (warehouse.root / "universe" / "date=2024-01-03").mkdir()  # an empty directory is no partition
    assert warehouse.sessions("universe") == [DAYS[0], DAYS[2], DAYS[3]]
    assert warehouse.has_partition("universe", DAYS[2])
    assert not warehouse.has_partition("universe", DAYS[1])
    assert warehouse.sessions("conditions") == []


def test_an_empty_frame_is_a_present_partition_with_zero_rows(warehouse):
    warehouse.write_partition("rejections", DAYS[0], schema.empty(schema.REJECTIONS))
    assert warehouse.sessions("rejections") == [DAYS[0]]
    assert warehouse.read("rejections").schema == pl.Schema(schema.REJECTIONS)
    assert warehouse.connect().execute("SELECT count(*) FROM rejections").fetchone()[0] == 0


# ------------------------------------------------------------------ determinism and schema


def test_rewriting_a_partition_gives_byte_identical_files(warehouse):
    spec = DATASETS["bars"]
    frame = make_frame(spec, DAYS[0], 500)
    path = warehouse.write_partition("bars", DAYS[0], frame)
    first = path.read_bytes()
    warehouse.write_partition("bars", DAYS[0], frame.sample(fraction=1.0, shuffle=True, seed=3))
    assert path.read_bytes() == first
    batch = warehouse.write_result_batch(DAYS[0], 0, make_frame(DATASETS["results"], DAYS[0], 50))
    batch_bytes = batch.read_bytes()
    warehouse.write_result_batch(DAYS[0], 0, make_frame(DATASETS["results"], DAYS[0], 50))
    assert batch.read_bytes() == batch_bytes


def test_missing_column_raises_naming_it(warehouse):
    frame = make_frame(DATASETS["bars"], DAYS[0], 3).drop("vwap")
    with pytest.raises(ConfigError, match="vwap"):
        warehouse.write_partition("bars", DAYS[0], frame)
    assert not warehouse.root.exists()


def test_extra_columns_are_dropped_and_dtypes_cast(warehouse):
    frame = make_frame(DATASETS["bars"], DAYS[0], 3).with_columns(
        pl.lit("x").alias("unexpected"), pl.col("trades").cast(pl.Int32)
    )
    path = warehouse.write_partition("bars", DAYS[0], frame)
    assert pl.read_parquet_schema(path) == pl.Schema(schema.BARS)


def test_rows_must_match_the_values_their_path_encodes(warehouse):
    other_day = make_frame(DATASETS["bars"], DAYS[1], 3)
    with pytest.raises(ConfigError, match="date other than 2024-01-02"):
        warehouse.write_partition("bars", DAYS[0], other_day)
    wrong_batch = make_frame(DATASETS["results"], DAYS[0], 3, batch=2)
    with pytest.raises(ConfigError, match="batch other than 1"):
        warehouse.write_result_batch(DAYS[0], 1, wrong_batch)
    with pytest.raises(ConfigError, match="batch_no"):
        warehouse.write_result_batch(DAYS[0], -1, wrong_batch)
    with pytest.raises(ConfigError, match=r"datetime\.date"):
        warehouse.write_partition("bars", dt.datetime(2024, 1, 2, 16), other_day)


# ------------------------------------------------------------------ atomicity


def test_a_crashing_writer_leaves_the_previous_version_and_no_temp_file(warehouse, monkeypatch):
    spec = DATASETS["bars"]
    path = warehouse.write_partition("bars", DAYS[0], make_frame(spec, DAYS[0], 5))
    before = path.read_bytes()
    real_write = pl.DataFrame.write_parquet

    def write_half_then_crash(frame, file, **options):
        real_write(frame, file, **options)
        Path(file).write_bytes(Path(file).read_bytes()[:100])
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", write_half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        warehouse.write_partition("bars", DAYS[0], make_frame(spec, DAYS[0], 9))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert hidden_files(path.parent) == []
    assert warehouse.read("bars").height == 5


def test_a_dead_writers_temp_file_is_invisible_and_cleaned_by_the_next_write(warehouse):
    spec = DATASETS["bars"]
    warehouse.write_partition("bars", DAYS[0], make_frame(spec, DAYS[0], 5))
    directory = warehouse.root / "bars" / "date=2024-01-02"
    dead = directory / f".part-00000.parquet.{dead_pid()}.0123456789abcdef.tmp"
    live = directory / f".part-00000.parquet.{os.getpid()}.fedcba9876543210.tmp"
    for leftover in (dead, live):
        leftover.write_bytes(b"PAR1 half a file")
    assert warehouse.partition_files("bars", DAYS[0]) == [directory / "part-00000.parquet"]
    assert warehouse.read("bars").height == 5
    assert warehouse.connect().execute("SELECT count(*) FROM bars").fetchone()[0] == 5
    warehouse.write_partition("bars", DAYS[0], make_frame(spec, DAYS[0], 6))
    # The dead writer's file goes; a live writer's (another thread, another scan) is left alone.
    assert hidden_files(directory) == [live.name]


def test_kill_9_mid_rewrite_leaves_only_whole_files(warehouse, tmp_path):
    frame = make_frame(DATASETS["bars"], DAYS[0], 20_000)
    source = tmp_path / "input.parquet"
    frame.write_parquet(source)
    reference = Warehouse(tmp_path / "reference").write_partition("bars", DAYS[0], frame).read_bytes()
    child_code = (
        "import sys, datetime, polars\n"
        "from technic_core.warehouse import Warehouse\n"
        "warehouse, frame = Warehouse(sys.argv[1]), polars.read_parquet(sys.argv[2])\n"
        "for written in range(1_000_000):\n"
        "    warehouse.write_partition('bars', datetime.date(2024, 1, 2), frame)\n"
        "    if written == 0:\n"
        "        sys.stdout.write('started\\n')\n"
        "        sys.stdout.flush()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", child_code, str(warehouse.root), str(source)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "started"
        time.sleep(0.3)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL, "the child must die mid-loop, not finish"
    visible = warehouse.partition_files("bars", DAYS[0])
    assert [p.name for p in visible] == ["part-00000.parquet"]
    assert visible[0].read_bytes() == reference  # whole, and byte-identical across processes
    assert_frame_equal(warehouse.read("bars"), in_key_order(DATASETS["bars"], frame))
    warehouse.write_partition("bars", DAYS[0], frame)
    assert hidden_files(visible[0].parent) == []


# ------------------------------------------------------------------ result batches


def test_a_rerun_with_fewer_batches_leaves_only_the_new_batches(warehouse):
    write_results_run(warehouse, DAYS[0], batches=4, rows=3)
    assert len(warehouse.partition_files("results", DAYS[0])) == 4
    rerun = write_results_run(warehouse, DAYS[0], batches=2, rows=5)
    files = warehouse.partition_files("results", DAYS[0])
    assert [p.name for p in files] == ["batch=00000.parquet", "batch=00001.parquet"]
    assert_frame_equal(warehouse.read("results"), rerun)


def test_begin_results_removes_the_previous_run_before_any_new_batch(warehouse):
    write_results_run(warehouse, DAYS[0], batches=3)
    write_results_run(warehouse, DAYS[1], batches=1)
    warehouse.begin_results(DAYS[0])
    assert warehouse.partition_files("results", DAYS[0]) == []
    assert warehouse.sessions("results") == [DAYS[1]]


def test_finish_results_trims_leftovers_when_begin_was_skipped(warehouse):
    write_results_run(warehouse, DAYS[0], batches=3)
    spec = DATASETS["results"]
    warehouse.write_result_batch(DAYS[0], 0, make_frame(spec, DAYS[0], 2, batch=0))
    kept = warehouse.finish_results(DAYS[0], 1)
    assert kept == warehouse.partition_files("results", DAYS[0])
    assert [p.name for p in kept] == ["batch=00000.parquet"]


def test_finish_results_refuses_a_run_with_a_missing_batch(warehouse):
    spec = DATASETS["results"]
    warehouse.begin_results(DAYS[0])
    warehouse.write_result_batch(DAYS[0], 0, make_frame(spec, DAYS[0], 2, batch=0))
    with pytest.raises(WarehouseError, match=r"batch=00001\.parquet"):
        warehouse.finish_results(DAYS[0], 2)


def _duckdb_rows(warehouse: Warehouse, session: dt.date) -> pl.DataFrame:
    query = f"SELECT * FROM results WHERE date = DATE '{session.isoformat()}' ORDER BY seq"
    return pl.from_arrow(warehouse.connect().execute(query).to_arrow_table())


def test_compacting_a_finished_session_leaves_one_file_with_the_same_rows(warehouse):
    written = write_results_run(warehouse, DAYS[0], batches=4, rows=3)
    write_results_run(warehouse, DAYS[1], batches=2)
    compacted = warehouse.compact_results(DAYS[0])
    assert compacted is not None and compacted.name == "part-00000.parquet"
    directory = warehouse.root / "results" / f"date={DAYS[0].isoformat()}"
    assert sorted(p.name for p in directory.iterdir()) == ["part-00000.parquet"]
    assert warehouse.partition_files("results", DAYS[0]) == [compacted]
    assert_frame_equal(warehouse.read("results", DAYS[0], DAYS[0]), written)  # each row keeps its batch
    assert_frame_equal(_duckdb_rows(warehouse, DAYS[0]), written, check_dtypes=False)
    assert warehouse.sessions("results") == DAYS[:2]
    first_bytes = compacted.read_bytes()
    assert warehouse.compact_results(DAYS[0]) == compacted and compacted.read_bytes() == first_bytes
    assert warehouse.compact_results(DAYS[3]) is None


def test_batches_left_beside_a_compacted_file_are_never_read_twice(warehouse):
    """A compaction killed between writing its file and deleting the batches leaves both: readers take the
    compacted file alone, and the next compaction merges what the batches add and removes them."""
    spec = DATASETS["results"]
    written = write_results_run(warehouse, DAYS[0], batches=3, rows=3)
    warehouse.compact_results(DAYS[0])
    warehouse.write_result_batch(DAYS[0], 1, make_frame(spec, DAYS[0], 3, batch=1, first_seq=4))
    assert_frame_equal(warehouse.read("results", DAYS[0], DAYS[0]), written)
    assert_frame_equal(_duckdb_rows(warehouse, DAYS[0]), written, check_dtypes=False)
    late = make_frame(spec, DAYS[0], 3, batch=3, first_seq=10)  # a batch written after an early compaction
    warehouse.write_result_batch(DAYS[0], 3, late)
    warehouse.compact_results(DAYS[0])
    assert [p.name for p in warehouse.partition_files("results", DAYS[0])] == ["part-00000.parquet"]
    directory = warehouse.root / "results" / f"date={DAYS[0].isoformat()}"
    assert [p.name for p in directory.iterdir()] == ["part-00000.parquet"]
    assert_frame_equal(warehouse.read("results", DAYS[0], DAYS[0]), pl.concat([written, in_key_order(spec, late)]))


def test_a_rerun_of_a_compacted_session_replaces_it(warehouse):
    write_results_run(warehouse, DAYS[0], batches=3)
    warehouse.compact_results(DAYS[0])
    warehouse.begin_results(DAYS[0])
    assert warehouse.partition_files("results", DAYS[0]) == []
    rerun = write_results_run(warehouse, DAYS[0], batches=2, rows=5)
    assert [p.name for p in warehouse.partition_files("results", DAYS[0])] == [
        "batch=00000.parquet",
        "batch=00001.parquet",
    ]
    assert_frame_equal(warehouse.read("results", DAYS[0], DAYS[0]), rerun)


# ------------------------------------------------------------------ corruption


def test_a_garbage_file_raises_naming_it_and_other_partitions_stay_readable(warehouse):
    spec = DATASETS["bars"]
    for day in DAYS[:3]:
        warehouse.write_partition("bars", day, make_frame(spec, day, 4))
    victim = warehouse.partition_files("bars", DAYS[1])[0]
    victim.write_bytes(b"PAR1 this is not a parquet file")
    untouched = {p: p.read_bytes() for p in warehouse.root.rglob("*.parquet")}
    for read in (warehouse.read, lambda name: warehouse.scan(name).collect()):
        with pytest.raises(CorruptFileError, match=str(victim)):
            read("bars")
    assert {p: p.read_bytes() for p in warehouse.root.rglob("*.parquet")} == untouched
    assert warehouse.read("bars", DAYS[2], DAYS[2]).height == 4
    victim.unlink()
    assert warehouse.read("bars")["date"].unique().sort().to_list() == [DAYS[0], DAYS[2]]


def test_a_truncated_file_raises_naming_it(warehouse):
    path = warehouse.write_partition("bars", DAYS[0], make_frame(DATASETS["bars"], DAYS[0], 100))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptFileError, match=str(path)):
        warehouse.scan("bars")


def test_damaged_pages_behind_a_valid_footer_raise_naming_the_file(warehouse):
    path = warehouse.write_partition("bars", DAYS[0], make_frame(DATASETS["bars"], DAYS[0], 5_000))
    damaged = bytearray(path.read_bytes())
    damaged[100:2_000] = bytes((byte * 7 + 13) % 256 for byte in damaged[100:2_000])
    path.write_bytes(bytes(damaged))
    lazy = warehouse.scan("bars")  # the footer is intact, so this much succeeds
    with pytest.raises(CorruptFileError, match=str(path)):
        warehouse.read("bars")
    with pytest.raises(pl.exceptions.ComputeError):
        lazy.collect()


# ------------------------------------------------------------------ DuckDB


def populate(warehouse: Warehouse) -> None:
    for name in SESSION_DATASETS:
        for day in DAYS[:2]:
            warehouse.write_partition(name, day, make_frame(DATASETS[name], day, 6))
    for day in DAYS[:2]:
        write_results_run(warehouse, day, batches=2)
    warehouse.append_scan_run(make_frame(DATASETS["scan_runs"], DAYS[0], 1, scan_id="daily-1"))
    warehouse.append_scan_run(make_frame(DATASETS["scan_runs"], DAYS[1], 1, scan_id="daily-2"))


def assert_views_match_polars(connection: duckdb.DuckDBPyConnection, warehouse: Warehouse) -> None:
    for name, spec in DATASETS.items():
        order = ", ".join(("date", *spec.sort_key) if "date" not in spec.sort_key else spec.sort_key)
        from_sql = connection.sql(f"SELECT * FROM {name} ORDER BY {order}").pl()
        from_polars = warehouse.read(name).sort(order.split(", "), maintain_order=True)
        assert from_sql.height > 0, name
        # DuckDB hands TIMESTAMPTZ back in its session time zone; the instants are what must agree.
        assert_frame_equal(from_sql.cast(spec.schema), from_polars)


def test_views_of_datasets_without_files_are_empty_with_the_schema_columns(warehouse):
    connection = warehouse.connect()
    for name, spec in DATASETS.items():
        relation = connection.sql(f"SELECT * FROM {name}")
        assert relation.columns == list(spec.schema)
        assert relation.fetchall() == []
    # A view made before the dataset had files sees them once they land.
    warehouse.write_partition("bars", DAYS[0], make_frame(DATASETS["bars"], DAYS[0], 3))
    assert connection.execute("SELECT count(*) FROM bars").fetchone()[0] == 3


def test_catalog_file_opens_read_only_from_another_directory(warehouse, tmp_path, monkeypatch):
    populate(warehouse)
    catalog = warehouse.refresh_catalog()
    assert catalog == warehouse.root / "technic.duckdb"
    assert hidden_files(warehouse.root) == [] and not list(warehouse.root.glob("*.wal"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    connection = duckdb.connect(str(catalog), read_only=True)
    try:
        assert_views_match_polars(connection, warehouse)
    finally:
        connection.close()
    # Rebuilding replaces the file atomically even while nobody else has it open.
    assert warehouse.refresh_catalog() == catalog


# ------------------------------------------------------------------ small files


def test_atomic_small_file_helpers(tmp_path):
    metrics = tmp_path / "models" / "alpha_5d" / "v1" / "metrics.json"
    write_json_atomic(metrics, {"b": 1, "a": [1.5, None]})
    first = metrics.read_bytes()
    assert json.loads(first) == {"a": [1.5, None], "b": 1}
    Warehouse.write_json_atomic(metrics, {"a": [1.5, None], "b": 1})
    assert metrics.read_bytes() == first
    model = metrics.with_name("model.bin")
    write_bytes_atomic(model, b"\x00weights")
    assert model.read_bytes() == b"\x00weights"
    assert hidden_files(metrics.parent) == []
