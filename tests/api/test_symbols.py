"""`GET /symbols/{symbol}/history` and `GET /symbols/{symbol}/screens`: bars joined with stored results, the
range rules and their 422s, unknown symbols, CSV and Parquet downloads, and recent screen hits."""

from __future__ import annotations

import datetime as dt
import io

import polars as pl
import pytest
from fastapi.testclient import TestClient

from api.events import for_wire
from api.routers.symbols import BAR_COLUMNS, DEFAULT_SESSIONS, HISTORY_COLUMNS, MAX_SESSIONS
from technic_core import calendar, schema
from tests.api.conftest import AUTH
from tests.api.support import MarketFixture


def _scanned_symbol(market: MarketFixture) -> str:
    return market.results.sort("tech_rating", descending=True).get_column("symbol")[0]


def _bars(market: MarketFixture, symbol: str) -> pl.DataFrame:
    return market.bars.filter(pl.col("symbol") == symbol).sort("date")


def test_history_defaults_to_a_year_of_bars_joined_with_the_stored_results(client, market):
    symbol = _scanned_symbol(market)
    response = client.get(f"/symbols/{symbol}/history")
    assert response.status_code == 200, response.text
    body = response.json()
    bars = _bars(market, symbol).tail(DEFAULT_SESSIONS)
    assert body["symbol"] == symbol
    assert body["to"] == market.session.isoformat()
    assert body["from"] == calendar.sessions_back(market.session, DEFAULT_SESSIONS)[0].isoformat()
    assert body["columns"] == list(HISTORY_COLUMNS)
    assert body["count"] == len(body["rows"]) == bars.height
    assert [row["date"] for row in body["rows"]] == [day.isoformat() for day in bars.get_column("date")]
    assert [row["close"] for row in body["rows"]] == bars.get_column("close").to_list()

    stored = for_wire(market.results.filter(pl.col("symbol") == symbol)).to_dicts()[0]
    last = body["rows"][-1]
    for column in ("sma_50", "sma_200", "rsi", "tech_rating", "signal", "seq", "sector", "change_1d"):
        assert last[column] == stored[column], column
    assert all(row["tech_rating"] is None and row["signal"] is None for row in body["rows"][:-1])


def test_history_by_dates_by_session_count_and_with_chosen_columns(client, market):
    symbol = _scanned_symbol(market)
    first, last = dt.date(2024, 5, 1), dt.date(2024, 5, 31)
    body = client.get(f"/symbols/{symbol}/history", params={"from": first, "to": last}).json()
    expected = _bars(market, symbol).filter(pl.col("date").is_between(first, last))
    assert (body["from"], body["to"]) == (first.isoformat(), last.isoformat())
    assert body["count"] == expected.height > 0

    body = client.get(f"/symbols/{symbol}/history", params={"sessions": 10, "columns": "close,tech_rating"}).json()
    assert body["columns"] == ["date", "close", "tech_rating"]
    assert [list(row) for row in body["rows"]] == [["date", "close", "tech_rating"]] * 10
    assert body["rows"][-1]["tech_rating"] is not None

    body = client.get(f"/symbols/{symbol}/history", params={"sessions": 3, "to": "2024-06-26"}).json()
    assert [row["date"] for row in body["rows"]] == ["2024-06-24", "2024-06-25", "2024-06-26"]


def test_a_symbol_without_results_in_the_range_has_bars_and_nulls(client, market):
    scanned = set(market.results.get_column("symbol"))
    symbol = next(s for s in market.bars.get_column("symbol").unique().sort() if s not in scanned)
    body = client.get(f"/symbols/{symbol}/history", params={"sessions": 5}).json()
    assert body["count"] == 5
    assert all(row["tech_rating"] is None and row["open"] is not None for row in body["rows"])


def test_unknown_symbols_are_404_and_malformed_ones_422(client):
    response = client.get("/symbols/ZZZZ/history")
    assert response.status_code == 404
    assert "unknown symbol ZZZZ" in response.json()["detail"]
    response = client.get("/symbols/aapl/history")
    assert response.status_code == 422
    assert response.json()["message"].startswith("path.symbol:")


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"from": "2024-02-30"}, "query.from", "valid date"),
        ({"to": "yesterday"}, "query.to", "valid date"),
        ({"from": "2024-06-10", "to": "2024-06-01"}, "query.from", "on or before `to`"),
        ({"from": "2010-01-04", "to": "2024-06-28"}, "query.from", f"at most {MAX_SESSIONS}"),
        ({"from": "2024-06-01", "sessions": 5}, "query.sessions", "not both"),
        ({"sessions": MAX_SESSIONS + 1}, "query.sessions", "less than or equal"),
        ({"columns": "close,nope"}, "query.columns", "unknown column(s) nope"),
        ({"format": "xlsx"}, "query.format", "json"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(client, market, params, field, words):
    response = client.get(f"/symbols/{_scanned_symbol(market)}/history", params=params)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith(f"{field}:"), message
    assert words in message


def test_csv_and_parquet_downloads_hold_the_same_rows(client, market):
    symbol = _scanned_symbol(market)
    params = {"sessions": 30}
    rows = client.get(f"/symbols/{symbol}/history", params=params).json()["rows"]

    response = client.get(f"/symbols/{symbol}/history", params={**params, "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert f'filename="{symbol}-history-' in response.headers["content-disposition"]
    csv = pl.read_csv(io.BytesIO(response.content), try_parse_dates=True)
    assert csv.columns == list(HISTORY_COLUMNS)
    assert csv.height == len(rows)
    assert csv.get_column("close").to_list() == [row["close"] for row in rows]

    response = client.get(f"/symbols/{symbol}/history", params={**params, "format": "parquet"})
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    frame = pl.read_parquet(io.BytesIO(response.content))
    assert frame.columns == list(HISTORY_COLUMNS)
    assert frame.schema["date"] == pl.Date and frame.schema["tech_rating"] == pl.Float64
    assert frame.height == len(rows)
    stored = market.results.filter(pl.col("symbol") == symbol).get_column("tech_rating")[0]
    assert frame.get_column("tech_rating")[-1] == stored, "Parquet keeps the stored precision"
    assert frame.select(BAR_COLUMNS[1:]).to_dicts() == [{name: row[name] for name in BAR_COLUMNS[1:]} for row in rows]


def test_reads_that_require_a_key_refuse_history_without_one(make_app):
    with TestClient(make_app(reads_require_key=True)) as client:
        assert client.get("/symbols/ZZZZ/history").status_code == 401
        assert client.get("/symbols/ZZZZ/history", headers=AUTH).status_code == 404


def test_screens_lists_recent_hits_newest_first(client, warehouse, market):
    assert client.get("/symbols/ZZZZ/screens").json() == {"symbol": "ZZZZ", "from": None, "to": None, "hits": []}
    symbol = _scanned_symbol(market)
    sessions = calendar.sessions_back(market.session, 30)
    for day, screens in (
        (sessions[0], ["old"]),
        (sessions[-3], ["golden-cross"]),
        (sessions[-1], ["strong-buy", "gap-up"]),
    ):
        hits = pl.DataFrame(
            {
                "date": day,
                "screen": [*screens, "strong-buy"],
                "screen_version": 1,
                "screen_fingerprint": "f",
                "rank": [1] * len(screens) + [2],
                "symbol": [symbol] * len(screens) + ["OTHER"],
            }
        )
        warehouse.write_partition("screens", day, schema.conform(hits, schema.SCREEN_HITS, "screens"))
    body = client.get(f"/symbols/{symbol}/screens").json()
    assert body["to"] == market.session.isoformat()
    assert [(hit["date"], hit["screen"]) for hit in body["hits"]] == [
        (sessions[-1].isoformat(), "gap-up"),
        (sessions[-1].isoformat(), "strong-buy"),
        (sessions[-3].isoformat(), "golden-cross"),
    ], "newest first, the 21-session window leaves the oldest out"
    body = client.get(f"/symbols/{symbol}/screens", params={"from": sessions[0]}).json()
    assert len(body["hits"]) == 4


def test_openapi_documents_history(client):
    operation = client.get("/openapi.json").json()["paths"]["/symbols/{symbol}/history"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"symbol", "from", "to", "sessions", "columns", "format"} <= names
    assert {"application/json", "text/csv", "application/vnd.apache.parquet"} <= set(
        operation["responses"]["200"]["content"]
    )
