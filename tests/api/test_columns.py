"""`GET /columns`: the column catalog as the registry describes it, behind the read key like every read."""

from __future__ import annotations

from fastapi.testclient import TestClient

from technic_core.catalog import CATALOG, column_rows
from tests.api.conftest import AUTH


def test_columns_lists_every_catalog_column_in_registry_order(client):
    response = client.get("/columns")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(CATALOG) == len(body["columns"])
    assert body["columns"] == column_rows()
    by_name = {row["name"]: row for row in body["columns"]}
    assert by_name["rel_volume"]["alias_of"] == "volume_ratio"
    assert by_name["beta_252"] == {
        **by_name["beta_252"],
        "type": "Float64",
        "unit": "ratio",
        "lookback": 252,
        "source": "index",
    }
    assert by_name["beta_252"]["null_reason"]
    assert by_name["golden_cross"]["type"] == "Boolean" and by_name["name"]["source"] == "universe"
    assert by_name["atr_pct"]["unit"] == "percent" and by_name["mom_21"]["unit"] == "fraction"


def test_columns_is_in_the_openapi_schema_and_needs_the_read_key_when_reads_do(make_app):
    with TestClient(make_app(reads_require_key=True)) as client:
        assert client.get("/columns").status_code == 401
        assert client.get("/columns", headers=AUTH).status_code == 200
        assert "/columns" in client.get("/openapi.json", headers=AUTH).json()["paths"]
