"""A `technic run` killed with SIGKILL while writing leaves only whole files, and a rerun completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from technic_core.warehouse import Warehouse
from technic_pipelines.cli import app

SESSION = "2024-06-28"
ARGS = ["run", "--date", SESSION, "--symbols", "80"]


def _wait_for_bar_partitions(root: Path, process: subprocess.Popen, deadline_s: float = 180.0) -> None:
    """Block until the child has written some bar partitions (or fail if it exits or never does)."""
    bars = root / "bars"
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        assert process.poll() is None, "the run finished before it could be interrupted"
        if bars.is_dir() and sum(1 for _ in bars.glob("date=*/*.parquet")) >= 3:
            return
        time.sleep(0.01)
    raise AssertionError("no bar partitions appeared")


def test_sigkill_mid_backfill_leaves_no_partial_file_and_rerun_completes(tmp_path, monkeypatch):
    root = tmp_path / "warehouse"
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "TECHNIC_WAREHOUSE": str(root)}
    child = subprocess.Popen(
        [sys.executable, "-m", "technic_pipelines.cli", *ARGS],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_bar_partitions(root, child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL

    visible = list(root.rglob("*.parquet"))
    assert visible
    for path in visible:  # every file a reader can see is whole
        pq.read_table(path)
    data_files = [p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts]
    assert not [
        p for p in data_files if not p.name.startswith(".") and p.suffix not in (".parquet", ".json", ".duckdb")
    ]

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("TECHNIC_WAREHOUSE", str(root))
    rerun = CliRunner().invoke(app, ARGS, catch_exceptions=False)
    assert rerun.exit_code == 0, rerun.output
    store = Warehouse(root)
    assert store.read("results", None, None).height > 0
    assert not [p for p in root.rglob(".*.tmp")], "the rerun cleans temp files left by the killed writer"
