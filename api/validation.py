"""Input checks that need more than a type: trading sessions, stream ids and resume cursors.

Failures raise `RequestValidationError` with the field's location, so they reach the client in the same
422 shape as FastAPI's own validation errors, message naming the field.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from fastapi.exceptions import RequestValidationError

from api.scans import SCAN_ID_FORM, SCAN_ID_PATTERN
from technic_core import calendar
from technic_core.errors import NotASessionError

LATEST = "latest"
STREAM_ID_PATTERN = rf"^({LATEST}|\d{{4}}-\d{{2}}-\d{{2}}|{SCAN_ID_FORM})$"
_SCAN_ID = re.compile(SCAN_ID_PATTERN)
#: Largest resume cursor accepted; far beyond any scan's row count, small enough for every client's integers.
MAX_CURSOR = 10**12
_CURSOR = re.compile(r"[0-9]{1,12}")


def invalid(location: tuple[str, ...], message: str, value: object = None) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": location, "msg": message, "input": value}])


def trading_session(day: dt.date, location: tuple[str, ...]) -> dt.date:
    """`day` when it is an NYSE session; otherwise a 422 naming the nearest sessions."""
    try:
        return calendar.require_session(day)
    except NotASessionError as exc:
        raise invalid(location, str(exc), day.isoformat()) from None


@dataclass(frozen=True)
class StreamTarget:
    """What a stream id names: an ad-hoc scan, a session's results partition, or the latest one."""

    scan_id: str | None = None
    session: dt.date | None = None
    latest: bool = False


def stream_target(value: str, location: tuple[str, ...]) -> StreamTarget:
    """Parse a stream id. A session must be a trading day no later than the one now in progress or next."""
    if value == LATEST:
        return StreamTarget(latest=True)
    if _SCAN_ID.match(value):
        return StreamTarget(scan_id=value)
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise invalid(
            location, "must be 'latest', a session date YYYY-MM-DD or an ad-hoc scan id (adhoc-<16 hex>)", value
        ) from None
    session = trading_session(day, location)
    horizon = calendar.next_session(calendar.latest_complete_session())
    if session > horizon:
        raise invalid(location, f"{session} is in the future; the next session to be scanned is {horizon}", value)
    return StreamTarget(session=session)


def parse_cursor(text: str | None, location: tuple[str, ...]) -> int | None:
    """A seq given as text (a header or a WebSocket query parameter); blank means none."""
    if text is None or not text.strip():
        return None
    if not _CURSOR.fullmatch(text.strip()):
        raise invalid(location, "must be a non-negative integer (an event seq)", text)
    return int(text)


def resume_cursor(after: int | None, last_event_id: str | None) -> int | None:
    """The seq an SSE client already has. `Last-Event-ID` wins: a reconnecting EventSource sends the newest
    id in it while its URL still carries the `after` it first connected with."""
    from_header = parse_cursor(last_event_id, ("header", "Last-Event-ID"))
    return after if from_header is None else from_header
