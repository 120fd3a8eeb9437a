"""FastAPI dependencies: the per-process services kept on `app.state`, and the prediction seams.

Accessors are `async def` because FastAPI runs plain `def` dependencies in its thread pool, a pointless hop
for reading an attribute; the predictor loader hands only an actual (re)load, which may read model files,
to the thread pool.

The prediction dependencies are separate functions so a deployment (or a test) can swap the predictor with
`app.dependency_overrides` without touching the ML package.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from api.hub import StreamHub
from api.predictions import PredictionService, ScanPredictors
from api.queries import ResultQueries
from api.scans import ScanManager
from api.settings import ApiSettings
from technic_core.warehouse import Warehouse

#: `suggest(goal, conditions)` bound to the warehouse; `goal` is one of the API's goals.
Suggester = Callable[[str, dict[str, Any]], Any]

#: The API's goals (speed | quality | balanced) → the optimizer's preset names.
OPTIMIZER_GOALS = {"speed": "quick", "quality": "deep", "balanced": "balanced"}


async def store(request: Request) -> Warehouse:
    return request.app.state.store


async def api_settings(request: Request) -> ApiSettings:
    return request.app.state.api_settings


async def queries(request: Request) -> ResultQueries:
    return request.app.state.queries


async def hub(request: Request) -> StreamHub:
    return request.app.state.hub


async def scans(request: Request) -> ScanManager:
    return request.app.state.scans


def _predictions(request: Request) -> PredictionService:
    return request.app.state.predictions


async def optional_scan_predictors(request: Request) -> ScanPredictors | None:
    """The trained scan predictors, or None while there are none.

    The cached answer is returned on the event loop; only a (re)load, which may read model files, goes to
    the thread pool — so starting an ad-hoc scan does not wait for a thread hop first.
    """
    service = _predictions(request)
    fresh, predictors = service.fresh()
    return predictors if fresh else await run_in_threadpool(service.predictors)


def optional_parameter_suggester(
    request: Request, predictors: ScanPredictors | None = Depends(optional_scan_predictors)
) -> Suggester | None:
    """`technic_core.ml.scan_predictors.suggest` bound to the warehouse, or None while unavailable."""
    service = _predictions(request)
    module = service.module() if predictors is not None else None
    if module is None:
        return None
    return lambda goal, conditions: module.suggest(service.store, OPTIMIZER_GOALS[goal], conditions)


def prediction_unavailable(request: Request) -> HTTPException:
    """503 naming why (module missing or nothing trained). Raised by the endpoints, after input validation,
    so a bad request is still a 422."""
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, _predictions(request).unavailable_reason)


def latest_conditions(warehouse: Warehouse) -> tuple[dt.date, dict[str, Any]]:
    """The newest market-conditions row; 409 when the pipeline has not produced one yet."""
    sessions = warehouse.sessions("conditions")
    if not sessions:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "the warehouse has no market conditions yet; run the daily pipeline first"
        )
    frame = warehouse.read("conditions", sessions[-1], sessions[-1])
    return sessions[-1], frame.row(0, named=True)
