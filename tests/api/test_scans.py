"""Ad-hoc scans through TestClient: whole results, ordering, history, stop/stats/delete/active, bad input."""

from __future__ import annotations

import datetime as dt
import json
import threading

import polars as pl
import pytest
from fastapi.testclient import TestClient

import api.scans as ad_hoc_scans
from api.events import for_wire
from api.scans import FIRST_BATCH_SIZE
from technic_core import schema
from technic_core.scan import ScanHooks
from technic_core.warehouse import Warehouse
from tests.api.conftest import AUTH, OTHER_AUTH
from tests.api.support import build_warehouse, wait_for

NEWER = dt.date(2024, 7, 1)


def test_post_scan_returns_every_row_and_records_history(client, warehouse, market):
    response = client.post("/scan", json={"batch_size": 25, "prioritize": False}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    stats = body["stats"]
    assert stats["status"] == "finished" and stats["end_reason"] == "complete"
    assert stats["ordering"] == "alphabetical" and "prioritization is off" in body["ordering_note"]
    rows = pl.DataFrame(body["rows"])
    assert rows.get_column("seq").to_list() == list(range(1, rows.height + 1))
    same_scan = for_wire(market.results).select("symbol", "tech_rating", "signal").sort("symbol")
    assert rows.select("symbol", "tech_rating", "signal").sort("symbol").equals(same_scan)
    history = warehouse.read("scan_runs").filter(pl.col("scan_id") == stats["scan_id"])
    assert history.height == 1
    recorded = history.row(0, named=True)
    assert (recorded["result_count"], recorded["end_reason"], recorded["date"]) == (
        rows.height,
        "complete",
        market.session,
    )
    assert json.loads(recorded["config_json"])["batch_size"] == 25


def test_an_ad_hoc_scan_publishes_a_small_first_batch_then_full_ones(client):
    body = client.post("/scan", json={"batch_size": 60, "prioritize": False}, headers=AUTH).json()
    per_batch = pl.DataFrame(body["rows"]).group_by("batch").len().sort("batch").get_column("len").to_list()
    assert 0 < per_batch[0] <= FIRST_BATCH_SIZE < per_batch[1] <= 60, per_batch


def test_prioritized_scan_follows_the_priority_plan(client, market):
    started = client.post("/scan/prioritized", json={"max_symbols": 10, "prioritize": False}, headers=AUTH)
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["ordering"] == "priority" and body["priority_session"] == market.session.isoformat()
    assert market.session.isoformat() in body["ordering_note"]
    with client.websocket_connect(f"/ws/results/{body['scan_id']}") as websocket:
        rows = []
        while (message := websocket.receive_json())["event"] != "end":
            if message["event"] == "result":
                rows += message["data"]["rows"]
    planned = market.priority.sort("rank").get_column("symbol").head(10).to_list()
    assert [row["symbol"] for row in rows] == planned
    assert rows[0]["priority_score"] == 100.0 and rows[0]["priority_tier"] == "high"


def test_without_a_priority_partition_the_scan_says_it_is_alphabetical(make_app, tmp_path, market):
    root = tmp_path / "no-priority"
    build_warehouse(Warehouse(root), market, with_priority=False)
    with TestClient(make_app(root=root)) as client:
        body = client.post("/scan/prioritized", json={"max_symbols": 5}, headers=AUTH).json()
        assert body["ordering"] == "alphabetical" and body["priority_session"] is None
        assert "no priority partition" in body["ordering_note"]
        result = client.post("/scan", json={"max_symbols": 5}, headers=AUTH).json()
    symbols = [row["symbol"] for row in result["rows"]]
    assert symbols == sorted(symbols)
    assert all(row["priority_score"] is None for row in result["rows"])


def test_stop_stats_active_and_delete(make_app):
    entered, release = threading.Event(), threading.Event()

    def hold(results: pl.DataFrame) -> pl.DataFrame:
        entered.set()
        release.wait(10)
        return results

    with TestClient(make_app(hooks=ScanHooks(enrich=hold))) as client:
        try:
            scan_id = client.post("/scan/stream", json={"batch_size": 10}, headers=AUTH).json()["scan_id"]
            assert entered.wait(10)
            active = client.get("/scans/active").json()["scans"]
            assert [(scan["scan_id"], scan["status"]) for scan in active] == [(scan_id, "running")]
            assert client.post(f"/scan/stop/{scan_id}", headers=OTHER_AUTH).status_code == 403
            stopped = client.post(f"/scan/stop/{scan_id}", headers=AUTH)
            assert stopped.status_code == 202 and stopped.json()["stop_requested"] is True
        finally:
            release.set()
        stats = wait_for(
            lambda: (s := client.get(f"/scan/stats/{scan_id}").json())["status"] == "finished" and s,
            what="the stopped scan to finish",
        )
        assert (stats["end_reason"], stats["batches"], stats["results"]) == ("stopped", 1, 10)
        assert stats["scanned"] < stats["total"]
        assert client.get("/scans/active").json() == {"scans": []}
        assert client.delete(f"/scan/{scan_id}", headers=OTHER_AUTH).status_code == 403
        assert client.delete(f"/scan/{scan_id}", headers=AUTH).status_code == 204
        gone = client.get(f"/scan/stats/{scan_id}")
        assert gone.status_code == 404 and scan_id in gone.json()["detail"]
        assert client.get(f"/events/results/{scan_id}").status_code == 404


def test_scans_beyond_the_per_key_cap_are_429(make_app):
    release = threading.Event()

    def hold(results: pl.DataFrame) -> pl.DataFrame:
        release.wait(10)
        return results

    with TestClient(make_app(hooks=ScanHooks(enrich=hold), max_scans_per_key=1)) as client:
        try:
            assert client.post("/scan/stream", json={}, headers=AUTH).status_code == 202
            refused = client.post("/scan/stream", json={}, headers=AUTH)
            assert refused.status_code == 429 and "TECHNIC_API_MAX_SCANS_PER_KEY=1" in refused.json()["detail"]
            assert client.post("/scan/stream", json={}, headers=OTHER_AUTH).status_code == 202, "caps are per key"
        finally:
            release.set()


def test_an_empty_warehouse_is_409_not_500(make_app, tmp_path):
    with TestClient(make_app(root=tmp_path / "empty")) as client:
        response = client.post("/scan/stream", json={}, headers=AUTH)
    assert response.status_code == 409 and "no screened universe" in response.json()["detail"]


def test_a_newer_session_is_picked_up_without_restart(client, warehouse, market):
    first = client.post("/scan", json={"max_symbols": 3}, headers=AUTH).json()["stats"]["session"]
    warehouse.write_partition("universe", NEWER, market.universe.with_columns(date=pl.lit(NEWER)))
    missing_bars = client.post("/scan", json={"max_symbols": 3}, headers=AUTH)
    latest_bars = market.bars.filter(pl.col("date") == market.session).with_columns(date=pl.lit(NEWER))
    warehouse.write_partition("bars", NEWER, latest_bars)
    second = client.post("/scan", json={"max_symbols": 3}, headers=AUTH).json()["stats"]
    assert first == market.session.isoformat()
    assert missing_bars.status_code == 409 and f"{NEWER} has no bars" in missing_bars.json()["detail"]
    assert second["session"] == NEWER.isoformat() and second["results"] == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_symbols": 0}, "max_symbols"),
        ({"max_symbols": 10**9}, "max_symbols"),
        ({"timeout_s": -1}, "timeout_s"),
        ({"batch_size": "many"}, "batch_size"),
        ({"sectors": ["Crypto"]}, "sectors"),
        ({"min_tech_rating": 150}, "min_tech_rating"),
        ({"lookback_sessions": 5}, "lookback_sessions"),
        ({"max_symbol": 5}, "max_symbol"),
        ({"screening": {"min_price": -1}}, "screening.min_price"),
    ],
)
def test_bad_scan_configs_are_422_naming_the_field(client, body, field):
    response = client.post("/scan/stream", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert f"body.{field}" in response.json()["message"]


@pytest.mark.parametrize(
    ("raw", "field"), [(b'{"max_symbols": NaN}', "max_symbols"), (b'{"timeout_s": Infinity}', "timeout_s")]
)
def test_non_finite_numbers_are_422_not_an_unencodable_error(client, raw, field):
    response = client.post("/scan/stream", content=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422 and f"body.{field}" in response.json()["message"]


def test_malformed_bodies_and_unknown_ids_are_4xx(client):
    malformed = client.post("/scan", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert malformed.status_code == 422 and "body" in malformed.json()["message"]
    not_an_object = client.post("/scan", json=[1, 2], headers=AUTH)
    assert not_an_object.status_code == 422
    for method, path in (
        ("GET", "/scan/stats/adhoc-00000000000000ff"),
        ("POST", "/scan/stop/adhoc-00000000000000ff"),
        ("DELETE", "/scan/adhoc-00000000000000ff"),
    ):
        response = client.request(method, path, headers=AUTH)
        assert response.status_code == 404 and "adhoc-00000000000000ff" in response.json()["detail"]
    badly_formed = client.get("/scan/stats/scan-1")
    assert badly_formed.status_code == 422 and "scan_id" in badly_formed.json()["message"]


def test_a_failing_scan_ends_its_stream_with_error_and_is_recorded(make_app, warehouse):
    def broken(results: pl.DataFrame) -> pl.DataFrame:
        raise RuntimeError("enrichment model file is corrupt")

    with TestClient(make_app(hooks=ScanHooks(enrich=broken))) as client:
        scan_id = client.post("/scan/stream", json={"max_symbols": 5}, headers=AUTH).json()["scan_id"]
        with client.websocket_connect(f"/ws/results/{scan_id}") as websocket:
            while (message := websocket.receive_json())["event"] != "end":
                assert message["event"] != "result"
        stats = client.get(f"/scan/stats/{scan_id}").json()
    assert message["data"]["reason"] == "error" and "corrupt" in message["data"]["message"]
    assert stats["status"] == "finished" and stats["end_reason"] == "error" and "corrupt" in stats["error"]
    history = warehouse.read("scan_runs").filter(pl.col("scan_id") == scan_id)
    assert history.get_column("end_reason").to_list() == ["error"]


def test_a_prioritized_scan_reorders_after_each_batch_yet_visits_every_symbol_once(client, market):
    body = client.post("/scan", json={"batch_size": 10}, headers=AUTH).json()
    symbols = [row["symbol"] for row in body["rows"]]
    plan = market.priority.sort("rank").get_column("symbol").to_list()
    assert body["stats"]["ordering"] == "priority"
    assert symbols[:10] == plan[:10], "the first batch is the plan's head"
    assert sorted(symbols) == sorted(market.results.get_column("symbol").to_list())
    assert len(set(symbols)) == len(symbols)
    assert all(row["priority_tier"] == "high" for row in body["rows"])


def test_ad_hoc_results_carry_the_champion_alpha_and_survive_a_broken_model(make_app, monkeypatch, market):
    built_for = []

    def fake_enricher(store, session, bars, universe, regime):
        built_for.append((session, bars.get_column("date").n_unique(), regime))
        return lambda results: results.with_columns(alpha_score=pl.lit(42.0), alpha_5d=pl.col("tech_rating") / 1000)

    monkeypatch.setattr(ad_hoc_scans, "alpha_enricher", fake_enricher)
    with TestClient(make_app()) as client:
        rows = client.post("/scan", json={"max_symbols": 5, "lookback_sessions": 60}, headers=AUTH).json()["rows"]
    assert [row["alpha_score"] for row in rows] == [42.0] * 5
    assert all(row["alpha_5d"] == pytest.approx(row["tech_rating"] / 1000) for row in rows)
    assert built_for[0][0] == market.session and built_for[0][1] == market.bars.get_column("date").n_unique()
    assert built_for[0][2] == market.conditions["regime"][0]

    def broken_enricher(store, session, bars, universe, regime):
        raise RuntimeError("champion file unreadable")

    monkeypatch.setattr(ad_hoc_scans, "alpha_enricher", broken_enricher)
    with TestClient(make_app()) as client:
        body = client.post("/scan", json={"max_symbols": 5}, headers=AUTH).json()
    assert body["stats"]["end_reason"] == "complete"
    assert [row["alpha_score"] for row in body["rows"]] == [None] * 5


def test_ad_hoc_rows_carry_every_catalog_column_as_the_pipeline_computes_it(client, market):
    body = client.post("/scan", json={"batch_size": 40, "prioritize": False}, headers=AUTH).json()
    rows = pl.DataFrame(body["rows"])
    assert rows.columns == list(schema.RESULTS) and rows.height == market.results.height
    rows = rows.with_columns(pl.col("date").str.to_date()).cast(schema.RESULTS)
    # Bars and index closes from the warehouse, the universe's names: the same values as the scan the
    # fixture ran over the same inputs, to the wire's six digits.
    catalog = ["symbol", *schema.CATALOG_RESULT_COLUMNS]
    expected = for_wire(market.results).select(catalog).sort("symbol")
    assert rows.select(catalog).sort("symbol").equals(expected, null_equal=True)
    assert rows.get_column("beta_252").null_count() < rows.height, "the index reached the ad-hoc scan"
    assert rows.get_column("name").null_count() == 0 and rows.get_column("market_cap").null_count() == 0
    assert rows.get_column("consensus_signal").is_in(schema.SIGNALS).all()
