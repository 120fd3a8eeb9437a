"""Stream events: what SSE and WebSocket clients receive, encoded once and shared by every subscriber.

Why pre-encoded: a result batch of a few hundred rows is tens of kilobytes of JSON, and one partition may
have a thousand subscribers. Rows are turned into JSON once (in a worker thread, by polars) and each wire
form (SSE frame, WebSocket text) is built once per event, so fan-out costs one socket write per subscriber.

Every event carries `seq`: for a `result` event the last row seq it holds, for the others the last row seq
published before them. It is the SSE `id`, so a reconnecting EventSource sends it back as `Last-Event-ID`.
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl

RESULT = "result"
PROGRESS = "progress"
END = "end"
LAGGING = "lagging"
HEARTBEAT = "heartbeat"

#: `end` reason of a scan whose worker failed; the engine's own reasons are in `technic_core.scan.END_*`.
END_ERROR = "error"


def encode_rows(frame: pl.DataFrame) -> tuple[str, ...]:
    """One compact JSON object per row, in frame order; NaN becomes null (JSON has no NaN)."""
    if frame.height == 0:
        return ()
    return tuple(frame.write_ndjson().splitlines())


class StreamEvent:
    """One event of one stream. Immutable after construction; wire forms are built on first use."""

    __slots__ = ("kind", "seq", "data", "_rows", "_first_seq", "_scan_id", "_batch", "_sse", "_ws", "_burst")

    def __init__(self, kind: str, seq: int, data: str) -> None:
        self.kind = kind
        self.seq = seq
        self.data = data
        self._rows: tuple[str, ...] = ()
        self._first_seq = 0
        self._scan_id = ""
        self._batch = 0
        self._sse: bytes | None = None
        self._ws: str | None = None
        self._burst: tuple[tuple[StreamEvent, ...], bytes] | None = None

    @property
    def rows(self) -> tuple[str, ...]:
        """A `result` event's rows, one JSON object each; empty for other kinds."""
        return self._rows

    def sse(self) -> bytes:
        """The SSE frame. Heartbeats carry no `id`, so they never move a client's resume cursor."""
        if self._sse is None:
            identity = "" if self.kind == HEARTBEAT else f"id: {self.seq}\n"
            self._sse = f"{identity}event: {self.kind}\ndata: {self.data}\n\n".encode()
        return self._sse

    def websocket(self) -> str:
        """The WebSocket text message: the SSE fields as one JSON object."""
        if self._ws is None:
            self._ws = f'{{"event":"{self.kind}","id":{self.seq},"data":{self.data}}}'
        return self._ws

    def after(self, cursor: int | None) -> StreamEvent | None:
        """This event as a client holding every row seq ≤ `cursor` should get it, or None if it needs nothing.

        A fresh client (`cursor` None) gets everything. A resuming client gets the rows it lacks — a partial
        batch when its cursor falls inside one — and progress newer than its cursor; `end` always, since
        only that tells it the stream is over.
        """
        if cursor is None or self.kind == END:
            return self
        if self.kind != RESULT:
            return self if self.seq > cursor else None
        if self.seq <= cursor:
            return None
        if self._first_seq > cursor:
            return self
        return result_event(self._scan_id, self._batch, cursor + 1, self._rows[cursor + 1 - self._first_seq :])


def sse_burst(events: list[StreamEvent]) -> bytes:
    """The SSE frames of `events` as one transport write, built once for every subscriber.

    Live subscribers of a topic receive the same burst (a batch's `result` and `progress`), so the joined
    bytes are kept on the burst's first event, keyed by the identities of the others: the first subscriber
    pays for the join and the rest get the same object. One write per burst rather than one per event
    halves the per-subscriber cost of a batch; a burst that differs (a replay at another cursor) is joined
    for itself.
    """
    first, rest = events[0], tuple(events[1:])
    if not rest:
        return first.sse()
    cached = first._burst
    if cached is not None and len(cached[0]) == len(rest) and all(a is b for a, b in zip(cached[0], rest)):
        return cached[1]
    joined = b"".join([first.sse(), *(event.sse() for event in rest)])
    first._burst = (rest, joined)
    return joined


def _data(**fields: object) -> str:
    return json.dumps(fields, separators=(",", ":"), allow_nan=False)


def result_event(scan_id: str, batch: int, first_seq: int, rows: tuple[str, ...]) -> StreamEvent:
    """Rows `first_seq .. first_seq+len(rows)-1` of batch `batch`; `rows` are `encode_rows` output."""
    last_seq = first_seq + len(rows) - 1
    head = _data(scan_id=scan_id, batch=batch, first_seq=first_seq, last_seq=last_seq)
    event = StreamEvent(RESULT, last_seq, f'{head[:-1]},"rows":[{",".join(rows)}]}}')
    event._rows, event._first_seq, event._scan_id, event._batch = rows, first_seq, scan_id, batch
    return event


def progress_event(
    scan_id: str,
    seq: int,
    *,
    batch: int,
    signals: int,
    scanned: int | None = None,
    total: int | None = None,
    elapsed_s: float | None = None,
) -> StreamEvent:
    """Counts after `batch`. Partition tails know neither `scanned` nor `total` (files hold only results)."""
    elapsed = None if elapsed_s is None else round(elapsed_s, 4)
    return StreamEvent(
        PROGRESS,
        seq,
        _data(scan_id=scan_id, batch=batch, results=seq, signals=signals, scanned=scanned, total=total, elapsed_s=elapsed),
    )


def end_event(scan_id: str, seq: int, reason: str, message: str | None = None) -> StreamEvent:
    return StreamEvent(END, seq, _data(scan_id=scan_id, reason=reason, results=seq, message=message))


def lagging_event(scan_id: str, seq: int, queue_size: int) -> StreamEvent:
    """Sent instead of the events a slow client could not keep up with; it says where to resume."""
    message = (
        f"more than {queue_size} events waited for this client; it is disconnected — reconnect with "
        f"Last-Event-ID: {seq} (or ?after={seq}) to resume"
    )
    return StreamEvent(LAGGING, seq, _data(scan_id=scan_id, last_seq=seq, message=message))


def heartbeat_event(seq: int) -> StreamEvent:
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    return StreamEvent(HEARTBEAT, seq, _data(time=now))
