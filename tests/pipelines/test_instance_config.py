"""The instance `make up` and `technic` use: what it runs by default, where it stores things, how it is configured."""

import os
import socket
from pathlib import Path

import pytest
import yaml
from dagster import (
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    QueuedRunCoordinator,
    job,
    op,
)
from dagster._core.launcher import WorkerStatus

from technic_pipelines import cli
from technic_pipelines.definitions import BARS_BACKFILL_JOB, defs
from technic_pipelines.defs.operations.launcher import HOST_TAG, LocalProcessRunLauncher, host_tags

REPO = Path(__file__).resolve().parents[2]
SESSION = "2024-06-28"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A DAGSTER_HOME that does not exist yet, with the working directory elsewhere."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_every_schedule_and_sensor_runs_by_default():
    repository = defs.get_repository_def()
    assert repository.schedule_defs and repository.sensor_defs
    for schedule in repository.schedule_defs:
        assert schedule.default_status == DefaultScheduleStatus.RUNNING, schedule.name
    for sensor in repository.sensor_defs:
        assert sensor.default_status == DefaultSensorStatus.RUNNING, sensor.name


def _keys(node) -> set[str]:
    if not isinstance(node, dict):
        return set()
    return set(node).union(*(_keys(value) for value in node.values()))


def test_project_config_keeps_nothing_at_a_relative_path_and_monitors_runs():
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    # a relative base_dir resolves against the working directory; without one, Dagster uses DAGSTER_HOME
    assert "base_dir" not in _keys(config)
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["poll_interval_seconds"] <= 60
    assert monitoring["free_slots_after_run_end_seconds"] > 0


def test_a_new_home_links_the_project_config(home):
    assert cli._ensure_dagster_home() == home
    assert (home / "dagster.yaml").resolve() == cli.PROJECT_INSTANCE_CONFIG
    with DagsterInstance.get() as instance:
        assert isinstance(instance.run_launcher, LocalProcessRunLauncher)
        assert instance.run_launcher.supports_check_run_worker_health
        assert instance.run_monitoring_enabled
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)


def test_a_home_with_its_own_config_keeps_it(home):
    home.mkdir()
    own = "telemetry:\n  enabled: false\n"
    (home / "dagster.yaml").write_text(own)
    cli._ensure_dagster_home()
    assert not (home / "dagster.yaml").is_symlink()
    assert (home / "dagster.yaml").read_text() == own


def test_without_dagster_home_the_home_is_dot_dagster_home_here(home, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME")
    assert cli._ensure_dagster_home() == Path.cwd() / ".dagster_home"
    assert os.environ["DAGSTER_HOME"] == str(Path.cwd() / ".dagster_home")


def test_a_relative_dagster_home_is_made_absolute(home, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", "relative_home")
    assert os.environ["DAGSTER_HOME"] != str(cli._ensure_dagster_home())
    assert os.environ["DAGSTER_HOME"] == str(Path.cwd() / "relative_home")


def test_a_run_keeps_its_history_and_compute_logs_under_dagster_home(home, tmp_path, monkeypatch):
    settings = cli._settings(symbols=20, source=None, warehouse=str(tmp_path / "warehouse"))
    cli._ensure_dagster_home()
    result = cli._execute(BARS_BACKFILL_JOB, {}, settings, partition_key=SESSION)

    assert result.dagster_run.tags[HOST_TAG] == socket.gethostname()
    assert (home / "history" / "runs.db").is_file()
    assert list((home / "storage" / result.run_id).rglob("*.err")), "compute logs under $DAGSTER_HOME/storage"
    assert not any(Path.cwd().iterdir()), "nothing lands in the working directory"


@op
def _noop() -> None:
    pass


@job
def _noop_job():
    _noop()


def test_the_launcher_reports_a_run_of_a_live_local_process_running_and_leaves_other_machines_alone(home):
    cli._ensure_dagster_home()
    with DagsterInstance.get() as instance:
        here = _noop_job.execute_in_process(instance=instance, tags=host_tags()).dagster_run
        elsewhere = _noop_job.execute_in_process(instance=instance, tags={HOST_TAG: "another-machine"}).dagster_run
        launcher = instance.run_launcher
        assert launcher.check_run_worker_health(here).status == WorkerStatus.RUNNING
        health = launcher.check_run_worker_health(elsewhere)
        assert health.status == WorkerStatus.RUNNING
        assert "not on this machine" in health.msg
