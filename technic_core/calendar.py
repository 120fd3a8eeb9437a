"""NYSE trading sessions (exchange_calendars' XNYS), the one place Technic decides what a trading day is.

Why a library: holidays, ad-hoc closures (national days of mourning) and early closes change every year;
exchange_calendars tracks them upstream.
"""

from __future__ import annotations

import datetime as dt
import warnings
from functools import lru_cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from technic_core.errors import NotASessionError

NEW_YORK = "America/New_York"
#: Earliest session Technic asks the calendar about; exchange_calendars' default window starts ~20 years back.
CALENDAR_START = dt.date(2006, 1, 3)


@lru_cache(maxsize=1)
def _xnys() -> xcals.ExchangeCalendar:
    # exchange_calendars 4.13 trips a pandas 3.1 deprecation warning while building its tables; it is the
    # library's to fix and says nothing about our inputs, so keep it out of users' terminals.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xcals.get_calendar("XNYS", start=pd.Timestamp(CALENDAR_START))


@lru_cache(maxsize=1)
def _session_array() -> np.ndarray:
    """All known sessions as numpy datetime64[D], sorted — binary search beats pandas lookups."""
    return _xnys().sessions.values.astype("datetime64[D]")


@lru_cache(maxsize=1)
def _close_array() -> np.ndarray:
    """Each session's close instant (early closes included) as UTC datetime64[ns], in `_session_array` order."""
    return _xnys().closes.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[ns]")


def _d64(day: dt.date) -> np.datetime64:
    return np.datetime64(day, "D")


def _to_date(value: np.datetime64) -> dt.date:
    return value.astype("datetime64[D]").astype(dt.date)


def is_session(day: dt.date) -> bool:
    """True when the NYSE is open (fully or early close) on `day`."""
    sessions = _session_array()
    i = np.searchsorted(sessions, _d64(day))
    return bool(i < len(sessions) and sessions[i] == _d64(day))


def sessions_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Sessions in the closed interval [start, end], oldest first."""
    sessions = _session_array()
    lo = np.searchsorted(sessions, _d64(start), side="left")
    hi = np.searchsorted(sessions, _d64(end), side="right")
    return [_to_date(s) for s in sessions[lo:hi]]


def previous_session(day: dt.date) -> dt.date:
    """The last session strictly before `day`."""
    sessions = _session_array()
    i = np.searchsorted(sessions, _d64(day), side="left")
    if i == 0:
        raise NotASessionError(f"no NYSE session before {day} in the calendar (starts {CALENDAR_START})")
    return _to_date(sessions[i - 1])


def next_session(day: dt.date) -> dt.date:
    """The first session strictly after `day`."""
    sessions = _session_array()
    i = np.searchsorted(sessions, _d64(day), side="right")
    if i >= len(sessions):
        raise NotASessionError(f"no NYSE session after {day} in the calendar")
    return _to_date(sessions[i])


def sessions_back(day: dt.date, count: int) -> list[dt.date]:
    """The `count` sessions ending at `day` (inclusive when `day` is a session), oldest first."""
    sessions = _session_array()
    hi = np.searchsorted(sessions, _d64(day), side="right")
    lo = max(0, hi - count)
    return [_to_date(s) for s in sessions[lo:hi]]


def require_session(day: dt.date) -> dt.date:
    """Return `day` if it is a session, else raise naming the nearest sessions on either side."""
    if is_session(day):
        return day
    before = previous_session(day)
    try:
        after = f" and the next is {next_session(day)}"
    except NotASessionError:
        after = ""
    raise NotASessionError(f"{day} ({day:%A}) is not an NYSE session; the previous session is {before}{after}")


def session_of(timestamp: dt.datetime) -> dt.date:
    """Calendar date in America/New_York of an aware timestamp (naive timestamps are taken as UTC).

    Why: vendors stamp daily bars at different instants (Polygon's grouped bars at 16:00 New York, per-ticker
    bars at midnight New York); converting to New York first gives the right session for both.
    """
    ts = pd.Timestamp(timestamp)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.tz_convert(NEW_YORK).date()


def latest_complete_session(now: dt.datetime | None = None) -> dt.date:
    """The most recent session whose regular close (incl. early closes) has passed at `now`.

    A binary search over the sessions' close instants: stream connections resolve their horizon with it, and
    a reconnect storm of a thousand clients should not pay a pandas calendar lookup each.
    """
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    instant = np.datetime64(now.astimezone(dt.UTC).replace(tzinfo=None), "ns")
    index = int(np.searchsorted(_close_array(), instant, side="right")) - 1
    if index < 0:
        raise NotASessionError(
            f"{now} is before the first session the calendar knows ({_to_date(_session_array()[0])})"
        )
    return _to_date(_session_array()[index])


def last_known_session() -> dt.date:
    """Last session the installed calendar knows (about one year ahead of today)."""
    return _to_date(_session_array()[-1])
