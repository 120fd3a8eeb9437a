"""Result streams: `GET /events/results/{scan_id}` (SSE) and `WS /ws/results/{scan_id}`; a saved screen's hits
as a session's batches land: `GET /events/screens/{name}/{session}` (SSE, the session stream filtered).

`scan_id` is an ad-hoc scan id, a session date or `latest` (the newest session with results, resolved when
the client connects). Both transports replay what exists after the client's cursor, then push live
events, then `end`; both send a heartbeat after `TECHNIC_API_HEARTBEAT_S` idle seconds. A client that
cannot keep up gets `lagging` (with the seq to resume from) and is disconnected.

WebSocket close codes: 1000 after `end` or `lagging`, 1008 for a missing or invalid key, and 4000 + the HTTP
status for the rest (4404 unknown stream, 4422 bad id or cursor, 4429 too many streams for the caller, 4503
too many sessions followed at once).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Annotated

import anyio
import polars as pl
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, WebSocket, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask
from starlette.types import Message, Send
from starlette.websockets import WebSocketDisconnect

from api import auth
from api.auth import AuthError, Principal, StreamQuota
from api.events import END_ERROR, FINAL_EVENTS, RESULT, GzipStream, StreamEvent, end_event, sse_burst
from api.hub import StreamHub, Subscriber, TooManyTails
from api.queries import SessionFrames, newest_session, saved_screen, screened, where_screen
from api.routers.screens import NAME_PATTERN
from api.validation import (
    MAX_CURSOR,
    STREAM_ID_PATTERN,
    StreamTarget,
    invalid,
    parse_cursor,
    resume_cursor,
    stream_target,
)
from technic_core.screens import Screen
from technic_core.warehouse import Warehouse

logger = logging.getLogger(__name__)

router = APIRouter(tags=["streams"])

#: A screen stream follows a session: 'latest' or a date (ad-hoc scans have their own `where`).
SESSION_PATTERN = r"^(latest|\d{4}-\d{2}-\d{2})$"

_WS_POLICY_VIOLATION = 1008
_WS_NORMAL = 1000


def _subscribe(hub: StreamHub, store: Warehouse, target: StreamTarget, cursor: int | None) -> Subscriber:
    """Attach to the target's topic; 404 when an ad-hoc scan is unknown or no results exist for `latest`."""
    if target.scan_id is not None:
        subscriber = hub.subscribe_scan(target.scan_id, cursor)
        if subscriber is None:
            unknown = f"no ad-hoc scan {target.scan_id!r} (never started, deleted or evicted)"
            raise HTTPException(status.HTTP_404_NOT_FOUND, unknown)
        return subscriber
    session = target.session
    if target.latest:
        session = newest_session(store, "results")
        if session is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, "the warehouse has no scan results yet to stream as 'latest'"
            )
    assert session is not None
    return hub.subscribe_session(session, cursor)


@dataclass
class StreamLease:
    """A subscription plus its quota slot, released exactly once however the stream ends."""

    hub: StreamHub
    quota: StreamQuota
    principal: Principal
    subscriber: Subscriber
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.hub.unsubscribe(self.subscriber)
            self.quota.release(self.principal)

    async def release_later(self) -> None:
        """For Starlette's background task: runs even if the body generator never started."""
        self.release()


def _open(
    connection: Request | WebSocket, principal: Principal, scan_id: str | StreamTarget, cursor: int | None
) -> StreamLease:
    """Resolve, check the quota and subscribe, all on the event loop without awaiting in between."""
    state = connection.app.state
    target = scan_id if isinstance(scan_id, StreamTarget) else stream_target(scan_id, ("path", "scan_id"))
    quota: StreamQuota = state.stream_quota
    if quota.exceeded(principal):
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, quota.refusal())
    try:
        subscriber = _subscribe(state.hub, state.store, target, cursor)
    except TooManyTails as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    quota.acquire(principal)
    return StreamLease(state.hub, quota, principal, subscriber)


@router.get("/events/results/{scan_id}", response_class=EventSourceResponse)
async def result_events(
    request: Request,
    scan_id: Annotated[str, Path(pattern=STREAM_ID_PATTERN, description="'latest', YYYY-MM-DD or an ad-hoc scan id")],
    principal: Annotated[Principal, Depends(auth.stream_reader)],
    after: Annotated[int | None, Query(ge=0, le=MAX_CURSOR, description="resume after this seq")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    where: Annotated[
        str | None,
        Query(
            description="a session's stream only: a screen (docs/screens.md); each `result` then holds only the "
            "batch's rows it selects, as `GET /results/{date}?where=` would, and a batch with none sends no "
            "`result` (its `progress` still moves the cursor)"
        ),
    ] = None,
) -> EventSourceResponse:
    """Server-sent events: `result`, `progress`, `end`, `lagging` and `heartbeat`; `id` is the seq.

    Gzip-encoded when the client accepts it (browsers' EventSource and httpx do by default): the events are
    compressed once per burst and shared by every subscriber (`api.events.GzipStream`).
    """
    cursor = resume_cursor(after, last_event_id)
    screen = where_screen(where)
    if screen is None:
        return _event_stream(request, lease=_open(request, principal, scan_id, cursor))
    target = stream_target(scan_id, ("path", "scan_id"))
    if target.scan_id is not None:
        raise invalid(
            ("query", "where"),
            "screens a session's stream (a date or 'latest'); an ad-hoc scan takes its own `where` when it "
            "starts (POST /scan)",
            where,
        )
    day = _stream_session(request, target)
    return await _screened_stream(request, principal, day, cursor, None, screen)


BurstFilter = Callable[[list[StreamEvent]], list[StreamEvent]]


def _event_stream(request: Request, lease: StreamLease, transform: BurstFilter | None = None) -> EventSourceResponse:
    """The SSE response of a subscription: its bursts (through `transform`, in a worker thread, when given),
    gzip-encoded when the client accepts it; the lease is released however the response ends."""
    heartbeat_s = request.app.state.api_settings.heartbeat_s
    gzip = GzipStream() if accepts_gzip(request.headers.get("accept-encoding")) else None

    async def body():
        # aclosing: a client that leaves mid-write stops the subscriber's heartbeat timer at once, not when
        # the abandoned generator is collected.
        try:
            if gzip is not None:  # now, so the first batch's write is the shared segment alone, as every later one
                yield gzip.start()
            async with aclosing(lease.subscriber.bursts(heartbeat_s)) as bursts:
                async for received in bursts:
                    events = received
                    if transform is not None and any(event.kind == RESULT for event in received):
                        events = await anyio.to_thread.run_sync(transform, received)
                    if not events:
                        continue
                    burst = sse_burst(events)
                    final = events[-1].kind in FINAL_EVENTS
                    if gzip is None:
                        yield burst.data
                    elif final:  # the last burst: close the gzip member in the same write
                        yield gzip.encode(burst) + gzip.finish()
                    else:
                        yield gzip.encode(burst)
                    if final:  # also when `transform` ended the stream
                        break
        finally:
            lease.release()

    headers = {"Vary": "Accept-Encoding"} | ({} if gzip is None else {"Content-Encoding": "gzip"})
    return _EventStream(body(), ping=0, headers=headers, background=BackgroundTask(lease.release_later))


# ---------------------------------------------------------------------------------------------- screen streams

_BATCH = re.compile(r'"batch":(\d+)')


class ScreenFilter:
    """Cuts a session stream's `result` events down to a screen's hits.

    Each event's rows are looked up by seq in the session's stored rows (`SessionFrames`: the batch file the
    event came from is on disk by then), so the screen decides on stored values, as `GET /results?where=`
    does; the hits leave as the event's own encoded rows, in seq order. An event keeps its id (the batch's
    last results seq), so `Last-Event-ID` resumes exactly as on the result stream; a batch without a hit
    sends no `result` (its `progress` still moves the cursor). `prev()` reads the previous session's rows,
    loaded once for the stream.
    """

    def __init__(
        self, frames: SessionFrames, session: dt.date, name: str | None, screen: Screen, previous: pl.DataFrame | None
    ) -> None:
        self.frames = frames
        self.session = session
        self.name = name
        self.screen = screen
        self.previous = previous

    def __call__(self, events: list[StreamEvent]) -> list[StreamEvent]:
        kept = []
        for event in events:
            if event.kind != RESULT:
                kept.append(event)
                continue
            try:
                hits = self.hits(event)
            except Exception as exc:  # a failure ends the stream with a reason instead of cutting it
                logger.exception("screen stream failed", extra={"screen": self.name, "session": str(self.session)})
                return [*kept, end_event(self.session.isoformat(), event.seq - len(event.rows), END_ERROR, str(exc))]
            if hits is not None:
                kept.append(hits)
        return kept

    def hits(self, event: StreamEvent) -> StreamEvent | None:
        rows = event.rows
        last = event.seq
        first = last - len(rows) + 1
        stored = self.frames.get(self.session).filter(pl.col("seq").is_between(first, last))
        seqs = screened(stored, self.previous, self.screen).get_column("seq").sort().to_list()
        picked = [rows[seq - first] for seq in seqs if first <= seq <= last]
        if not picked:
            return None
        batch = _BATCH.search(event.data[:200])
        head = json.dumps(
            {"scan_id": self.session.isoformat()}
            | ({} if self.name is None else {"screen": self.name})
            | {
                "batch": int(batch.group(1)) if batch else None,
                "first_seq": first,
                "last_seq": last,
                "hits": len(picked),
            },
            separators=(",", ":"),
        )
        return StreamEvent(RESULT, last, f'{head[:-1]},"rows":[{",".join(picked)}]}}')


@router.get("/events/screens/{name}/{session}", response_class=EventSourceResponse)
async def screen_events(
    request: Request,
    name: Annotated[str, Path(pattern=NAME_PATTERN, description="a saved screen's name")],
    session: Annotated[str, Path(pattern=SESSION_PATTERN, description="'latest' or a session, YYYY-MM-DD")],
    principal: Annotated[Principal, Depends(auth.stream_reader)],
    after: Annotated[int | None, Query(ge=0, le=MAX_CURSOR, description="resume after this seq")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Server-sent events of a session's hits of a saved screen as its result batches land: `result` (the
    batch's hits, `hits` counting them; `id` the batch's last results seq), `progress`, `end`, `lagging` and
    `heartbeat`, exactly as `/events/results/{date}` — so `Last-Event-ID` or `?after=` resume the same way."""
    cursor = resume_cursor(after, last_event_id)
    target = stream_target(session, ("path", "session"))
    saved = await run_in_threadpool(request.app.state.screens.get, name)
    day = _stream_session(request, target)
    return await _screened_stream(request, principal, day, cursor, saved.name, saved_screen(saved))


def _stream_session(request: Request, target: StreamTarget) -> dt.date:
    """The session a session target names: its date, or the newest with results (404 when there is none)."""
    if not target.latest:
        assert target.session is not None
        return target.session
    day = newest_session(request.app.state.store, "results")
    if day is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the warehouse has no scan results yet to stream as 'latest'")
    return day


async def _screened_stream(
    request: Request, principal: Principal, day: dt.date, cursor: int | None, name: str | None, screen: Screen
) -> EventSourceResponse:
    """A session's stream cut down to `screen`'s hits (`ScreenFilter`)."""
    frames: SessionFrames = request.app.state.queries.frames
    previous = await run_in_threadpool(frames.previous, day) if screen.prev_columns else None
    lease = _open(request, principal, StreamTarget(session=day), cursor)
    return _event_stream(request, lease, ScreenFilter(frames, day, name, screen, previous))


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header admits gzip (RFC 9110: listed, or `*`, with a non-zero q)."""
    weights: dict[str, float] = {}
    for item in (accept_encoding or "").split(","):
        coding, _, parameters = item.partition(";")
        weight = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name.lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if coding.strip():
            weights[coding.strip().lower()] = weight
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


class _EventStream(EventSourceResponse):
    """sse-starlette's response (disconnect and shutdown handling) without a cancel scope around every write.

    With no `send_timeout` its per-send `anyio.move_on_after(None)` can never fire, yet entering and leaving
    it is a good part of the Python work of a write; at a thousand subscribers that is on every batch's
    path. Slow clients are bounded by the hub's per-subscriber queue instead.
    """

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is None:
            await send(message)
        else:
            await super()._send_with_timeout(send, message)


@router.websocket("/ws/results/{scan_id}")
async def result_websocket(websocket: WebSocket, scan_id: str) -> None:
    """The same events as JSON text messages `{"event", "id", "data"}`; `?after=` resumes."""
    await websocket.accept()
    try:
        principal = auth.websocket_principal(websocket)
    except AuthError as exc:
        await websocket.close(_WS_POLICY_VIOLATION, exc.message)
        return
    try:
        after = parse_cursor(websocket.query_params.get("after"), ("query", "after"))
        lease = _open(websocket, principal, scan_id, after)
    except HTTPException as exc:
        await websocket.close(4000 + exc.status_code, str(exc.detail)[:120])
        return
    except RequestValidationError as exc:
        problem = exc.errors()[0]
        await websocket.close(4422, f"{problem['loc'][-1]}: {problem['msg']}"[:120])
        return
    try:
        await _pump(websocket, lease.subscriber, websocket.app.state.api_settings.heartbeat_s)
    finally:
        lease.release()


async def _pump(websocket: WebSocket, subscriber: Subscriber, heartbeat_s: float) -> None:
    """Send events until the stream ends or the client leaves; a reader task notices the leaving."""
    client_left = False
    async with anyio.create_task_group() as group:

        async def watch_for_disconnect() -> None:
            nonlocal client_left
            while (await websocket.receive())["type"] != "websocket.disconnect":
                continue
            client_left = True
            group.cancel_scope.cancel()

        group.start_soon(watch_for_disconnect)
        try:
            async with aclosing(subscriber.events(heartbeat_s)) as events:
                async for event in events:
                    await websocket.send_text(event.websocket())
        except WebSocketDisconnect:
            client_left = True
        group.cancel_scope.cancel()
    if not client_left:
        await websocket.close(_WS_NORMAL)
