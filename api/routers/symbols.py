"""One symbol over time: `GET /symbols/{symbol}/history` and `GET /symbols/{symbol}/screens`.

History is the symbol's daily bars joined, per session, with its stored scan result row — every results
column, null on sessions the scan did not store one — so a chart can draw candles, moving averages and the
rating's history from one answer. Screens are the saved screens the symbol hit on recent sessions.

Both read the Parquet partitions of the range through `Warehouse.scan` (only the range's partition
directories are listed and opened, the symbol filter is pushed into the Parquet reader). They are plain
`def` endpoints, so FastAPI runs them in its thread pool, away from the event loop that carries the streams.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

import polars as pl
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, create_model

from api import auth, deps
from api.events import for_wire
from api.validation import invalid
from technic_core import calendar, schema
from technic_core.screening import SYMBOL_PATTERN
from technic_core.warehouse import Warehouse

router = APIRouter(prefix="/symbols", dependencies=[Depends(auth.reader)], tags=["symbols"])

#: Sessions a history answers by default: about one year, ending at the newest session with bars.
DEFAULT_SESSIONS = 252
#: Sessions one history request may span: about ten years.
MAX_SESSIONS = 2_520
#: Sessions of screen hits `/screens` answers by default, ending at the newest session with hits.
DEFAULT_SCREEN_SESSIONS = 21

#: The bar columns a history row starts with.
BAR_COLUMNS = ("date", "open", "high", "low", "close", "volume")
#: Results columns that repeat the bar's own values (or the path's symbol) and are left out of history rows.
_SHARED_WITH_BARS = frozenset({"date", "symbol", "close", "volume"})
#: Every column a history row holds, in order: the bar, then the results columns in results order.
HISTORY_COLUMNS: dict[str, schema.DType] = {
    **{name: schema.BARS[name] for name in BAR_COLUMNS},
    **{name: dtype for name, dtype in schema.RESULTS.items() if name not in _SHARED_WITH_BARS},
}

CSV_MEDIA_TYPE = "text/csv"
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"

_PYTHON_TYPES: dict[type[pl.DataType], type] = {
    pl.String: str,
    pl.Float64: float,
    pl.Int64: int,
    pl.Date: dt.date,
    pl.Boolean: bool,
}


class HistoryFormat(StrEnum):
    json = "json"
    csv = "csv"
    parquet = "parquet"


if TYPE_CHECKING:
    HistoryRow: TypeAlias = BaseModel
else:
    #: One session of a symbol's history; everything but `date` may be null.
    HistoryRow = create_model(
        "HistoryRow",
        __config__=ConfigDict(extra="forbid"),
        **{name: (_PYTHON_TYPES[dtype.base_type()] | None, None) for name, dtype in HISTORY_COLUMNS.items()},
    )


class SymbolHistory(BaseModel):
    """`GET /symbols/{symbol}/history` as JSON (documentation: the body is encoded by polars, not by this model)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    symbol: str
    first: dt.date = Field(alias="from", description="first day of the range (inclusive)")
    last: dt.date = Field(alias="to", description="last day of the range (inclusive)")
    count: int = Field(description="rows: sessions with a bar for the symbol in the range")
    columns: list[str] = Field(description="the columns of every row, in order")
    rows: list[HistoryRow] = Field(description="one row per session with a bar, oldest first")


class ScreenHit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: dt.date
    screen: str
    screen_version: int | None
    rank: int | None = Field(description="the symbol's place in the screen's own order that session (1 = first)")


class SymbolScreens(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    symbol: str
    first: dt.date | None = Field(alias="from", description="first session looked at; null when none has hits")
    last: dt.date | None = Field(alias="to", description="last session looked at; null when none has hits")
    hits: list[ScreenHit] = Field(description="newest session first, then screen name")


WarehouseDep = Annotated[Warehouse, Depends(deps.store)]
SymbolPath = Annotated[str, Path(pattern=SYMBOL_PATTERN, description="ticker, e.g. AAPL or BRK.B")]
FromQuery = Annotated[
    dt.date | None,
    Query(alias="from", description="first day, YYYY-MM-DD (default: 252 sessions before `to`)"),
]
ToQuery = Annotated[
    dt.date | None, Query(alias="to", description="last day, YYYY-MM-DD (default: the newest session with bars)")
]
SessionsQuery = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_SESSIONS,
        description="instead of `from`: the range is this many sessions ending at `to` (e.g. 252 for a year, plus "
        "199 to warm up a 200-session moving average)",
    ),
]


def _newest_session(store: Warehouse, dataset: str) -> dt.date | None:
    sessions = store.sessions(dataset)
    return sessions[-1] if sessions else None


def _sessions_before(day: dt.date, count: int) -> dt.date:
    """The first of the `count` sessions ending at `day`; `day` itself when the calendar knows none."""
    sessions = calendar.sessions_back(day, count)
    return sessions[0] if sessions else day


def history_range(
    first: dt.date | None, last: dt.date | None, newest: dt.date, sessions: int | None = None
) -> tuple[dt.date, dt.date]:
    """The [first, last] a history request covers: defaults filled in, order and size checked (422 naming
    the field)."""
    if sessions is not None and first is not None:
        raise invalid(("query", "sessions"), "give either `from` or `sessions`, not both", sessions)
    last = last or max(newest, first or newest)
    first = first or _sessions_before(last, sessions or DEFAULT_SESSIONS)
    if first > last:
        raise invalid(("query", "from"), f"must be on or before `to` ({last})", first.isoformat())
    spanned = len(calendar.sessions_between(first, last))
    if spanned > MAX_SESSIONS:
        earliest = _sessions_before(last, MAX_SESSIONS)
        raise invalid(
            ("query", "from"),
            f"the range spans {spanned} sessions, at most {MAX_SESSIONS} are answered at once; "
            f"start on {earliest} or later, or ask in several ranges",
            first.isoformat(),
        )
    return first, last


def _columns(requested: str | None) -> list[str]:
    """The history columns asked for (always starting with `date`), or every one; unknown names are a 422."""
    if requested is None or not requested.strip():
        return list(HISTORY_COLUMNS)
    names = [name.strip() for name in requested.split(",") if name.strip()]
    unknown = [name for name in names if name not in HISTORY_COLUMNS]
    if unknown:
        raise invalid(
            ("query", "columns"),
            f"unknown column(s) {', '.join(unknown)}; history columns are {', '.join(HISTORY_COLUMNS)}",
            requested,
        )
    return ["date", *dict.fromkeys(name for name in names if name != "date")]


def read_history(store: Warehouse, symbol: str, first: dt.date, last: dt.date, columns: list[str]) -> pl.DataFrame:
    """The symbol's bars of [first, last] left-joined with its stored result row of each session, in
    `columns` order, oldest first. A session whose results list the symbol twice (never written so by the
    scan) keeps the row with the highest seq."""
    bar_columns = [name for name in BAR_COLUMNS if name in columns]
    result_columns = [name for name in columns if name not in BAR_COLUMNS]
    bars = (
        store.scan("bars", first, last)
        .filter(pl.col("symbol") == symbol)
        .select(bar_columns)
        .unique("date", keep="last")
        .sort("date")
        .collect()
    )
    if bars.is_empty():
        return schema.empty({name: HISTORY_COLUMNS[name] for name in columns})
    if not result_columns:
        return bars.select(columns)
    results = (
        store.scan("results", first, last)
        .filter(pl.col("symbol") == symbol)
        .select("date", "seq", *(name for name in result_columns if name != "seq"))
        .sort("seq")
        .unique("date", keep="last")
        .collect()
    )
    return bars.join(results, on="date", how="left").sort("date").select(columns)


def _unknown_symbol(store: Warehouse, symbol: str, newest: dt.date) -> bool:
    """Whether the newest session's bars lack the symbol (asked only when the requested range had none)."""
    present = store.scan("bars", newest, newest).filter(pl.col("symbol") == symbol).select(pl.len()).collect()
    return present.item() == 0


def _json_body(symbol: str, first: dt.date, last: dt.date, frame: pl.DataFrame) -> bytes:
    """The JSON answer, rows encoded by polars (faster than validating thousands of rows through a model)."""
    head = json.dumps(
        {"symbol": symbol, "from": first.isoformat(), "to": last.isoformat(), "count": frame.height},
        separators=(",", ":"),
    )
    columns = json.dumps(frame.columns, separators=(",", ":"))
    rows = for_wire(frame).write_json() if frame.height else "[]"
    return f'{head[:-1]},"columns":{columns},"rows":{rows}}}'.encode()


def _download(body: bytes, media_type: str, filename: str) -> Response:
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


_HISTORY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": SymbolHistory,
        "description": "JSON by default; `format=csv` or `format=parquet` answer the rows as a file download",
        "content": {CSV_MEDIA_TYPE: {}, PARQUET_MEDIA_TYPE: {}},
    },
    404: {"description": "unknown symbol (no bars in the range, nor on the newest session), or no bars at all"},
    422: {"description": "a bad date, an inverted or too long range, or an unknown column; `message` names it"},
}


@router.get("/{symbol}/history", response_class=Response, responses=_HISTORY_RESPONSES)
def symbol_history(
    symbol: SymbolPath,
    store: WarehouseDep,
    first: FromQuery = None,
    last: ToQuery = None,
    sessions: SessionsQuery = None,
    columns: Annotated[
        str | None, Query(description="comma-separated history columns to answer (default: all); `date` always")
    ] = None,
    format: Annotated[HistoryFormat, Query(description="json, csv or parquet")] = HistoryFormat.json,
) -> Response:
    """The symbol's daily bars (date, open, high, low, close, volume) joined per session with its stored
    result columns (sma_50, sma_200, rsi, tech_rating, signal … every results column; null where the session
    was not scanned or the symbol not stored), oldest first.

    The range defaults to the 252 sessions ending at the newest session with bars (`sessions` sets how many,
    `from` and `to` set it by date) and may span at most 2,520 sessions. JSON and CSV carry derived floats at 6 significant digits like every API answer;
    Parquet keeps the stored precision.
    """
    wanted = _columns(columns)
    newest = _newest_session(store, "bars")
    if newest is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the warehouse has no bars yet")
    first, last = history_range(first, last, newest, sessions)
    frame = read_history(store, symbol, first, last, wanted)
    if frame.is_empty() and _unknown_symbol(store, symbol, newest):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"unknown symbol {symbol}: no bars between {first} and {last}, nor on {newest} (the newest session)",
        )
    stem = f"{symbol}-history-{first.isoformat()}-{last.isoformat()}"
    if format is HistoryFormat.csv:
        return _download(for_wire(frame).write_csv().encode(), CSV_MEDIA_TYPE, f"{stem}.csv")
    if format is HistoryFormat.parquet:
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd")
        return _download(buffer.getvalue(), PARQUET_MEDIA_TYPE, f"{stem}.parquet")
    return Response(_json_body(symbol, first, last, frame), media_type="application/json")


@router.get("/{symbol}/screens", response_model=SymbolScreens, response_model_by_alias=True)
def symbol_screens(symbol: SymbolPath, store: WarehouseDep, first: FromQuery = None, last: ToQuery = None) -> Any:
    """Saved screens the symbol hit, per session: by default on the 21 sessions ending at the newest session
    with screen hits (the pipeline's `screen_hits`), newest first."""
    newest = _newest_session(store, "screens")
    if newest is None:
        return {"symbol": symbol, "from": first, "to": last, "hits": []}
    last = last or max(newest, first or newest)
    first = first or _sessions_before(last, DEFAULT_SCREEN_SESSIONS)
    first, last = history_range(first, last, newest)
    hits = (
        store.scan("screens", first, last)
        .filter(pl.col("symbol") == symbol)
        .select("date", "screen", "screen_version", "rank")
        .sort(["date", "screen"], descending=[True, False])
        .collect()
    )
    return {"symbol": symbol, "from": first, "to": last, "hits": hits.to_dicts()}
