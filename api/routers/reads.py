"""Read endpoints: health, partitions, results and the model registry.

They are plain `def` functions, so FastAPI runs them in its thread pool: file listings and DuckDB queries
never block the event loop that carries the streams.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from api import auth, deps
from api.events import for_wire
from api.hub import StreamHub
from api.models import Health, Models, Partitions, ResultFilters, ResultRow, ResultsPage, StreamCounts
from api.queries import (
    CSV_MEDIA_TYPE,
    PARQUET_MEDIA_TYPE,
    Page,
    ResultQueries,
    RowRequest,
    chosen_columns,
    model_registry,
    newest_session,
    page_response,
    where_screen,
)
from api.scans import ScanManager
from api.validation import trading_session
from technic_core.screening import SYMBOL_PATTERN
from technic_core.warehouse import DATASETS, Warehouse

router = APIRouter(dependencies=[Depends(auth.reader)], tags=["reads"])

WarehouseDep = Annotated[Warehouse, Depends(deps.store)]
QueriesDep = Annotated[ResultQueries, Depends(deps.queries)]
SessionPath = Annotated[dt.date, Path(description="an NYSE session, YYYY-MM-DD")]


def _latest_results_session(store: Warehouse) -> dt.date:
    session = newest_session(store, "results")
    if session is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the warehouse has no scan results yet")
    return session


def _results_session(store: Warehouse, date: dt.date) -> dt.date:
    session = trading_session(date, ("path", "date"))
    if not store.has_partition("results", session):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no scan results for {session}")
    return session


def row_request(filters: ResultFilters) -> RowRequest:
    """The checked request: a bad `where` or an unknown column is a 422 naming the field (and the screen's place)."""
    return RowRequest(
        signal=filters.signal,
        sector=filters.sector,
        min_tech_rating=filters.min_tech_rating,
        where=where_screen(filters.where),
        order_by=filters.order_by,
        columns=chosen_columns(filters.columns),
        offset=filters.offset,
        limit=filters.row_limit(),
    )


def _page(request: Request, queries: ResultQueries, session: dt.date, filters: ResultFilters) -> Response:
    rows = row_request(filters)

    def encode(page: Page) -> Response:
        return page_response({"date": session}, page, filters.format, f"results-{session}", request.url)

    if filters.format != "json":  # parquet keeps stored precision, CSV has wire precision
        return encode(queries.page(session, rows, wire=filters.format == "csv"))
    return queries.respond(session, rows, _response_key(request), encode)


def _response_key(request: Request) -> Hashable:
    """JSON pages are kept for identical requests (same URL, parameters in any order) while the rows are
    unchanged; the URL is part of the key because the `Link` header repeats it."""
    return str(request.url.replace(query="")), tuple(sorted(request.query_params.multi_items()))


async def _answer(
    request: Request,
    store: Warehouse,
    queries: ResultQueries,
    session_of: Callable[[], dt.date],
    filters: ResultFilters,
) -> Response:
    """A results page: a kept JSON answer straight from the event loop when the warehouse is local (finding it
    costs a directory listing, no read), else `_page` in a worker thread.

    Why: many clients polling one screen are answered from the response cache; a thread per answer would
    cost them a hop each and, with dozens in flight, answer them out of arrival order, which is what their
    slowest answers wait on. Anything that reads or evaluates stays off the loop.
    """
    if store.is_local and filters.format == "json":
        session = session_of()
        kept = queries.kept_response(session, row_request(filters), _response_key(request))
        if kept is not None:
            return kept
        return await run_in_threadpool(_page, request, queries, session, filters)
    return await run_in_threadpool(lambda: _page(request, queries, session_of(), filters))


_PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON by default; `format=csv` or `format=parquet` answer the rows as a file download",
        "content": {CSV_MEDIA_TYPE: {}, PARQUET_MEDIA_TYPE: {}},
    },
    404: {"description": "no results for the session (or none at all, for `latest`)"},
    422: {
        "description": "a bad parameter; `message` names it. A refused `where` carries the screen language's "
        "`position`, `line`, `column`, `expected` and `suggestions` in its `detail` item"
    },
}


@router.get("/health", response_model=Health)
def health(
    store: WarehouseDep,
    hub: Annotated[StreamHub, Depends(deps.hub)],
    scans: Annotated[ScanManager, Depends(deps.scans)],
) -> Health:
    """Liveness plus what a dashboard wants at a glance: the newest results and the champion models."""
    return Health(
        status="ok",
        warehouse=str(store.root),
        warehouse_exists=store.root.is_dir(),
        latest_session=newest_session(store, "results"),
        champions={model.name: model.champion for model in model_registry(store) if model.champion},
        streams=StreamCounts(
            subscribers=hub.subscriber_count, tailed_partitions=hub.tail_count, active_scans=len(scans.active())
        ),
    )


@router.get("/partitions", response_model=Partitions)
def partitions(store: WarehouseDep) -> Partitions:
    """Sessions present in every session-partitioned dataset."""
    return Partitions(datasets={name: store.sessions(name) for name, spec in DATASETS.items() if spec.partitioned})


@router.get("/results/latest", response_model=ResultsPage, responses=_PAGE_RESPONSES)
async def latest_results(
    request: Request, store: WarehouseDep, queries: QueriesDep, filters: Annotated[ResultFilters, Query()]
) -> Response:
    """Results of the newest scanned session: filtered, screened (`where`), ordered and paged (`offset`,
    `next_offset`), with the chosen `columns`."""
    return await _answer(request, store, queries, lambda: _latest_results_session(store), filters)


@router.get("/results/{date}", response_model=ResultsPage, responses=_PAGE_RESPONSES)
async def session_results(
    request: Request,
    date: SessionPath,
    store: WarehouseDep,
    queries: QueriesDep,
    filters: Annotated[ResultFilters, Query()],
) -> Response:
    """Results of one session: filtered, screened (`where`), ordered and paged, with the chosen `columns`."""
    return await _answer(request, store, queries, lambda: _results_session(store, date), filters)


@router.get("/results/{date}/{symbol}", response_model=ResultRow)
def symbol_result(
    date: SessionPath,
    symbol: Annotated[str, Path(pattern=SYMBOL_PATTERN, description="ticker, e.g. AAPL or BRK.B")],
    store: WarehouseDep,
    queries: QueriesDep,
) -> dict[str, object]:  # validated and documented as `response_model`
    """One symbol's result row on one session."""
    session = _results_session(store, date)
    rows = for_wire(queries.result(session, symbol)).to_dicts()
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{symbol} has no result on {session}")
    return rows[0]


@router.get("/models", response_model=Models)
def models(store: WarehouseDep) -> Models:
    """The model registry: each model's versions, metrics and champion."""
    return Models(models=model_registry(store))
