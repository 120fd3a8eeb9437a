"""The warehouse: Parquet partitions on disk plus DuckDB views over them.

Layout under the root (see `warehouse/README.md`)::

    bars/date=YYYY-MM-DD/part-00000.parquet        and the same for universe/, conditions/, rejections/
    results/date=YYYY-MM-DD/batch=NNNNN.parquet    scan results, one file per batch
    scan_runs/<scan_id>.parquet                    one file per scan
    models/<name>/<version>/...                    written with `write_bytes_atomic` / `write_json_atomic`
    technic.duckdb                                 catalog of views for SQL users

Guarantees, and why:

* A file appears whole or not at all. Every file is written to a hidden temp file in its final directory,
  fsynced and `os.replace`d over the target, so a reader (another process, DuckDB, the API) only ever opens
  a complete file — the old one or the new one. Temp names start with '.' and end in '.tmp', so no reader
  glob (`*.parquet`) matches them; a writer killed with SIGKILL leaves one behind, removed by the next write
  to that directory once its writer process is gone.
* Re-materializing gives byte-identical files for identical input: rows are sorted by the dataset's natural
  key (stable, so ties keep input order), compression is fixed and polars writes no timestamps. Dagster
  re-runs and backfills therefore never produce spurious diffs. (Polars records its version in the footer's
  `created_by`, so a polars upgrade does change bytes, never data.)
* `date` lives both in the partition path (so DuckDB prunes files by `WHERE date = ...`) and in the file (so
  a file is self-describing and polars reads need no hive parsing). Writers reject rows whose `date` is not
  the partition's session, so the two can never disagree — DuckDB's hive value and polars' file value
  always match.
* Readers never hold a read-write DuckDB handle: `connect()` is an in-memory database of views over the
  Parquet globs, and `refresh_catalog()` builds `technic.duckdb` in a temp file and renames it into place.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from technic_core import schema
from technic_core.config import Settings
from technic_core.errors import ConfigError, CorruptFileError, WarehouseError

#: Fixed so identical frames give identical bytes whatever polars' defaults become.
PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 3

CATALOG_NAME = "technic.duckdb"
PARTITION_FILE = "part-00000.parquet"
#: Five digits in the batch file name keep lexical order equal to batch order.
MAX_BATCH_NO = 99_999

_PARTITION_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
#: Matched as a prefix: DuckDB may add a suffix (e.g. '.wal') to a temp catalog file.
_TEMP_FILE = re.compile(r"^\..+\.(?P<pid>\d+)\.[0-9a-f]{16}\.tmp")
#: A scan id becomes a file name: no path separators, and no leading '.' that would hide it from readers.
_SCAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Layout(enum.Enum):
    """How a dataset's rows are split into files; decides which writer may write it."""

    SESSION = "one file per session: <name>/date=YYYY-MM-DD/part-00000.parquet"
    BATCHED = "one file per result batch: <name>/date=YYYY-MM-DD/batch=NNNNN.parquet"
    PER_SCAN = "one file per scan: <name>/<scan_id>.parquet"


#: Where to send a caller who hands `write_partition` a dataset that is not written one file per session.
_OTHER_WRITERS = {
    Layout.BATCHED: "begin_results, write_result_batch and finish_results",
    Layout.PER_SCAN: "append_scan_run",
}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A named warehouse dataset: its schema, the key its rows are sorted by, and its file layout."""

    name: str
    schema: dict[str, pl.DataType]
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


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old content or all of the new, never a part."""
    with _atomic_path(Path(path)) as temp:
        temp.write_bytes(data)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write `obj` as JSON atomically; sorted keys and fixed indentation make equal objects equal bytes."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


class Warehouse:
    """Atomic reads and writes of the warehouse under `root`.

    Stateless apart from the root, so any number of instances in any number of processes may share one root.
    Nothing is created on construction: the root appears with the first write.
    """

    def __init__(self, root: Path | str) -> None:
        # Absolute now, so a later chdir cannot move the warehouse and DuckDB views get absolute globs.
        self.root = Path(root).absolute()

    @classmethod
    def from_settings(cls, settings: Settings) -> Warehouse:
        return cls(settings.warehouse)

    def __repr__(self) -> str:
        return f"Warehouse({str(self.root)!r})"

    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG_NAME

    # ---------------------------------------------------------------- writes

    def write_partition(self, dataset: str, session: dt.date, frame: pl.DataFrame) -> Path:
        """Replace the whole `session` partition of a per-session dataset with `frame`, atomically.

        `frame` is conformed to the dataset schema (missing columns raise, extra ones are dropped); every
        row's `date` must be `session`.
        """
        spec = dataset_named(dataset)
        if spec.layout is not Layout.SESSION:
            raise ConfigError(f"{spec.name} is written with {_OTHER_WRITERS[spec.layout]}, not write_partition")
        prepared = _prepared(spec, frame, date=_checked_session(session))
        target = self._partition_dir(spec, session) / PARTITION_FILE
        _write_parquet_atomic(prepared, target)
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
        _remove_stale_temp_files(directory)
        for stale in reversed(_visible_parquet_files(directory)):
            stale.unlink(missing_ok=True)

    def write_result_batch(self, session: dt.date, batch_no: int, frame: pl.DataFrame) -> Path:
        """Write result batch `batch_no` of `session` as its own file, atomically.

        One file per batch lets the API notice and stream each batch as soon as it lands. Every row's `date`
        must be `session` and its `batch` must be `batch_no`.
        """
        results = DATASETS["results"]
        prepared = _prepared(
            results, frame, date=_checked_session(session), batch=_checked_int("batch_no", batch_no, MAX_BATCH_NO)
        )
        target = self._batch_path(session, batch_no)
        _write_parquet_atomic(prepared, target)
        return target

    def finish_results(self, session: dt.date, batches_written: int) -> list[Path]:
        """Close a results run that wrote batches `0 .. batches_written-1`; return their paths in order.

        Removes every other data file in the partition (leftovers of an earlier, longer run when
        `begin_results` was skipped), so a finished run leaves exactly its own batches. A batch the run
        claims but that is missing raises `WarehouseError`.
        """
        directory = self._partition_dir(DATASETS["results"], _checked_session(session))
        batch_count = _checked_int("batches_written", batches_written, MAX_BATCH_NO + 1)
        expected = [self._batch_path(session, batch_no) for batch_no in range(batch_count)]
        keep = set(expected)
        for leftover in reversed(_visible_parquet_files(directory)):
            if leftover not in keep:
                leftover.unlink(missing_ok=True)
        missing = [path.name for path in expected if not path.is_file()]
        if missing:
            raise WarehouseError(f"results {session}: run claims {batches_written} batches, missing {missing}")
        return expected

    def append_scan_run(self, frame: pl.DataFrame) -> Path:
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
        _write_parquet_atomic(prepared, target)
        return target

    # ---------------------------------------------------------------- reads

    def sessions(self, dataset: str) -> list[dt.date]:
        """Sessions that have at least one data file, oldest first."""
        partitioned = self._partitioned_dataset(dataset)
        return [day for day, directory in self._partition_dirs(partitioned) if _visible_parquet_files(directory)]

    def has_partition(self, dataset: str, session: dt.date) -> bool:
        return bool(self.partition_files(dataset, session))

    def partition_files(self, dataset: str, session: dt.date) -> list[Path]:
        """The visible data files of one partition in name order (batch order for results)."""
        partitioned = self._partitioned_dataset(dataset)
        return _visible_parquet_files(self._partition_dir(partitioned, _checked_session(session)))

    def scan(self, dataset: str, start: dt.date | None = None, end: dt.date | None = None) -> pl.LazyFrame:
        """Lazy read of the sessions in the closed range [start, end] (open where None), in schema dtypes.

        Only the partition directories in range are opened. Their footers are checked now, so a truncated or
        garbage file raises `CorruptFileError` naming it; damage inside a valid footer only shows when the
        frame is collected — `read` maps that to `CorruptFileError` too. `scan_runs`, which is not
        partitioned, is filtered on its `date` column instead.
        """
        spec = dataset_named(dataset)
        return _lazy_frame(spec, self._files_in_range(spec, start, end), start, end)

    def read(self, dataset: str, start: dt.date | None = None, end: dt.date | None = None) -> pl.DataFrame:
        """`scan(...)` collected; any undecodable file raises `CorruptFileError` naming it."""
        spec = dataset_named(dataset)
        files = self._files_in_range(spec, start, end)
        try:
            return _lazy_frame(spec, files, start, end).collect()
        except pl.exceptions.ComputeError:
            # Polars' decode errors do not say which file failed; find it so the message can.
            _raise_for_first_undecodable(files)
            raise

    # ---------------------------------------------------------------- DuckDB

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per dataset, for readers (API, ad-hoc SQL).

        In-memory on purpose: DuckDB allows one read-write process or many read-only ones on a database file,
        never both, so readers must not open the catalog file for writing. Views re-expand their globs on
        every query, so new partitions (and a dataset's first file) show up without reconnecting.
        """
        connection = duckdb.connect(":memory:")
        self._create_views(connection)
        return connection

    def refresh_catalog(self) -> Path:
        """(Re)build `technic.duckdb` with the same views, atomically, for `duckdb warehouse/technic.duckdb`.

        Built in a temp file and renamed over the old catalog, so a SQL user who has it open keeps the old
        one and nobody ever sees a half-built catalog. Views hold absolute paths, so the file works from any
        working directory; rebuild it after moving the warehouse or adding a dataset.
        """
        with _atomic_path(self.catalog_path) as temp:
            connection = duckdb.connect(str(temp))
            try:
                self._create_views(connection)
            finally:
                connection.close()
        return self.catalog_path

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
            glob = _sql_string(str(self.root / each.file_glob))
            connection.execute(
                f"CREATE OR REPLACE VIEW {_sql_identifier(each.name)} AS SELECT {columns} FROM ("
                f"SELECT {typed_nulls} WHERE false UNION ALL BY NAME "
                f"SELECT * FROM read_parquet({glob}, {hive}, union_by_name = true, allow_empty = true))"
            )

    # ---------------------------------------------------------------- small files (models, manifests)

    write_bytes_atomic = staticmethod(write_bytes_atomic)
    write_json_atomic = staticmethod(write_json_atomic)

    # ---------------------------------------------------------------- paths

    def _partitioned_dataset(self, dataset: str) -> Dataset:
        spec = dataset_named(dataset)
        if not spec.partitioned:
            raise ConfigError(f"{spec.name} is not partitioned by session ({spec.layout.value})")
        return spec

    def _partition_dir(self, partitioned: Dataset, session: dt.date) -> Path:
        return self.root / partitioned.name / f"date={session.isoformat()}"

    def _batch_path(self, session: dt.date, batch_no: int) -> Path:
        return self._partition_dir(DATASETS["results"], session) / f"batch={batch_no:05d}.parquet"

    def _partition_dirs(self, partitioned: Dataset) -> list[tuple[dt.date, Path]]:
        """(session, directory) of every partition directory, oldest first, from one directory listing."""
        try:
            entries = list(os.scandir(self.root / partitioned.name))
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            match = _PARTITION_DIR.match(entry.name)
            if match and entry.is_dir():
                found.append((dt.date.fromisoformat(match.group(1)), Path(entry.path)))
        return sorted(found)

    def _files_in_range(self, spec: Dataset, start: dt.date | None, end: dt.date | None) -> list[Path]:
        if not spec.partitioned:
            return _visible_parquet_files(self.root / spec.name)
        return [
            file
            for day, directory in self._partition_dirs(spec)
            if (start is None or day >= start) and (end is None or day <= end)
            for file in _visible_parquet_files(directory)
        ]


# -------------------------------------------------------------------- internals


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


def _write_parquet_atomic(frame: pl.DataFrame, target: Path) -> None:
    with _atomic_path(target) as temp:
        frame.write_parquet(
            temp, compression=PARQUET_COMPRESSION, compression_level=PARQUET_COMPRESSION_LEVEL, statistics=True
        )


@contextmanager
def _atomic_path(target: Path) -> Iterator[Path]:
    """Yield a hidden temp path beside `target`; when the body succeeds, fsync it and rename it over `target`.

    Same directory, so the rename is atomic on one filesystem; the directory is fsynced after the rename so
    the new name survives a power cut. On an exception the temp file is removed; a SIGKILL leaves it for
    `_remove_stale_temp_files`. The pid in the name tells a dead writer's leftover from a live one's.
    """
    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_files(directory)
    temp = directory / f".{target.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
    try:
        yield temp
        _fsync(temp)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync(directory)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_stale_temp_files(directory: Path) -> None:
    """Delete temp files in `directory` whose writer process no longer exists.

    A live writer's temp file (another process, or another thread of this one) is left alone, so concurrent
    writers to one directory, such as two scans appending to scan_runs/, never break each other. Assumes
    writers share one pid namespace, i.e. one machine.
    """
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        match = _TEMP_FILE.match(entry.name)
        if match and not _process_alive(int(match["pid"])):
            Path(entry.path).unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _visible_parquet_files(directory: Path) -> list[Path]:
    """Data files readers may see, in name order: `*.parquet`, never hidden (temp) files."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [directory / name for name in sorted(names) if name.endswith(".parquet") and not name.startswith(".")]


def _lazy_frame(spec: Dataset, files: list[Path], start: dt.date | None, end: dt.date | None) -> pl.LazyFrame:
    if not files:
        return schema.empty(spec.schema).lazy()
    for file in files:
        _check_footer(file)
    frame = pl.scan_parquet(
        [str(file) for file in files],
        schema=spec.schema,
        hive_partitioning=False,
        glob=False,
        missing_columns="insert",
        extra_columns="ignore",
    )
    if not spec.partitioned:
        if start is not None:
            frame = frame.filter(pl.col("date") >= start)
        if end is not None:
            frame = frame.filter(pl.col("date") <= end)
    return frame


def _check_footer(file: Path) -> None:
    """Read only the Parquet footer: cheap, and catches truncated and non-Parquet files by name."""
    try:
        pq.read_metadata(file)
    except pa.ArrowInvalid as exc:
        raise _corrupt(file, exc) from exc


def _raise_for_first_undecodable(files: list[Path]) -> None:
    """Decode each file fully and raise `CorruptFileError` for the first that fails; return if all decode."""
    for file in files:
        try:
            pq.read_table(file)
        except FileNotFoundError:
            continue  # removed by a concurrent writer since it was listed: gone, not corrupt
        except (pa.ArrowException, OSError) as exc:
            raise _corrupt(file, exc) from exc


def _corrupt(file: Path, cause: Exception) -> CorruptFileError:
    return CorruptFileError(f"corrupt Parquet file {file}: {cause}")


def _sql_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
