"""Request and response models of the HTTP API.

All of them forbid unknown fields: a misspelt filter or body field is a 422 naming it, never silently
ignored. Result rows are generated from `technic_core.schema.RESULTS`, so the column list stays spelled in
one place; ad-hoc scan requests are `technic_core.config.ScanConfig` itself, bounds included.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, create_model

from technic_core import schema
from technic_core.catalog import CATALOG, UNITS
from technic_core.config import SECTORS, ScanConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_PYTHON_TYPES: dict[type[pl.DataType], type] = {
    pl.String: str,
    pl.Float64: float,
    pl.Int64: int,
    pl.Date: dt.date,
    pl.Boolean: bool,
}


def _row_model(name: str, columns: schema.Columns) -> type[Strict]:
    fields: dict[str, Any] = {
        column: (_PYTHON_TYPES[dtype.base_type()] | None, None) for column, dtype in columns.items()
    }
    return create_model(name, __base__=Strict, **fields)


#: Columns results may be ordered by: the scored row's own, then every catalog column (`GET /columns`); a
#: leading '-' sorts descending. Ties are broken by symbol; nulls (a column an older partition lacks) sort last.
ORDER_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(
        (
            "seq", "symbol", "tech_rating", "close", "volume", "rsi", "macd", "atr_pct", "volume_ratio",
            "mom_21", "mom_63", "mom_126", "alpha_score", "priority_score",
            *(column.name for column in CATALOG),
        )
    )
)  # fmt: skip

if TYPE_CHECKING:
    # Built below from runtime values, which a type checker cannot evaluate: it sees what each one is —
    # a row model with fields it cannot list, and the strings the literals allow.
    ResultRow: TypeAlias = Strict
    Signal: TypeAlias = str
    Sector: TypeAlias = str
    OrderBy: TypeAlias = str
else:
    #: One scan result row; every column may be null in principle (older files lack the optional ones).
    ResultRow = _row_model("ResultRow", schema.RESULTS)
    Signal = Literal[schema.SIGNALS]
    Sector = Literal[SECTORS]
    OrderBy = Literal[tuple(f"{sign}{column}" for column in ORDER_COLUMNS for sign in ("", "-"))]


#: What a page of rows comes as: JSON, or a download (Content-Disposition: attachment) of CSV or Parquet.
Format = Literal["json", "csv", "parquet"]

_COLUMNS_DESCRIPTION = (
    "comma-separated result columns to return, in this order (default: every column); GET /columns lists the catalog's"
)
_FORMAT_DESCRIPTION = (
    "json (default), or csv / parquet as a download; a download holds every row from `offset` on unless "
    "`limit` is given"
)


class Paging(Strict):
    """Query parameters shared by every paged endpoint."""

    columns: str | None = Field(None, max_length=4_000, description=_COLUMNS_DESCRIPTION)
    limit: int = Field(
        100, ge=1, le=1000, description="at most this many rows (JSON pages; downloads: only when given)"
    )
    offset: int = Field(0, ge=0, le=10_000_000, description="skip this many rows first (the previous `next_offset`)")
    format: Format = Field("json", description=_FORMAT_DESCRIPTION)

    def row_limit(self) -> int | None:
        """`limit` for a JSON page; for a download, `limit` only when the client gave one (else every row)."""
        return self.limit if self.format == "json" or "limit" in self.model_fields_set else None


class ResultFilters(Paging):
    """Query parameters of the results endpoints."""

    signal: Signal | None = Field(None, description="only rows with this Signal")
    sector: Sector | None = Field(None, description="only rows of this GICS sector")
    min_tech_rating: float | None = Field(None, ge=0, le=100, description="only rows rated at least this")
    where: str | None = Field(
        None,
        description="a screen (docs/screens.md), e.g. `rsi < 30 and close > sma_200` or `close > prev(close)`: only "
        "the rows it selects",
    )
    order_by: OrderBy = Field(
        "-tech_rating",
        description="column to sort by — the scored row's own or any catalog column (GET /columns); prefix '-' "
        "for descending",
    )


class ColumnInfo(Strict):
    """One column of the catalog (`technic_core.catalog.registry`)."""

    name: str
    type: Literal["Float64", "Int64", "Boolean", "String"] = Field(description="the stored dtype")
    unit: str = Field(description=f"one of {', '.join(UNITS)}; fractions are 0.04 for 4 %")
    group: str = Field(description="what the column is about, e.g. moving averages, oscillators, volume")
    description: str
    lookback: int = Field(description="earlier bars of the symbol the first value needs: null on its first `lookback`")
    source: Literal["bars", "index", "universe", "derived"] = Field(
        description="the symbol's bars; its bars and the index (SPY); the universe's reference data; other columns"
    )
    null_reason: str | None = Field(description="why the column can be null beyond its lookback, if it can")
    alias_of: str | None = Field(description="the column whose values this one carries under its screener name")


class ColumnCatalog(Strict):
    """`GET /columns`: every catalog column, in catalog order (the order result rows carry them in)."""

    count: int
    columns: list[ColumnInfo]


class ResultsPage(Strict):
    date: dt.date
    count: int = Field(description="rows in this page (at most `limit`)")
    total: int = Field(description="rows that match the filters and the screen, over every page")
    offset: int = Field(description="rows skipped before this page")
    next_offset: int | None = Field(description="`offset` of the next page; null on the last page")
    rows: list[ResultRow] = Field(description="result rows; with `columns`, only those columns")


class StreamCounts(Strict):
    subscribers: int
    tailed_partitions: int
    active_scans: int


class Health(Strict):
    status: Literal["ok"]
    warehouse: str
    warehouse_exists: bool
    latest_session: dt.date | None = Field(description="newest session with scan results")
    champions: dict[str, str] = Field(description="champion model version per model name")
    streams: StreamCounts


class Partitions(Strict):
    datasets: dict[str, list[dt.date]] = Field(description="sessions with data, oldest first, per dataset")


class ModelVersion(Strict):
    version: str
    metrics: dict[str, Any] | None = Field(description="metrics.json of the version, null when absent or unreadable")


class ModelInfo(Strict):
    name: str
    champion: str | None
    versions: list[ModelVersion]


class Models(Strict):
    models: list[ModelInfo]


class Prediction(Strict):
    result_count: float = Field(description="predicted number of results")
    duration_s: float = Field(description="predicted scan duration in seconds")


class Watchlist(Strict):
    """What became of an ad-hoc scan's `symbols`."""

    requested: int
    scanned: int = Field(description="symbols of the list the scan visits (listed and past the pre-screen)")
    unknown: list[str] = Field(description="not listed on the scanned session")
    not_screened: list[str] = Field(description="listed, but refused by the pre-screen (price, liquidity, history)")


class ScanStarted(Strict):
    scan_id: str
    session: dt.date
    status: str
    ordering: Literal["priority", "alphabetical"]
    ordering_note: str
    priority_session: dt.date | None
    events_url: str
    websocket_url: str
    stats_url: str
    stop_url: str
    predicted: Prediction | None = Field(description="present when a trained scan predictor exists")
    watchlist: Watchlist | None = Field(None, description="with `symbols`: which of them the scan visits")


class ScanStats(Strict):
    scan_id: str
    session: dt.date
    status: Literal["queued", "running", "finished"]
    created_at: dt.datetime
    ordering: Literal["priority", "alphabetical"]
    stop_requested: bool
    total: int = Field(description="symbols the scan will visit")
    scanned: int
    results: int
    signals: int
    rejected: int
    batches: int
    elapsed_s: float
    end_reason: str | None
    error: str | None
    subscribers: int


class ActiveScans(Strict):
    scans: list[ScanStats]


class ScanResult(Strict):
    """`POST /scan`: the finished scan and all its rows."""

    stats: ScanStats
    ordering_note: str
    watchlist: Watchlist | None = Field(None, description="with `symbols`: which of them the scan visited")
    rows: list[ResultRow]


class LabeledAnswer(Strict):
    """What every prediction answer says about its source (docs/predictions.md)."""

    model: str = Field(
        description='"baseline" until a trained scan predictor is promoted, then that champion\'s version '
        "(scan_predictors in GET /models)"
    )
    reason: str | None = Field(description="why the baseline answers; null when the trained predictor does")
    basis: str | None = Field(
        description="what the baseline's numbers come from, or why there are none; null for the trained predictor"
    )
    session: dt.date | None = Field(
        description="latest stored market-conditions session, which the trained predictor reads; null before the "
        "pipeline stored one"
    )


class PredictResponse(LabeledAnswer):
    predicted: Prediction | None = Field(description="null only when the warehouse holds nothing to estimate from")


class SuggestResponse(LabeledAnswer):
    goal: Literal["speed", "quality", "balanced"]
    config: ScanConfig | None = Field(description="null only when the warehouse holds nothing to estimate from")
    predicted: Prediction | None
    warnings: list[str]
    hot_sectors: list[str]


# ---------------------------------------------------------------------------------------------- screens


class ScreenVersionInfo(Strict):
    version: int
    fingerprint: str = Field(description="12 hex digits of the SHA-256 of the normalized expression")
    expression: str
    saved_at: dt.datetime | None = Field(description="null for built-ins and for a hand edit not saved since")


class ScreenInfo(Strict):
    """A saved screen (docs/screens.md) and its hits on the newest session with stored screen hits."""

    name: str
    title: str
    description: str
    expression: str
    version: int
    fingerprint: str
    builtin: bool
    sort_by: str | None = Field(description="the column its hits are ordered by (null: tech_rating)")
    descending: bool
    hits: int | None = Field(
        description="hits recorded on `hits_date` by this version; null when none are recorded (a screen saved "
        "after that session's hits were stored, or changed since)"
    )
    hits_date: dt.date | None = Field(description="newest session with stored screen hits (the `screens` dataset)")


class ScreenDetail(ScreenInfo):
    versions: list[ScreenVersionInfo] = Field(description="every version, oldest first; the last is the current one")


class ScreenFileProblem(Strict):
    name: str | None
    line: int | None
    message: str


class ScreenList(Strict):
    """`GET /screens`: built-ins first, then the users' screens by name."""

    etag: str | None = Field(description="version of screens.yaml, for `If-Match` (also the ETag header)")
    hits_date: dt.date | None
    count: int
    screens: list[ScreenInfo]
    problems: list[ScreenFileProblem] = Field(description="entries of screens.yaml left out at load, and why")


class ScreenBody(Strict):
    """`PUT /screens/{name}`: the whole screen; a field left out is reset to its default."""

    expression: str = Field(description='the screen, e.g. `rsi < 30 and sector == "Energy"` (docs/screens.md)')
    title: str | None = Field(None, description="1–120 characters (default: the name)")
    description: str = Field("", description="at most 2,000 characters")
    sort_by: str | None = Field(None, description="a result column its hits are ordered by (default: tech_rating)")
    descending: bool = Field(True, description="order hits by `sort_by` descending")


class HitsPage(Strict):
    """`GET /screens/{name}/hits/{date}` (documentation: the body is encoded by polars, not by this model)."""

    name: str
    version: int = Field(description="the version whose hits these are")
    fingerprint: str
    date: dt.date
    source: Literal["stored", "evaluated"] = Field(
        description="stored: the hits the pipeline recorded (`screens` dataset); evaluated: computed now over the "
        "stored results, because none were recorded for this version yet"
    )
    note: str = Field(description="why the source is what it is")
    count: int = Field(description="hits in this page")
    total: int = Field(description="hits on the session")
    offset: int
    next_offset: int | None
    rows: list[dict[str, Any]] = Field(description="`rank`, `symbol`, then the chosen columns, in rank order")


class SessionHits(Strict):
    date: dt.date
    hits: int


class HistoryPage(Strict):
    """`GET /screens/{name}/history` (documentation: the body is encoded by polars, not by this model)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    version: int
    fingerprint: str
    first: dt.date = Field(alias="from")
    last: dt.date = Field(alias="to")
    sessions: list[SessionHits] = Field(description="hits per session of the range that has results, oldest first")
    count: int
    total: int = Field(description="hits over the range")
    offset: int
    next_offset: int | None
    rows: list[dict[str, Any]] = Field(description="`date`, `rank`, `symbol`, then the chosen columns")


class PerformancePage(Strict):
    """`GET /screens/{name}/performance`: whether the hits paid, beside the signal bands."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    first: dt.date | None = Field(alias="from")
    last: dt.date | None = Field(alias="to")
    reason: str | None = Field(description="why `rows` is empty (nothing labeled yet); null otherwise")
    versions: list[int] = Field(description="versions of the screen whose hits the evidence holds")
    rows: list[dict[str, Any]] = Field(
        description="the screen's row of `technic_core.screens.evaluation.performance`: sessions, hits, and per "
        "horizon (5d, 10d) mean, median, excess over the universe, share positive and t-statistic of the excess"
    )
    bands: list[dict[str, Any]] = Field(description="the same for each band of `signal` and `consensus_signal`")
