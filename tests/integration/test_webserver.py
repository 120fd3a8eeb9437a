"""A real dagster-webserver over a temporary instance where a small session was materialized: its GraphQL
API must show the asset graph and the successful runs. No mocks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from technic_pipelines.cli import app

REPO = Path(__file__).resolve().parents[2]
SESSION = "2024-06-28"

QUERY = """
{
  assetNodes { assetKey { path } dependencyKeys { path } isPartitioned hasAssetChecks }
  runsOrError { ... on Runs { results { runId status jobName tags { key value } } } }
}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(url: str, process: subprocess.Popen, deadline_s: float = 120.0) -> None:
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        assert process.poll() is None, "dagster-webserver exited during start-up"
        try:
            if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError("dagster-webserver did not start")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home, warehouse = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("warehouse")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    run = CliRunner().invoke(app, ["run", "--date", SESSION, "--symbols", "60", "--warehouse", str(warehouse)])
    assert run.exit_code == 0, run.output
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "TECHNIC_WAREHOUSE": str(warehouse)}
    webserver = Path(sys.executable).parent / "dagster-webserver"
    process = subprocess.Popen(
        [str(webserver), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        monkeypatch.undo()


def test_graphql_shows_the_asset_graph_and_successful_runs(served):
    response = httpx.post(f"{served}/graphql", json={"query": QUERY}, timeout=60)
    assert response.status_code == 200
    data = response.json()["data"]
    nodes = {tuple(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    for name in ("price_bars", "universe", "market_conditions", "scan_results"):
        assert (name,) in nodes
        assert nodes[(name,)]["isPartitioned"]
        assert nodes[(name,)]["hasAssetChecks"] == (name != "market_conditions")
    assert {tuple(k["path"]) for k in nodes[("scan_results",)]["dependencyKeys"]} >= {
        ("price_bars",),
        ("universe",),
        ("market_conditions",),
    }
    runs = data["runsOrError"]["results"]
    assert {r["jobName"] for r in runs} >= {"daily_scan_job", "price_bars_backfill_job"}
    assert all(r["status"] == "SUCCESS" for r in runs)
    daily = [r for r in runs if r["jobName"] == "daily_scan_job"]
    assert {t["value"] for r in daily for t in r["tags"] if t["key"] == "dagster/partition"} == {SESSION}
