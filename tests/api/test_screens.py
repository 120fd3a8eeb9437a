"""Where users reach screens: `?where=`/`columns`/paging/downloads on results, `/screens` (list, read, save,
delete, hits, history, performance), the screen SSE stream, and ad-hoc scans with `where` and `symbols`.

Every happy path is checked against a plain polars reference written here; every error class against its
status, the field it names and (for screens) the place in the text.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import string
import time
from urllib.parse import urlencode

import httpx
import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from api.events import for_wire
from api.queries import ResultColumns, SessionFrames, screened
from technic_core import calendar, schema
from technic_core.config import ScanConfig
from technic_core.scan import run_scan, watchlist_report
from technic_core.screens import BUILTINS, MAX_LENGTH, ScreenLibrary, compile
from technic_core.screens.evaluation import hits_between, result_columns, saved_screen_hits, screen_outcomes
from technic_core.warehouse import Warehouse
from tests.api.conftest import AUTH, OTHER_AUTH
from tests.api.support import MarketFixture, daily_history_row, write_session_batches
from tests.api.test_streams import LIVE, TIMEOUT, land, stream, until_end

PREVIOUS = dt.date(2024, 6, 27)  # the session before the market's (2024-06-28)
BIG = dt.date(2024, 6, 20)  # a session crafted with more than 1,000 rows
KINDS = result_columns()


# ------------------------------------------------------------------ warehouses


def _previous_rows(market: MarketFixture) -> pl.DataFrame:
    """The market's rows moved to PREVIOUS with each close and RSI shifted by a per-symbol amount, and the first
    five symbols missing (their prev() is null)."""
    rng = np.random.default_rng(11)
    rows = market.results.sort("seq").slice(5)
    factor = pl.Series(rng.uniform(0.95, 1.05, rows.height))
    shift = pl.Series(rng.uniform(-10, 10, rows.height))
    rows = rows.with_columns(
        (pl.col("close") * factor).alias("close"),
        (pl.col("rsi") + shift).alias("rsi"),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("seq"),
        pl.lit(PREVIOUS).alias("date"),
    )
    return rows


@pytest.fixture
def two_sessions(warehouse: Warehouse, market: MarketFixture) -> pl.DataFrame:
    """The warehouse with results on PREVIOUS too; returns those rows."""
    previous = _previous_rows(market)
    write_session_batches(warehouse, PREVIOUS, _batched([previous.slice(0, 50), previous.slice(50)]))
    warehouse.finish_results(PREVIOUS, 2)
    return previous


def _batched(frames: list[pl.DataFrame]) -> list[pl.DataFrame]:
    return [frame.with_columns(pl.lit(number, dtype=pl.Int64).alias("batch")) for number, frame in enumerate(frames)]


def _letters(index: int) -> str:
    return "".join(string.ascii_uppercase[(index // 26**k) % 26] for k in range(3, -1, -1))


@pytest.fixture
def big_session(warehouse: Warehouse, market: MarketFixture) -> pl.DataFrame:
    """BIG: the market's rows ten times over under other symbols (1,110 rows), in batches of 250."""
    base = market.results.sort("seq")
    copies = [
        base.with_columns(
            pl.Series("symbol", [_letters(copy * base.height + i) for i in range(base.height)]),
            (pl.col("tech_rating") * (1 - copy / 100)).alias("tech_rating"),
        )
        for copy in range(10)
    ]
    rows = pl.concat(copies).with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("seq"), pl.lit(BIG).alias("date")
    )
    batches = _batched([rows.slice(start, 250) for start in range(0, rows.height, 250)])
    write_session_batches(warehouse, BIG, batches)
    warehouse.finish_results(BIG, len(batches))
    return rows


def _by_rating(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(["tech_rating", "symbol"], descending=[True, False], nulls_last=True)


def _symbols(body: dict) -> list[str]:
    return [row["symbol"] for row in body["rows"]]


def _item(response: httpx.Response) -> dict:
    """The single `detail` item of a 422, checked to lead `message` with its field."""
    assert response.status_code == 422, response.text
    body = response.json()
    (item,) = body["detail"]
    assert body["message"].startswith(".".join(item["loc"]) + ": ")
    return item


# ------------------------------------------------------------------ results: where, columns, paging, downloads


def test_where_selects_what_a_polars_filter_selects(client, market):
    response = client.get("/results/latest", params={"where": 'rsi > 50 and signal in ("Buy", "Strong Buy")'})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = _by_rating(market.results.filter((pl.col("rsi") > 50) & pl.col("signal").is_in(["Buy", "Strong Buy"])))
    assert body["date"] == market.session.isoformat()
    assert _symbols(body) == expected.get_column("symbol").to_list()
    assert body["total"] == body["count"] == expected.height and body["offset"] == 0 and body["next_offset"] is None
    assert set(body["rows"][0]) == set(schema.RESULTS), "without `columns` every result column"


def test_where_combines_with_the_filters_order_and_columns(client, market):
    params = {"where": "close > sma_50", "min_tech_rating": 40, "order_by": "-rsi", "columns": "rsi,symbol,close"}
    body = client.get(f"/results/{market.session.isoformat()}", params=params).json()
    expected = market.results.filter((pl.col("close") > pl.col("sma_50")) & (pl.col("tech_rating") >= 40)).sort(
        ["rsi", "symbol"], descending=[True, False], nulls_last=True
    )
    assert [list(row) for row in body["rows"]] == [["rsi", "symbol", "close"]] * expected.height
    assert _symbols(body) == expected.get_column("symbol").to_list()
    assert [row["close"] for row in body["rows"]] == expected.get_column("close").to_list(), "prices leave exact"


def test_prev_reads_the_previous_session(client, market, two_sessions):
    body = client.get("/results/latest", params={"where": "close > prev(close)", "limit": 1000}).json()
    previous = two_sessions.select("symbol", pl.col("close").alias("previous_close"))
    expected = _by_rating(
        market.results.join(previous, on="symbol", how="left").filter(pl.col("close") > pl.col("previous_close"))
    )
    assert 0 < expected.height < market.results.height - 5
    assert _symbols(body) == expected.get_column("symbol").to_list()
    # The same answer as the pipeline's evaluation (hits_between over [date, date]).
    screen = compile("close > prev(close)", KINDS)
    reference = hits_between(Warehouse(client.app.state.store.root), screen, market.session, market.session).collect()
    assert sorted(_symbols(body)) == sorted(reference.get_column("symbol").to_list())


def test_paging_beyond_a_thousand_rows(client, big_session):
    expected = _by_rating(big_session).get_column("symbol").to_list()
    assert len(expected) > 1000
    rows, offset, pages = [], 0, 0
    while offset is not None:
        response = client.get(
            f"/results/{BIG.isoformat()}", params={"limit": 400, "offset": offset, "columns": "symbol"}
        )
        body = response.json()
        assert body["total"] == len(expected)
        if body["next_offset"] is not None:
            assert f"offset={body['next_offset']}" in response.headers["link"]
        rows += _symbols(body)
        offset, pages = body["next_offset"], pages + 1
    assert rows == expected and pages == 3
    last = client.get(f"/results/{BIG.isoformat()}", params={"limit": 1000, "offset": 1000}).json()
    assert last["count"] == len(expected) - 1000 and last["next_offset"] is None
    beyond = client.get(f"/results/{BIG.isoformat()}", params={"offset": 5000}).json()
    assert beyond["rows"] == [] and beyond["total"] == len(expected)


def test_csv_and_parquet_downloads_parse_back(client, market, big_session):
    where, columns = "rsi > 1", ["symbol", "rsi", "close", "signal", "date"]
    params = {"where": where, "columns": ",".join(columns), "order_by": "symbol"}
    expected = big_session.filter(pl.col("rsi") > 1).sort("symbol").select(columns)
    assert expected.height > 1000, "a download holds every row, not a page"

    csv = client.get(f"/results/{BIG.isoformat()}", params={**params, "format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.headers["content-disposition"] == f'attachment; filename="results-{BIG.isoformat()}.csv"'
    assert csv.headers["x-total-count"] == str(expected.height)
    parsed = pl.read_csv(io.BytesIO(csv.content), schema={name: schema.RESULTS[name] for name in columns})
    assert parsed.equals(for_wire(expected))

    parquet = client.get(f"/results/{BIG.isoformat()}", params={**params, "format": "parquet"})
    assert parquet.headers["content-disposition"].endswith('.parquet"')
    assert pl.read_parquet(io.BytesIO(parquet.content)).equals(expected), "parquet keeps stored precision"

    paged = client.get(f"/results/{BIG.isoformat()}", params={**params, "format": "csv", "limit": 10, "offset": 5})
    assert (
        pl.read_csv(io.BytesIO(paged.content)).get_column("symbol").to_list()
        == expected.get_column("symbol").slice(5, 10).to_list()
    )


def test_the_previous_response_shape_still_holds(client, market):
    body = client.get("/results/latest", params={"limit": 3}).json()
    assert {"date", "count", "rows"} <= set(body) and body["count"] == 3
    assert body["total"] == market.results.height and body["next_offset"] == 3


# ------------------------------------------------------------------ results: refusals


def test_a_parse_error_is_422_with_its_place(client):
    item = _item(client.get("/results/latest", params={"where": "rsi < 30 and\n  close > "}))
    assert item["loc"] == ["query", "where"] and item["field"] == "query.where"
    assert item["error"] == "ScreenSyntaxError" and item["position"] == 22
    assert (item["line"], item["column"]) == (2, 10) and item["expected"] == ["a value"]
    assert "at 22 (line 2, column 10)" in item["msg"]


def test_an_unknown_column_is_422_with_suggestions(client):
    item = _item(client.get("/results/latest", params={"where": "rsii < 30"}))
    assert item["error"] == "UnknownNameError" and item["suggestions"] == ["rsi"] and item["position"] == 0


def test_a_type_error_is_422_at_the_offending_operand(client):
    item = _item(client.get("/results/latest", params={"where": 'rsi == "x"'}))
    assert item["error"] == "ScreenTypeError" and item["position"] == 7


def test_unknown_columns_are_422_naming_the_closest(client):
    item = _item(client.get("/results/latest", params={"columns": "symbol,rsii,clse"}))
    assert item["loc"] == ["query", "columns"] and item["unknown"] == ["rsii", "clse"]
    assert item["suggestions"] == {"rsii": ["rsi"], "clse": ["close"]}
    assert "rsii" in item["msg"] and "did you mean rsi" in item["msg"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 1001}, "limit"),
        ({"offset": -1}, "offset"),
        ({"format": "xml"}, "format"),
        ({"columns": "a" * 5000}, "columns"),
        ({"columns": " , ,"}, "columns"),
        ({"wher": "rsi < 3"}, "wher"),
    ],
)
def test_bad_paging_parameters_are_422_naming_the_field(client, params, field):
    response = client.get("/results/latest", params=params)
    assert response.status_code == 422 and response.json()["message"].startswith(f"query.{field}")


HOSTILE = [
    "(" * 10_000 + "rsi",
    "rsi < 30 and " * 400 + "rsi < 30",
    "not " * 5_000 + "golden_cross",
    "-" * 3_000 + "rsi > 1",
    "x" * (MAX_LENGTH + 1),
    '"' + "a" * 3_000,
    "rsi < 1e999",
    "abs(" * 40 + "rsi" + ")" * 40 + " > 1",
    "\x00\u202e rsi < 30",
    "rsi < 30; DROP TABLE results",
    "__import__('os').system('true')",
]


@pytest.mark.parametrize("where", HOSTILE)
def test_hostile_screens_are_refused_fast(client, where):
    started = time.perf_counter()
    response = client.get("/results/latest", params={"where": where})
    assert time.perf_counter() - started < 1.0
    item = _item(response)
    assert item["field"] == "query.where" and isinstance(item["position"], int)
    assert len(json.dumps(item["input"])) < 1_000, "the input is echoed clipped"


# ------------------------------------------------------------------ /screens: list, read, save, delete


def test_list_and_read_screens(client):
    response = client.get("/screens")
    body = response.json()
    assert [screen["name"] for screen in body["screens"]] == [screen.name for screen in BUILTINS]
    assert body["count"] == len(BUILTINS) and body["problems"] == [] and body["etag"] is None
    first = body["screens"][0]
    assert first == {
        "name": "top-gainers",
        "title": "Top gainers",
        "description": BUILTINS[0].description,
        "expression": "change_1d > 0.05",
        "version": 1,
        "fingerprint": BUILTINS[0].fingerprint,
        "builtin": True,
        "sort_by": "change_1d",
        "descending": True,
        "hits": None,
        "hits_date": None,
    }
    one = client.get("/screens/oversold").json()
    assert one["expression"] == "rsi < 30" and one["versions"][0]["saved_at"] is None
    assert client.get("/screens/nope").status_code == 404


def test_save_change_and_delete_a_screen(client, warehouse):
    saved = client.put("/screens/energy-dip", json={"expression": "rsi < 45", "sort_by": "rsi"}, headers=AUTH)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["version"], body["title"], body["builtin"], body["sort_by"]) == (1, "energy-dip", False, "rsi")
    etag = saved.headers["etag"].strip('"')
    assert client.get("/screens").json()["etag"] == etag == ScreenLibrary(warehouse).load().etag

    changed = client.put(
        "/screens/energy-dip",
        json={"expression": "rsi  <  40", "title": "Dip"},
        headers={**AUTH, "If-Match": f'"{etag}"'},
    )
    assert changed.json()["version"] == 2 and [v["expression"] for v in changed.json()["versions"]] == [
        "rsi < 45",
        "rsi  <  40",
    ]
    layout_only = client.put("/screens/energy-dip", json={"expression": "rsi<40", "title": "Dip"}, headers=AUTH)
    assert layout_only.json()["version"] == 2, "layout alone is no new version"

    stale = client.put("/screens/energy-dip", json={"expression": "rsi < 20"}, headers={**AUTH, "If-Match": etag})
    assert stale.status_code == 412 and "changed since" in stale.json()["detail"]
    assert client.delete("/screens/energy-dip", headers={**AUTH, "If-Match": '"stale"'}).status_code == 412

    assert client.delete("/screens/energy-dip", headers=AUTH).status_code == 204
    assert client.get("/screens/energy-dip").status_code == 404
    assert client.delete("/screens/energy-dip", headers=AUTH).status_code == 404
    assert ScreenLibrary(warehouse).version("energy-dip", 2).expression == "rsi  <  40", "versions are kept"
    back = client.put("/screens/energy-dip", json={"expression": "rsi < 10"}, headers=AUTH)
    assert back.json()["version"] == 3, "a deleted name continues its numbering"


def test_writes_need_a_key_and_built_ins_are_protected(client):
    body = {"expression": "rsi < 30"}
    assert client.put("/screens/mine", json=body).status_code == 401
    assert client.put("/screens/mine", json=body, headers={"X-API-Key": "wrong"}).status_code == 403
    assert client.delete("/screens/mine").status_code == 401
    overwrite = client.put("/screens/oversold", json=body, headers=OTHER_AUTH)
    assert overwrite.status_code == 403 and "built-in" in overwrite.json()["detail"]
    assert client.delete("/screens/golden-cross", headers=AUTH).status_code == 403


def test_a_bad_screen_body_is_422_naming_the_field_and_place(client):
    item = _item(client.put("/screens/mine", json={"expression": "rsi <"}, headers=AUTH))
    assert item["loc"] == ["body", "expression"] and item["position"] == 5 and item["expected"] == ["a value"]
    unknown = _item(client.put("/screens/mine", json={"expression": "rsi < 3", "sort_by": "rsii"}, headers=AUTH))
    assert unknown["loc"] == ["body", "sort_by"]
    title = _item(client.put("/screens/mine", json={"expression": "rsi < 3", "title": "t" * 121}, headers=AUTH))
    assert title["loc"] == ["body", "title"]
    extra = _item(client.put("/screens/mine", json={"expression": "rsi < 3", "colour": "red"}, headers=AUTH))
    assert extra["loc"] == ["body", "colour"]
    assert client.get("/screens/mine").status_code == 404, "nothing was saved"


@pytest.mark.parametrize("name", ["UPPER", "a" * 65, "semi;colon", "dot.name", "%20"])
def test_bad_screen_names_are_422(client, name):
    for response in (
        client.get(f"/screens/{name}"),
        client.put(f"/screens/{name}", json={"expression": "rsi < 3"}, headers=AUTH),
        client.get(f"/screens/{name}/hits/latest"),
    ):
        assert response.status_code == 422, (name, response.text)
        assert response.json()["message"].startswith("path.name")


# ------------------------------------------------------------------ /screens: hits, history, performance


def _save(client: TestClient, name: str, expression: str, **fields: object) -> dict:
    response = client.put(f"/screens/{name}", json={"expression": expression, **fields}, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def test_hits_are_evaluated_before_any_are_stored(client, market, two_sessions):
    _save(client, "climbers", "close > prev(close) and rsi > 40", sort_by="rsi", descending=False)
    body = client.get("/screens/climbers/hits/latest").json()
    previous = two_sessions.select("symbol", pl.col("close").alias("previous_close"))
    expected = (
        market.results.join(previous, on="symbol", how="left")
        .filter((pl.col("close") > pl.col("previous_close")) & (pl.col("rsi") > 40))
        .sort(["rsi", "symbol"], nulls_last=True)
    )
    assert body["source"] == "evaluated" and body["version"] == 1 and body["date"] == market.session.isoformat()
    assert _symbols(body) == expected.get_column("symbol").to_list() and expected.height > 0
    assert [row["rank"] for row in body["rows"]] == list(range(1, expected.height + 1))
    assert list(body["rows"][0]) == [
        "rank",
        "symbol",
        "name",
        "sector",
        "close",
        "change_1d",
        "tech_rating",
        "signal",
        "rsi",
    ]
    chosen = client.get("/screens/climbers/hits/latest", params={"columns": "rsi,symbol", "limit": 2, "offset": 1})
    assert [list(row) for row in chosen.json()["rows"]] == [["rank", "symbol", "rsi"]] * 2
    assert [row["rank"] for row in chosen.json()["rows"]] == [2, 3]


def test_stored_hits_are_served_as_recorded_until_the_screen_changes(client, warehouse, market):
    _save(client, "rated", "tech_rating > 50")
    library = ScreenLibrary(warehouse)
    hits, failures = saved_screen_hits(warehouse, list(library.load().screens.values()), market.session, market.session)
    assert not failures
    # Recorded in reverse: what the API answers is what was stored, not a fresh evaluation.
    stored = hits.with_columns(
        pl.when(pl.col("screen") == "rated")
        .then(pl.col("rank").max().over("screen") + 1 - pl.col("rank"))
        .otherwise(pl.col("rank"))
        .alias("rank")
    )
    warehouse.write_partition("screens", market.session, stored)
    expected = stored.filter(pl.col("screen") == "rated").sort("rank").get_column("symbol").to_list()

    body = client.get(f"/screens/rated/hits/{market.session.isoformat()}", params={"limit": 1000}).json()
    assert body["source"] == "stored" and _symbols(body) == expected and len(expected) > 1
    listing = {screen["name"]: screen for screen in client.get("/screens").json()["screens"]}
    assert listing["rated"]["hits"] == len(expected) and listing["rated"]["hits_date"] == market.session.isoformat()
    oversold = market.results.filter(pl.col("rsi") < 30).height
    assert listing["oversold"]["hits"] == oversold, "a built-in with no stored row had no hit"

    time.sleep(0.01)
    _save(client, "rated", "tech_rating > 60")
    changed = client.get("/screens/rated/hits/latest", params={"limit": 1000}).json()
    assert changed["source"] == "evaluated" and changed["version"] == 2 and "version 1" in changed["note"]
    assert (
        _symbols(changed)
        == _by_rating(market.results.filter(pl.col("tech_rating") > 60)).get_column("symbol").to_list()
    )
    assert {s["name"]: s["hits"] for s in client.get("/screens").json()["screens"]}["rated"] is None
    _save(client, "newer", "rsi > 10")
    newer = client.get("/screens/newer/hits/latest").json()
    assert newer["source"] == "evaluated" and "newer than the hits stored" in newer["note"]


def test_hits_download_and_missing_sessions(client, market):
    _save(client, "all-rated", "tech_rating >= 0")
    csv = client.get("/screens/all-rated/hits/latest", params={"format": "csv", "columns": "tech_rating"})
    assert csv.headers["content-disposition"] == f'attachment; filename="all-rated-{market.session.isoformat()}.csv"'
    parsed = pl.read_csv(io.BytesIO(csv.content))
    assert parsed.columns == ["rank", "symbol", "tech_rating"] and parsed.height == market.results.height
    assert client.get("/screens/all-rated/hits/2024-07-01").status_code == 404
    assert _item(client.get("/screens/all-rated/hits/2024-06-29"))["loc"] == ["path", "date"]
    assert _item(client.get("/screens/all-rated/hits/2024-02-30"))["loc"] == ["path", "date"]
    assert client.get("/screens/all-rated/hits/yesterday").status_code == 422


def test_history_evaluates_each_session(client, market, two_sessions):
    _save(client, "up-on-rsi", "rsi > prev(rsi)", sort_by="rsi")
    params = {"from": PREVIOUS.isoformat(), "to": market.session.isoformat(), "limit": 1000}
    body = client.get("/screens/up-on-rsi/history", params=params).json()
    assert body["from"] == PREVIOUS.isoformat() and body["to"] == market.session.isoformat()
    previous = two_sessions.select("symbol", pl.col("rsi").alias("previous_rsi"))
    today = (
        market.results.join(previous, on="symbol", how="left")
        .filter(pl.col("rsi") > pl.col("previous_rsi"))
        .sort(["rsi", "symbol"], descending=[True, False])
    )
    # The session before PREVIOUS has no results: no prev(), so no hit on PREVIOUS.
    assert body["sessions"] == [
        {"date": PREVIOUS.isoformat(), "hits": 0},
        {"date": market.session.isoformat(), "hits": today.height},
    ]
    assert [(row["date"], row["rank"], row["symbol"]) for row in body["rows"]] == [
        (market.session.isoformat(), rank, symbol)
        for rank, symbol in enumerate(today.get_column("symbol").to_list(), start=1)
    ]
    default = client.get("/screens/up-on-rsi/history").json()
    assert default["to"] == market.session.isoformat() and default["total"] == today.height
    parquet = client.get("/screens/up-on-rsi/history", params={**params, "format": "parquet", "columns": "rsi"})
    frame = pl.read_parquet(io.BytesIO(parquet.content))
    assert frame.columns == ["date", "rank", "symbol", "rsi"] and frame.height == today.height


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"from": "2024-06-29"}, "from", "not an NYSE session"),
        ({"to": "2024-06-30"}, "to", "not an NYSE session"),
        ({"from": "2024-06-28", "to": "2024-06-27"}, "from", "on or before"),
        ({"from": "2020-01-02", "to": "2024-06-28"}, "from", "at most 520"),
        ({"from": "tomorrow"}, "from", ""),
        ({"columns": "nope"}, "columns", "unknown column"),
    ],
)
def test_history_ranges_are_checked(client, params, field, words):
    item = _item(client.get("/screens/oversold/history", params=params))
    assert item["loc"] == ["query", field] and words in item["msg"]


def test_performance_without_labels_is_empty_with_a_reason(client):
    body = client.get("/screens/oversold/performance").json()
    assert body["rows"] == [] and body["bands"] == [] and "nothing is labeled yet" in body["reason"]
    assert client.get("/screens/nope/performance").status_code == 404
    assert _item(client.get("/screens/oversold/performance", params={"from": "2024-06-29"}))["loc"] == ["query", "from"]


def test_performance_matches_the_hits_forward_returns(client, warehouse, market):
    _save(client, "rated", "tech_rating > 50")
    library = ScreenLibrary(warehouse)
    hits, _ = saved_screen_hits(warehouse, list(library.load().screens.values()), market.session, market.session)
    rng = np.random.default_rng(5)
    universe = market.results.select("date", "symbol", "signal", "tech_rating").with_columns(
        pl.Series("fwd_ret_5d", rng.normal(0.0, 0.05, market.results.height)),
        pl.Series("fwd_ret_10d", rng.normal(0.0, 0.08, market.results.height)),
    )
    evidence, _ = screen_outcomes(hits, schema.conform(universe, schema.OUTCOMES, "outcomes"), market.results)
    warehouse.write_partition("screen_outcomes", market.session, evidence)

    body = client.get("/screens/rated/performance").json()
    assert body["reason"] is None and body["versions"] == [1]
    (row,) = body["rows"]
    picked = universe.filter(pl.col("tech_rating") > 50)
    assert row["hits"] == picked.height and row["sessions"] == 1
    assert row["mean_5d"] == pytest.approx(picked.get_column("fwd_ret_5d").mean(), rel=1e-5)
    excess = picked.get_column("fwd_ret_10d").mean() - universe.get_column("fwd_ret_10d").mean()
    assert row["excess_10d"] == pytest.approx(excess, rel=1e-5)
    assert row["positive_5d"] == pytest.approx((picked.get_column("fwd_ret_5d") > 0).mean(), rel=1e-5)
    bands = {(band["kind"], band["name"]): band for band in body["bands"]}
    buys = universe.filter(pl.col("signal") == "Buy")
    assert bands[("signal", "Buy")]["hits"] == buys.height
    later = client.get("/screens/rated/performance", params={"from": "2024-07-01"}).json()
    assert later["rows"] == [] and "no labeled session" in later["reason"]


# ------------------------------------------------------------------ the screen stream


def test_screen_stream_delivers_each_hit_once_in_order_across_a_resume(server, warehouse, market):
    response = httpx.put(
        f"{server}/screens/steady",
        json={"expression": "close == prev(close) and rsi > 45"},
        headers=AUTH,
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    # LIVE's batches are the market's, whose session (the one before LIVE) has the same closes.
    expected = market.results.filter(pl.col("rsi") > 45).sort("seq").get_column("seq").to_list()
    assert 0 < len(expected) < market.results.height

    def hit_seqs(events) -> list[int]:
        return [row["seq"] for event in events if event.event == "result" for row in json.loads(event.data)["rows"]]

    path = f"/events/screens/steady/{LIVE.isoformat()}"
    with stream(server, path) as events:
        land(warehouse, market, 0)
        land(warehouse, market, 1)
        first = []
        for event in events:
            first.append(event)
            if event.event == "progress" and json.loads(event.data)["batch"] == 1:
                break
    resume_from = first[-1].id
    land(warehouse, market, 2)  # lands while the client is away
    with stream(server, path, headers={"Last-Event-ID": resume_from}) as events:
        for batch in range(3, len(market.batches)):
            land(warehouse, market, batch)
        warehouse.append_scan_run(daily_history_row(LIVE, market.results.height))
        rest = until_end(events)
    received = hit_seqs(first) + hit_seqs(rest)
    assert received == expected
    results = [json.loads(event.data) for event in first + rest if event.event == "result"]
    assert all(data["screen"] == "steady" and data["hits"] == len(data["rows"]) for data in results)
    assert all(int(event.id) == json.loads(event.data)["last_seq"] for event in first + rest if event.event == "result")
    assert json.loads(rest[-1].data)["reason"] == "complete"

    with stream(server, f"{path}?after={expected[0]}") as events:
        assert hit_seqs(until_end(events)) == expected[1:], "a cursor inside a batch resumes after it"


def test_screen_stream_refusals(server):
    with httpx.Client(base_url=server, timeout=TIMEOUT) as http:
        assert http.get("/events/screens/nope/latest").status_code == 404
        assert http.get("/events/screens/oversold/2024-06-29").status_code == 422
        assert http.get("/events/screens/oversold/adhoc-0123456789abcdef").status_code == 422
        assert http.get("/events/screens/Bad/latest").status_code == 422
        bad_cursor = http.get("/events/screens/oversold/latest", headers={"Last-Event-ID": "x"})
        assert bad_cursor.status_code == 422 and "Last-Event-ID" in bad_cursor.json()["message"]


def test_screen_stream_replays_a_finished_session(server, market):
    with stream(server, "/events/screens/strong-buy/latest") as events:
        received = until_end(events)
    seqs = [row["seq"] for event in received if event.event == "result" for row in json.loads(event.data)["rows"]]
    assert seqs == market.results.filter(pl.col("signal") == "Strong Buy").sort("seq").get_column("seq").to_list()


def test_a_session_result_stream_screened_by_where(server, market):
    where = 'rsi > 55 and signal != "Sell"'
    expected = market.results.filter((pl.col("rsi") > 55) & (pl.col("signal") != "Sell")).sort("seq")
    with stream(server, f"/events/results/latest?{urlencode({'where': where})}") as events:
        received = until_end(events)
    results = [json.loads(event.data) for event in received if event.event == "result"]
    assert [row["seq"] for data in results for row in data["rows"]] == expected.get_column("seq").to_list()
    assert all("screen" not in data and data["hits"] == len(data["rows"]) for data in results)
    with httpx.Client(base_url=server, timeout=TIMEOUT, headers=AUTH) as http:
        bad = http.get("/events/results/latest", params={"where": "rsi >> 3"})
        assert bad.status_code == 422 and _item(bad)["field"] == "query.where" and _item(bad)["position"] == 5
        adhoc = http.get("/events/results/adhoc-0123456789abcdef", params={"where": "rsi > 3"})
        assert adhoc.status_code == 422 and "POST /scan" in adhoc.json()["message"]


# ------------------------------------------------------------------ ad-hoc scans: where and symbols


def test_an_ad_hoc_scan_with_a_watchlist_and_a_screen(client, market):
    passed = market.universe.filter(pl.col("passed")).get_column("symbol").sort().to_list()
    refused = market.universe.filter(~pl.col("passed")).get_column("symbol").sort().to_list()
    watchlist = [symbol.lower() for symbol in passed[::3]] + ["ZZZZ", refused[0]]
    body = {"symbols": watchlist, "where": "rsi > 45", "prioritize": False, "batch_size": 7}
    response = client.post("/scan", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    answer = response.json()
    wanted = set(passed[::3])
    expected = market.results.filter(pl.col("symbol").is_in(wanted) & (pl.col("rsi") > 45))
    rows = answer["rows"]
    assert sorted(row["symbol"] for row in rows) == sorted(expected.get_column("symbol").to_list())
    assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1)), "seq stays gapless over kept rows"
    assert answer["watchlist"] == {
        "requested": len(watchlist),
        "scanned": len(wanted),
        "unknown": ["ZZZZ"],
        "not_screened": [refused[0]],
    }
    assert answer["stats"]["total"] == len(wanted) and answer["stats"]["results"] == len(rows)
    assert answer["stats"]["signals"] == expected.filter(pl.col("signal").is_in(["Buy", "Strong Buy"])).height

    started = client.post("/scan/stream", json={"symbols": passed[:3]}, headers=AUTH).json()
    assert started["watchlist"]["scanned"] == 3 and started["watchlist"]["unknown"] == []


def test_ad_hoc_scan_refusals(client):
    item = _item(client.post("/scan/stream", json={"where": "rsi <<"}, headers=AUTH))
    assert item["loc"] == ["body", "where"] and item["field"] == "body.where"
    assert item["error"] == "ScreenSyntaxError" and item["position"] == 5
    assert _item(client.post("/scan", json={"where": "rsii > 1"}, headers=AUTH))["suggestions"] == ["rsi"]
    unknown = _item(client.post("/scan/stream", json={"symbols": ["ZZZZ", "QQQQQ"]}, headers=AUTH))
    assert unknown["loc"] == ["body", "symbols"] and "none of the 2 symbol(s)" in unknown["msg"]
    bad = _item(client.post("/scan/stream", json={"symbols": ["AAPL", "12$"]}, headers=AUTH))
    assert bad["loc"] == ["body", "symbols"] and "'12$'" in bad["msg"]
    many = _item(client.post("/scan/stream", json={"symbols": [_letters(i) for i in range(5_001)]}, headers=AUTH))
    assert many["loc"] == ["body", "symbols"]
    started = time.perf_counter()
    huge = _item(client.post("/scan/stream", json={"where": "(" * 1_000_000}, headers=AUTH))
    assert huge["error"] == "ScreenLimitError" and time.perf_counter() - started < 1.0
    assert client.post("/scan/stream", json={"where": "rsi < 30"}).status_code == 401


def test_the_engine_applies_where_with_prev_and_the_watchlist(market):
    previous = _previous_rows(market)
    config = ScanConfig(where="close > prev(close)", symbols=tuple(market.results.get_column("symbol")[:60]))
    run = run_scan(config, market.session, market.bars, market.universe, previous=previous)
    rows = pl.concat([batch.results for batch in run])
    joined = market.results.join(previous.select("symbol", pl.col("close").alias("pc")), on="symbol", how="left")
    expected = joined.filter(pl.col("symbol").is_in(list(config.symbols or ())) & (pl.col("close") > pl.col("pc")))
    assert sorted(rows.get_column("symbol").to_list()) == sorted(expected.get_column("symbol").to_list())
    assert rows.get_column("seq").to_list() == list(range(1, rows.height + 1)) and rows.columns == list(schema.RESULTS)
    assert run.total == 60
    without = run_scan(config, market.session, market.bars, market.universe)
    assert sum(batch.results.height for batch in without) == 0, "no previous rows: every prev() comparison is false"
    report = watchlist_report(market.universe, ["ZZZZ", *config.symbols[:2]])
    assert report.unknown == ("ZZZZ",) and report.known == 2
    stored = json.loads(config.model_dump_json())
    assert ScanConfig.model_validate(stored) == config, "scan history's config_json reads back"


def test_session_frames_follow_new_batches_and_screened_matches_hits_between(warehouse, market):
    frames = SessionFrames(warehouse)
    assert frames.get(LIVE).height == 0
    land(warehouse, market, 0)
    assert frames.get(LIVE).get_column("seq").to_list() == market.batches[0].get_column("seq").to_list()
    land(warehouse, market, 1)
    both = frames.get(LIVE)
    assert both.height == market.batches[0].height + market.batches[1].height
    assert frames.get(LIVE) is both, "unchanged files: the same frame"
    screen = compile("close >= prev(close) and rsi > 40", KINDS)
    mine = screened(both, frames.previous(LIVE), screen).get_column("symbol").sort().to_list()
    reference = hits_between(warehouse, screen, LIVE, LIVE).collect().get_column("symbol").sort().to_list()
    assert mine == reference and calendar.previous_session(LIVE) == market.session


def test_result_columns_keep_what_they_read_until_the_files_change(warehouse, market, two_sessions):
    kept = ResultColumns(warehouse)

    def stored(*columns: str) -> pl.DataFrame:
        return warehouse.read("results", PREVIOUS, market.session).select("date", "symbol", *columns)

    assert kept.between(PREVIOUS, market.session, ["close"]).equals(stored("close"))
    assert kept.between(PREVIOUS, market.session, ["rsi", "close"]).equals(stored("rsi", "close")), "columns added"
    assert kept.between(market.session, market.session, ["rsi"]).equals(
        warehouse.read("results", market.session, market.session).select("date", "symbol", "rsi")
    )
    doubled = market.results.sort("seq").with_columns(pl.col("close") * 2, pl.lit(0, dtype=pl.Int64).alias("batch"))
    write_session_batches(warehouse, market.session, [doubled])
    warehouse.finish_results(market.session, 1)
    assert kept.between(PREVIOUS, market.session, ["close"]).equals(stored("close")), (
        "a rewritten session is read again"
    )
    small = ResultColumns(warehouse, budget=1)
    assert small.between(PREVIOUS, market.session, ["close"]).equals(stored("close")), "beyond the budget: still right"


def test_identical_pages_are_answered_again_until_the_rows_change(client, warehouse, market):
    params = {"where": "rsi > 40", "limit": 5, "columns": "symbol,seq"}
    first = client.get("/results/latest", params=params)
    again = client.get("/results/latest", params=dict(reversed(params.items())))
    assert again.content == first.content and again.headers["link"] == first.headers["link"]
    queries = client.app.state.queries
    assert len(queries.responses._kept) == 1, "parameters in another order are the same request"
    doubled = market.results.sort("seq").with_columns(pl.col("rsi") * 0 + 99, pl.lit(0, dtype=pl.Int64).alias("batch"))
    write_session_batches(warehouse, market.session, [doubled])
    warehouse.finish_results(market.session, 1)
    changed = client.get("/results/latest", params=params).json()
    assert changed["total"] == market.results.height, "new files, new answer"
