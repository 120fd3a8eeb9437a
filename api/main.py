"""The Technic HTTP API: `api.main:app`, or `create_app(...)` for a custom warehouse or settings.

Started by `technic serve` (uvicorn on 127.0.0.1:8000). The API only reads the warehouse — Parquet files
through in-memory DuckDB views, never the catalog file and never a partition write — except that each
ad-hoc scan appends its own row to scan history. Interactive docs are at /docs, the schema at
/openapi.json.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_core import ErrorDetails

from api.auth import KeyRing, StreamQuota
from api.hub import StreamHub, Topic
from api.predictions import PredictionService
from api.queries import ResultQueries
from api.redaction import redact_api_keys
from api.routers import columns, predictions, reads, scans, screens, streams, symbols, web
from api.scans import NoScanData, NotScanOwner, ScanManager, ScanQuotaExceeded, UnknownScan
from api.settings import ApiSettings
from api.tails import PartitionTail
from technic_core.config import Settings
from technic_core.daily import DEFAULT_SCAN
from technic_core.errors import ConfigError, TechnicError, WarehouseError
from technic_core.scan import NO_HOOKS, ScanHooks
from technic_core.screens import (
    BuiltinScreenError,
    InvalidScreenError,
    ScreenConflictError,
    ScreenError,
    ScreenFileError,
    ScreenLibrary,
    ScreenNotFoundError,
)
from technic_core.warehouse import Warehouse

logger = logging.getLogger(__name__)

#: Domain errors and the HTTP status each becomes; the body is `{"detail": <the error's message>}`.
ERROR_STATUS: tuple[tuple[type[TechnicError], int], ...] = (
    (UnknownScan, status.HTTP_404_NOT_FOUND),
    (NotScanOwner, status.HTTP_403_FORBIDDEN),
    (ScanQuotaExceeded, status.HTTP_429_TOO_MANY_REQUESTS),
    (NoScanData, status.HTTP_409_CONFLICT),
    (ScreenNotFoundError, status.HTTP_404_NOT_FOUND),
    (BuiltinScreenError, status.HTTP_403_FORBIDDEN),
    (ScreenConflictError, status.HTTP_409_CONFLICT),
    (ScreenFileError, status.HTTP_409_CONFLICT),
    (InvalidScreenError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (ScreenError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (ConfigError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (WarehouseError, status.HTTP_503_SERVICE_UNAVAILABLE),
    # Anything else raised on purpose (e.g. the ML stage's "no scan history yet") is about the warehouse's
    # state, not a server fault.
    (TechnicError, status.HTTP_409_CONFLICT),
)


def _validation_message(errors: Sequence[ErrorDetails]) -> str:
    """'body.max_symbols: Input should be ...; query.limit: ...' — each problem led by its field."""
    return "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in errors)


def _json_safe(value: object) -> object:
    """`value` with NaN and ±infinity spelled as strings: a client may send them (JSON5-style `NaN`), and
    echoing its input back must not make the error response itself unencodable."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


#: The fields a refused screen adds to its `detail` item (`technic_core.screens.ScreenError.to_dict`).
SCREEN_FIELDS = ("error", "message", "position", "line", "column", "expected", "suggestions")


def _with_screen_fields(error: ErrorDetails) -> dict[str, object]:
    """A request-model error as its `detail` item; a screen refused inside a model (an ad-hoc scan's `where`)
    has its place lifted from pydantic's `ctx` beside `loc`, as the query parameters' screens have it, with
    `field` naming the field."""
    item: dict[str, object] = dict(error)
    context = error.get("ctx")
    if error["type"] == "screen" and isinstance(context, dict):
        item.pop("ctx")
        item.update({name: context[name] for name in SCREEN_FIELDS if name in context})
        item["field"] = ".".join(str(part) for part in error["loc"])
        item["input"] = str(error.get("input"))[:200]
    return item


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):  # registered for it alone; Starlette types handlers broadly
        raise exc
    errors = exc.errors()
    items = [_with_screen_fields(error) for error in errors]
    detail = _json_safe(jsonable_encoder(items, custom_encoder={ValueError: str}))
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": detail, "message": _validation_message(errors)},
    )


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    code = next(code for kind, code in ERROR_STATUS if isinstance(exc, kind))
    if code >= 500:
        logger.error("warehouse error", extra={"path": request.url.path, "error": str(exc)})
    if isinstance(exc, ScreenError):  # reached only when a router did not name the field: keep the place
        return JSONResponse(status_code=code, content={"detail": exc.to_dict(), "message": str(exc)})
    return JSONResponse(status_code=code, content={"detail": str(exc)})


def create_app(
    settings: Settings | None = None, api_settings: ApiSettings | None = None, scan_hooks: ScanHooks = NO_HOOKS
) -> FastAPI:
    """An app over `settings.warehouse` (default: from `TECHNIC_*` variables).

    `scan_hooks` are applied to every ad-hoc scan (e.g. ML alpha enrichment) after the priority plan's
    score and tier are copied in.
    """
    settings = settings or Settings.from_env()
    api_settings = api_settings or ApiSettings.from_env()
    store = Warehouse.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def tail(topic: Topic, session: dt.date) -> None:
            await PartitionTail(store, topic, session, api_settings.poll_interval_s).run()

        hub = StreamHub(api_settings.subscriber_queue, tail, api_settings.max_tailed_partitions)
        app.state.hub = hub
        app.state.queries = ResultQueries(store)
        app.state.scans = ScanManager(
            store,
            hub,
            asyncio.get_running_loop(),
            workers=api_settings.scan_workers,
            max_scans_per_key=api_settings.max_scans_per_key,
            retained=api_settings.retained_scans,
            hooks=scan_hooks,
        )
        logging.getLogger("uvicorn.access").addFilter(redact_api_keys)
        warm_up = asyncio.create_task(_warm_scan_inputs(app.state.scans))
        logger.info("api started", extra={"warehouse": str(store.root)})
        try:
            yield
        finally:
            warm_up.cancel()
            await hub.aclose()
            await anyio.to_thread.run_sync(app.state.scans.shutdown)
            app.state.queries.close()

    app = FastAPI(
        title="Technic API",
        summary="Latest scan results, live result streams (SSE and WebSocket), ad-hoc scans and predictions.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.api_settings = api_settings
    api_keys = tuple(key.get_secret_value() for key in settings.api_keys)
    app.state.keyring = KeyRing(api_keys, api_settings.reads_require_key)
    app.state.stream_quota = StreamQuota(api_settings.max_streams_per_key)
    app.state.predictions = PredictionService(store, api_settings.predictor_ttl_s)
    app.state.screens = screens.CachedLibrary(ScreenLibrary(store))
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for kind, _ in ERROR_STATUS:
        app.add_exception_handler(kind, _domain_error)
    for module in (reads, columns, screens, symbols, streams, scans, predictions, web):
        app.include_router(module.router)
    return app


async def _warm_scan_inputs(manager: ScanManager) -> None:
    """Load the default scan's inputs in the background, so the first ad-hoc scan starts at full speed."""
    try:
        await anyio.to_thread.run_sync(manager.inputs.load, DEFAULT_SCAN.lookback_sessions)
    except TechnicError as exc:
        logger.info("scan inputs not preloaded", extra={"reason": str(exc)})


def tune_garbage_collection() -> None:
    """Keep CPython's cycle collector off the fan-out path: freeze what lives as long as the process, and
    collect less often. For the server process (`technic serve` calls it once the app is built), not for
    every app a test builds in a shared interpreter.

    Why: the modules a server holds for its whole life (numerical libraries, calendars, the web stack) are
    over 100,000 tracked objects, and a thousand open streams add several hundred thousand more. A full
    collection traverses all of them and stalls the event loop (bench/README.md, streaming), and every
    subscriber of the batch in flight waits for it. `gc.freeze` exempts the objects alive at start-up;
    thresholds of 10,000 / 10 / 1,000 (default 700 / 10 / 10) make young
    collections rarer — most of a fan-out's objects die by reference counting before one would run — and
    full ones a hundred times rarer. Reference counting still frees acyclic garbage at once; cycles wait a
    little longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 1000)


app = create_app()
