"""Saved screens: list, read, save and delete them (`screens.yaml` through `technic_core.screens.ScreenLibrary`),
their hits on a session, over a range, and whether those hits paid.

Hits on one session are the ones the pipeline recorded (the `screens` dataset) when the screen's current
version recorded them; otherwise — no hits stored for the session yet, or the screen changed since — they are
evaluated on the spot over the session's stored results, and `source` says which. History is always evaluated
(`technic_core.screens.evaluation.hits_between`), performance always read from the stored evidence
(`screen_outcomes`). Writes need an API key; built-ins cannot be changed or deleted (403). A client that read
the screens (the `ETag` of `GET /screens`) and saves later sends it as `If-Match`: a file changed meanwhile
answers 412 rather than being overwritten.

Plain `def` endpoints: FastAPI runs them in its thread pool, away from the event loop that carries the streams.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response, status
from pydantic import Field

from api import auth, deps
from api.models import (
    HistoryPage,
    HitsPage,
    Paging,
    PerformancePage,
    ScreenBody,
    ScreenDetail,
    ScreenFileProblem,
    ScreenInfo,
    ScreenList,
    ScreenVersionInfo,
    Strict,
)
from api.queries import (
    CSV_MEDIA_TYPE,
    PARQUET_MEDIA_TYPE,
    ResultQueries,
    StoredHits,
    chosen_columns,
    frame_json,
    history_hits,
    hit_columns,
    hits_per_session,
    invalid,
    newest_session,
    page_response,
    paged,
    screen_performance,
    screen_problem,
    session_hits,
)
from api.validation import trading_session
from technic_core import calendar
from technic_core.screens import (
    BuiltinScreenError,
    InvalidScreenError,
    LoadedLibrary,
    SavedScreen,
    ScreenConflictError,
    ScreenError,
    ScreenFileError,
    ScreenLibrary,
    ScreenNotFoundError,
)
from technic_core.warehouse import Warehouse

router = APIRouter(prefix="/screens", tags=["screens"])

#: A screen name as `technic_core.screens.library.NAME_PATTERN` has it: it is part of URLs.
NAME_PATTERN = r"^[a-z0-9_-]{1,64}$"
DAY_PATTERN = r"^(latest|\d{4}-\d{2}-\d{2})$"
#: Sessions of history one request may span (two years), and those it spans by default.
MAX_HISTORY_SESSIONS = 520
DEFAULT_HISTORY_SESSIONS = 21
#: Sessions of evidence one performance request may span (ten years); no range means all of it.
MAX_PERFORMANCE_SESSIONS = 2_520

NamePath = Annotated[str, Path(pattern=NAME_PATTERN, description="a screen name: 1–64 of a-z, 0-9, '_' and '-'")]
DayPath = Annotated[
    str, Path(pattern=DAY_PATTERN, description="'latest' (the newest session with results) or YYYY-MM-DD")
]
WarehouseDep = Annotated[Warehouse, Depends(deps.store)]
QueriesDep = Annotated[ResultQueries, Depends(deps.queries)]
Reader = Depends(auth.reader)
Writer = Depends(auth.writer)
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=200,
        description="the `ETag` of `GET /screens` read before: refuse (412) if screens.yaml changed since",
    ),
]


class HistoryQuery(Paging):
    """Query parameters of `GET /screens/{name}/history`."""

    first: dt.date | None = Field(None, alias="from", description="first session (default: 20 sessions before `to`)")
    last: dt.date | None = Field(None, alias="to", description="last session (default: the newest with results)")


class RangeQuery(Strict):
    """Query parameters of `GET /screens/{name}/performance`."""

    first: dt.date | None = Field(None, alias="from", description="first labeled session (default: the first)")
    last: dt.date | None = Field(None, alias="to", description="last labeled session (default: the last)")


class CachedLibrary:
    """`ScreenLibrary.load()` kept while screens.yaml is unchanged (by modification time and size): a load
    compiles every user screen, and every screen request reads the library."""

    def __init__(self, library: ScreenLibrary) -> None:
        self.library = library
        self._lock = threading.Lock()
        self._key: tuple[int, int] = (0, 0)
        self._loaded: LoadedLibrary | None = None

    def _file_key(self) -> tuple[int, int] | None:
        """(mtime, size) of screens.yaml, (0, 0) when there is none; None when the store cannot tell."""
        try:
            stat = self.library.path.stat()
        except FileNotFoundError:
            return 0, 0
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def load(self) -> LoadedLibrary:
        key = self._file_key()
        if key is None:
            return self.library.load()
        with self._lock:
            if self._loaded is not None and key == self._key:
                return self._loaded
        loaded = self.library.load()
        with self._lock:
            self._key, self._loaded = key, loaded
        return loaded

    def get(self, name: str) -> SavedScreen:
        screen = self.load().screens.get(name)
        if screen is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no screen named {name!r}")
        return screen


def library(request: Request) -> CachedLibrary:
    return request.app.state.screens


LibraryDep = Annotated[CachedLibrary, Depends(library)]


# ---------------------------------------------------------------------------------------------- helpers


def newest_results_session(store: Warehouse) -> dt.date:
    session = newest_session(store, "results")
    if session is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the warehouse has no scan results yet")
    return session


def results_session(store: Warehouse, day: str, location: tuple[str, ...]) -> dt.date:
    """The session a `{date}` path names ('latest' or a date): an NYSE session with stored results."""
    if day == "latest":
        return newest_results_session(store)
    try:
        parsed = dt.date.fromisoformat(day)
    except ValueError:
        raise invalid(location, "must be 'latest' or a date YYYY-MM-DD", day) from None
    session = trading_session(parsed, location)
    if not store.has_partition("results", session):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no scan results for {session}")
    return session


def _session_of(day: dt.date | None, location: tuple[str, ...]) -> dt.date | None:
    return None if day is None else trading_session(day, location)


def checked_range(first: dt.date | None, last: dt.date | None, cap: int) -> None:
    """`from` before `to`, spanning at most `cap` sessions; else a 422 naming the field."""
    if first is None or last is None:
        return
    if first > last:
        raise invalid(("query", "from"), f"must be on or before `to` ({last})", first.isoformat())
    spanned = len(calendar.sessions_between(first, last))
    if spanned > cap:
        raise invalid(
            ("query", "from"),
            f"the range spans {spanned} sessions, at most {cap} are answered at once; ask in several ranges",
            first.isoformat(),
        )


def _etag_header(etag: str | None) -> dict[str, str]:
    return {"ETag": f'"{etag}"'} if etag else {}


def _if_match(header: str | None) -> str | None:
    """The etag an `If-Match` header names ('"abc"', 'W/"abc"' or 'abc'); None for none or '*'."""
    if header is None or not header.strip() or header.strip() == "*":
        return None
    first = header.split(",")[0].strip().removeprefix("W/")
    return first.strip('"')


def _info(saved: SavedScreen, stored: StoredHits | None) -> dict[str, Any]:
    recorded = stored.of(saved)[0] if stored is not None else None
    return {
        "name": saved.name,
        "title": saved.title,
        "description": saved.description,
        "expression": saved.expression,
        "version": saved.version,
        "fingerprint": saved.fingerprint,
        "builtin": saved.builtin,
        "sort_by": saved.sort_by,
        "descending": saved.descending,
        "hits": None if recorded is None else recorded.height,
        "hits_date": stored.session if stored is not None else None,
    }


def _detail(saved: SavedScreen, stored: StoredHits | None) -> ScreenDetail:
    versions = [
        ScreenVersionInfo(version=v.version, fingerprint=v.fingerprint, expression=v.expression, saved_at=v.saved_at)
        for v in saved.versions
    ]
    return ScreenDetail(**_info(saved, stored), versions=versions)


def _newest_stored(store: Warehouse) -> StoredHits | None:
    session = newest_session(store, "screens")
    return StoredHits.read(store, session) if session is not None else None


# ---------------------------------------------------------------------------------------------- endpoints


@router.get("", response_model=ScreenList, dependencies=[Reader])
def list_screens(store: WarehouseDep, screens: LibraryDep) -> Response:
    """Every saved screen, built-ins first, with its hits on the newest session with stored screen hits."""
    loaded = screens.load()
    stored = _newest_stored(store)
    body = ScreenList(
        etag=loaded.etag,
        hits_date=stored.session if stored is not None else None,
        count=len(loaded.screens),
        screens=[ScreenInfo(**_info(saved, stored)) for saved in loaded.screens.values()],
        problems=[ScreenFileProblem(name=p.name, line=p.line, message=p.message) for p in loaded.problems],
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=_etag_header(loaded.etag))


@router.get("/{name}", response_model=ScreenDetail, dependencies=[Reader])
def get_screen(name: NamePath, store: WarehouseDep, screens: LibraryDep) -> Response:
    """One saved screen with its versions, oldest first."""
    loaded = screens.load()
    saved = screens.get(name)
    body = _detail(saved, _newest_stored(store))
    return Response(body.model_dump_json(), media_type="application/json", headers=_etag_header(loaded.etag))


_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "a built-in screen (or an invalid API key)"},
    409: {"description": "screens.yaml is unreadable, or kept changing during the save"},
    412: {"description": "screens.yaml changed since the `If-Match` etag was read"},
    422: {"description": "an invalid expression (with `position`, `line`, `column`, `expected`), title or sort"},
}


@router.put("/{name}", response_model=ScreenDetail, responses=_WRITE_RESPONSES, dependencies=[Writer])
def put_screen(
    name: NamePath, body: ScreenBody, store: WarehouseDep, screens: LibraryDep, if_match: IfMatch = None
) -> Response:
    """Save a screen — new, changed, or a deleted name brought back — and answer it as saved: a changed
    expression is a new version; a field left out of the body is reset to its default."""
    etag = _if_match(if_match)
    try:
        saved = screens.library.put(
            name,
            body.expression,
            title=body.title,
            description=body.description,
            sort_by=body.sort_by,
            descending=body.descending,
            if_match=etag,
        )
    except ScreenError as error:
        raise screen_problem(error, ("body", "expression"), body.expression) from None
    except InvalidScreenError as error:
        field, _, message = str(error).partition(": ")
        known = field in ("title", "description", "sort_by", "descending")
        raise invalid(("body", field) if known else ("path", "name"), message if known else str(error)) from None
    except (BuiltinScreenError, ScreenConflictError, ScreenFileError) as error:
        raise _write_refused(error, etag) from None
    loaded = screens.load()
    detail = _detail(saved, _newest_stored(store))
    return Response(detail.model_dump_json(), media_type="application/json", headers=_etag_header(loaded.etag))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=_WRITE_RESPONSES, dependencies=[Writer])
def delete_screen(name: NamePath, screens: LibraryDep, if_match: IfMatch = None) -> Response:
    """Delete a user's screen; its versions stay in screens.yaml for the hits that recorded them."""
    etag = _if_match(if_match)
    try:
        screens.library.delete(name, if_match=etag)
    except ScreenNotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except (BuiltinScreenError, ScreenConflictError, ScreenFileError) as error:
        raise _write_refused(error, etag) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=_etag_header(screens.load().etag))


def _write_refused(error: Exception, etag: str | None) -> HTTPException:
    if isinstance(error, BuiltinScreenError):
        return HTTPException(status.HTTP_403_FORBIDDEN, str(error))
    if isinstance(error, ScreenConflictError) and etag is not None:
        return HTTPException(status.HTTP_412_PRECONDITION_FAILED, f"{error}; read GET /screens again and retry")
    return HTTPException(status.HTTP_409_CONFLICT, str(error))


_HITS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON by default; `format=csv` or `format=parquet` answer the rows as a file download",
        "content": {CSV_MEDIA_TYPE: {}, PARQUET_MEDIA_TYPE: {}},
    },
    404: {"description": "no such screen, or no results for the session"},
    422: {"description": "a bad date, range or column; `message` names it"},
}


@router.get("/{name}/hits/{date}", response_model=HitsPage, responses=_HITS_RESPONSES, dependencies=[Reader])
def screen_hits(
    request: Request,
    name: NamePath,
    date: DayPath,
    store: WarehouseDep,
    queries: QueriesDep,
    screens: LibraryDep,
    paging: Annotated[Paging, Query()],
) -> Response:
    """A screen's hits on one session in its own order (`rank`), with the chosen `columns` of their results:
    as the pipeline stored them when this version did (`source: stored`), else evaluated now (`evaluated`)."""
    columns = chosen_columns(paging.columns)
    saved = screens.get(name)
    session = results_session(store, date, ("path", "date"))
    hits = session_hits(queries.frames, store, session, saved, hit_columns(saved, columns))
    head = {
        "name": saved.name,
        "version": hits.version,
        "fingerprint": hits.fingerprint,
        "date": session,
        "source": hits.source,
        "note": hits.note,
    }
    page = paged(hits.frame, paging.offset, paging.row_limit(), None)
    return page_response(head, page, paging.format, f"{saved.name}-{session}", request.url)


@router.get("/{name}/history", response_model=HistoryPage, responses=_HITS_RESPONSES, dependencies=[Reader])
def screen_history(
    request: Request,
    name: NamePath,
    store: WarehouseDep,
    queries: QueriesDep,
    screens: LibraryDep,
    query: Annotated[HistoryQuery, Query()],
) -> Response:
    """A screen's current version evaluated over the stored results of `from`..`to` (at most 520 sessions):
    hits per session, and the hit rows by session in rank order."""
    columns = chosen_columns(query.columns)
    first = _session_of(query.first, ("query", "from"))
    last = _session_of(query.last, ("query", "to"))
    saved = screens.get(name)
    if last is None:
        last = newest_results_session(store) if first is None else max(first, newest_results_session(store))
    if first is None:
        first = calendar.sessions_back(last, DEFAULT_HISTORY_SESSIONS)[0]
    checked_range(first, last, MAX_HISTORY_SESSIONS)
    hits = history_hits(store, saved, first, last, hit_columns(saved, columns), queries.columns)
    head = {
        "name": saved.name,
        "version": hits.version,
        "fingerprint": hits.fingerprint,
        "from": first,
        "to": last,
        "note": hits.note,
        "sessions": hits_per_session(store, hits.frame, first, last),
    }
    page = paged(hits.frame, query.offset, query.row_limit(), None)
    return page_response(head, page, query.format, f"{saved.name}-{first}-{last}", request.url)


@router.get("/{name}/performance", response_model=PerformancePage, dependencies=[Reader])
def screen_performance_summary(
    name: NamePath, store: WarehouseDep, screens: LibraryDep, query: Annotated[RangeQuery, Query()]
) -> Response:
    """Whether the screen's hits paid: mean and median forward returns over 5 and 10 sessions, excess over the
    scanned universe, share positive and t-statistic, over the stored labeled sessions of the range — beside the
    same figures for each Signal band. Empty `rows` with a `reason` while nothing is labeled."""
    first = _session_of(query.first, ("query", "from"))
    last = _session_of(query.last, ("query", "to"))
    checked_range(first, last, MAX_PERFORMANCE_SESSIONS)
    saved = screens.get(name)
    mine, bands, versions, reason = screen_performance(store, saved.name, first, last)
    body = PerformancePage.model_validate(
        {
            "name": saved.name,
            "from": first,
            "to": last,
            "reason": reason,
            "versions": versions,
            "rows": frame_json(mine),
            "bands": frame_json(bands),
        }
    )
    return Response(body.model_dump_json(by_alias=True), media_type="application/json")
