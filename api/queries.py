"""Read-only warehouse queries of the API: result pages (filters, screens, columns, paging), screen hits, and
the model registry.

Result pages are answered from each session's rows held in memory (`SessionFrames`): read once, kept while
the partition's files are unchanged, re-read one new batch file at a time while a scan is writing. A screen
(`?where=`, a saved screen) is compiled by `technic_core.screens` into a polars expression whose literals
are bound values, so nothing a client sends is ever run as SQL or Python; `order_by` and `columns` are
checked against closed lists. One in-memory DuckDB database (`Warehouse.connect()`, never the catalog file,
so a Dagster write is never blocked) serves single rows; each query runs on its own cursor, DuckDB's
per-thread handle, because the endpoints run in a thread pool.
"""

from __future__ import annotations

import datetime as dt
import difflib
import io
import itertools
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from fastapi import Response
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import URL

from api.events import for_wire
from api.models import ModelInfo, ModelVersion
from technic_core import calendar, schema
from technic_core.errors import ConfigError, CorruptFileError
from technic_core.ml.registry import ModelRegistry
from technic_core.screens import SavedScreen, Screen, ScreenError, compile, with_previous
from technic_core.screens.evaluation import (
    BANDS,
    DEFAULT_SORT,
    SCREEN,
    hits_between,
    performance,
    result_columns,
)
from technic_core.storage import AnyPath
from technic_core.warehouse import DATASETS, Warehouse, readable_names

logger = logging.getLogger(__name__)

#: Rows of a JSON page unless `limit` says otherwise, and the most one page may hold.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000
#: Largest `offset`: far beyond a session's rows (a scan has one per symbol) or a year of a screen's hits.
MAX_OFFSET = 10_000_000
#: Sessions whose rows `SessionFrames` keeps (a session of 5,000 symbols is ~8 MB in memory).
CACHED_SESSIONS = 4
#: JSON answers of the results endpoints kept for identical requests over unchanged rows (`ResponseCache`).
RESPONSE_CACHE_ENTRIES = 512
RESPONSE_CACHE_BYTES = 64 * 2**20
#: Characters of a client's input echoed back in an error.
ECHOED_INPUT = 200

#: What a screen over stored results may read, by kind (`technic_core.screens.evaluation.result_columns`).
RESULT_KINDS = result_columns()


# ---------------------------------------------------------------------------------------------- request parsing


def problem(location: Sequence[str], message: str, value: object = None, **extra: object) -> dict[str, Any]:
    """One item of a 422's `detail`, in FastAPI's shape (`type`, `loc`, `msg`, `input`) plus `field` and `extra`."""
    shown = value[:ECHOED_INPUT] if isinstance(value, str) else value
    return {"type": "value_error", "loc": tuple(location), "msg": message, "input": shown, **extra}


def invalid(location: Sequence[str], message: str, value: object = None, **extra: object) -> RequestValidationError:
    return RequestValidationError([problem(location, message, value, field=".".join(location), **extra)])


def screen_problem(error: ScreenError, location: Sequence[str], text: str) -> RequestValidationError:
    """A screen the language refused, as a 422 naming the field, with the error's place and what was expected
    (`ScreenError.to_dict`: `error`, `message`, `position`, `line`, `column`, `expected`, `suggestions`)."""
    item = {**problem(location, str(error), text), **error.to_dict(), "type": "screen", "field": ".".join(location)}
    return RequestValidationError([item])


@lru_cache(maxsize=1024)
def _compiled(text: str) -> Screen:
    # Screens are immutable and compiling one parses it (a millisecond): many clients send the same text.
    return compile(text, RESULT_KINDS)


def where_screen(text: str | None, location: Sequence[str] = ("query", "where")) -> Screen | None:
    """The screen of a `where` parameter (None when absent or blank); a refusal is a 422 with its position."""
    if text is None or not text.strip():
        return None
    try:
        return _compiled(text)
    except ScreenError as error:
        raise screen_problem(error, location, text) from None


def saved_screen(saved: SavedScreen) -> Screen:
    """A saved screen compiled against the result columns (the library compiled it already at load)."""
    return _compiled(saved.expression)


def closest_columns(name: str, count: int = 3) -> list[str]:
    return difflib.get_close_matches(name, schema.RESULTS, n=count, cutoff=0.6)


def chosen_columns(text: str | None, location: Sequence[str] = ("query", "columns")) -> tuple[str, ...] | None:
    """The result columns a comma-separated `columns` parameter names, in its order (None: every column); an
    unknown name is a 422 naming it and the closest known names."""
    if text is None or not text.strip():
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise invalid(location, "names no column; leave it out for every column, or name some: symbol,close", text)
    unknown = [name for name in dict.fromkeys(names) if name not in schema.RESULTS]
    if unknown:
        suggestions = {name: closest_columns(name) for name in unknown[:10]}
        described = ", ".join(
            f"{name[:40]!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
            for name, close in suggestions.items()
        )
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise invalid(
            location,
            f"unknown column(s) {described}{more}; GET /columns lists the catalog columns",
            text,
            unknown=unknown[:10],
            suggestions=suggestions,
        )
    return tuple(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------------- sessions

#: A data file as caches know it: name, modification time (ns) and size.
Stamp = tuple[str, int, int]

_PARTITION_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


def partition_sessions(store: Warehouse, dataset: str) -> list[dt.date]:
    """Sessions with a partition directory of `dataset`, oldest first, from one listing of the dataset's
    directory (`Warehouse.sessions` also lists every partition's files, a year of results is thousands); a
    directory may still be empty."""
    names = store.storage.subdirectories(store.root / dataset)
    return sorted(dt.date.fromisoformat(match.group(1)) for name in names if (match := _PARTITION_DIR.match(name)))


def newest_session(store: Warehouse, dataset: str = "results") -> dt.date | None:
    """The newest session with at least one data file of `dataset`, or None."""
    if isinstance(store.root, Path):
        try:
            names = os.listdir(store.root / dataset)
        except FileNotFoundError:
            return None
    else:
        names = store.storage.subdirectories(store.root / dataset)
    # 'date=YYYY-MM-DD' sorts as its date does: only the newest directories are parsed and listed.
    for name in sorted((name for name in names if name.startswith("date=")), reverse=True):
        if not (match := _PARTITION_DIR.match(name)):
            continue
        day = dt.date.fromisoformat(match[1])
        if _has_data(store, dataset, day):
            return day
    return None


def _has_data(store: Warehouse, dataset: str, session: dt.date) -> bool:
    if not isinstance(store.root, Path):
        return store.has_partition(dataset, session)
    try:
        names = os.listdir(store.root / dataset / f"date={session.isoformat()}")
    except (FileNotFoundError, NotADirectoryError):
        return False
    return any(name.endswith(".parquet") and not name.startswith(".") for name in names)


def _partition_stamps(store: Warehouse, dataset: str, session: dt.date) -> tuple[list[AnyPath], tuple[Stamp, ...]]:
    """A partition's visible data files in name order and their (name, mtime, size): on a local warehouse from
    one directory scan (this runs on every results request), elsewhere through the storage layer."""
    if not isinstance(store.root, Path):
        files = store.partition_files(dataset, session)
        return files, tuple(_stamp(file) for file in files)
    directory = store.root / dataset / f"date={session.isoformat()}"
    try:
        with os.scandir(directory) as entries:
            found = sorted(
                (entry.name, entry.stat())
                for entry in entries
                if entry.name.endswith(".parquet") and not entry.name.startswith(".")
            )
    except (FileNotFoundError, NotADirectoryError):
        return [], ()
    readable = set(readable_names(DATASETS[dataset], [name for name, _ in found]))
    found = [(name, stat) for name, stat in found if name in readable]
    return [directory / name for name, _ in found], tuple((name, st.st_mtime_ns, st.st_size) for name, st in found)


# ---------------------------------------------------------------------------------------------- session rows


@dataclass
class Loaded:
    """A session's rows and the files they were read from: (name, mtime, size) each, and each file's rows;
    `generation` numbers the loads, so it names this exact content."""

    stamps: tuple[tuple[str, int, int], ...]
    files: dict[tuple[str, int, int], pl.DataFrame]
    frame: pl.DataFrame
    generation: int
    _wire: pl.DataFrame | None = None

    @property
    def wire(self) -> pl.DataFrame:
        """`frame` at wire precision (`api.events.for_wire`), rounded once per load for every page taken from it."""
        if self._wire is None:
            self._wire = for_wire(self.frame)  # two threads may both round it: the same frame either way
        return self._wire


class SessionFrames:
    """Every result row of a session as one DataFrame in the results schema, kept while its files are unchanged.

    Checking costs a listing of the partition directory and a stat per file. A batch file that appears (a scan
    still writing) is read alone and appended; a file that changed is read again. At most `capacity` sessions
    are kept, the least recently used dropped first. Thread-safe: concurrent readers of one session wait for
    one load.
    """

    def __init__(self, store: Warehouse, capacity: int = CACHED_SESSIONS) -> None:
        self.store = store
        self.capacity = capacity
        self._lock = threading.Lock()
        self._session_locks: dict[dt.date, threading.Lock] = {}
        self._loaded: OrderedDict[dt.date, Loaded] = OrderedDict()
        self._generations = itertools.count(1)

    def get(self, session: dt.date) -> pl.DataFrame:
        """The session's rows in seq order (an empty frame when the partition does not exist)."""
        return self.loaded(session).frame

    def loaded(self, session: dt.date) -> Loaded:
        """The session's rows with their generation, a number that changes whenever they do (never reused in
        this process), and their wire-precision copy."""
        with self._lock:
            lock = self._session_locks.setdefault(session, threading.Lock())
        with lock:
            for _ in range(3):  # a file replaced between listing and reading: list again
                try:
                    return self._current(session)
                except FileNotFoundError:
                    continue
            return self._current(session)

    def current_generation(self, session: dt.date) -> int | None:
        """The generation of the session's kept rows when its files are unchanged since they were read, else
        None; never reads a file (a listing and a stat per file on a local root)."""
        with self._lock:
            loaded = self._loaded.get(session)
        if loaded is None:
            return None
        return loaded.generation if _partition_stamps(self.store, "results", session)[1] == loaded.stamps else None

    def previous(self, session: dt.date) -> pl.DataFrame:
        """The rows of the NYSE session before `session` (what `prev()` reads), empty when it has none."""
        return self.get(calendar.previous_session(session))

    def _current(self, session: dt.date) -> Loaded:
        files, stamps = _partition_stamps(self.store, "results", session)
        with self._lock:
            loaded = self._loaded.get(session)
            if loaded is not None:
                self._loaded.move_to_end(session)
        if loaded is not None and loaded.stamps == stamps:
            return loaded
        known = loaded.files if loaded is not None else {}
        parts = {stamp: known[stamp] if stamp in known else _read_results(file) for stamp, file in zip(stamps, files)}
        frames = list(parts.values())
        frame = pl.concat(frames, rechunk=True) if frames else schema.empty(schema.RESULTS)
        with self._lock:
            loaded = Loaded(stamps, parts, frame, next(self._generations))
            self._loaded[session] = loaded
            self._loaded.move_to_end(session)
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
        return loaded


def _stamp(file: AnyPath) -> Stamp:
    stat = file.stat()
    return file.name, stat.st_mtime_ns, stat.st_size


def _read_results(file: AnyPath) -> pl.DataFrame:
    """One results file in the results schema: columns an older file lacks are null, as warehouse reads make them."""
    try:
        frame = pl.read_parquet(file if isinstance(file, Path) else io.BytesIO(file.read_bytes()))
    except FileNotFoundError:
        raise
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError) as exc:
        raise CorruptFileError(f"corrupt Parquet file {file}: {exc}") from exc
    absent = [
        pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.RESULTS.items() if name not in frame.columns
    ]
    return schema.conform(frame.with_columns(absent) if absent else frame, schema.RESULTS, f"results file {file}")


def selected(frame: pl.DataFrame, previous: pl.DataFrame | None, screen: Screen) -> pl.Series:
    """Which rows of one session's `frame` `screen` selects (a boolean per row); `previous` holds the session
    before, which prev() reads. Only the columns the screen reads are joined and evaluated."""
    narrow = frame.select(list(dict.fromkeys(("symbol", *sorted(screen.columns)))))
    if screen.prev_columns:
        narrow = with_previous(narrow, _prior(previous, screen), screen.prev_columns)
    return narrow.select(screen.predicate.alias("selected")).to_series()


def screened(frame: pl.DataFrame, previous: pl.DataFrame | None, screen: Screen) -> pl.DataFrame:
    """The rows of one session's `frame` that `screen` selects; `previous` holds the session before (for prev())."""
    return frame.filter(selected(frame, previous, screen))


def ordered(frame: pl.DataFrame, sort: tuple[str, bool] | None) -> pl.DataFrame:
    """`frame` in a screen's display order: its sort column (nulls last), then symbol — as
    `technic_core.screens.evaluation.hits_between` orders each session."""
    column, descending = sort or DEFAULT_SORT
    return frame.sort([column, "symbol"], descending=[descending, False], nulls_last=True)


# ---------------------------------------------------------------------------------------------- pages


@dataclass(frozen=True)
class RowRequest:
    """What a results request asks for (see `api.models.ResultFilters`), checked."""

    signal: str | None = None
    sector: str | None = None
    min_tech_rating: float | None = None
    where: Screen | None = None
    order_by: str = "-tech_rating"
    columns: tuple[str, ...] | None = None
    offset: int = 0
    #: None: every row from `offset` on (downloads).
    limit: int | None = DEFAULT_LIMIT


@dataclass(frozen=True)
class Page:
    """One page of rows: `frame` (the chosen columns), the rows matched in all (`total`) and where it starts;
    `wire`: the rows are at wire precision already."""

    frame: pl.DataFrame
    total: int
    offset: int
    wire: bool = False

    @property
    def next_offset(self) -> int | None:
        """Where the next page starts, or None when this one reaches the last row."""
        end = self.offset + self.frame.height
        return end if end < self.total else None


def paged(frame: pl.DataFrame, offset: int, limit: int | None, columns: Sequence[str] | None) -> Page:
    rows = frame.slice(offset, limit)
    return Page(rows.select(columns) if columns is not None else rows, frame.height, offset)


def _select(rows: Loaded, previous: pl.DataFrame | None, request: RowRequest, *, wire: bool) -> Page:
    """The rows of one session that pass the request's filters and screen, ordered, paged: from the stored
    values, or (`wire`) their wire-precision copy.

    Filtering and ordering are one query over the few columns they read, with each row's number; only the
    page's rows are then taken from the session's (wide) rows. Filters and screens decide on stored values.
    """
    frame = rows.frame
    column = request.order_by.lstrip("-")
    if column not in schema.RESULTS:
        raise ValueError(f"order_by column {column!r} is not a result column")
    screen = request.where
    conditions = []
    if screen is not None:
        conditions.append(screen.predicate)
    if request.signal is not None:
        conditions.append(pl.col("signal") == request.signal)
    if request.sector is not None:
        conditions.append(pl.col("sector") == request.sector)
    if request.min_tech_rating is not None:
        conditions.append(pl.col("tech_rating") >= request.min_tech_rating)
    reads = (column, "symbol", "signal", "sector", "tech_rating", *sorted(screen.columns if screen else ()))
    keys = frame.select(list(dict.fromkeys(reads))).with_row_index("_row")
    if screen is not None and screen.prev_columns:
        keys = with_previous(keys, _prior(previous, screen), screen.prev_columns)
    if conditions:
        keys = keys.filter(*conditions)
    descending = [request.order_by.startswith("-"), False]
    order = pl.col("_row").sort_by([column, "symbol"], descending=descending, nulls_last=True)
    numbers = keys.select(order).to_series()
    taken = (rows.wire if wire else frame)[numbers.slice(request.offset, request.limit)]
    page = taken.select(request.columns) if request.columns is not None else taken
    return Page(page, numbers.len(), request.offset, wire)


def _prior(previous: pl.DataFrame | None, screen: Screen) -> pl.DataFrame:
    """The previous session's columns `screen` reads through prev(), one row per symbol."""
    prior = previous if previous is not None else schema.empty(schema.RESULTS)
    # One row per symbol and session in stored results; a duplicate would make a symbol's hit count twice.
    return prior.select("symbol", *sorted(screen.prev_columns)).unique("symbol", keep="first", maintain_order=True)


class ResponseCache:
    """Encoded JSON answers by key, at most `entries` of them and `budget` bytes, least recently used dropped
    first. Each hit is a new `Response` with the same body and headers."""

    def __init__(self, entries: int = RESPONSE_CACHE_ENTRIES, budget: int = RESPONSE_CACHE_BYTES) -> None:
        self.entries = entries
        self.budget = budget
        self._lock = threading.Lock()
        self._kept: OrderedDict[Hashable, tuple[bytes, str | None, dict[str, str]]] = OrderedDict()
        self._bytes = 0

    def get(self, key: Hashable) -> Response | None:
        with self._lock:
            kept = self._kept.get(key)
            if kept is None:
                return None
            self._kept.move_to_end(key)
        body, media_type, headers = kept
        return Response(body, media_type=media_type, headers=headers)

    def put(self, key: Hashable, response: Response) -> None:
        body = bytes(response.body)
        if len(body) > self.budget // 4:
            return
        headers = {
            name: value for name, value in response.headers.items() if name not in ("content-length", "content-type")
        }
        with self._lock:
            if key in self._kept:
                return
            self._kept[key] = (body, response.media_type, headers)
            self._bytes += len(body)
            while len(self._kept) > self.entries or self._bytes > self.budget:
                _, (dropped, _, _) = self._kept.popitem(last=False)
                self._bytes -= len(dropped)


class ResultQueries:
    """Result reads: pages from the cached session rows, single rows through one shared in-memory DuckDB."""

    def __init__(self, store: Warehouse) -> None:
        self.store = store
        self.frames = SessionFrames(store)
        self.columns = ResultColumns(store)
        self.responses = ResponseCache()
        self._database = store.connect()
        self._lock = threading.Lock()

    def _query(self, sql: str, parameters: dict[str, Any]) -> pl.DataFrame:
        with self._lock:
            cursor = self._database.cursor()
        try:
            frame = pl.from_arrow(cursor.sql(sql, params=parameters).to_arrow_table())
        finally:
            cursor.close()
        if not isinstance(frame, pl.DataFrame):  # polars types any Arrow input's result; a table's is a frame
            raise TypeError(f"expected a DataFrame from an Arrow table, got {type(frame).__name__}")
        return frame

    def page(self, session: dt.date, request: RowRequest, *, wire: bool = False) -> Page:
        """The session's rows that pass the filters and the screen, ordered (ties by symbol, nulls last), paged;
        at stored precision, or (`wire`) at wire precision."""
        previous = self.frames.previous(session) if request.where is not None and request.where.prev_columns else None
        return _select(self.frames.loaded(session), previous, request, wire=wire)

    def respond(
        self, session: dt.date, request: RowRequest, query: Hashable, encode: Callable[[Page], Response]
    ) -> Response:
        """`encode(self.page(session, request, wire=True))`, answered from `responses` when the same `query`
        (the request's parameters, normalized) was answered over the same rows: many clients polling one screen
        cost one evaluation per change of the session's files."""
        rows = self.frames.loaded(session)
        previous: Loaded | None = None
        if request.where is not None and request.where.prev_columns:
            previous = self.frames.loaded(calendar.previous_session(session))
        key = (session, rows.generation, previous.generation if previous else 0, query)
        cached = self.responses.get(key)
        if cached is not None:
            return cached
        response = encode(_select(rows, previous.frame if previous else None, request, wire=True))
        self.responses.put(key, response)
        return response

    def kept_response(self, session: dt.date, request: RowRequest, query: Hashable) -> Response | None:
        """What `respond` would answer from `responses`, found without reading or evaluating anything (None
        when it would have to): cheap enough to try on the event loop before handing a request to a thread."""
        generation = self.frames.current_generation(session)
        if generation is None:
            return None
        previous = 0
        if request.where is not None and request.where.prev_columns:
            found = self.frames.current_generation(calendar.previous_session(session))
            if found is None:
                return None
            previous = found
        return self.responses.get((session, generation, previous, query))

    def result(self, session: dt.date, symbol: str) -> pl.DataFrame:
        sql = "SELECT * FROM results WHERE date = $date AND symbol = $symbol"
        return self._query(sql, {"date": session, "symbol": symbol})

    def close(self) -> None:
        self._database.close()


# ---------------------------------------------------------------------------------------------- saved screens

#: Columns a hit row shows after `rank` and `symbol` unless `columns` says otherwise, then the screen's own.
DEFAULT_HIT_COLUMNS = ("name", "sector", "close", "change_1d", "tech_rating", "signal")
STORED, EVALUATED = "stored", "evaluated"


def sort_of(saved: SavedScreen) -> tuple[str, bool] | None:
    return (saved.sort_by, saved.descending) if saved.sort_by else None


def hit_columns(saved: SavedScreen, chosen: Sequence[str] | None) -> list[str]:
    """The columns a hit row carries after `rank` and `symbol`: the chosen ones, or the defaults plus every
    column the screen reads and its sort column."""
    if chosen is not None:
        return [name for name in chosen if name != "symbol"]
    screen = saved_screen(saved)
    own = sorted(screen.columns | screen.prev_columns)
    sort = (sort_of(saved) or DEFAULT_SORT)[0]
    return [name for name in dict.fromkeys((*DEFAULT_HIT_COLUMNS, *own, sort)) if name != "symbol"]


@dataclass(frozen=True)
class Hits:
    """A saved screen's hits: `frame` holds `rank`, `symbol` and the chosen columns (`date` first over a range)."""

    frame: pl.DataFrame
    version: int
    fingerprint: str
    source: str
    note: str


@dataclass(frozen=True)
class StoredHits:
    """One session's partition of the `screens` dataset (every saved screen's recorded hits) and when its
    newest file was written (POSIX seconds)."""

    session: dt.date
    frame: pl.DataFrame
    written: float

    @classmethod
    def read(cls, store: Warehouse, session: dt.date) -> StoredHits | None:
        files = store.partition_files("screens", session)
        if not files:
            return None
        written = max(file.stat().st_mtime for file in files)
        return cls(session, store.read("screens", session, session), written)

    def of(self, saved: SavedScreen) -> tuple[pl.DataFrame | None, str]:
        """`saved`'s recorded hits (`symbol`, `rank`, `screen_version`, `screen_fingerprint`) when its current
        version recorded them, else None; and a sentence saying which.

        A screen without a stored row either had no hit or did not exist yet when the partition was written: it
        had no hit when it is a built-in or its current version was saved before the partition's files.
        """
        session = self.session
        stored = self.frame.filter(pl.col("screen") == saved.name).select(
            "symbol", "rank", "screen_version", "screen_fingerprint"
        )
        recorded = f"recorded by the pipeline on {session} (screens dataset)"
        if stored.height:
            if stored.get_column("screen_fingerprint").eq(saved.fingerprint).all():
                return stored, recorded
            versions = ", ".join(str(v) for v in stored.get_column("screen_version").unique().sort().to_list())
            return (
                None,
                f"the hits stored for {session} are version {versions}'s; version {saved.version} is evaluated now",
            )
        saved_at = saved.versions[-1].saved_at
        # `saved_at` is whole seconds: a save in the second the partition was written counts as later.
        if saved.builtin or (saved_at is not None and saved_at.timestamp() + 1 <= self.written):
            return stored, recorded
        return None, f"version {saved.version} is newer than the hits stored for {session}, so they are evaluated now"


def recorded_hits(store: Warehouse, session: dt.date, saved: SavedScreen) -> tuple[pl.DataFrame | None, str]:
    """`StoredHits.of` for `session`'s partition; None when no hits are stored for the session at all."""
    stored = StoredHits.read(store, session)
    if stored is None:
        return None, f"no screen hits are stored for {session} yet, so they are evaluated now"
    return stored.of(saved)


def session_hits(
    frames: SessionFrames, store: Warehouse, session: dt.date, saved: SavedScreen, columns: list[str]
) -> Hits:
    """`saved`'s hits on `session` in rank order: as stored when its current version recorded them, else
    evaluated over the session's results (prev() reading the session before), ranked in its own order."""
    results = frames.get(session)
    stored, note = recorded_hits(store, session, saved)
    if stored is not None:
        ranked = stored.sort("rank")
        version = int(ranked.get_column("screen_version")[0]) if ranked.height else saved.version
        joined = ranked.select("rank", "symbol").join(
            results.select("symbol", *columns), on="symbol", how="left", maintain_order="left"
        )
        return Hits(joined, version, saved.fingerprint, STORED, note)
    screen = saved_screen(saved)
    previous = frames.previous(session) if screen.prev_columns else None
    hits = ordered(screened(results, previous, screen), sort_of(saved))
    frame = hits.select(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("rank"), "symbol", *columns)
    return Hits(frame, saved.version, saved.fingerprint, EVALUATED, note)


#: Bytes of result columns `ResultColumns` keeps for history requests (a year of 5,000 symbols' results is
#: about 10 MB per numeric column).
HISTORY_CACHE_BYTES = 384 * 2**20


@dataclass(frozen=True)
class _Columns:
    """Some columns of one session's results (`date` and `symbol` always), in file order, and the files'
    (name, mtime, size) they were read from."""

    stamps: tuple[tuple[str, int, int], ...]
    frame: pl.DataFrame


class ResultColumns:
    """Columns of each session's stored results, read for history requests and kept while the session's files
    are unchanged: at most `budget` bytes, the least recently used sessions dropped first.

    A request reads what it lacks — whole sessions that are new or changed, and columns the kept sessions do
    not hold yet — in one scan of the files concerned. That scan skips `Warehouse.scan`'s up-front check of
    every file's footer: over a year of results (thousands of batch files) the check costs more than the read,
    and a damaged file still fails the read (`history_hits` then names it through `Warehouse.scan`).
    """

    def __init__(self, store: Warehouse, budget: int = HISTORY_CACHE_BYTES) -> None:
        self.store = store
        self.budget = budget
        self._lock = threading.Lock()
        self._kept: OrderedDict[dt.date, _Columns] = OrderedDict()

    def between(self, first: dt.date, last: dt.date, columns: Sequence[str]) -> pl.DataFrame:
        """The results of every session in [first, last] with `columns` (plus `date` and `symbol`), oldest
        session first, each in seq order."""
        wanted = list(dict.fromkeys(("date", "symbol", *columns)))
        listed = {
            day: self.store.partition_files("results", day)
            for day in partition_sessions(self.store, "results")
            if first <= day <= last
        }
        files = {day: found for day, found in listed.items() if found}
        sessions = list(files)
        stamps = {day: tuple(_stamp(file) for file in files[day]) for day in sessions}
        with self._lock:
            kept = {day: self._kept.get(day) for day in sessions}
        # Sessions to read, grouped by the columns to read for them: all for a new or changed session, the
        # missing ones for a kept session.
        reads: dict[tuple[str, ...], list[dt.date]] = {}
        for day in sessions:
            entry = kept[day]
            if entry is None or entry.stamps != stamps[day]:
                reads.setdefault(tuple(wanted), []).append(day)
            elif missing := tuple(name for name in wanted if name not in entry.frame.columns):
                reads.setdefault(missing, []).append(day)
        for names, days in reads.items():
            parts = self._read([file for day in days for file in files[day]], names)
            for day in days:
                part = parts.get(day, schema.empty({name: schema.RESULTS[name] for name in ("date", *names)}))
                entry = kept[day]
                if entry is None or entry.stamps != stamps[day]:
                    kept[day] = _Columns(stamps[day], part.select(wanted))
                elif part.height == entry.frame.height:
                    kept[day] = _Columns(stamps[day], entry.frame.hstack(part.select(names)))
                else:  # the files changed between listing and reading: read the session whole
                    whole = self._read(files[day], tuple(wanted)).get(day)
                    kept[day] = _Columns(stamps[day], whole if whole is not None else schema.empty(_dtypes(wanted)))
        frames = [entry.frame.select(wanted) for day in sessions if (entry := kept[day]) is not None]
        self._keep(kept)
        return pl.concat(frames) if frames else schema.empty(_dtypes(wanted))

    def _read(self, files: list[AnyPath], names: Sequence[str]) -> dict[dt.date, pl.DataFrame]:
        """`names` (and `date`) of `files`, split by session, rows in file order."""
        columns = list(dict.fromkeys(("date", *names)))
        if not files:
            return {}
        if self.store.is_local:
            frame = pl.scan_parquet(
                [str(file) for file in files],
                schema=schema.RESULTS,
                hive_partitioning=False,
                glob=False,
                missing_columns="insert",
                extra_columns="ignore",
            )
        else:
            days = sorted({dt.date.fromisoformat(file.parent.name.removeprefix("date=")) for file in files})
            frame = self.store.scan("results", days[0], days[-1]).filter(pl.col("date").is_in(days))
        read = frame.select(columns).collect()
        # Files come session after session, so each session's rows are one run of `date`: sliced, not copied.
        runs = read.select(pl.col("date").rle()).unnest("date")
        parts, offset = {}, 0
        for length, day in runs.iter_rows():
            parts[day] = read.slice(offset, length)
            offset += length
        return parts

    def _keep(self, entries: dict[dt.date, _Columns | None]) -> None:
        with self._lock:
            for day, entry in entries.items():
                if entry is not None:
                    self._kept[day] = entry
                    self._kept.move_to_end(day)
            total = sum(entry.frame.estimated_size() for entry in self._kept.values())
            while total > self.budget and self._kept:
                _, dropped = self._kept.popitem(last=False)
                total -= dropped.frame.estimated_size()


def _dtypes(names: Sequence[str]) -> schema.Columns:
    return {name: schema.RESULTS[name] for name in names}


class _KeptResults(Warehouse):
    """The warehouse as `hits_between` reads it for a history request: results from `ResultColumns` (the
    columns the request needs), everything else as stored."""

    def __init__(self, store: Warehouse, columns: ResultColumns, wanted: Sequence[str]) -> None:
        super().__init__(store.root)
        self._columns = columns
        self._wanted = wanted

    def scan(self, dataset: str, start: dt.date | None = None, end: dt.date | None = None) -> pl.LazyFrame:
        if dataset != "results" or start is None or end is None:
            return super().scan(dataset, start, end)
        return self._columns.between(start, end, self._wanted).lazy()


def history_hits(
    store: Warehouse, saved: SavedScreen, first: dt.date, last: dt.date, columns: list[str], kept: ResultColumns
) -> Hits:
    """`saved`'s current version evaluated over the stored results of [first, last]
    (`technic_core.screens.evaluation.hits_between`, over the columns `kept` holds): `date`, `rank`, `symbol`
    and `columns`, by session, each in rank order."""
    screen = saved_screen(saved)
    reads = [name for name in columns if name not in ("date", "symbol")]
    sort = sort_of(saved)
    wanted = [*sorted(screen.columns | screen.prev_columns), *reads, (sort or DEFAULT_SORT)[0]]
    try:
        hits = hits_between(_KeptResults(store, kept, wanted), screen, first, last, columns=reads, sort=sort)
        frame = hits.collect()
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError):
        # A file that cannot be decoded: `Warehouse.scan` checks every footer and names the damaged one.
        store.scan("results", calendar.previous_session(first), last).collect()
        raise
    frame = frame.select(
        "date", pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("date").alias("rank"), "symbol", *reads
    )
    note = f"version {saved.version} evaluated over the stored results of {first} to {last}"
    return Hits(frame, saved.version, saved.fingerprint, EVALUATED, note)


def hits_per_session(store: Warehouse, hits: pl.DataFrame, first: dt.date, last: dt.date) -> list[dict[str, Any]]:
    """Hits on each session of [first, last] that has results (zero included), oldest first."""
    sessions = [
        day
        for day in partition_sessions(store, "results")
        if first <= day <= last and store.has_partition("results", day)
    ]
    counts = dict(hits.group_by("date").len().iter_rows())
    return [{"date": day, "hits": int(counts.get(day, 0))} for day in sessions]


def screen_performance(
    store: Warehouse, name: str, first: dt.date | None, last: dt.date | None
) -> tuple[pl.DataFrame, pl.DataFrame, list[int], str | None]:
    """`performance` of the screen's stored evidence in [first, last] and of the signal bands beside it, the
    screen versions the evidence holds, and why there is no row for the screen (None when there is one)."""
    if newest_session(store, "screen_outcomes") is None:
        empty = performance(schema.empty(schema.SCREEN_OUTCOMES))
        nothing = (
            "nothing is labeled yet: forward returns are known 10 sessions after a scan, and screen_performance "
            "has not stored any"
        )
        return empty, empty, [], nothing
    wanted = ((pl.col("kind") == SCREEN) & (pl.col("name") == name)) | pl.col("kind").is_in(list(BANDS))
    evidence = store.scan("screen_outcomes", first, last).filter(wanted).collect()
    summary = performance(evidence)
    mine = summary.filter(pl.col("kind") == SCREEN)
    bands = summary.filter(pl.col("kind") != SCREEN)
    versions = (
        evidence.filter(pl.col("kind") == SCREEN).get_column("screen_version").drop_nulls().unique().sort().to_list()
    )
    reason = None if mine.height else f"no labeled session in the range has hits of {name!r} yet"
    return mine, bands, versions, reason


# ---------------------------------------------------------------------------------------------- responses

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), default=_jsonable, allow_nan=False)


def _jsonable(value: object) -> object:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_body(head: Mapping[str, object], frame: pl.DataFrame, *, wire: bool = False) -> bytes:
    """`head`'s fields, then `rows`: `frame`'s rows encoded by polars at wire precision (rounded here unless
    `wire` says they are), faster than validating thousands of rows through a model."""
    fields = _json(head)
    rows = (frame if wire else for_wire(frame)).write_json() if frame.height else "[]"
    return f'{fields[:-1]},"rows":{rows}}}'.encode()


def frame_json(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Small frames (performance rows) as JSON-ready dicts, NaN and infinities as null."""
    return json.loads(for_wire(frame).write_json()) if frame.height else []


def page_response(head: Mapping[str, object], page: Page, format: str, stem: str, url: URL | None = None) -> Response:
    """A page as JSON (`head`, `count`, `total`, `offset`, `next_offset`, `rows`; a `Link` header to the next
    page), or its rows as a CSV (wire precision) or Parquet (stored precision) download named `stem`."""
    if format == "csv":
        rows = page.frame if page.wire else for_wire(page.frame)
        return download(rows.write_csv().encode(), CSV_MEDIA_TYPE, f"{stem}.csv", page)
    if format == "parquet":
        buffer = io.BytesIO()
        page.frame.write_parquet(buffer, compression="zstd")
        return download(buffer.getvalue(), PARQUET_MEDIA_TYPE, f"{stem}.parquet", page)
    paging = {"count": page.frame.height, "total": page.total, "offset": page.offset, "next_offset": page.next_offset}
    headers = {}
    if url is not None and page.next_offset is not None:
        headers["Link"] = f'<{url.include_query_params(offset=page.next_offset)}>; rel="next"'
    return Response(
        json_body({**head, **paging}, page.frame, wire=page.wire), media_type="application/json", headers=headers
    )


def download(body: bytes, media_type: str, filename: str, page: Page) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "X-Total-Count": str(page.total)}
    return Response(body, media_type=media_type, headers=headers)


def model_registry(store: Warehouse) -> list[ModelInfo]:
    """Every model in the registry (`technic_core.ml.registry`): complete versions, their `metrics.json`
    and the champion. A directory that is not a model name is skipped and unreadable metrics show as null,
    with a warning: one damaged file must not take the health endpoint down."""
    registry = ModelRegistry(store)
    if not registry.root.is_dir():
        return []
    models = []
    for directory in sorted(path for path in registry.root.iterdir() if path.is_dir()):
        try:
            versions = registry.versions(directory.name)
        except ConfigError:
            continue
        models.append(
            ModelInfo(
                name=directory.name,
                champion=registry.champion(directory.name),
                versions=[ModelVersion(version=v, metrics=_metrics(registry, directory.name, v)) for v in versions],
            )
        )
    return models


def _metrics(registry: ModelRegistry, name: str, version: str) -> dict[str, Any] | None:
    try:
        metrics = registry.metrics(name, version)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("unreadable model metrics", extra={"model": name, "version": version, "error": str(exc)})
        return None
    return metrics if isinstance(metrics, dict) else None
