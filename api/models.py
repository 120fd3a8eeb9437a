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


class ResultFilters(Strict):
    """Query parameters of the results endpoints."""

    signal: Signal | None = Field(None, description="only rows with this Signal")
    sector: Sector | None = Field(None, description="only rows of this GICS sector")
    min_tech_rating: float | None = Field(None, ge=0, le=100, description="only rows rated at least this")
    limit: int = Field(100, ge=1, le=1000, description="at most this many rows")
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
    rows: list[ResultRow]


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
