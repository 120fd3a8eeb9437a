"""Runs whose process was killed with SIGKILL end as FAILED by themselves, and queued runs launch again.

Real processes throughout, over the project's instance config (run monitoring polling faster) in a temporary
DAGSTER_HOME: two `technic run`
processes killed mid-run (as many runs as the instance runs at once) and a run queued behind them; then a
real `dagster-daemon` must fail both runs, with the reason, and launch the queued one. Then that daemon, its
code server and the run worker are killed together (a crash or reboot under the daemon), and a new daemon
must fail that run too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.loader import LoadingContextForTest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionResolvedStatus

from technic_core.processes import ProcessFate, process_fate
from technic_pipelines import cli
from technic_pipelines.cli import PROJECT_INSTANCE_CONFIG
from technic_pipelines.definitions import BARS_BACKFILL_JOB, defs
from technic_pipelines.defs.operations.launcher import HOST_TAG

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOST = socket.gethostname()
DAEMON = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]
SESSION = "2024-06-28"
SYMBOLS = "80"
# A year of bars in one run: long enough to be caught mid-run.
YEAR = {"dagster/asset_partition_range_start": "2023-06-28", "dagster/asset_partition_range_end": SESSION}


@pytest.fixture
def started(tmp_path):
    """Processes the test starts, each in a session of its own; all of their process groups die at the end."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the group: a daemon's code server and run workers too
        process.wait(timeout=30)


def _start(started: list, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        process = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    started.append(process)
    return process


def _tails(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.glob("*.log")))


def _wait_for(condition: Callable[[], object], what: str, deadline_s: float, logs: Path) -> object:
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{_tails(logs)}")


def _status(instance: DagsterInstance, run_id: str) -> DagsterRunStatus:
    return instance.get_run_by_id(run_id).status


def _start_entry(instance: DagsterInstance, run_id: str):
    """The run's RUN_START event: written by the process that executes the run, with its PID."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_START, limit=1).records
    return records[0].event_log_entry if records else None


def _start_pid(instance: DagsterInstance, run_id: str) -> int | None:
    entry = _start_entry(instance, run_id)
    return entry.dagster_event.pid if entry else None


def _failure_message(instance: DagsterInstance, run_id: str) -> str:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records
    return " ".join(r.event_log_entry.dagster_event.message or "" for r in records)


def _check_statuses(instance: DagsterInstance, run_ids: list[str]) -> set[AssetCheckExecutionResolvedStatus]:
    """How the UI resolves the price_bars checks the runs planned (one record per partition; a planned check's
    status follows its run's, so one record per run and check tells it)."""
    keys = [k for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key == AssetKey("price_bars")]
    records = []
    for key in keys:
        first_of_run = {}
        for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=10_000):
            first_of_run.setdefault(record.run_id, record)
        records += [first_of_run[run_id] for run_id in run_ids]

    async def resolve():
        context = LoadingContextForTest(instance)  # its loaders belong to this event loop
        return await asyncio.gather(*(record.resolve_status(context) for record in records))

    return set(asyncio.run(resolve()))


def test_killed_runs_fail_with_the_reason_and_the_queue_moves_again(tmp_path, monkeypatch, started):
    home, logs = tmp_path / "dagster_home", tmp_path / "logs"
    logs.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # The project's dagster.yaml with run monitoring polling every second instead of every 30: the daemons
    # below must notice dead runs within the test's patience, not the project's minute.
    config = yaml.safe_load(PROJECT_INSTANCE_CONFIG.read_text())
    config["run_monitoring"].update(poll_interval_seconds=1, free_slots_after_run_end_seconds=1)
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    cli._ensure_dagster_home()  # keeps that config, as `technic` and `make` keep a home's own
    base = {k: v for k, v in os.environ.items() if not k.startswith("TECHNIC_")}
    base.update(DAGSTER_HOME=str(home), TECHNIC_SIM_SYMBOLS=SYMBOLS)

    # Open (and so create) the instance before any child does: SQLite storage created by several processes at
    # once can end up with two schema versions stamped, which no process can open afterwards.
    with DagsterInstance.get() as instance:
        cli_runs = [
            _start(
                started,
                [str(BIN / "technic"), "run", "--date", SESSION],
                {**base, "TECHNIC_WAREHOUSE": str(tmp_path / f"warehouse_{n}")},
                logs / f"technic_{n}.log",
            )
            for n in (1, 2)
        ]
        daemon_env = {**base, "TECHNIC_WAREHOUSE": str(tmp_path / "warehouse_daemon")}
        launch = ["job", "launch", "-w", "workspace.yaml", "-j", BARS_BACKFILL_JOB, "--tags", json.dumps(YEAR)]
        queue = _start(started, [str(BIN / "dagster"), *launch], daemon_env, logs / "launch.log")

        # both CLI processes are mid-run: kill them as a crash would
        def runs_of_live_cli_processes():
            assert all(p.poll() is None for p in cli_runs), f"a `technic run` ended early\n{_tails(logs)}"
            runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED], tags={HOST_TAG: HOST}))
            by_pid = {_start_pid(instance, r.run_id): r.run_id for r in runs}
            return [by_pid[p.pid] for p in cli_runs] if all(p.pid in by_pid for p in cli_runs) else None

        killed = _wait_for(runs_of_live_cli_processes, "both `technic run` runs to start", 90, logs)
        for process in cli_runs:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        assert queue.wait(timeout=90) == 0, (logs / "launch.log").read_text()
        [queued] = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))

        # without a daemon nothing changes: the crashed runs hold both places and their checks stay "in progress"
        assert {_status(instance, r) for r in killed} == {DagsterRunStatus.STARTED}
        assert _check_statuses(instance, killed) == {AssetCheckExecutionResolvedStatus.IN_PROGRESS}

        daemon = _start(started, DAEMON, daemon_env, logs / "daemon_1.log")

        def launched_after_the_crashed_runs_failed():
            status = _status(instance, queued.run_id)  # read first: the crashed runs must have failed before
            if status == DagsterRunStatus.QUEUED:
                return False
            assert {_status(instance, r) for r in killed} == {DagsterRunStatus.FAILURE}
            return _start_pid(instance, queued.run_id)

        worker_pid = _wait_for(launched_after_the_crashed_runs_failed, "the queued run to start", 90, logs)
        for process, run_id in zip(cli_runs, killed):
            message = _failure_message(instance, run_id)
            assert f"process {process.pid} on {HOST}" in message
            assert "no longer exists" in message
        assert _check_statuses(instance, killed) == {AssetCheckExecutionResolvedStatus.EXECUTION_FAILED}
        launched = instance.get_run_by_id(queued.run_id)
        assert launched.tags[HOST_TAG] == HOST
        assert _status(instance, queued.run_id) == DagsterRunStatus.STARTED, "the year of bars is still loading"

        # the daemon, its code server and the run worker die together; a new daemon fails the run
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()
        started_at = _start_entry(instance, queued.run_id).timestamp
        _wait_for(
            lambda: process_fate(worker_pid, started_at) is not ProcessFate.RUNNING,
            "the run worker to die with its code server",
            30,
            logs,
        )
        assert _status(instance, queued.run_id) == DagsterRunStatus.STARTED
        _start(started, DAEMON, daemon_env, logs / "daemon_2.log")
        _wait_for(
            lambda: _status(instance, queued.run_id) == DagsterRunStatus.FAILURE, "the orphaned run to fail", 90, logs
        )
        assert f"process {worker_pid} on {HOST}" in _failure_message(instance, queued.run_id)


def test_a_run_after_a_killed_one_fails_it_and_frees_its_pool_slot_without_a_daemon(tmp_path, monkeypatch, started):
    """`technic run` killed mid-backfill holds the market_data pool's only slot; the next `technic run` (no
    daemon anywhere) fails that run with the reason, frees the slot and finishes instead of waiting forever."""
    home, logs = tmp_path / "dagster_home", tmp_path / "logs"
    logs.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    cli._ensure_dagster_home()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TECHNIC_")}
    env.update(DAGSTER_HOME=str(home), TECHNIC_SIM_SYMBOLS=SYMBOLS, TECHNIC_WAREHOUSE=str(tmp_path / "warehouse"))
    with DagsterInstance.get() as instance:
        first = _start(started, [str(BIN / "technic"), "run", "--date", SESSION], env, logs / "first.log")

        def started_run():
            assert first.poll() is None, f"`technic run` ended early\n{_tails(logs)}"
            runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED], tags={HOST_TAG: HOST}))
            return next((r.run_id for r in runs if _start_pid(instance, r.run_id) == first.pid), None)

        killed = _wait_for(started_run, "the first run to start", 90, logs)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        second = _start(started, [str(BIN / "technic"), "run", "--date", SESSION], env, logs / "second.log")
        assert second.wait(timeout=240) == 0, _tails(logs)
        assert _status(instance, killed) == DagsterRunStatus.FAILURE
        assert f"process {first.pid} on {HOST}" in _failure_message(instance, killed)
        assert f"marked run {killed} failed" in (logs / "second.log").read_text()
