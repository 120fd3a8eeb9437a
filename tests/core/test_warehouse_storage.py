"""The warehouse on both kinds of root: a local directory and an object store (fsspec `memory://`).

Every test in the first part runs twice, once per backend, through the public `Warehouse` API only: write,
read, replace, list, delete, DuckDB. The object-store runs also check what is special there: one PUT per file
(no temp objects, no rename), nothing published when serialization fails, and URIs surviving `Settings`.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from pathlib import Path

import duckdb
import fsspec
import polars as pl
import pyarrow.fs as pafs
import pytest
from polars.testing import assert_frame_equal

from technic_core.config import Settings
from technic_core.errors import CorruptFileError, WarehouseError
from technic_core.storage import LocalStorage, ObjectStorage, StoragePath, open_storage, root_uri
from technic_core.warehouse import DATASETS, Warehouse, write_bytes_atomic, write_json_atomic
from tests.core.test_warehouse import (
    DAYS,
    SESSION_DATASETS,
    assert_views_match_polars,
    in_key_order,
    make_frame,
    populate,
    write_results_run,
)

MEMORY = fsspec.filesystem("memory")


def every_object(warehouse: Warehouse) -> dict[str, bytes]:
    """Every file under the root (hidden ones included), by path relative to the root, with its bytes."""
    if warehouse.is_local:
        root = Path(warehouse.root)
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    base = warehouse.storage.base
    return {path[len(base) + 1 :]: MEMORY.cat_file(path) for path in sorted(MEMORY.find(base))}


@pytest.fixture
def memory_root() -> str:
    root = f"memory://technic-test-{uuid.uuid4().hex}/warehouse"
    yield root
    base = fsspec.core.url_to_fs(root)[1]
    if MEMORY.exists(base):
        MEMORY.rm(base, recursive=True)


@pytest.fixture(params=["local", "memory"])
def warehouse(request, tmp_path: Path, memory_root: str) -> Warehouse:
    if request.param == "local":
        return Warehouse(tmp_path / "warehouse")
    return Warehouse(memory_root)


# ------------------------------------------------------------------ round trips on both backends


def test_round_trip_of_every_dataset(warehouse):
    for name in SESSION_DATASETS:
        frame = make_frame(DATASETS[name], DAYS[1], 9)
        path = warehouse.write_partition(name, DAYS[1], frame)
        assert str(path) == f"{warehouse.uri}/{name}/date=2024-01-03/part-00000.parquet"
        assert_frame_equal(warehouse.read(name), in_key_order(DATASETS[name], frame))
    written = write_results_run(warehouse, DAYS[0], batches=3)
    assert_frame_equal(warehouse.read("results"), written)
    assert_frame_equal(warehouse.scan("results").collect(), written)
    first = make_frame(DATASETS["scan_runs"], DAYS[0], 1, scan_id="daily-2024-01-02")
    second = make_frame(DATASETS["scan_runs"], DAYS[2], 1, scan_id="adhoc-7")
    warehouse.append_scan_run(first)
    warehouse.append_scan_run(second)
    assert_frame_equal(warehouse.read("scan_runs"), pl.concat([second, first]))
    assert_frame_equal(warehouse.read("scan_runs", DAYS[1], DAYS[3]), second)


def test_listing_and_ranges(warehouse):
    spec = DATASETS["bars"]
    assert warehouse.sessions("bars") == [] and warehouse.read("bars").height == 0
    for day in (DAYS[3], DAYS[0], DAYS[2]):
        warehouse.write_partition("bars", day, make_frame(spec, day, 3))
    assert warehouse.sessions("bars") == [DAYS[0], DAYS[2], DAYS[3]]
    assert warehouse.has_partition("bars", DAYS[2]) and not warehouse.has_partition("bars", DAYS[1])
    assert [p.name for p in warehouse.partition_files("bars", DAYS[0])] == ["part-00000.parquet"]
    assert warehouse.read("bars", DAYS[1], DAYS[2])["date"].unique().to_list() == [DAYS[2]]
    assert warehouse.read("bars", start=DAYS[2])["date"].unique().sort().to_list() == [DAYS[2], DAYS[3]]
    # Out-of-range files are never opened.
    write_bytes_atomic(warehouse.partition_files("bars", DAYS[3])[0], b"not parquet")
    assert warehouse.read("bars", end=DAYS[2]).height == 6


def test_many_partitions_list_and_read_in_range(warehouse):
    spec = DATASETS["universe"]
    days = [dt.date(2024, 2, 1) + dt.timedelta(days=offset) for offset in range(20)]
    for day in days:
        warehouse.write_partition("universe", day, make_frame(spec, day, 2))
    assert warehouse.sessions("universe") == days
    assert warehouse.read("universe", days[2], days[18])["date"].unique().sort().to_list() == days[2:19]
    assert warehouse.read("universe", days[5], days[5]).height == 2
    assert len(warehouse.connect().execute("SELECT DISTINCT date FROM universe").fetchall()) == 20


def test_rewriting_gives_identical_bytes_and_the_same_bytes_on_both_backends(warehouse, tmp_path):
    frame = make_frame(DATASETS["bars"], DAYS[0], 500)
    path = warehouse.write_partition("bars", DAYS[0], frame)
    first = every_object(warehouse)
    warehouse.write_partition("bars", DAYS[0], frame.sample(fraction=1.0, shuffle=True, seed=3))
    write_results_run(warehouse, DAYS[0], batches=2)
    again = every_object(warehouse)
    write_results_run(warehouse, DAYS[0], batches=2)
    assert every_object(warehouse) == again
    assert {key: again[key] for key in first} == first
    # A local warehouse and an object-store one hold byte-identical files for identical input.
    reference = Warehouse(tmp_path / "reference")
    assert reference.write_partition("bars", DAYS[0], frame).read_bytes() == path.read_bytes()


def test_replacing_results_with_a_shorter_run_leaves_only_the_new_batches(warehouse):
    write_results_run(warehouse, DAYS[0], batches=4, rows=3)
    write_results_run(warehouse, DAYS[1], batches=1)
    rerun = write_results_run(warehouse, DAYS[0], batches=2, rows=5)
    assert [p.name for p in warehouse.partition_files("results", DAYS[0])] == [
        "batch=00000.parquet",
        "batch=00001.parquet",
    ]
    assert_frame_equal(warehouse.read("results", DAYS[0], DAYS[0]), rerun)
    warehouse.begin_results(DAYS[0])
    assert warehouse.partition_files("results", DAYS[0]) == []
    assert warehouse.sessions("results") == [DAYS[1]]


def test_failing_serialization_publishes_nothing(warehouse, monkeypatch):
    spec = DATASETS["bars"]
    warehouse.write_partition("bars", DAYS[0], make_frame(spec, DAYS[0], 5))
    before = every_object(warehouse)
    real_write = pl.DataFrame.write_parquet

    def write_half_then_fail(frame, sink, **options):
        """Serialize for real, leave half of it in the sink, then fail, as a crash mid-write would."""
        buffer = io.BytesIO()
        real_write(frame, buffer, **options)
        half = buffer.getvalue()[: len(buffer.getvalue()) // 2]
        if isinstance(sink, (str, Path)):
            Path(sink).write_bytes(half)
        else:
            sink.write(half)
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        warehouse.write_partition("bars", DAYS[0], make_frame(spec, DAYS[0], 9))  # a replacement
    with pytest.raises(OSError, match="disk full"):
        warehouse.write_partition("bars", DAYS[1], make_frame(spec, DAYS[1], 9))  # a new partition
    with pytest.raises(OSError, match="disk full"):
        warehouse.write_result_batch(DAYS[0], 0, make_frame(DATASETS["results"], DAYS[0], 3))
    monkeypatch.undo()
    assert every_object(warehouse) == before  # old object intact, no partial or temp object anywhere
    assert warehouse.sessions("bars") == [DAYS[0]]
    assert warehouse.read("bars").height == 5


def test_a_garbage_file_raises_naming_it(warehouse):
    for day in DAYS[:2]:
        warehouse.write_partition("bars", day, make_frame(DATASETS["bars"], day, 4))
    victim = warehouse.partition_files("bars", DAYS[1])[0]
    write_bytes_atomic(victim, b"PAR1 this is not a parquet file")
    with pytest.raises(CorruptFileError, match=str(victim)):
        warehouse.read("bars")
    assert warehouse.read("bars", DAYS[0], DAYS[0]).height == 4


def test_damaged_pages_behind_a_valid_footer_raise_naming_the_file(warehouse):
    path = warehouse.write_partition("bars", DAYS[0], make_frame(DATASETS["bars"], DAYS[0], 5_000))
    damaged = bytearray(path.read_bytes())
    damaged[100:2_000] = bytes((byte * 7 + 13) % 256 for byte in damaged[100:2_000])
    write_bytes_atomic(path, bytes(damaged))
    with pytest.raises(CorruptFileError, match=str(path)):
        warehouse.read("bars")


def test_duckdb_views_read_the_root(warehouse):
    """In-memory views over either backend return what polars reads; the hive `date` and the in-file `date`
    are one column, and a filter on it prunes by path."""
    populate(warehouse)
    connection = warehouse.connect()
    assert_views_match_polars(connection, warehouse)
    plan = connection.sql("EXPLAIN SELECT * FROM bars WHERE date = DATE '2024-01-03'").fetchall()[0][1]
    assert "Scanning Files: 1/2" in plan
    # New partitions show up without reconnecting.
    warehouse.write_partition("bars", DAYS[3], make_frame(DATASETS["bars"], DAYS[3], 2))
    assert connection.execute("SELECT count(*) FROM bars WHERE date = DATE '2024-01-05'").fetchone()[0] == 2


def test_catalog_is_written_into_the_root_and_its_views_read_it(warehouse, tmp_path):
    populate(warehouse)
    catalog = warehouse.refresh_catalog()
    assert str(catalog) == f"{warehouse.uri}/technic.duckdb"
    copy = tmp_path / "downloaded.duckdb"
    copy.write_bytes(catalog.read_bytes())
    connection = duckdb.connect(str(copy), read_only=True)
    try:
        if not warehouse.is_local:
            connection.register_filesystem(MEMORY)
        assert_views_match_polars(connection, warehouse)
    finally:
        connection.close()
    assert not [name for name in every_object(warehouse) if Path(name).name.startswith(".")]


def test_small_files_and_path_operations(warehouse):
    manifest = warehouse.root / "models" / "alpha_5d" / "v0001" / "metrics.json"
    assert not manifest.exists()
    write_json_atomic(manifest, {"b": 1, "a": [1.5, None]})
    first = manifest.read_bytes()
    Warehouse.write_json_atomic(manifest, {"a": [1.5, None], "b": 1})
    assert manifest.read_bytes() == first and manifest.is_file() and manifest.parent.is_dir()
    assert manifest.read_text().startswith("{") and manifest.name == "metrics.json"
    assert [p.name for p in manifest.parent.iterdir()] == ["metrics.json"]
    assert manifest.stat().st_size == len(first) and manifest.stat().st_mtime_ns > 0
    warehouse.append_scan_run(make_frame(DATASETS["scan_runs"], DAYS[0], 1, scan_id="daily-1"))
    warehouse.append_scan_run(make_frame(DATASETS["scan_runs"], DAYS[1], 1, scan_id="daily-2"))
    runs = sorted(p.name for p in warehouse.root.glob(DATASETS["scan_runs"].file_glob))
    assert runs == ["daily-1.parquet", "daily-2.parquet"]
    assert len(list(warehouse.root.glob("models/*/*/*.json"))) == 1


# ------------------------------------------------------------------ object-store specifics


def test_object_store_writes_each_file_with_one_put_and_no_rename(memory_root, monkeypatch):
    puts: list[str] = []
    inside_put = False
    real_pipe, real_open = type(MEMORY).pipe_file, type(MEMORY)._open

    def recording_pipe(self, path, value, *args, **kwargs):
        nonlocal inside_put
        puts.append(path)
        inside_put = True
        try:
            return real_pipe(self, path, value, *args, **kwargs)
        finally:
            inside_put = False

    def forbidden(self, *args, **kwargs):
        raise AssertionError("object-store writes must be a single PUT, not a stream, copy or rename")

    def open_for_reading_only(self, path, mode="rb", *args, **kwargs):
        if "r" not in mode and not inside_put:
            forbidden(self)
        return real_open(self, path, mode, *args, **kwargs)

    monkeypatch.setattr(type(MEMORY), "pipe_file", recording_pipe)
    monkeypatch.setattr(type(MEMORY), "_open", open_for_reading_only)
    monkeypatch.setattr(type(MEMORY), "mv", forbidden)
    monkeypatch.setattr(type(MEMORY), "copy", forbidden)
    warehouse = Warehouse(memory_root)
    warehouse.write_partition("bars", DAYS[0], make_frame(DATASETS["bars"], DAYS[0], 3))
    write_results_run(warehouse, DAYS[0], batches=2)
    warehouse.append_scan_run(make_frame(DATASETS["scan_runs"], DAYS[0], 1, scan_id="daily-1"))
    warehouse.refresh_catalog()
    base = warehouse.storage.base
    assert [path[len(base) + 1 :] for path in puts] == [
        "bars/date=2024-01-02/part-00000.parquet",
        "results/date=2024-01-02/batch=00000.parquet",
        "results/date=2024-01-02/batch=00001.parquet",
        "scan_runs/daily-1.parquet",
        "technic.duckdb",
    ]
    assert sorted(every_object(warehouse)) == sorted(path[len(base) + 1 :] for path in puts)


def test_uris_survive_settings_and_nothing_is_contacted_on_construction(tmp_path):
    # Settings.warehouse is a Path, which collapses 's3://' to 's3:/'; the warehouse restores it.
    for text in ("s3://bucket/prefix/warehouse", "gs://bucket/w", "memory://somewhere/w"):
        warehouse = Warehouse.from_settings(Settings(warehouse=text))
        assert isinstance(warehouse.storage, ObjectStorage) and isinstance(warehouse.root, StoragePath)
        assert warehouse.uri == str(warehouse.root) == text
        assert str(warehouse.root / "bars" / "date=2024-01-02") == f"{text}/bars/date=2024-01-02"
        assert (warehouse.root / "bars").parent == warehouse.root and repr(warehouse) == f"Warehouse({text!r})"
    assert root_uri("S3://Bucket/w/") == "s3://Bucket/w"
    local = Warehouse(f"file://{tmp_path}/w")
    assert isinstance(local.storage, LocalStorage) and local.root == tmp_path / "w"
    assert Warehouse(Settings(warehouse=tmp_path / "x").warehouse).root == tmp_path / "x"
    assert isinstance(open_storage("relative/dir"), LocalStorage)


def test_a_warehouse_under_another_ones_root_shares_its_store(memory_root):
    outer = Warehouse(memory_root)
    inner = Warehouse(outer.root / "clean")
    inner.write_partition("bars", DAYS[0], make_frame(DATASETS["bars"], DAYS[0], 3))
    assert inner.uri == f"{memory_root}/clean"
    assert outer.storage.is_file(outer.root / "clean" / "bars" / "date=2024-01-02" / "part-00000.parquet")
    assert inner.read("bars").height == 3 and outer.sessions("bars") == []


def test_a_pyarrow_native_filesystem_round_trips_through_output_streams(tmp_path):
    """The branch S3/GCS take (pyarrow's own filesystem, no fsspec), on pyarrow's in-memory mock filesystem."""
    store = ObjectStorage("s3://bucket/warehouse", filesystem=pafs._MockFileSystem())
    warehouse = Warehouse(store.root)
    frame = make_frame(DATASETS["bars"], DAYS[0], 50)
    path = warehouse.write_partition("bars", DAYS[0], frame)
    assert str(path) == "s3://bucket/warehouse/bars/date=2024-01-02/part-00000.parquet"
    assert path.read_bytes() == Warehouse(tmp_path).write_partition("bars", DAYS[0], frame).read_bytes()
    warehouse.write_partition("bars", DAYS[2], make_frame(DATASETS["bars"], DAYS[2], 5))
    assert warehouse.sessions("bars") == [DAYS[0], DAYS[2]]
    assert_frame_equal(warehouse.read("bars", DAYS[0], DAYS[0]), in_key_order(DATASETS["bars"], frame))
    rerun = write_results_run(warehouse, DAYS[0], batches=3)
    write_results_run(warehouse, DAYS[0], batches=3)
    assert_frame_equal(warehouse.read("results"), rerun)
    shorter = write_results_run(warehouse, DAYS[0], batches=1)
    assert [p.name for p in warehouse.partition_files("results", DAYS[0])] == ["batch=00000.parquet"]
    assert_frame_equal(warehouse.read("results"), shorter)
    infos = store.filesystem.get_file_info(pafs.FileSelector("bucket", recursive=True))
    assert not [info.path for info in infos if info.base_name.startswith(".")]
    before = {info.path: store.filesystem.open_input_stream(info.path).read() for info in infos if info.is_file}

    def fail_mid_way(frame, sink, **options):
        sink.write(b"PAR1 half a file")
        raise OSError("serializer died")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pl.DataFrame, "write_parquet", fail_mid_way)
        for session in (DAYS[0], DAYS[3]):  # a replacement and a new partition
            with pytest.raises(OSError, match="serializer died"):
                warehouse.write_partition("bars", session, frame.with_columns(pl.lit(session).alias("date")))
    infos = store.filesystem.get_file_info(pafs.FileSelector("bucket", recursive=True))
    assert {info.path: store.filesystem.open_input_stream(info.path).read() for info in infos if info.is_file} == before


class RecordingConnection:
    """Stands in for a DuckDB connection: records SQL, optionally failing statements that start with `fail`."""

    def __init__(self, *, secrets: int = 0, fail: tuple[str, ...] = ()) -> None:
        self.statements: list[str] = []
        self.secrets, self.fail = secrets, fail

    def execute(self, sql: str, parameters: object = None) -> RecordingConnection:
        self.statements.append(sql)
        if sql.startswith(self.fail) and self.fail:
            raise duckdb.IOException(f"offline: {sql}")
        return self

    def fetchone(self) -> tuple[int]:
        return (self.secrets,)


def test_duckdb_reads_s3_through_httpfs_with_credential_chain_secret(caplog):
    warehouse = Warehouse("s3://bucket/prefix/warehouse")
    connection = RecordingConnection()
    warehouse._configure(connection)  # resolves no pyarrow filesystem: nothing is contacted
    assert connection.statements[0] == "LOAD httpfs"
    assert connection.statements[-1] == (
        "CREATE SECRET technic_warehouse (TYPE s3, PROVIDER credential_chain, SCOPE 's3://bucket/prefix/warehouse')"
    )
    covered = RecordingConnection(secrets=1)  # e.g. a persistent secret: left alone
    warehouse._configure(covered)
    assert not [sql for sql in covered.statements if sql.startswith("CREATE SECRET")]
    no_chain = RecordingConnection(fail=("CREATE SECRET",))
    warehouse._configure(no_chain)
    assert "no S3 credentials" in caplog.text
    with pytest.raises(WarehouseError, match="httpfs"):
        warehouse._configure(RecordingConnection(fail=("LOAD httpfs", "INSTALL httpfs")))
    gcs = RecordingConnection()
    Warehouse("gs://bucket/w")._configure(gcs)
    assert not [sql for sql in gcs.statements if sql.startswith("CREATE SECRET")] and "gcs secret" in caplog.text
