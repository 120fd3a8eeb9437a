"""Read endpoints: health, partitions, results and the model registry.

They are plain `def` functions, so FastAPI runs them in its thread pool: file listings and DuckDB queries
never block the event loop that carries the streams.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status

from api import auth, deps
from api.events import for_wire
from api.hub import StreamHub
from api.models import Health, Models, Partitions, ResultFilters, ResultRow, ResultsPage, StreamCounts
from api.queries import ResultQueries, model_registry
from api.scans import ScanManager
from api.validation import trading_session
from technic_core.screening import SYMBOL_PATTERN
from technic_core.warehouse import DATASETS, Warehouse

router = APIRouter(dependencies=[Depends(auth.reader)], tags=["reads"])

WarehouseDep = Annotated[Warehouse, Depends(deps.store)]
QueriesDep = Annotated[ResultQueries, Depends(deps.queries)]
SessionPath = Annotated[dt.date, Path(description="an NYSE session, YYYY-MM-DD")]


def _latest_results_session(store: Warehouse) -> dt.date:
    sessions = store.sessions("results")
    if not sessions:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the warehouse has no scan results yet")
    return sessions[-1]


def _results_session(store: Warehouse, date: dt.date) -> dt.date:
    session = trading_session(date, ("path", "date"))
    if not store.has_partition("results", session):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no scan results for {session}")
    return session


def _page(queries: ResultQueries, session: dt.date, filters: ResultFilters) -> ResultsPage:
    rows = for_wire(queries.results(session, filters)).to_dicts()
    return ResultsPage(date=session, count=len(rows), rows=rows)


@router.get("/health", response_model=Health)
def health(
    store: WarehouseDep,
    hub: Annotated[StreamHub, Depends(deps.hub)],
    scans: Annotated[ScanManager, Depends(deps.scans)],
) -> Health:
    """Liveness plus what a dashboard wants at a glance: the newest results and the champion models."""
    sessions = store.sessions("results")
    return Health(
        status="ok",
        warehouse=str(store.root),
        warehouse_exists=store.root.is_dir(),
        latest_session=sessions[-1] if sessions else None,
        champions={model.name: model.champion for model in model_registry(store) if model.champion},
        streams=StreamCounts(
            subscribers=hub.subscriber_count, tailed_partitions=hub.tail_count, active_scans=len(scans.active())
        ),
    )


@router.get("/partitions", response_model=Partitions)
def partitions(store: WarehouseDep) -> Partitions:
    """Sessions present in every session-partitioned dataset."""
    return Partitions(datasets={name: store.sessions(name) for name, spec in DATASETS.items() if spec.partitioned})


@router.get("/results/latest", response_model=ResultsPage)
def latest_results(store: WarehouseDep, queries: QueriesDep, filters: Annotated[ResultFilters, Query()]) -> ResultsPage:
    """Results of the newest scanned session, filtered and ordered."""
    return _page(queries, _latest_results_session(store), filters)


@router.get("/results/{date}", response_model=ResultsPage)
def session_results(
    date: SessionPath, store: WarehouseDep, queries: QueriesDep, filters: Annotated[ResultFilters, Query()]
) -> ResultsPage:
    """Results of one session, filtered and ordered."""
    return _page(queries, _results_session(store, date), filters)


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
