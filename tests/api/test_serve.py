"""`technic serve`: uvicorn on loopback:8000 by default, with the app over the chosen warehouse."""

from __future__ import annotations

import subprocess
import sys

import pytest
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

import api.main
from technic_pipelines.cli import app as cli


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path) -> list[tuple[object, dict]]:
    """Records uvicorn.run calls instead of serving; the environment `serve` changes is restored after."""
    calls: list[tuple[object, dict]] = []
    monkeypatch.setenv("TECHNIC_WAREHOUSE", str(tmp_path))
    monkeypatch.setattr(uvicorn, "run", lambda application, **options: calls.append((application, options)))
    # The collector tuning is for the server process; here it is recorded, not applied to pytest's interpreter.
    monkeypatch.setattr(api.main, "tune_garbage_collection", lambda: calls.append(("tuned garbage collection", {})))
    monkeypatch.delenv("TECHNIC_API_KEYS", raising=False)
    return calls


def test_serve_defaults_to_loopback_port_8000(served, tmp_path):
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 0, result.output
    [tuned, (application, options)] = served
    assert tuned[0] == "tuned garbage collection"
    assert isinstance(application, FastAPI) and application.state.store.root == tmp_path
    assert (options["host"], options["port"]) == ("127.0.0.1", 8000)


def test_serve_options(served, tmp_path):
    result = CliRunner().invoke(
        cli, ["serve", "--host", "0.0.0.0", "--port", "9001", "--warehouse", str(tmp_path / "w")]
    )
    assert result.exit_code == 0, result.output
    [_, (application, options)] = served
    assert application.state.store.root == tmp_path / "w"
    assert (options["host"], options["port"]) == ("0.0.0.0", 9001)


def test_serve_rejects_bad_settings_with_the_variable_named(served, monkeypatch):
    monkeypatch.setenv("TECHNIC_API_SUBSCRIBER_QUEUE", "0")
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2 and "subscriber_queue" in result.output
    assert CliRunner().invoke(cli, ["serve", "--port", "70000"]).exit_code == 2
    assert served == []


def test_the_server_process_freezes_its_start_up_objects_and_collects_less_often():
    probe = (
        "import gc; from api.main import tune_garbage_collection; before = gc.get_freeze_count();"
        "tune_garbage_collection(); print(before, gc.get_freeze_count(), *gc.get_threshold())"
    )
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    before, frozen, *thresholds = map(int, output.split())
    assert before == 0 and frozen > 100_000
    assert thresholds == [10_000, 10, 1000]
