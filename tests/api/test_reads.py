"""Read endpoints: health, partitions, results with filters and ordering, one symbol, the model registry."""

from __future__ import annotations

import json

import polars as pl
import pytest
from fastapi.testclient import TestClient

from api.events import for_wire
from api.models import ResultRow
from api.tails import _read_batch
from technic_core import calendar, schema
from technic_core.config import SECTORS
from technic_core.ml.registry import ModelRegistry
from tests.core.test_results_schema import write_old_results


def test_health_names_the_warehouse_latest_session_and_champions(client, warehouse, market):
    registry = ModelRegistry(warehouse)
    registry.promote("alpha_5d", registry.create_version("alpha_5d", {}, {}, {}), "first model")
    body = client.get("/health").json()
    assert body == {
        "status": "ok",
        "warehouse": str(warehouse.root),
        "warehouse_exists": True,
        "latest_session": market.session.isoformat(),
        "champions": {"alpha_5d": "v0001"},
        "streams": {"subscribers": 0, "tailed_partitions": 0, "active_scans": 0},
    }


def test_partitions_lists_sessions_per_dataset(client, market):
    datasets = client.get("/partitions").json()["datasets"]
    assert datasets["results"] == datasets["universe"] == datasets["priority"] == [market.session.isoformat()]
    assert len(datasets["bars"]) == market.bars.get_column("date").n_unique()
    assert "scan_runs" not in datasets, "scan history is not partitioned by session"


def test_latest_results_default_to_the_best_rated_first(client, market):
    body = client.get("/results/latest").json()
    expected = market.results.sort(["tech_rating", "symbol"], descending=[True, False]).head(100)
    assert body["date"] == market.session.isoformat()
    assert body["count"] == 100
    assert [row["symbol"] for row in body["rows"]] == expected.get_column("symbol").to_list()
    assert ResultRow.model_validate(body["rows"][0]).seq == expected.get_column("seq")[0]


def test_filters_limit_and_order(client, market):
    sector = market.results.get_column("sector").mode().sort()[0]
    response = client.get(
        f"/results/{market.session.isoformat()}",
        params={"sector": sector, "signal": "Buy", "min_tech_rating": 50, "order_by": "seq", "limit": 3},
    )
    assert response.status_code == 200, response.text
    expected = (
        market.results.filter(
            (pl.col("sector") == sector) & (pl.col("signal") == "Buy") & (pl.col("tech_rating") >= 50)
        )
        .sort("seq")
        .head(3)
    )
    assert [row["seq"] for row in response.json()["rows"]] == expected.get_column("seq").to_list()


def test_one_symbol_and_its_404s(client, market):
    row = market.results.row(0, named=True)
    response = client.get(f"/results/{market.session.isoformat()}/{row['symbol']}")
    assert response.status_code == 200
    assert response.json()["seq"] == row["seq"] and response.json()["tech_rating"] == pytest.approx(row["tech_rating"])
    missing_symbol = client.get(f"/results/{market.session.isoformat()}/ZZZZZ")
    assert missing_symbol.status_code == 404 and "ZZZZZ" in missing_symbol.json()["detail"]
    missing_session = client.get("/results/2024-07-01")
    assert missing_session.status_code == 404 and "2024-07-01" in missing_session.json()["detail"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/results/latest", {"limit": 1001}, "limit"),
        ("/results/latest", {"limit": 0}, "limit"),
        ("/results/latest", {"min_tech_rating": 101}, "min_tech_rating"),
        ("/results/latest", {"sector": "Crypto"}, "sector"),
        ("/results/latest", {"signal": "Hold"}, "signal"),
        ("/results/latest", {"order_by": "password"}, "order_by"),
        ("/results/latest", {"order_by": "tech_rating; DROP TABLE results"}, "order_by"),
        ("/results/latest", {"colour": "red"}, "colour"),
        ("/results/2024-02-30", {}, "date"),
        ("/results/2024-06-29", {}, "date"),
        ("/results/yesterday", {}, "date"),
        ("/results/2024-06-28/not%20a%20symbol", {}, "symbol"),
    ],
)
def test_bad_read_input_is_422_naming_the_field(client, path, params, field):
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert field in response.json()["message"]


def test_every_sector_filter_is_accepted(client):
    statuses = {client.get("/results/latest", params={"sector": sector}).status_code for sector in SECTORS}
    assert statuses == {200}


def test_latest_on_an_empty_warehouse_is_404(make_app, tmp_path):
    with TestClient(make_app(root=tmp_path / "empty")) as empty:
        response = empty.get("/results/latest")
        assert response.status_code == 404 and "no scan results" in response.json()["detail"]
        assert empty.get("/health").json()["latest_session"] is None


def test_models_lists_versions_metrics_and_champion(client, warehouse):
    registry = ModelRegistry(warehouse)
    first = registry.create_version("alpha_10d", {"model.ubj": b"1"}, {}, {"rank_ic": 0.04})
    second = registry.create_version("alpha_10d", {"model.ubj": b"2"}, {}, {"rank_ic": 0.06})
    registry.promote("alpha_10d", second, "beats the champion")
    damaged = registry.create_version("alpha_5d", {"model.ubj": b"3"}, {}, {})
    (registry.root / "alpha_5d" / damaged / "metrics.json").write_text("{not json")
    (registry.root / "alpha_5d" / "v0009").mkdir()  # an interrupted write: no manifest, not a version
    (registry.root / "Not A Model").mkdir()
    body = client.get("/models").json()
    assert body == {
        "models": [
            {
                "name": "alpha_10d",
                "champion": second,
                "versions": [
                    {"version": first, "metrics": {"rank_ic": 0.04}},
                    {"version": second, "metrics": {"rank_ic": 0.06}},
                ],
            },
            {"name": "alpha_5d", "champion": None, "versions": [{"version": damaged, "metrics": None}]},
        ]
    }
    assert client.get("/health").json()["champions"] == {"alpha_10d": second}
    assert json.loads(client.get("/openapi.json").text)["info"]["title"] == "Technic API"


@pytest.mark.parametrize("order_by", ["-beta_252", "rs_63", "-consensus_rating", "name", "-golden_cross", "adx_14"])
def test_results_order_by_any_catalog_column(client, market, order_by):
    column = order_by.lstrip("-")
    response = client.get("/results/latest", params={"order_by": order_by, "limit": 1000})
    assert response.status_code == 200, response.text
    rows = pl.DataFrame(response.json()["rows"])
    expected = for_wire(market.results).sort(
        [column, "symbol"], descending=[order_by.startswith("-"), False], nulls_last=True
    )
    assert rows.get_column("symbol").to_list() == expected.get_column("symbol").to_list()
    assert rows.columns == list(schema.RESULTS)


def test_an_older_partition_without_the_catalog_columns_reads_as_nulls(client, warehouse, market):
    earlier = calendar.previous_session(market.session)
    path = write_old_results(warehouse, earlier, market.results.with_columns(pl.lit(earlier).alias("date")))
    page = client.get(f"/results/{earlier.isoformat()}", params={"order_by": "-adx_14", "limit": 1000})
    assert page.status_code == 200, page.text
    rows = page.json()["rows"]
    assert len(rows) == market.results.height
    assert {row["adx_14"] for row in rows} == {None} and all(row["tech_rating"] is not None for row in rows)
    assert [row["symbol"] for row in rows] == sorted(row["symbol"] for row in rows)  # all null: ties by symbol
    one = client.get(f"/results/{earlier.isoformat()}/{rows[0]['symbol']}").json()
    assert one["consensus_signal"] is None and one["seq"] == rows[0]["seq"]
    # The newer partition keeps its values, and the partition tail reads the old file in the current schema.
    newer = client.get("/results/latest", params={"order_by": "-adx_14"}).json()["rows"]
    assert newer[0]["adx_14"] is not None
    batch = _read_batch(path)
    assert batch is not None and batch.schema == pl.Schema(schema.RESULTS)
    assert batch.get_column("rs_63").null_count() == batch.height


def test_a_compacted_session_reads_once_even_with_a_leftover_batch_beside_it(client, warehouse, market):
    """A compaction that died before deleting its batches leaves them beside the compacted file; every read
    path (pages, one symbol through DuckDB, the newest session) takes the compacted file alone."""
    session = market.session
    warehouse.compact_results(session)
    warehouse.write_result_batch(session, 0, market.batches[0])  # the leftover
    page = client.get(f"/results/{session}", params={"limit": 1000, "order_by": "seq"}).json()
    assert page["total"] == market.results.height
    assert [row["seq"] for row in page["rows"]] == market.results.sort("seq").get_column("seq").to_list()
    symbol = market.batches[0].get_column("symbol")[0]
    assert client.get(f"/results/{session}/{symbol}").status_code == 200
    assert client.get("/health").json()["latest_session"] == session.isoformat()
