import datetime as dt

from technic_core import calendar
from technic_pipelines.partitions import build_session_partitions, key_session


def test_partition_keys_are_exactly_the_sessions():
    partitions = build_session_partitions(dt.date(2024, 1, 2))
    keys = partitions.get_partition_keys(current_time=dt.datetime(2025, 1, 3, 18, 0, tzinfo=dt.UTC))
    sessions = calendar.sessions_between(dt.date(2024, 1, 2), dt.date(2025, 1, 3))
    assert [key_session(k) for k in keys] == sessions
    assert "2024-11-28" not in keys and "2024-03-29" not in keys and "2024-12-25" not in keys
