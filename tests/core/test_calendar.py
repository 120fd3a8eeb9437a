import datetime as dt

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest

from technic_core import calendar
from technic_core.errors import NotASessionError

D = dt.date


def test_holidays_and_weekends_are_not_sessions():
    assert calendar.is_session(D(2024, 11, 27))
    assert not calendar.is_session(D(2024, 11, 28))  # Thanksgiving
    assert not calendar.is_session(D(2024, 3, 29))  # Good Friday
    assert not calendar.is_session(D(2024, 12, 25))
    assert not calendar.is_session(D(2024, 11, 30))  # Saturday
    assert not calendar.is_session(D(2025, 1, 9))  # national day of mourning (Carter)


def test_sessions_between_is_inclusive_and_ordered():
    days = calendar.sessions_between(D(2024, 11, 25), D(2024, 12, 2))
    assert days == [D(2024, 11, 25), D(2024, 11, 26), D(2024, 11, 27), D(2024, 11, 29), D(2024, 12, 2)]


def test_previous_next_and_back():
    assert calendar.previous_session(D(2024, 12, 2)) == D(2024, 11, 29)
    assert calendar.next_session(D(2024, 11, 27)) == D(2024, 11, 29)
    back = calendar.sessions_back(D(2024, 12, 2), 3)
    assert back == [D(2024, 11, 27), D(2024, 11, 29), D(2024, 12, 2)]
    # a non-session end day counts back from the session before it
    assert calendar.sessions_back(D(2024, 11, 28), 1) == [D(2024, 11, 27)]


def test_require_session_names_neighbours():
    with pytest.raises(NotASessionError, match=r"2024-11-27.*2024-11-29"):
        calendar.require_session(D(2024, 11, 28))
    assert calendar.require_session(D(2024, 11, 29)) == D(2024, 11, 29)


def test_session_of_uses_new_york_date():
    # Polygon grouped bars: 16:00 New York = 21:00 UTC in winter, same calendar day
    assert calendar.session_of(dt.datetime(2024, 1, 5, 21, 0, tzinfo=dt.UTC)) == D(2024, 1, 5)
    # per-ticker bars stamped at midnight New York = 05:00 UTC
    assert calendar.session_of(dt.datetime(2024, 1, 5, 5, 0, tzinfo=dt.UTC)) == D(2024, 1, 5)
    # 01:00 UTC is still the previous evening in New York
    assert calendar.session_of(dt.datetime(2024, 1, 6, 1, 0, tzinfo=dt.UTC)) == D(2024, 1, 5)


def test_latest_complete_session_respects_close_and_early_close():
    utc = dt.UTC
    # Monday 2024-12-02 14:00 New York (19:00 UTC): the session is open, so Friday is latest complete
    assert calendar.latest_complete_session(dt.datetime(2024, 12, 2, 19, 0, tzinfo=utc)) == D(2024, 11, 29)
    # 16:30 New York: Monday has closed
    assert calendar.latest_complete_session(dt.datetime(2024, 12, 2, 21, 30, tzinfo=utc)) == D(2024, 12, 2)
    # Black Friday closes at 13:00 New York; at 14:00 it is complete
    assert calendar.latest_complete_session(dt.datetime(2024, 11, 29, 19, 0, tzinfo=utc)) == D(2024, 11, 29)
    # Thanksgiving evening: Wednesday
    assert calendar.latest_complete_session(dt.datetime(2024, 11, 28, 23, 0, tzinfo=utc)) == D(2024, 11, 27)


def test_latest_complete_session_matches_the_calendars_own_close_lookup():
    """Reference: today if today's close (exchange_calendars' `session_close`) has passed, else the session
    before — at random instants over twenty years, and exactly at and just before closes, early ones too."""
    cal = xcals.get_calendar("XNYS", start=pd.Timestamp(calendar.CALENDAR_START))
    rng = np.random.default_rng(11)
    start = pd.Timestamp("2006-02-01", tz="UTC").value
    end = pd.Timestamp(calendar.last_known_session() - dt.timedelta(days=7), tz="UTC").value
    instants = [pd.Timestamp(int(value) // 1000, unit="us", tz="UTC") for value in rng.integers(start, end, 400)]
    for close in (cal.session_close(pd.Timestamp(day)) for day in (D(2024, 11, 29), D(2024, 12, 2), D(2019, 7, 3))):
        instants += [close, close - pd.Timedelta(1, "us")]

    def reference(now: pd.Timestamp) -> dt.date:
        today = now.tz_convert("America/New_York").date()
        candidate = (
            today
            if cal.is_session(pd.Timestamp(today))
            else cal.date_to_session(pd.Timestamp(today), "previous").date()
        )
        if candidate == today and now < cal.session_close(pd.Timestamp(today)):
            candidate = cal.previous_session(pd.Timestamp(today)).date()
        return candidate

    for now in instants:
        assert calendar.latest_complete_session(now.to_pydatetime()) == reference(now), now
