"""Ad-hoc scan endpoints: start (streamed, prioritized or whole), stop, stats, delete, list active.

Starting loads the scan inputs in the thread pool (cached after the first load) so a warehouse without data
is a 409 at once rather than a stream that fails; the scan itself runs on a scan worker thread. A request's
`where` is compiled while the body is validated (a refusal is a 422 with the screen's place) and applied to
every batch before it is published; its `symbols` (a watchlist) are checked against the scanned session:
symbols it does not list or the pre-screen refused are reported in `watchlist`, a 422 only when it lists none.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from api import auth, deps
from api.auth import Principal
from api.models import ActiveScans, Prediction, ScanResult, ScanStarted, ScanStats
from api.predictions import ScanPredictors
from api.queries import invalid
from api.scans import SCAN_ID_PATTERN, AdHocScan, ScanManager, UnknownWatchlist, ordering_note
from technic_core.config import ScanConfig

logger = logging.getLogger(__name__)

router = APIRouter(tags=["scans"])

ScansDep = Annotated[ScanManager, Depends(deps.scans)]
Writer = Annotated[Principal, Depends(auth.writer)]
ScanIdPath = Annotated[str, Path(pattern=SCAN_ID_PATTERN, description="an ad-hoc scan id, adhoc-<16 hex>")]


def stats(scan: AdHocScan) -> ScanStats:
    return ScanStats(
        scan_id=scan.scan_id,
        session=scan.session,
        status=scan.status,
        created_at=scan.created_at,
        ordering=scan.ordering,
        stop_requested=scan.stop_requested.is_set(),
        total=scan.total,
        scanned=scan.scanned,
        results=scan.results,
        signals=scan.signals,
        rejected=scan.rejected,
        batches=scan.batches,
        elapsed_s=round(scan.elapsed_s, 4),
        end_reason=scan.end_reason,
        error=scan.error,
        subscribers=len(scan.topic.subscribers),
    )


async def _start(scans: ScanManager, config: ScanConfig, owner: Principal) -> AdHocScan:
    inputs = await run_in_threadpool(scans.inputs.load, config.lookback_sessions)
    try:
        return scans.start(config, owner.id, inputs)
    except UnknownWatchlist as exc:
        raise invalid(("body", "symbols"), str(exc), list(config.symbols or ())[:20]) from None


def _predicted(predictors: ScanPredictors | None, config: ScanConfig, scan: AdHocScan) -> Prediction | None:
    """The predicted outcome, when a predictor exists. The scan has already started, so a failing predictor
    is logged and leaves the field null rather than failing the response."""
    if predictors is None or scan.inputs.conditions is None:
        return None
    try:
        outcome = predictors.predict(config, dict(scan.inputs.conditions))
        return Prediction(result_count=outcome.result_count, duration_s=outcome.duration_s)
    except Exception:
        logger.exception("scan predictor failed", extra={"scan_id": scan.scan_id})
        return None


async def _started(
    request: Request, scans: ScanManager, config: ScanConfig, owner: Principal, predictors: ScanPredictors | None
) -> ScanStarted:
    scan = await _start(scans, config, owner)
    predicted = None if predictors is None else await run_in_threadpool(_predicted, predictors, config, scan)
    websocket_url = str(request.url_for("result_websocket", scan_id=scan.scan_id))
    return ScanStarted(
        scan_id=scan.scan_id,
        session=scan.session,
        status=scan.status,
        ordering=scan.ordering,
        ordering_note=ordering_note(scan),
        priority_session=scan.inputs.priority.session if scan.inputs.priority else None,
        events_url=str(request.url_for("result_events", scan_id=scan.scan_id)),
        websocket_url=websocket_url.replace("http", "ws", 1),
        stats_url=str(request.url_for("scan_stats", scan_id=scan.scan_id)),
        stop_url=str(request.url_for("stop_scan", scan_id=scan.scan_id)),
        predicted=predicted,
        watchlist=scan.watchlist,
    )


PredictorsDep = Annotated[ScanPredictors | None, Depends(deps.optional_scan_predictors)]


@router.post("/scan/stream", response_model=ScanStarted, status_code=status.HTTP_202_ACCEPTED)
async def start_stream(
    request: Request, config: ScanConfig, scans: ScansDep, owner: Writer, predictors: PredictorsDep
) -> ScanStarted:
    """Start an ad-hoc scan of the latest session; follow it at `events_url` or `websocket_url`.

    The order follows `config.prioritize`: the latest priority plan when one exists, else alphabetical.
    """
    return await _started(request, scans, config, owner, predictors)


@router.post("/scan/prioritized", response_model=ScanStarted, status_code=status.HTTP_202_ACCEPTED)
async def start_prioritized(
    request: Request, config: ScanConfig, scans: ScansDep, owner: Writer, predictors: PredictorsDep
) -> ScanStarted:
    """Like `/scan/stream` with prioritization forced on: symbols in the latest priority plan's rank order
    (the response's `ordering` says whether a plan existed, and `ordering_note` which one)."""
    return await _started(request, scans, config.model_copy(update={"prioritize": True}), owner, predictors)


@router.post("/scan", response_model=ScanResult)
async def scan_whole(config: ScanConfig, scans: ScansDep, owner: Writer) -> ScanResult:
    """Run an ad-hoc scan and answer with every row once it has ended (use `max_signals`/`timeout_s` to
    bound it). It is an ordinary ad-hoc scan meanwhile: listed as active, stoppable, streamable."""
    scan = await _start(scans, config, owner)
    assert scan.done is not None
    await asyncio.wrap_future(scan.done)
    rows = await run_in_threadpool(scan.rows)
    return ScanResult(stats=stats(scan), ordering_note=ordering_note(scan), watchlist=scan.watchlist, rows=rows)


@router.post("/scan/stop/{scan_id}", response_model=ScanStats, status_code=status.HTTP_202_ACCEPTED)
async def stop_scan(scan_id: ScanIdPath, scans: ScansDep, owner: Writer) -> ScanStats:
    """Ask the scan to stop before its next batch; its stream ends with reason `stopped`."""
    return stats(scans.stop(scan_id, owner.id))


@router.get("/scan/stats/{scan_id}", response_model=ScanStats, dependencies=[Depends(auth.reader)])
async def scan_stats(scan_id: ScanIdPath, scans: ScansDep) -> ScanStats:
    """Counters of a queued, running or finished ad-hoc scan."""
    return stats(scans.get(scan_id))


@router.delete("/scan/{scan_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_scan(scan_id: ScanIdPath, scans: ScansDep, owner: Writer) -> Response:
    """Stop the scan if it runs and forget it: its id answers 404 from now on."""
    scans.forget(scan_id, owner.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/scans/active", response_model=ActiveScans, dependencies=[Depends(auth.reader)])
async def active_scans(scans: ScansDep) -> ActiveScans:
    """Queued and running ad-hoc scans."""
    return ActiveScans(scans=[stats(scan) for scan in scans.active()])
