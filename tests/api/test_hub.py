"""The fan-out hub without HTTP: replay-then-tail, resume cursors inside a batch, lagging, heartbeats, and the
shared gzip framing."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import gzip
import json
import zlib

import numpy as np
import polars as pl
import pytest

from api.events import (
    END,
    EXACT_COLUMNS,
    HEARTBEAT,
    LAGGING,
    PROGRESS,
    RESULT,
    WIRE_SIGNIFICANT_DIGITS,
    DeflateSegment,
    GzipStream,
    encode_rows,
    end_event,
    for_wire,
    heartbeat_event,
    progress_event,
    result_event,
    sse_burst,
)
from api.hub import StreamHub, Topic


def _rows(first_seq: int, count: int) -> tuple[str, ...]:
    return encode_rows(pl.DataFrame({"seq": list(range(first_seq, first_seq + count)), "x": [float("nan")] * count}))


def _batch(topic: Topic, batch: int, first_seq: int, count: int) -> None:
    topic.publish(result_event(topic.scan_id, batch, first_seq, _rows(first_seq, count)))
    topic.publish(progress_event(topic.scan_id, first_seq + count - 1, batch=batch, signals=0))


async def _drain(subscriber, heartbeat_s: float = 5.0) -> list:
    return [event async for event in subscriber.events(heartbeat_s)]


def _seqs(events) -> list[int]:
    return [row["seq"] for event in events if event.kind == RESULT for row in json.loads(event.data)["rows"]]


def test_rows_are_json_with_nan_as_null():
    assert [json.loads(row) for row in _rows(1, 2)] == [{"seq": 1, "x": None}, {"seq": 2, "x": None}]


def test_derived_floats_leave_with_six_significant_digits_and_market_data_exactly():
    rng = np.random.default_rng(7)
    magnitudes = 10.0 ** rng.uniform(-9, 9, 2_000)
    derived = magnitudes * rng.choice([-1.0, 1.0], magnitudes.size)
    prices = np.round(rng.uniform(0.5, 700_000, magnitudes.size), 2)
    frame = pl.DataFrame(
        {"rsi": derived, "close": prices, "volume": np.floor(magnitudes), "seq": range(magnitudes.size)}
    )
    rows = pl.DataFrame([json.loads(row) for row in encode_rows(frame)])
    relative_error = np.abs(rows.get_column("rsi").to_numpy() / derived - 1)
    assert relative_error.max() <= 0.5 * 10.0 ** (1 - WIRE_SIGNIFICANT_DIGITS) * (1 + 1e-9)
    assert relative_error.max() > 1e-9  # the derived column was rounded at all
    digits = [len(decimal.Decimal(repr(value)).normalize().as_tuple().digits) for value in rows["rsi"]]
    assert max(digits) == WIRE_SIGNIFICANT_DIGITS
    assert {"close", "volume"} <= EXACT_COLUMNS
    assert rows.get_column("close").to_list() == prices.tolist()
    assert rows.get_column("volume").to_list() == np.floor(magnitudes).tolist()
    assert for_wire(frame.select("seq")).equals(frame.select("seq"))


def test_replay_then_tail_delivers_every_seq_once_in_order():
    async def scenario() -> tuple[list, list]:
        topic = Topic("scan:s", "s")
        _batch(topic, 0, 1, 3)
        early = topic.subscribe(None, queue_size=10)
        _batch(topic, 1, 4, 3)
        late = topic.subscribe(None, queue_size=10)
        _batch(topic, 2, 7, 2)
        topic.publish(end_event("s", 8, "complete"))
        return await _drain(early), await _drain(late)

    early, late = asyncio.run(scenario())
    for events in (early, late):
        assert _seqs(events) == list(range(1, 9))
        assert events[-1].kind == END and json.loads(events[-1].data)["reason"] == "complete"
        assert [event.seq for event in events] == sorted(event.seq for event in events)


def test_resume_inside_a_batch_gets_the_rest_of_that_batch():
    async def scenario() -> list:
        topic = Topic("scan:s", "s")
        _batch(topic, 0, 1, 5)
        _batch(topic, 1, 6, 5)
        topic.publish(end_event("s", 10, "complete"))
        return await _drain(topic.subscribe(3, queue_size=10))

    events = asyncio.run(scenario())
    assert _seqs(events) == list(range(4, 11))
    first = json.loads(events[0].data)
    assert (first["batch"], first["first_seq"], first["last_seq"]) == (0, 4, 5)
    assert events[0].seq == 5, "the SSE id of a partial batch is its last seq"
    progress = [event.seq for event in events if event.kind == PROGRESS]
    assert progress == [5, 10], "progress at or before the cursor is not repeated"


def test_a_resume_past_the_end_gets_only_end():
    async def scenario() -> list:
        topic = Topic("scan:s", "s")
        _batch(topic, 0, 1, 4)
        topic.publish(end_event("s", 4, "max_signals"))
        return await _drain(topic.subscribe(4, queue_size=10))

    events = asyncio.run(scenario())
    assert [event.kind for event in events] == [END]


def test_a_full_queue_makes_only_that_subscriber_lag():
    async def scenario() -> tuple[list, list]:
        topic = Topic("scan:s", "s")
        slow = topic.subscribe(None, queue_size=2)
        fast = topic.subscribe(None, queue_size=100)
        for batch in range(5):
            _batch(topic, batch, batch * 2 + 1, 2)
        topic.publish(end_event("s", 10, "complete"))
        return await _drain(slow), await _drain(fast)

    slow_events, fast_events = asyncio.run(scenario())
    assert [event.kind for event in slow_events] == [LAGGING]
    lagging = json.loads(slow_events[0].data)
    assert lagging["last_seq"] == 0 and "Last-Event-ID: 0" in lagging["message"]
    assert _seqs(fast_events) == list(range(1, 11))
    assert fast_events[-1].kind == END


def test_an_idle_stream_sends_heartbeats_without_an_id():
    async def scenario() -> list:
        topic = Topic("scan:s", "s")
        subscriber = topic.subscribe(None, queue_size=10)
        received = []
        async for event in subscriber.events(0.01):
            received.append(event)
            if len(received) == 2:
                topic.publish(end_event("s", 0, "stopped"))
        return received

    events = asyncio.run(scenario())
    assert [event.kind for event in events] == [HEARTBEAT, HEARTBEAT, END]
    assert not events[0].sse().startswith(b"id:"), "a heartbeat must not move the client's Last-Event-ID"
    assert events[-1].sse().startswith(b"id: 0\nevent: end\n")


def test_session_topics_start_one_tail_and_stop_it_with_the_last_subscriber():
    async def scenario() -> tuple[int, int, int, bool]:
        started: list[dt.date] = []
        stopped = asyncio.Event()

        async def tail(topic: Topic, session: dt.date) -> None:
            started.append(session)
            try:
                await asyncio.Event().wait()
            finally:
                stopped.set()

        hub = StreamHub(queue_size=10, tail=tail, max_tails=4)
        session = dt.date(2024, 6, 28)
        first = hub.subscribe_session(session, None)
        second = hub.subscribe_session(session, None)
        await asyncio.sleep(0)  # let the tail task start
        tails_while_open = hub.tail_count
        hub.unsubscribe(first)
        tails_after_one_left = hub.tail_count
        hub.unsubscribe(second)
        await asyncio.wait_for(stopped.wait(), 5)
        return len(started), tails_while_open, tails_after_one_left, hub.tail_count == 0

    tails_started, while_open, after_one_left, all_stopped = asyncio.run(scenario())
    assert tails_started == 1 and while_open == 1 and after_one_left == 1 and all_stopped


def test_live_events_a_resumed_client_already_has_are_not_delivered_again():
    async def scenario() -> list:
        topic = Topic("session:2024-07-01", "2024-07-01")  # rebuilt from the files after the client reconnected
        subscriber = topic.subscribe(4, queue_size=10)
        _batch(topic, 0, 1, 3)
        _batch(topic, 1, 4, 3)
        topic.publish(end_event(topic.scan_id, 6, "complete"))
        return await _drain(subscriber)

    events = asyncio.run(scenario())
    assert _seqs(events) == [5, 6]
    assert [(event.kind, event.seq) for event in events] == [(RESULT, 6), (PROGRESS, 6), (END, 6)]


def test_a_burst_is_one_write_joined_once_for_every_subscriber():
    async def scenario() -> list[list]:
        topic = Topic("scan:s", "s")
        subscribers = [topic.subscribe(None, queue_size=10) for _ in range(3)]
        _batch(topic, 0, 1, 100)
        topic.publish(end_event("s", 100, "complete"))
        return [[burst async for burst in subscriber.bursts(5.0)] for subscriber in subscribers]

    per_subscriber = asyncio.run(scenario())
    writes = [[sse_burst(burst) for burst in bursts] for bursts in per_subscriber]
    first = per_subscriber[0][0]
    assert [event.kind for event in first] == [RESULT, PROGRESS, END]
    assert writes[0][0].data == b"".join(event.sse() for event in first)
    assert all(w[0] is writes[0][0] for w in writes), "the joined bytes are built once and shared"
    assert all(w[0].deflated() is writes[0][0].deflated() for w in writes), "and so is their compressed form"
    lone = progress_event("s", 1, batch=0, signals=0)
    assert sse_burst([lone]).data is lone.sse()
    assert sse_burst([lone]) is sse_burst([lone])
    other = [first[0], progress_event("s", 100, batch=0, signals=1)]
    assert sse_burst(other).data == first[0].sse() + other[1].sse(), "a different burst is joined for itself"


def _bursts_of_a_resumed_stream() -> list[list]:
    """What one client gets: a batch replayed from mid-batch, a heartbeat, a live batch, the end."""
    rows = tuple(json.dumps({"seq": seq, "symbol": f"S{seq:03d}", "close": seq * 1.5}) for seq in range(1, 401))
    batch = result_event("s", 0, 1, rows[:250])
    return [
        [batch.after(37), progress_event("s", 250, batch=0, signals=3)],
        [heartbeat_event(250)],
        [result_event("s", 1, 251, rows[250:]), progress_event("s", 400, batch=1, signals=5)],
        [end_event("s", 400, "complete")],
    ]


def test_a_gzip_stream_of_shared_segments_is_one_valid_gzip_member_with_its_crc():
    bursts = [sse_burst(events) for events in _bursts_of_a_resumed_stream()]
    stream = GzipStream()
    body = b"".join(stream.encode(burst) for burst in bursts) + stream.finish()
    # gzip.decompress checks the trailer's CRC-32 and length against what it inflated.
    assert gzip.decompress(body) == b"".join(burst.data for burst in bursts)
    assert sum(len(burst.deflated().data) for burst in bursts) < 0.5 * sum(len(burst.data) for burst in bursts)
    # Each segment decodes on its own too: no segment refers back into another client's history.
    for burst in bursts:
        assert zlib.decompressobj(-zlib.MAX_WBITS).decompress(burst.deflated().data) == burst.data
    assert gzip.decompress(GzipStream().finish()) == b"", "a stream closed before any event is still valid gzip"


@pytest.mark.parametrize("sizes", [(0,), (1, 0, 7), (3, 65_521, 1 << 20), (250_000, 13), (1023, 1024, 1025)])
def test_extending_a_crc_segment_by_segment_matches_zlib_over_the_whole(sizes):
    random = np.random.default_rng(sum(sizes))
    pieces = [random.integers(0, 256, size, dtype=np.uint8).tobytes() for size in sizes]
    segments = [DeflateSegment(b"", piece) for piece in pieces]
    # Clients that joined after different histories share the segments; a segment switches from zlib's CRC
    # to its tables after enough clients, and both must extend every client's CRC alike.
    for client in range(8):
        before = random.integers(0, 256, client * 37, dtype=np.uint8).tobytes()
        crc = zlib.crc32(before)
        for segment in segments:
            crc = segment.extend_crc(crc)
        assert crc == zlib.crc32(before + b"".join(pieces)), client
    assert any(segment._tables is not None for segment in segments) == (max(sizes) * 8 > (256 << 10))


def test_a_consumer_leaving_mid_stream_stops_the_heartbeat_timer():
    async def scenario() -> tuple[bool, object]:
        topic = Topic("scan:s", "s")
        subscriber = topic.subscribe(None, queue_size=10)
        _batch(topic, 0, 1, 2)
        events = subscriber.events(60.0)
        assert [(await events.__anext__()).kind, (await events.__anext__()).kind] == [RESULT, PROGRESS]
        waiting = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0)  # the consumer now waits for the next event, with the heartbeat timer armed
        armed = subscriber._timer is not None
        waiting.cancel()  # the client left
        await asyncio.gather(waiting, return_exceptions=True)
        return armed, subscriber._timer

    armed, timer = asyncio.run(scenario())
    assert armed and timer is None
