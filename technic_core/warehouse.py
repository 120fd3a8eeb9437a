"""The warehouse: Parquet partitions under a root plus DuckDB views over them.

The root is a local directory or an object-store URI (`s3://bucket/prefix`, `gs://...`, any fsspec protocol);
every file operation goes through `technic_core.storage`, so nothing here assumes a local path. Layout under
the root (see `warehouse/README.md`)::

    bars/date=YYYY-MM-DD/part-00000.parquet        and the same for universe/, conditions/, rejections/
    results/date=YYYY-MM-DD/batch=NNNNN.parquet    scan results, one file per batch
    scan_runs/<scan_id>.parquet                    one file per scan
    models/<name>/<version>/...                    written with `write_bytes_atomic` / `write_json_atomic`
    technic.duckdb                                 catalog of views for SQL users

Guarantees, and why:

* A file appears whole or not at all, so a reader (another process, DuckDB, the API) only ever opens a
  complete file — the old one or the new one. On a local root every file is written to a hidden temp file in
  its final directory, fsynced and `os.replace`d over the target. Temp names start with '.' and end in
  '.tmp', so no reader glob (`*.parquet`) matches them; a writer killed with SIGKILL leaves one behind,
  removed by the next write to that directory once its writer process is gone. On an object store the file
  is serialized in memory and written with a single PUT, which the store publishes atomically: no temp
  objects, no rename.
* Re-materializing gives byte-identical files for identical input: rows are sorted by the dataset's natural
  key (stable, so ties keep input order), compression is fixed and polars writes no timestamps. Dagster
  re-runs and backfills therefore never produce spurious diffs. (Polars records its version in the footer's
  `created_by`, so a polars upgrade does change bytes, never data.)
* `date` lives both in the partition path (so DuckDB prunes files by `WHERE date = ...`) and in the file (so
  a file is self-describing and polars reads need no hive parsing). Writers reject rows whose `date` is not
  the partition's session, so the two can never disagree — DuckDB's hive value and polars' file value
  always match.
* Readers never hold a read-write DuckDB handle: `connect()` is an in-memory database of views over the
  Parquet globs, and `refresh_catalog()` builds `technic.duckdb` in a temp file and renames it into place
  (on an object store: builds it locally and PUTs it; DuckDB can `ATTACH` it read-only over httpfs).
* On an object store DuckDB reads the same URIs: through its `httpfs` extension for s3:// and gs:// (which
  must be installed, with credentials from a DuckDB secret), and through the very filesystem the warehouse
  writes with (`register_filesystem`) for other protocols and for s3:// at a custom endpoint
  (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from technic_core import schema
from technic_core.config import Settings
from technic_core.errors import ConfigError, CorruptFileError, WarehouseError
from technic_core.storage import (
    AnyPath,
    LocalStorage,
    ObjectStorage,
    StoragePath,
    atomic_path,
    open_storage,
    root_uri,
    s3_endpoint,
)

#: Fixed so identical frames give identical bytes whatever polars' defaults become.
PARQUET_COMPRESSION: Final = "zstd"
PARQUET_COMPRESSION_LEVEL = 3

CATALOG_NAME = "technic.duckdb"
PARTITION_FILE = "part-00000.parquet"
#: Five digits in the batch file name keep lexical order equal to batch order.
MAX_BATCH_NO = 99_999

_log = logging.getLogger(__name__)

_PARTITION_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
#: A scan id becomes a file name: no path separators, and no leading '.' that would hide it from readers.
_SCAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Layout(enum.Enum):
    """How a dataset's rows are split into files; decides which writer may write it."""

    SESSION = "one file per session: <name>/date=YYYY-MM-DD/part-00000.parquet"
    BATCHED = (
        "one file per result batch while a session is written: <name>/date=YYYY-MM-DD/batch=NNNNN.parquet; "
        "once finished, compacted into <name>/date=YYYY-MM-DD/part-00000.parquet"
    )
    PER_SCAN = "one file per scan: <name>/<scan_id>.parquet"


#: Where to send a caller who hands `write_partition` a dataset that is not written one file per session.
_OTHER_WRITERS = {
    Layout.BATCHED: "begin_results, write_result_batch, finish_results and compact_results",
    Layout.PER_SCAN: "append_scan_run",
}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A named warehouse dataset: its schema, the key its rows are sorted by, and its file layout."""

    name: str
    schema: schema.Columns
    sort_key: tuple[str, ...]
    layout: Layout

    @property
    def partitioned(self) -> bool:
        """True when files live in `date=YYYY-MM-DD` directories, one per session."""
        return self.layout is not Layout.PER_SCAN

    @property
    def file_glob(self) -> str:
        """Glob of the dataset's visible data files, relative to the root; temp files never match it."""
        return f"{self.name}/date=*/*.parquet" if self.partitioned else f"{self.name}/*.parquet"


#: The closed set of datasets. A new dataset is one more line here; readers, views and the catalog follow.
DATASETS: dict[str, Dataset] = {
    dataset.name: dataset
    for dataset in (
        Dataset("bars", schema.BARS, ("symbol",), Layout.SESSION),
        Dataset("index_bars", schema.BARS, ("symbol",), Layout.SESSION),
        Dataset("universe", schema.UNIVERSE, ("symbol",), Layout.SESSION),
        Dataset("conditions", schema.CONDITIONS, ("date",), Layout.SESSION),
        Dataset("results", schema.RESULTS, ("seq",), Layout.BATCHED),
        Dataset("rejections", schema.REJECTIONS, ("symbol", "reason"), Layout.SESSION),
        Dataset("scan_runs", schema.SCAN_RUNS, ("scan_id",), Layout.PER_SCAN),
        Dataset("priority", schema.PRIORITY, ("rank",), Layout.SESSION),
        Dataset("outcomes", schema.OUTCOMES, ("symbol",), Layout.SESSION),
        Dataset("screens", schema.SCREEN_HITS, ("screen", "rank"), Layout.SESSION),
        Dataset("screen_outcomes", schema.SCREEN_OUTCOMES, ("kind", "name", "symbol"), Layout.SESSION),
        Dataset("rating_ic", schema.RATING_IC, ("rating",), Layout.SESSION),
        Dataset("ticker_listings", schema.TICKER_LISTINGS, ("symbol",), Layout.SESSION),
        Dataset("ticker_details", schema.TICKER_DETAILS, ("symbol",), Layout.SESSION),
    )
}


def dataset_named(name: str) -> Dataset:
    """The dataset called `name`; an unknown name raises `ConfigError` listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


# -------------------------------------------------------------------- small-file helpers


def write_bytes_atomic(path: AnyPath | str, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old content or all of the new, never a part.

    `path` may be local (temp file + rename) or in an object store (a `StoragePath` or a URI: one PUT).
    """
    if isinstance(path, str) and root_uri(path) is not None:
        path = open_storage(path).root  # a URI given as text; a `Path` always means a local file
    if isinstance(path, StoragePath):
        path.storage.write_bytes(path, data)
    else:
        with atomic_path(Path(path)) as temp:
            temp.write_bytes(data)


def write_json_atomic(path: AnyPath | str, obj: Any) -> None:
    """Write `obj` as JSON atomically; sorted keys and fixed indentation make equal objects equal bytes."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


class Warehouse:
    """Atomic reads and writes of the warehouse under `root`.

    `root` is a local directory (kept as an absolute `Path`, so a later chdir cannot move the warehouse and
    DuckDB views get absolute globs) or an object-store URI, which becomes a `StoragePath` (`str()` is the
    URI; pass a URI as text, since `pathlib.Path` would collapse its '//'). Paths this class returns are of
    the same kind.

    Stateless apart from the root, so any number of instances in any number of processes may share one root.
    Nothing is created on construction, and nothing is contacted: the root appears with the first write.
    """

    def __init__(self, root: Path | str | StoragePath) -> None:
        self.storage: LocalStorage | ObjectStorage = open_storage(root)
        self.root: AnyPath = self.storage.root

    @property
    def uri(self) -> str:
        """The root as text: an absolute local path or the object-store URI."""
        return self.storage.uri

    @property
    def is_local(self) -> bool:
        return self.storage.local

    @classmethod
    def from_settings(cls, settings: Settings) -> Warehouse:
        return cls(settings.warehouse)

    def __repr__(self) -> str:
        return f"Warehouse({str(self.root)!r})"

    @property
    def catalog_path(self) -> AnyPath:
        return self.root / CATALOG_NAME

    # ---------------------------------------------------------------- writes

    def write_partition(self, dataset: str, session: dt.date, frame: pl.DataFrame) -> AnyPath:
        """Replace the whole `session` partition of a per-session dataset with `frame`, atomically.

        `frame` is conformed to the dataset schema (missing columns raise, extra ones are dropped); every
        row's `date` must be `session`.
        """
        spec = dataset_named(dataset)
        if spec.layout is not Layout.SESSION:
            raise ConfigError(f"{spec.name} is written with {_OTHER_WRITERS[spec.layout]}, not write_partition")
        prepared = _prepared(spec, frame, date=_checked_session(session))
        target = self._partition_dir(spec, session) / PARTITION_FILE
        self._write_parquet(prepared, target)
        return target

    def begin_results(self, session: dt.date) -> None:
        """Start (re-)writing the results of `session`: remove the batches of any previous run.

        Why up front rather than at the end: result rows carry no run id, so a partition mixing new batches
        with stale ones from a previous run would be indistinguishable from a real result (and could list a
        symbol twice). Removing first means a reader sees, at any instant, a prefix of exactly one run: the
        old batches (deleted highest first), then none, then the new run's batches as they land. The price:
        while a re-run is under way the previous complete result is gone, and a re-run that dies leaves a
        consistent prefix until the next run replaces it.
        """
        directory = self._partition_dir(DATASETS["results"], _checked_session(session))
        self.storage.prepare_directory(directory)
        for stale in reversed(self._visible_parquet_files(directory)):
            self.storage.delete(stale)

    def write_result_batch(self, session: dt.date, batch_no: int, frame: pl.DataFrame) -> AnyPath:
        """Write result batch `batch_no` of `session` as its own file, atomically.

        One file per batch lets the API notice and stream each batch as soon as it lands. Every row's `date`
        must be `session` and its `batch` must be `batch_no`.
        """
        results = DATASETS["results"]
        prepared = _prepared(
            results, frame, date=_checked_session(session), batch=_checked_int("batch_no", batch_no, MAX_BATCH_NO)
        )
        target = self._batch_path(session, batch_no)
        self._write_parquet(prepared, target)
        return target

    def finish_results(self, session: dt.date, batches_written: int) -> list[AnyPath]:
        """Close a results run that wrote batches `0 .. batches_written-1`; return their paths in order.

        Removes every other data file in the partition (leftovers of an earlier, longer run when
        `begin_results` was skipped), so a finished run leaves exactly its own batches. A batch the run
        claims but that is missing raises `WarehouseError`.
        """
        directory = self._partition_dir(DATASETS["results"], _checked_session(session))
        batch_count = _checked_int("batches_written", batches_written, MAX_BATCH_NO + 1)
        expected = [self._batch_path(session, batch_no) for batch_no in range(batch_count)]
        keep = set(expected)
        for leftover in reversed(self._visible_parquet_files(directory)):
            if leftover not in keep:
                self.storage.delete(leftover)
        missing = [path.name for path in expected if not self.storage.is_file(path)]
        if missing:
            raise WarehouseError(f"results {session}: run claims {batches_written} batches, missing {missing}")
        return expected

    def compact_results(self, session: dt.date) -> AnyPath | None:
        """Merge a finished session's batch files into one file (`PARTITION_FILE`, rows in seq order, each
        keeping its `batch`); returns it, or None when the partition has no data file.

        Why: a batch file per batch is what lets streams follow a session while it is scanned, but a year
        of sessions is then thousands of small files, and every history read opens each one. Once the
        session is finished its batches are read as one file. Readers see a whole partition throughout:
        where the compacted file exists they read it alone (`_readable`), so its batches are deleted only
        after it is complete. Batches found beside a compacted file (a compaction that died before deleting
        them) are merged into it by seq, never dropped unread. When another writer changes the partition
        while this one reads it (a concurrent run of the session), this compaction gives way and returns
        None: that writer's own compaction follows.
        """
        results = DATASETS["results"]
        directory = self._partition_dir(results, _checked_session(session))
        files = self._visible_parquet_files(directory)
        compacted = directory / PARTITION_FILE
        batches = [file for file in files if file.name != PARTITION_FILE]
        if not batches:
            return compacted if files else None
        try:
            rows = self._lazy_frame(results, files, None, None).collect()
        except (FileNotFoundError, CorruptFileError, pl.exceptions.ComputeError, pa.ArrowException):
            _log.info("results %s changed while being compacted; left to the writer that changed it", session)
            return None
        # A seq held twice (a batch beside the compacted file that already has it) is the same row twice.
        self._write_parquet(rows.unique("seq", keep="first", maintain_order=True).sort("seq"), compacted)
        for batch in reversed(batches):
            self.storage.delete(batch)
        return compacted

    def append_scan_run(self, frame: pl.DataFrame) -> AnyPath:
        """Write the row(s) of one scan to `scan_runs/<scan_id>.parquet`, atomically (re-writing replaces)."""
        scan_runs = DATASETS["scan_runs"]
        prepared = _prepared(scan_runs, frame)
        scan_ids = prepared["scan_id"].unique().to_list()
        if len(scan_ids) != 1 or scan_ids[0] is None:
            raise ConfigError(f"scan_runs: a file holds exactly one scan, got scan_id values {scan_ids}")
        scan_id = scan_ids[0]
        if not _SCAN_ID.match(scan_id):
            raise ConfigError(f"scan_runs: scan_id {scan_id!r} is not usable as a file name")
        target = self.root / scan_runs.name / f"{scan_id}.parquet"
        self._write_parquet(prepared, target)
        return target

    # ---------------------------------------------------------------- reads

    def sessions(self, dataset: str) -> list[dt.date]:
        """Sessions that have at least one data file, oldest first."""
        partitioned = self._partitioned_dataset(dataset)
        return [day for day, files in self._partitions(partitioned, None, None) if files]

    def has_partition(self, dataset: str, session: dt.date) -> bool:
        return bool(self.partition_files(dataset, session))

    def partition_files(self, dataset: str, session: dt.date) -> list[AnyPath]:
        """The visible data files of one partition in name order (batch order for results)."""
        partitioned = self._partitioned_dataset(dataset)
        directory = self._partition_dir(partitioned, _checked_session(session))
        return _readable(partitioned, self._visible_parquet_files(directory))

    def scan(self, dataset: str, start: dt.date | None = None, end: dt.date | None = None) -> pl.LazyFrame:
        """Lazy read of the sessions in the closed range [start, end] (open where None), in schema dtypes.

        Only the partition directories in range are opened. Their footers are checked now, so a truncated or
        garbage file raises `CorruptFileError` naming it; damage inside a valid footer only shows when the
        frame is collected — `read` maps that to `CorruptFileError` too. `scan_runs`, which is not
        partitioned, is filtered on its `date` column instead.
        """
        spec = dataset_named(dataset)
        return self._lazy_frame(spec, self._files_in_range(spec, start, end), start, end)

    def read(self, dataset: str, start: dt.date | None = None, end: dt.date | None = None) -> pl.DataFrame:
        """`scan(...)` collected; any undecodable file raises `CorruptFileError` naming it."""
        spec = dataset_named(dataset)
        files = self._files_in_range(spec, start, end)
        try:
            return self._lazy_frame(spec, files, start, end).collect()
        except (pl.exceptions.ComputeError, pa.ArrowException, OSError):
            # Decode errors do not say which file failed; find it so the message can.
            self._raise_for_first_undecodable(files)
            raise

    # ---------------------------------------------------------------- DuckDB

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per dataset, for readers (API, ad-hoc SQL).

        In-memory on purpose: DuckDB allows one read-write process or many read-only ones on a database file,
        never both, so readers must not open the catalog file for writing. Views re-expand their globs on
        every query, so new partitions (and a dataset's first file) show up without reconnecting.
        """
        connection = duckdb.connect(":memory:")
        self._configure(connection)
        self._create_views(connection)
        return connection

    def refresh_catalog(self) -> AnyPath:
        """(Re)build `technic.duckdb` with the same views, atomically, for `duckdb warehouse/technic.duckdb`.

        Built in a temp file and renamed over the old catalog, so a SQL user who has it open keeps the old
        one and nobody ever sees a half-built catalog. Views hold absolute paths (or URIs), so the file works
        from any working directory; rebuild it after moving the warehouse or adding a dataset.

        On an object store DuckDB cannot write the database file in place: it is built in a local temp
        directory and PUT as `<root>/technic.duckdb` in one call. SQL users `ATTACH '<uri>/technic.duckdb'
        (READ_ONLY)` over httpfs, or download it; its views read the bucket, so they need the same DuckDB
        credentials `connect()` needs.
        """
        storage = self.storage
        if isinstance(storage, LocalStorage):
            with storage.writer(self.catalog_path) as temp:
                self._build_catalog(temp)
            return self.catalog_path
        with tempfile.TemporaryDirectory(prefix="technic-catalog-") as directory:
            local = Path(directory) / CATALOG_NAME
            self._build_catalog(local)
            storage.write_bytes(self.catalog_path, local.read_bytes())
        return self.catalog_path

    def _build_catalog(self, path: Path) -> None:
        connection = duckdb.connect(str(path))
        try:
            self._configure(connection)
            self._create_views(connection)
        finally:
            connection.close()

    def _configure(self, connection: duckdb.DuckDBPyConnection) -> None:
        """Let `connection` read the root: nothing for a local one; httpfs or the fsspec filesystem otherwise.

        Views bind their globs when created, so this must run before `_create_views`.
        """
        storage = self.storage
        if isinstance(storage, LocalStorage):
            return
        if not storage.native:
            # The filesystem object the warehouse writes with, credentials and all; DuckDB routes every path
            # with its protocol (e.g. memory://, az://) through it.
            connection.register_filesystem(storage.fsspec_filesystem)
            return
        if storage.scheme == "s3" and s3_endpoint() is not None:
            # An S3-compatible store at its own endpoint (MinIO, Ceph, a test server): the credential-chain
            # secret below would send DuckDB to AWS instead. DuckDB reads through the very pyarrow filesystem
            # the warehouse writes with, endpoint and credentials included; no httpfs extension needed.
            from fsspec.implementations.arrow import ArrowFSWrapper

            connection.register_filesystem(ArrowFSWrapper(storage.filesystem))
            return
        # s3:// and gs:// (pyarrow-native on the write side): DuckDB's own httpfs reads the same URIs.
        try:
            try:
                connection.execute("LOAD httpfs")
            except duckdb.Error:
                connection.execute("INSTALL httpfs")
                connection.execute("LOAD httpfs")
        except duckdb.Error as exc:
            raise WarehouseError(
                f"DuckDB needs its httpfs extension to read {storage.uri}: install it where extensions can be "
                f"downloaded (`INSTALL httpfs`; the deploy image does) — {exc}"
            ) from exc
        self._ensure_duckdb_secret(connection, storage)

    @staticmethod
    def _ensure_duckdb_secret(connection: duckdb.DuckDBPyConnection, storage: ObjectStorage) -> None:
        """Give DuckDB credentials for the root unless one of its secrets (e.g. a persistent one) covers it.

        S3: a temporary secret from the AWS credential chain (environment, profile, instance or workload
        identity) — the chain pyarrow's writer uses too; needs DuckDB's `aws` extension. GCS has no such
        chain in DuckDB (HMAC keys only), so a gs:// root needs a persistent `TYPE gcs` secret. Missing
        credentials are logged, not raised: a public bucket needs none, and a private one fails its first
        query with the store's own 403.
        """
        secret_type = "s3" if storage.scheme == "s3" else "gcs"
        covered = connection.execute("SELECT count(*) FROM which_secret(?, ?)", [storage.uri, secret_type]).fetchone()
        if covered is not None and covered[0]:  # count(*) always gives its one row
            return
        if secret_type == "gcs":
            _log.warning("DuckDB has no gcs secret for %s; create a persistent one (deploy/README.md)", storage.uri)
            return
        try:
            scope = _sql_string(storage.uri)
            connection.execute(f"CREATE SECRET technic_warehouse (TYPE s3, PROVIDER credential_chain, SCOPE {scope})")
        except duckdb.Error as exc:
            _log.warning("DuckDB found no S3 credentials for %s through the credential chain: %s", storage.uri, exc)

    def _create_views(self, connection: duckdb.DuckDBPyConnection) -> None:
        """One view per dataset: a typed zero-row SELECT, UNION ALL BY NAME the Parquet glob.

        The typed zero-row SELECT gives the view its columns and types even when no file exists yet
        (`allow_empty` alone yields one BOOLEAN column named `empty`), and the outer projection drops that
        column and fixes the schema's column order. `union_by_name` fills columns that older files lack with nulls, matching the
        polars reads. Hive partitioning lets `WHERE date = ...` skip files by path.
        """
        for each in DATASETS.values():
            sql_types = connection.from_arrow(schema.empty(each.schema).to_arrow()).types
            typed_nulls = ", ".join(
                f"CAST(NULL AS {sql_type}) AS {_sql_identifier(column)}"
                for column, sql_type in zip(each.schema, sql_types, strict=True)
            )
            columns = ", ".join(_sql_identifier(column) for column in each.schema)
            if each.partitioned:
                hive = "hive_partitioning = true, hive_types = {'date': 'DATE'}"
            else:
                hive = "hive_partitioning = false"
            glob = _sql_string(f"{self.uri}/{each.file_glob}")
            files = f"read_parquet({glob}, {hive}, union_by_name = true, allow_empty = true"
            if each.layout is Layout.BATCHED:
                # `_readable` in SQL: a partition's batch files only where it has no compacted file. Filtered
                # after the union, where `filename` and `date` exist even when no file does.
                compacted = _sql_string(f"{self.uri}/{each.name}/date=*/{PARTITION_FILE}")
                pattern = _sql_string(f"date=([0-9-]+)/{re.escape(PARTITION_FILE)}$")
                rows = (
                    f"SELECT {typed_nulls}, CAST(NULL AS VARCHAR) AS filename WHERE false UNION ALL BY NAME "
                    f"SELECT * FROM {files}, filename = true)) "
                    f"WHERE filename LIKE {_sql_string('%/' + PARTITION_FILE)} "
                    f"OR date NOT IN (SELECT CAST(regexp_extract(file, {pattern}, 1) AS DATE) FROM glob({compacted})"
                )
            else:
                rows = f"SELECT {typed_nulls} WHERE false UNION ALL BY NAME SELECT * FROM {files})"
            connection.execute(f"CREATE OR REPLACE VIEW {_sql_identifier(each.name)} AS SELECT {columns} FROM ({rows})")

    # ---------------------------------------------------------------- small files (models, manifests)

    write_bytes_atomic = staticmethod(write_bytes_atomic)
    write_json_atomic = staticmethod(write_json_atomic)

    # ---------------------------------------------------------------- paths

    def _partitioned_dataset(self, dataset: str) -> Dataset:
        spec = dataset_named(dataset)
        if not spec.partitioned:
            raise ConfigError(f"{spec.name} is not partitioned by session ({spec.layout.value})")
        return spec

    def _partition_dir(self, partitioned: Dataset, session: dt.date) -> AnyPath:
        return self.root / partitioned.name / f"date={session.isoformat()}"

    def _batch_path(self, session: dt.date, batch_no: int) -> AnyPath:
        return self._partition_dir(DATASETS["results"], session) / f"batch={batch_no:05d}.parquet"

    def _partitions(
        self, partitioned: Dataset, start: dt.date | None, end: dt.date | None
    ) -> list[tuple[dt.date, list[AnyPath]]]:
        """(session, visible data files) of every partition directory in [start, end], oldest first.

        Only directories in range are listed on a local root; an object store answers with one recursive
        listing of the dataset's prefix instead of one request per partition.
        """
        directory = self.root / partitioned.name
        days: dict[str, dt.date] = {}
        for name in self.storage.subdirectories(directory):
            match = _PARTITION_DIR.match(name)
            if match:
                day = dt.date.fromisoformat(match.group(1))
                if (start is None or day >= start) and (end is None or day <= end):
                    days[name] = day
        files = self.storage.files_below(directory, sorted(days))
        return sorted(
            (
                (days[name], _readable(partitioned, [file for file in found if file.name.endswith(".parquet")]))
                for name, found in files.items()
            ),
            key=lambda item: item[0],
        )

    def _files_in_range(self, spec: Dataset, start: dt.date | None, end: dt.date | None) -> list[AnyPath]:
        if not spec.partitioned:
            return self._visible_parquet_files(self.root / spec.name)
        return [file for _, files in self._partitions(spec, start, end) for file in files]

    def _visible_parquet_files(self, directory: AnyPath) -> list[AnyPath]:
        """Data files readers may see, in name order: `*.parquet`, never hidden (temp) files."""
        return [file for file in self.storage.visible_files(directory) if file.name.endswith(".parquet")]

    # ---------------------------------------------------------------- file I/O through the storage

    def _write_parquet(self, frame: pl.DataFrame, target: AnyPath) -> None:
        """Write `frame` as `target` atomically: temp file + rename locally, one PUT on an object store."""
        with self.storage.writer(target) as sink:
            frame.write_parquet(
                sink, compression=PARQUET_COMPRESSION, compression_level=PARQUET_COMPRESSION_LEVEL, statistics=True
            )

    def _arrow_source(self, file: AnyPath) -> tuple[str, pafs.FileSystem | None]:
        """(path, filesystem) for pyarrow: the local path and no filesystem, or the path in the store's."""
        if isinstance(self.storage, ObjectStorage):
            return self.storage.fs_path(file), self.storage.filesystem
        return str(file), None

    def _lazy_frame(
        self, spec: Dataset, files: list[AnyPath], start: dt.date | None, end: dt.date | None
    ) -> pl.LazyFrame:
        if not files:
            return schema.empty(spec.schema).lazy()
        for file in files:
            self._check_footer(file)
        if isinstance(self.storage, LocalStorage):
            frame = pl.scan_parquet(
                [str(file) for file in files],
                schema=spec.schema,
                hive_partitioning=False,
                glob=False,
                missing_columns="insert",
                extra_columns="ignore",
            )
        else:
            # Read through the same pyarrow filesystem the writer used: the dataset's explicit schema inserts
            # missing columns as nulls and ignores extra ones, like the local scan; projections and filters
            # are pushed down into pyarrow, which fetches only the byte ranges it needs.
            dataset = pads.dataset(
                [self.storage.fs_path(file) for file in files],
                schema=schema.empty(spec.schema).to_arrow().schema,
                format="parquet",
                filesystem=self.storage.filesystem,
            )
            frame = pl.scan_pyarrow_dataset(dataset).cast(pl.Schema(spec.schema))
        if not spec.partitioned:
            if start is not None:
                frame = frame.filter(pl.col("date") >= start)
            if end is not None:
                frame = frame.filter(pl.col("date") <= end)
        return frame

    def _check_footer(self, file: AnyPath) -> None:
        """Read only the Parquet footer: cheap, and catches truncated and non-Parquet files by name."""
        path, filesystem = self._arrow_source(file)
        try:
            pq.read_metadata(path, filesystem=filesystem)
        except pa.ArrowInvalid as exc:
            raise _corrupt(file, exc) from exc

    def _raise_for_first_undecodable(self, files: list[AnyPath]) -> None:
        """Decode each file fully and raise `CorruptFileError` for the first that fails; return if all decode."""
        for file in files:
            path, filesystem = self._arrow_source(file)
            try:
                pq.read_table(path, filesystem=filesystem)
            except FileNotFoundError:
                continue  # removed by a concurrent writer since it was listed: gone, not corrupt
            except (pa.ArrowException, OSError) as exc:
                raise _corrupt(file, exc) from exc


# -------------------------------------------------------------------- internals


def readable_names(spec: Dataset, names: Sequence[str]) -> list[str]:
    """The data files of one partition, by name, that readers read: a compacted results partition's one file
    (batches beside it are leftovers of its compaction), else all of them."""
    if spec.layout is Layout.BATCHED and PARTITION_FILE in names:
        return [PARTITION_FILE]
    return list(names)


def _readable(spec: Dataset, files: list[AnyPath]) -> list[AnyPath]:
    wanted = set(readable_names(spec, [file.name for file in files]))
    return [file for file in files if file.name in wanted]


def _checked_session(session: dt.date) -> dt.date:
    """`session` itself; a datetime or non-date raises, since it would name a wrong partition directory."""
    if isinstance(session, dt.datetime) or not isinstance(session, dt.date):
        raise ConfigError(f"session must be a datetime.date, got {session!r}")
    return session


def _checked_int(name: str, value: int, highest: int) -> int:
    """`value` when it is an int in [0, highest]; anything else (bools included) raises naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= highest:
        raise ConfigError(f"{name} must be an integer in [0, {highest}], got {value!r}")
    return value


def _prepared(spec: Dataset, frame: pl.DataFrame, **constant: object) -> pl.DataFrame:
    """`frame` conformed to the dataset schema and sorted; each `constant` column must hold its value.

    The constants are the values the file's path encodes (`date`, `batch`): a row disagreeing with its path
    would read differently through DuckDB (which takes the path's value) than through polars.
    """
    conformed = schema.conform(frame, spec.schema, spec.name)
    for column, value in constant.items():
        disagreeing = conformed.filter(pl.col(column).ne_missing(value))
        if disagreeing.height:
            raise ConfigError(
                f"{spec.name}: {disagreeing.height} row(s) with {column} other than {value} "
                f"(first: {disagreeing[column][0]})"
            )
    return conformed.sort(list(spec.sort_key), maintain_order=True, nulls_last=True)


def _corrupt(file: AnyPath, cause: Exception) -> CorruptFileError:
    return CorruptFileError(f"corrupt Parquet file {file}: {cause}")


def _sql_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
