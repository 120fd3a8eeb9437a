"""`technic compact` merges finished sessions' batch files and leaves a session still being written alone."""

import datetime as dt

from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from technic_core.warehouse import Warehouse
from technic_pipelines.cli import app
from tests.api.support import daily_history_row
from tests.core.test_warehouse import DAYS, write_results_run


def test_compact_merges_finished_sessions_only(tmp_path):
    store = Warehouse(tmp_path / "warehouse")
    runs = {day: write_results_run(store, day, batches=3) for day in DAYS[:3]}
    for day in DAYS[:2]:  # the third session's scan has not recorded its finish
        store.append_scan_run(daily_history_row(day, runs[day].height))
    result = CliRunner().invoke(app, ["compact", "--warehouse", str(store.root), "--to", DAYS[2].isoformat()])
    assert result.exit_code == 0, result.output
    assert "2 session(s) compacted; 1 left alone" in result.stdout
    names = {day: [p.name for p in store.partition_files("results", day)] for day in DAYS[:3]}
    assert names[DAYS[0]] == names[DAYS[1]] == ["part-00000.parquet"]
    assert len(names[DAYS[2]]) == 3
    for day, written in runs.items():
        assert_frame_equal(store.read("results", day, day), written)


def test_compact_refuses_a_day_that_is_not_a_session():
    result = CliRunner().invoke(app, ["compact", "--from", str(dt.date(2024, 1, 6))])
    assert result.exit_code == 2 and "--from" in result.output
