"""FastAPI dependencies: the per-process services kept on `app.state`, and the prediction seams.

Accessors are `async def` because FastAPI runs plain `def` dependencies in its thread pool, a pointless hop
for reading an attribute; the predictor loader hands only an actual (re)load, which may read model files,
to the thread pool.

The trained scan predictors are a separate dependency so a deployment (or a test) can swap them with
`app.dependency_overrides` without touching the ML package.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from api.hub import StreamHub
from api.predictions import PredictionService, ScanPredictors
from api.queries import ResultQueries
from api.scans import ScanManager
from api.settings import ApiSettings
from technic_core.warehouse import Warehouse


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
