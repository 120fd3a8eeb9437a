"""Result streams against a real uvicorn server (SSE, httpx-sse) and through TestClient (WebSocket).

Every wait is bounded: SSE reads by the client's read timeout, other conditions by `wait_for` deadlines.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from fastapi.testclient import TestClient
from httpx_sse import ServerSentEvent, aconnect_sse, connect_sse
from starlette.websockets import WebSocketDisconnect

from api import tails
from technic_core.scan import ScanHooks
from technic_core.warehouse import Warehouse
from tests.api.conftest import AUTH, KEY
from tests.api.support import MarketFixture, daily_history_row, running_server, wait_for

LIVE = dt.date(2024, 7, 1)  # the session after the warehouse's scanned one: no results until a test writes them
TIMEOUT = httpx.Timeout(10.0)


@contextmanager
def stream(base_url: str, path: str, **kwargs: object) -> Iterator[Iterator[ServerSentEvent]]:
    """The events of one SSE connection (heartbeats skipped) as an iterator; closed on exit."""
    with httpx.Client(base_url=base_url, timeout=TIMEOUT) as http, connect_sse(http, "GET", path, **kwargs) as source:
        assert source.response.status_code == 200, source.response.read()
        yield (event for event in source.iter_sse() if event.event != "heartbeat")


def until_end(events: Iterator[ServerSentEvent]) -> list[ServerSentEvent]:
    collected = []
    for event in events:
        collected.append(event)
        if event.event in ("end", "lagging"):
            return collected
    raise AssertionError(f"stream closed without end after {len(collected)} events")


def next_result(events: Iterator[ServerSentEvent]) -> ServerSentEvent:
    return next(event for event in events if event.event == "result")


def seqs(events: list[ServerSentEvent]) -> list[int]:
    return [row["seq"] for event in events if event.event == "result" for row in json.loads(event.data)["rows"]]


def end_reason(events: list[ServerSentEvent]) -> str:
    assert events[-1].event == "end", [event.event for event in events]
    return json.loads(events[-1].data)["reason"]


def land(store: Warehouse, market: MarketFixture, batch: int) -> int:
    """Write the market's result batch `batch` into the LIVE partition; returns its last seq."""
    frame = market.batches[batch]
    store.write_result_batch(LIVE, batch, frame.with_columns(date=LIVE))
    return int(frame.get_column("seq").max())


def stream_counts(base_url: str) -> dict[str, int]:
    return httpx.get(f"{base_url}/health", timeout=TIMEOUT).json()["streams"]


# ------------------------------------------------------------------ partition tails over SSE


def test_tail_pushes_each_batch_as_it_lands_then_ends_with_the_pipeline(server, warehouse, market):
    total = market.results.height
    with stream(server, f"/events/results/{LIVE.isoformat()}") as events:
        received = []
        for batch in range(len(market.batches)):
            last_seq = land(warehouse, market, batch)
            event = next_result(events)
            assert int(event.id) == last_seq
            received.append(event)
        warehouse.append_scan_run(daily_history_row(LIVE, total))
        received += until_end(events)
    assert seqs(received) == list(range(1, total + 1))
    assert end_reason(received) == "complete"
    assert json.loads(received[-1].data)["results"] == total


def test_resume_after_disconnect_gets_every_seq_exactly_once(server, warehouse, market):
    path = f"/events/results/{LIVE.isoformat()}"
    with stream(server, path) as events:
        land(warehouse, market, 0)
        land(warehouse, market, 1)
        first = [next_result(events), next_result(events)]
    resume_from = first[-1].id
    land(warehouse, market, 2)  # lands while the client is away
    with stream(server, path, headers={"Last-Event-ID": resume_from}) as events:
        replayed = next_result(events)
        for batch in range(3, len(market.batches)):
            land(warehouse, market, batch)
        warehouse.append_scan_run(daily_history_row(LIVE, market.results.height))
        rest = [replayed, *until_end(events)]
    assert json.loads(replayed.data)["batch"] == 2
    assert seqs(first) + seqs(rest) == list(range(1, market.results.height + 1))


def test_after_inside_a_batch_resumes_mid_batch_and_the_header_wins(server, market):
    total = market.results.height
    with stream(server, "/events/results/latest?after=3", headers={"Last-Event-ID": "30"}) as events:
        received = until_end(events)
    assert seqs(received) == list(range(31, total + 1))
    first = json.loads(received[0].data)
    assert first["first_seq"] == 31 and first["batch"] == 1
    with stream(server, f"/events/results/{market.session.isoformat()}?after=3") as events:
        assert seqs(until_end(events)) == list(range(4, total + 1))


def test_a_tail_reads_on_from_the_compacted_partition_without_losing_or_repeating_rows(
    server, warehouse, market, tmp_path
):
    """The pipeline compacts a finished session's batch files into one; a client still behind when that
    happens, and one that replays the session afterwards, get every row once with its batch number."""
    total, middle = market.results.height, len(market.batches) // 2
    # The whole session compacted elsewhere, so that the tail never sees the batch files after `middle`.
    elsewhere = Warehouse(tmp_path / "elsewhere")
    for batch in range(len(market.batches)):
        land(elsewhere, market, batch)
    compacted = elsewhere.compact_results(LIVE)
    assert compacted is not None
    path = f"/events/results/{LIVE.isoformat()}"
    with stream(server, path) as events:
        first = []
        for batch in range(middle + 1):
            land(warehouse, market, batch)
            first.append(next_result(events))
        partition = warehouse.root / "results" / f"date={LIVE.isoformat()}"
        shutil.copy(compacted, tmp_path / "part.tmp")
        (tmp_path / "part.tmp").rename(partition / compacted.name)  # whole at once, as the warehouse writes it
        for batch in range(middle + 1):
            (partition / f"batch={batch:05d}.parquet").unlink()
        warehouse.append_scan_run(daily_history_row(LIVE, total))
        rest = until_end(events)
    assert seqs(first) + seqs(rest) == list(range(1, total + 1))
    assert end_reason(rest) == "complete"
    assert [p.name for p in warehouse.partition_files("results", LIVE)] == ["part-00000.parquet"]
    with stream(server, path) as events:
        replayed = until_end(events)
    assert seqs(replayed) == list(range(1, total + 1))
    batches = [json.loads(event.data)["batch"] for event in replayed if event.event == "result"]
    assert batches == [batch for batch, frame in enumerate(market.batches) if frame.height]


def test_latest_replays_a_finished_session_and_ends_with_its_history(server, market):
    with stream(server, "/events/results/latest") as events:
        received = until_end(events)
    assert seqs(received) == market.results.get_column("seq").to_list()
    assert end_reason(received) == "complete"
    progress = [json.loads(event.data) for event in received if event.event == "progress"]
    assert [p["batch"] for p in progress] == list(range(len(market.batches)))


def _raw_stream(base_url: str, path: str, accept_encoding: str) -> tuple[httpx.Headers, bytes]:
    """A finished stream's response headers and body exactly as sent (no content decoding)."""
    headers = {"Accept-Encoding": accept_encoding}
    with (
        httpx.Client(base_url=base_url, timeout=TIMEOUT) as http,
        http.stream("GET", path, headers=headers) as response,
    ):
        assert response.status_code == 200
        return response.headers, b"".join(response.iter_raw())


def _sse_frames(body: bytes) -> list[bytes]:
    return [frame for frame in body.split(b"\n\n") if frame and b"event: heartbeat" not in frame]


@pytest.mark.parametrize("accept_encoding", ["gzip, deflate, br", "br;q=1.0, *;q=0.5"])
def test_a_client_that_accepts_gzip_gets_the_same_events_compressed(server, market, accept_encoding):
    path = "/events/results/latest?after=3"
    plain_headers, plain = _raw_stream(server, path, "identity")
    gzip_headers, compressed = _raw_stream(server, path, accept_encoding)
    assert "content-encoding" not in plain_headers
    assert gzip_headers["content-encoding"] == "gzip" and "accept-encoding" in gzip_headers["vary"].lower()
    # gzip.decompress checks the CRC-32 and length in the trailer: the member is complete and intact.
    assert _sse_frames(gzip.decompress(compressed)) == _sse_frames(plain)
    assert len(compressed) < 0.5 * len(plain)
    with stream(server, path) as events:  # httpx asks for gzip by default and decodes as it reads
        assert seqs(until_end(events)) == list(range(4, market.results.height + 1))


@pytest.mark.parametrize("accept_encoding", ["identity", "gzip;q=0", "br, *;q=0", ""])
def test_a_client_that_refuses_gzip_gets_plain_events(server, accept_encoding):
    headers, body = _raw_stream(server, "/events/results/latest", accept_encoding)
    assert "content-encoding" not in headers
    assert body.startswith(b"id: ")


def test_hundred_concurrent_streams_each_receive_every_event_in_order(server, warehouse, market):
    clients = 100
    total = market.results.height

    async def follow(http: httpx.AsyncClient, ready: asyncio.Event, connected: list[int]) -> list[int]:
        async with aconnect_sse(http, "GET", f"/events/results/{LIVE.isoformat()}") as source:
            assert source.response.status_code == 200
            connected.append(1)
            if len(connected) == clients:
                ready.set()
            received = []
            async for event in source.aiter_sse():
                if event.event == "result":
                    received += [row["seq"] for row in json.loads(event.data)["rows"]]
                elif event.event == "end":
                    return received
        raise AssertionError("stream closed without end")

    async def scenario() -> list[list[int]]:
        limits = httpx.Limits(max_connections=clients + 10)
        async with httpx.AsyncClient(base_url=server, timeout=TIMEOUT, limits=limits) as http:
            ready, connected = asyncio.Event(), []
            followers = [asyncio.create_task(follow(http, ready, connected)) for _ in range(clients)]
            await asyncio.wait_for(ready.wait(), 20)
            for batch in range(len(market.batches)):
                await asyncio.to_thread(land, warehouse, market, batch)
            await asyncio.to_thread(warehouse.append_scan_run, daily_history_row(LIVE, total))
            return await asyncio.wait_for(asyncio.gather(*followers), 30)

    results = asyncio.run(scenario())
    assert len(results) == clients
    assert all(received == list(range(1, total + 1)) for received in results)
    wait_for(
        lambda: stream_counts(server) == {"subscribers": 0, "tailed_partitions": 0, "active_scans": 0},
        what="every subscription and the tail to be released",
    )


def test_a_client_that_disconnects_mid_stream_frees_its_subscription_and_the_tail(server):
    with stream(server, f"/events/results/{LIVE.isoformat()}"):
        wait_for(lambda: stream_counts(server)["subscribers"] == 1, what="the subscription")
        assert stream_counts(server)["tailed_partitions"] == 1
    wait_for(
        lambda: stream_counts(server)["subscribers"] == 0 and stream_counts(server)["tailed_partitions"] == 0,
        what="the subscription and tail to be released",
    )


def test_an_idle_stream_gets_heartbeats(make_app):
    with (
        running_server(make_app(heartbeat_s=0.05)) as base_url,
        httpx.Client(base_url=base_url, timeout=TIMEOUT) as http,
        connect_sse(http, "GET", f"/events/results/{LIVE.isoformat()}") as source,
    ):
        events = source.iter_sse()
        beats = [next(events), next(events)]
    assert [event.event for event in beats] == ["heartbeat", "heartbeat"]
    assert "time" in json.loads(beats[0].data)


# ------------------------------------------------------------------ ad-hoc scans over SSE


def start_scan(base_url: str, config: dict, path: str = "/scan/stream") -> dict:
    response = httpx.post(f"{base_url}{path}", json=config, headers=AUTH, timeout=TIMEOUT)
    assert response.status_code == 202, response.text
    return response.json()


def scan_events(started: dict) -> list[ServerSentEvent]:
    with httpx.Client(timeout=TIMEOUT) as http, connect_sse(http, "GET", started["events_url"]) as source:
        return until_end(event for event in source.iter_sse() if event.event != "heartbeat")


def test_an_ad_hoc_scan_streams_results_progress_and_end(server):
    started = start_scan(server, {"max_symbols": 40, "batch_size": 10, "prioritize": False})
    received = scan_events(started)
    assert seqs(received) == list(range(1, 41))
    assert end_reason(received) == "complete"
    last_progress = json.loads([event for event in received if event.event == "progress"][-1].data)
    assert (last_progress["scanned"], last_progress["total"], last_progress["batch"]) == (40, 40, 3)


def test_max_signals_ends_the_scan_early(server, market):
    started = start_scan(server, {"max_signals": 1, "batch_size": 10})
    received = scan_events(started)
    assert end_reason(received) == "max_signals"
    rows = [row for event in received if event.event == "result" for row in json.loads(event.data)["rows"]]
    assert 0 < len(rows) < market.results.height
    assert any(row["signal"] in ("Buy", "Strong Buy") for row in rows)


def test_timeout_ends_the_scan(server):
    # A timeout far below one batch's compute: the engine's first check (before any batch) ends it.
    started = start_scan(server, {"timeout_s": 1e-6, "batch_size": 10})
    received = scan_events(started)
    assert end_reason(received) == "timeout"
    assert seqs(received) == []


def test_stop_ends_the_stream_with_stopped(make_app):
    entered, release = threading.Event(), threading.Event()

    def hold_first_batch(results):
        entered.set()
        release.wait(10)
        return results

    with running_server(make_app(hooks=ScanHooks(enrich=hold_first_batch))) as base_url:
        try:
            started = start_scan(base_url, {"batch_size": 10, "prioritize": False})
            assert entered.wait(10), "the scan never reached its first batch"
            stopped = httpx.post(started["stop_url"], headers=AUTH, timeout=TIMEOUT)
            assert stopped.status_code == 202 and stopped.json()["stop_requested"] is True
        finally:
            release.set()
        received = scan_events(started)
    assert end_reason(received) == "stopped"
    assert seqs(received) == list(range(1, 11)), "the batch under way is published, none after it"


# ------------------------------------------------------------------ auth and bad input on streams


def test_stream_auth_failures_and_the_api_key_query_parameter(make_app):
    with running_server(make_app(reads_require_key=True)) as base_url:
        path = f"{base_url}/events/results/latest"
        missing = httpx.get(path, timeout=TIMEOUT)
        wrong = httpx.get(path, headers={"X-API-Key": "not-a-key"}, timeout=TIMEOUT)
        assert missing.status_code == 401 and "missing API key" in missing.json()["detail"]
        assert wrong.status_code == 403 and wrong.json()["detail"] == "invalid API key"
        with stream(base_url, f"/events/results/latest?api_key={KEY}") as events:
            assert end_reason(until_end(events)) == "complete"


def test_streams_beyond_the_per_key_cap_are_refused_with_429(make_app):
    with running_server(make_app(max_streams_per_key=1)) as base_url:
        with stream(base_url, f"/events/results/{LIVE.isoformat()}", headers=AUTH):
            refused = httpx.get(f"{base_url}/events/results/latest", headers=AUTH, timeout=TIMEOUT)
            assert refused.status_code == 429 and "TECHNIC_API_MAX_STREAMS_PER_KEY=1" in refused.json()["detail"]
        wait_for(lambda: stream_counts(base_url)["subscribers"] == 0, what="the first stream to be released")
        with stream(base_url, "/events/results/latest", headers=AUTH) as events:
            assert end_reason(until_end(events)) == "complete"


@pytest.mark.parametrize(
    ("path", "headers", "field"),
    [
        ("/events/results/2024-13-45", {}, "scan_id"),
        ("/events/results/not-a-stream", {}, "scan_id"),
        ("/events/results/2024-06-29", {}, "scan_id"),  # a Saturday
        ("/events/results/2031-01-02", {}, "scan_id"),  # not scanned for years
        ("/events/results/latest?after=-1", {}, "after"),
        ("/events/results/latest", {"Last-Event-ID": "seven"}, "Last-Event-ID"),
    ],
)
def test_bad_stream_requests_are_422_naming_the_field(client, path, headers, field):
    response = client.get(path, headers=headers)
    assert response.status_code == 422, response.text
    assert field in response.json()["message"]


def test_an_unknown_ad_hoc_scan_stream_is_404(client):
    response = client.get("/events/results/adhoc-0123456789abcdef")
    assert response.status_code == 404 and "adhoc-0123456789abcdef" in response.json()["detail"]


# ------------------------------------------------------------------ WebSocket (TestClient)


def receive_until_end(websocket) -> list[dict]:
    messages = []
    while True:
        message = websocket.receive_json()
        messages.append(message)
        if message["event"] in ("end", "lagging"):
            return messages


def test_websocket_replays_and_resumes_with_after(client, market):
    total = market.results.height
    with client.websocket_connect("/ws/results/latest") as websocket:
        messages = receive_until_end(websocket)
        with pytest.raises(WebSocketDisconnect) as closed:
            websocket.receive_json()
    assert closed.value.code == 1000
    streamed = [row for message in messages if message["event"] == "result" for row in message["data"]["rows"]]
    assert [row["seq"] for row in streamed] == list(range(1, total + 1))
    page = client.get(f"/results/{market.session.isoformat()}", params={"limit": 1000, "order_by": "seq"}).json()
    assert page["rows"] == streamed[:1000]  # the same rows, the same rounded floats, either way
    assert any(row["rsi"] != stored for row, stored in zip(streamed, market.results.sort("seq")["rsi"]))
    assert messages[-1] == {
        "event": "end",
        "id": total,
        "data": {"scan_id": market.session.isoformat(), "reason": "complete", "results": total, "message": None},
    }
    with client.websocket_connect(f"/ws/results/{market.session.isoformat()}?after={total - 2}") as websocket:
        resumed = receive_until_end(websocket)
    assert [row["seq"] for row in resumed[0]["data"]["rows"]] == [total - 1, total]


def test_websocket_streams_an_ad_hoc_scan(client):
    started = client.post("/scan/stream", json={"max_symbols": 20, "batch_size": 5}, headers=AUTH).json()
    with client.websocket_connect(f"/ws/results/{started['scan_id']}") as websocket:
        messages = receive_until_end(websocket)
    assert [message["id"] for message in messages if message["event"] == "result"] == [5, 10, 15, 20]
    assert messages[-1]["data"]["reason"] == "complete"


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/ws/results/latest?api_key=wrong", 1008),
        ("/ws/results/adhoc-0123456789abcdef", 4404),
        ("/ws/results/someday", 4422),
        ("/ws/results/latest?after=x", 4422),
    ],
)
def test_websocket_refusals_close_with_a_code(client, path, code):
    with client.websocket_connect(path) as websocket, pytest.raises(WebSocketDisconnect) as closed:
        websocket.receive_json()
    assert closed.value.code == code
    assert closed.value.reason


def test_websocket_without_a_required_key_closes_with_1008(make_app):
    with TestClient(make_app(reads_require_key=True)) as test_client:
        with (
            test_client.websocket_connect("/ws/results/latest") as websocket,
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            websocket.receive_json()
        assert closed.value.code == 1008 and "missing API key" in closed.value.reason
        with test_client.websocket_connect(f"/ws/results/latest?api_key={KEY}") as websocket:
            assert receive_until_end(websocket)[-1]["data"]["reason"] == "complete"


def test_following_more_sessions_than_the_cap_is_503_and_frees_up(make_app):
    with TestClient(make_app(max_tailed_partitions=1)) as client:
        with client.websocket_connect(f"/ws/results/{LIVE.isoformat()}"):
            wait_for(lambda: client.get("/health").json()["streams"]["tailed_partitions"] == 1, what="the tail")
            refused = client.get("/events/results/2024-07-02")
            assert refused.status_code == 503 and "TECHNIC_API_MAX_TAILED_PARTITIONS=1" in refused.json()["detail"]
            with (
                client.websocket_connect("/ws/results/2024-07-02") as websocket,
                pytest.raises(WebSocketDisconnect) as closed,
            ):
                websocket.receive_json()
            assert closed.value.code == 4503
        wait_for(lambda: client.get("/health").json()["streams"]["tailed_partitions"] == 0, what="the tail to stop")
        with client.websocket_connect("/ws/results/latest") as websocket:
            assert receive_until_end(websocket)[-1]["data"]["reason"] == "complete"


def test_a_websocket_client_that_leaves_frees_its_slot_and_the_cap_is_4429(make_app):
    with TestClient(make_app(max_streams_per_key=1)) as client:
        path = f"/ws/results/{LIVE.isoformat()}?api_key={KEY}"
        with client.websocket_connect(path):
            wait_for(lambda: client.get("/health").json()["streams"]["subscribers"] == 1, what="the subscription")
            with client.websocket_connect(path) as second, pytest.raises(WebSocketDisconnect) as closed:
                second.receive_json()
            assert closed.value.code == 4429
        idle = {"subscribers": 0, "tailed_partitions": 0, "active_scans": 0}
        wait_for(lambda: client.get("/health").json()["streams"] == idle, what="the stream's resources to be released")
        with client.websocket_connect(f"/ws/results/latest?api_key={KEY}") as websocket:
            assert receive_until_end(websocket)[-1]["data"]["reason"] == "complete"


def test_without_file_notifications_the_tail_falls_back_to_polling(make_app, warehouse, market, monkeypatch):
    forced, real_awatch = [], tails.awatch

    def notifications_unavailable(*paths, force_polling: bool, **options):
        forced.append(force_polling)
        if not force_polling:
            raise OSError("OS file watch limit reached")
        return real_awatch(*paths, force_polling=True, **options)

    monkeypatch.setattr(tails, "awatch", notifications_unavailable)
    with (
        TestClient(make_app(poll_interval_s=0.05)) as client,
        client.websocket_connect(f"/ws/results/{LIVE.isoformat()}") as websocket,
    ):
        for batch in range(2):
            land(warehouse, market, batch)
        warehouse.append_scan_run(daily_history_row(LIVE, int(market.batches[1]["seq"].max())))
        messages = receive_until_end(websocket)
    rows = [row["seq"] for message in messages if message["event"] == "result" for row in message["data"]["rows"]]
    assert rows == list(range(1, int(market.batches[1]["seq"].max()) + 1))
    assert messages[-1]["data"]["reason"] == "complete"
    assert False in forced and True in forced


def test_on_an_object_store_the_tail_polls_the_partition(make_app, market):
    """No file notifications exist for a bucket: the tail lists the partition every poll interval instead."""
    store = Warehouse(f"memory://tails-{uuid.uuid4().hex}/warehouse")
    with (
        TestClient(make_app(root=str(store.root), poll_interval_s=0.02)) as client,
        client.websocket_connect(f"/ws/results/{LIVE.isoformat()}?api_key={KEY}") as websocket,
    ):
        for batch in range(2):
            land(store, market, batch)
        last = int(market.batches[1]["seq"].max())
        store.append_scan_run(daily_history_row(LIVE, last))
        messages = receive_until_end(websocket)
    rows = [row["seq"] for message in messages if message["event"] == "result" for row in message["data"]["rows"]]
    assert rows == list(range(1, last + 1))
    assert messages[-1]["data"]["reason"] == "complete"
