"""Stream events: what SSE and WebSocket clients receive, encoded once and shared by every subscriber.

Why pre-encoded: a result batch of a few hundred rows is tens of kilobytes of JSON, and one partition may
have a thousand subscribers. Rows are turned into JSON once (in a worker thread, by polars) and each wire
form (SSE frame, WebSocket text) is built once per event, so fan-out costs one socket write per subscriber.

Every event carries `seq`: for a `result` event the last row seq it holds, for the others the last row seq
published before them. It is the SSE `id`, so a reconnecting EventSource sends it back as `Last-Event-ID`.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import math
import struct
import zlib
from collections.abc import Callable
from typing import Any

import polars as pl

from technic_core import schema

RESULT = "result"
PROGRESS = "progress"
END = "end"
LAGGING = "lagging"
HEARTBEAT = "heartbeat"
#: Kinds after which a stream sends nothing more.
FINAL_EVENTS = (END, LAGGING)

#: `end` reason of a scan whose worker failed; the engine's own reasons are in `technic_core.scan.END_*`.
END_ERROR = "error"


#: Significant digits of the derived floats (indicators, scores, alphas) in every API response and event.
WIRE_SIGNIFICANT_DIGITS = 6
#: Market data that leave the API as stored: prices are exact ticks and volumes whole shares.
EXACT_COLUMNS = frozenset({"open", "high", "low", "close", "vwap", "volume"})


def for_wire(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with its derived float columns rounded to `WIRE_SIGNIFICANT_DIGITS` significant digits.

    Why: an indicator computed from cent prices holds no more than 6–7 meaningful digits, yet its shortest
    round-trip form has 16–17, and those random trailing digits are most of a result row's bytes —
    incompressible, so they set the cost of delivering a batch to a thousand subscribers (rounded, a
    250-row batch deflates to 46 KB instead of 73 KB at the same zlib level). A relative error below 5e-7
    changes no signal or threshold a consumer can act on. Parquet keeps full precision; REST pages and
    stream events round the same way, so a row read either way is the same row.
    """
    rounding = _wire_rounding(frame.schema)
    return frame.with_columns(rounding) if rounding else frame


def _wire_rounding(columns: pl.Schema) -> list[pl.Expr]:
    derived = [name for name, dtype in columns.items() if dtype == pl.Float64 and name not in EXACT_COLUMNS]
    return [pl.col(derived).round_sig_figs(WIRE_SIGNIFICANT_DIGITS)] if derived else []


#: Frames of at most this many rows are encoded in Python rather than by polars. Polars plans a query per
#: call whose fixed cost, over ninety columns, dwarfs a row or two — the batches of a scan with a tiny
#: `batch_size` — while per row it is far faster; both give the same values (tests/api/test_events.py).
PYTHON_ENCODED_ROWS = 4
#: Column types the Python encoder writes as polars does; a frame with any other type goes through polars.
_PYTHON_ENCODED_TYPES = (pl.Float64, pl.Int64, pl.Int32, pl.String, pl.Boolean, pl.Date)


def encode_rows(frame: pl.DataFrame) -> tuple[str, ...]:
    """One compact JSON object per row (`for_wire` precision), in frame order; NaN and infinities become
    null (JSON has neither)."""
    if frame.height == 0:
        return ()
    if frame.height <= PYTHON_ENCODED_ROWS:
        converters = _python_converters(tuple(frame.columns), tuple(frame.dtypes))
        if converters is not None:
            return _encode_in_python(frame, converters)
    # One query rounding and writing (`for_wire` then `write_ndjson` would plan two).
    buffer = io.BytesIO()
    frame.lazy().with_columns(_wire_rounding(frame.schema)).sink_ndjson(buffer)
    return tuple(buffer.getvalue().decode().splitlines())


class ScanRowEncoder:
    """A scan's result rows encoded a computation pass at a time; a batch then only appends its numbering.

    Why: the engine scores many symbols per pass and cuts batches from them (`technic_core.scan`), so a scan
    of one-symbol batches would otherwise encode one row at a time, a per-batch cost that dwarfs the row's.
    Called as the scan's last `ScanHooks.enrich` step, it sees each pass's results as they will be
    published, but for the numbering (`batch`, `seq`), which comes last in every row; `rows` gives a batch's
    rows exactly as `encode_rows` does.
    """

    def __init__(self) -> None:
        self._encoded: dict[str, str] = {}  # symbol → its row's JSON without the numbering and closing brace

    def __call__(self, results: pl.DataFrame) -> pl.DataFrame:
        scored = schema.conform(results, schema.SCORED_RESULTS, "scan results")
        symbols = scored.get_column("symbol").to_list()
        self._encoded.update(zip(symbols, (row[:-1] for row in encode_rows(scored))))
        return results

    def forget(self) -> None:
        """Drop the encoded rows (once the scan has published them all)."""
        self._encoded.clear()

    def rows(self, batch: pl.DataFrame) -> tuple[str, ...]:
        """`encode_rows(batch)` for a batch of the scan (its rows as the passes encoded them, numbered)."""
        encoded = self._encoded
        symbols = batch.get_column("symbol").to_list()
        if tuple(batch.columns[-2:]) != schema.NUMBERING or not all(symbol in encoded for symbol in symbols):
            return encode_rows(batch)
        numbering = zip(batch.get_column("batch").to_list(), batch.get_column("seq").to_list())
        return tuple(
            f'{encoded[symbol]},"batch":{number},"seq":{seq}}}' for symbol, (number, seq) in zip(symbols, numbering)
        )


def _encode_in_python(frame: pl.DataFrame, converters: tuple[Callable[[Any], Any], ...]) -> tuple[str, ...]:
    names = frame.columns
    return tuple(
        json.dumps(
            {name: convert(value) for name, convert, value in zip(names, converters, row)},
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
        for row in frame.rows()
    )


@functools.lru_cache(maxsize=32)
def _python_converters(
    names: tuple[str, ...], dtypes: tuple[pl.DataType, ...]
) -> tuple[Callable[[Any], Any], ...] | None:
    """Per column, what turns its Python value into its wire value; None when a column's type is not one
    the Python encoder writes. Cached: every batch of a scan has the same columns."""
    if not all(dtype in _PYTHON_ENCODED_TYPES for dtype in dtypes):
        return None
    return tuple(_wire_value(name, dtype) for name, dtype in zip(names, dtypes))


def _wire_value(name: str, dtype: pl.DataType) -> Callable[[Any], Any]:
    if dtype == pl.Date:
        return _iso_date
    if dtype == pl.Float64:
        return _finite if name in EXACT_COLUMNS else _significant
    return _same


def _same(value: Any) -> Any:
    return value


def _iso_date(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _significant(value: float | None) -> float | None:
    """`value` to `WIRE_SIGNIFICANT_DIGITS` significant digits, computed as polars' `round_sig_figs` does
    (scale, round half away from zero, scale back), so both encoders send the same number."""
    if value is None or not math.isfinite(value):
        return None
    if value == 0.0:
        return value
    try:
        scale = 10.0 ** (WIRE_SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value))))
    except OverflowError:  # a subnormal value: its scale exceeds the float range, and polars keeps it as is
        return value
    scaled = value * scale
    return math.copysign(math.floor(abs(scaled) + 0.5), scaled) / scale


class StreamEvent:
    """One event of one stream. Immutable after construction; wire forms are built on first use."""

    __slots__ = ("_batch", "_burst", "_first_seq", "_rows", "_scan_id", "_sse", "_ws", "data", "kind", "seq")

    def __init__(self, kind: str, seq: int, data: str) -> None:
        self.kind = kind
        self.seq = seq
        self.data = data
        self._rows: tuple[str, ...] = ()
        self._first_seq = 0
        self._scan_id = ""
        self._batch = 0
        self._sse: bytes | None = None
        self._ws: str | None = None
        self._burst: tuple[tuple[StreamEvent, ...], Burst] | None = None

    @property
    def rows(self) -> tuple[str, ...]:
        """A `result` event's rows, one JSON object each; empty for other kinds."""
        return self._rows

    def sse(self) -> bytes:
        """The SSE frame. Heartbeats carry no `id`, so they never move a client's resume cursor."""
        if self._sse is None:
            identity = "" if self.kind == HEARTBEAT else f"id: {self.seq}\n"
            self._sse = f"{identity}event: {self.kind}\ndata: {self.data}\n\n".encode()
        return self._sse

    def websocket(self) -> str:
        """The WebSocket text message: the SSE fields as one JSON object."""
        if self._ws is None:
            self._ws = f'{{"event":"{self.kind}","id":{self.seq},"data":{self.data}}}'
        return self._ws

    def after(self, cursor: int | None) -> StreamEvent | None:
        """This event as a client holding every row seq ≤ `cursor` should get it, or None if it needs nothing.

        A fresh client (`cursor` None) gets everything. A resuming client gets the rows it lacks — a partial
        batch when its cursor falls inside one — and progress newer than its cursor; `end` always, since
        only that tells it the stream is over.
        """
        if cursor is None or self.kind == END:
            return self
        if self.kind != RESULT:
            return self if self.seq > cursor else None
        if self.seq <= cursor:
            return None
        if self._first_seq > cursor:
            return self
        return result_event(self._scan_id, self._batch, cursor + 1, self._rows[cursor + 1 - self._first_seq :])


class Burst:
    """The SSE frames of one or more events as one transport write, plus its gzip form, each built once.

    Live subscribers of a topic receive the same bursts, so both forms are shared by all of them: the plain
    bytes for clients that take the stream as is, and a self-contained deflate segment (`deflated`) for
    clients that accept gzip. The segment is cut from a fresh compressor and ends on a sync flush, so any
    sequence of segments is a valid deflate stream — which is what lets one compression serve every client,
    whatever burst it joined at. At a thousand subscribers the bytes written, not the Python work, bound
    delivery; gzip cuts a result batch's bytes about threefold.
    """

    __slots__ = ("_deflated", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._deflated: DeflateSegment | None = None

    def deflated(self) -> DeflateSegment:
        if self._deflated is None:
            self._deflated = DeflateSegment.of(self.data)
        return self._deflated


def sse_burst(events: list[StreamEvent]) -> Burst:
    """The `Burst` of `events`, built once for every subscriber.

    Live subscribers of a topic receive the same burst (a batch's `result` and `progress`), so it is kept on
    the burst's first event, keyed by the identities of the others: the first subscriber pays for the join
    and the rest get the same object. One write per burst rather than one per event halves the
    per-subscriber cost of a batch; a burst that differs (a replay at another cursor) is joined for itself.
    """
    first, rest = events[0], tuple(events[1:])
    cached = first._burst
    if cached is not None and len(cached[0]) == len(rest) and all(a is b for a, b in zip(cached[0], rest)):
        return cached[1]
    burst = Burst(b"".join([first.sse(), *(event.sse() for event in rest)]) if rest else first.sse())
    first._burst = (rest, burst)
    return burst


#: zlib level of the shared segments. A segment is compressed once per batch but written to every subscriber,
#: so bytes cost a thousand times what compressing costs: level 6 makes a batch markedly smaller than level 1
#: for a little more compute, once (the comparison is in bench/README.md, streaming).
GZIP_LEVEL = 6
#: zlib's smallest window for raw deflate (it turns 8 into 9).
_MIN_WINDOW_BITS = 9
#: zlib's defaults pair a 2^15 window with memory level 8 (a 2^15-entry hash table): smaller windows keep
#: that ratio.
_WINDOW_BITS_PER_MEMORY_LEVEL = zlib.MAX_WBITS - zlib.DEF_MEM_LEVEL
_CRC_POLYNOMIAL = 0xEDB88320  # CRC-32 (gzip's), reflected


def _multiply_mod_crc(a: int, b: int) -> int:
    """a × b modulo the CRC-32 polynomial, both as reflected 32-bit polynomials (zlib's `multmodp`)."""
    bit, product = 1 << 31, 0
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ _CRC_POLYNOMIAL if b & 1 else b >> 1
    return product


def _x_powers() -> tuple[int, ...]:
    """x^(2^k) modulo the polynomial for k = 0..31 (zlib's `x2n_table`)."""
    powers = [1 << 30]  # x^1
    for _ in range(31):
        powers.append(_multiply_mod_crc(powers[-1], powers[-1]))
    return tuple(powers)


_X_POWERS = _x_powers()


def _crc_shift(length: int) -> int:
    """x^(8 × length) modulo the polynomial: the factor that moves a CRC past `length` further bytes."""
    shift, k = 1 << 31, 3  # x^0; bytes are 2^3 bits
    while length:
        if length & 1:
            shift = _multiply_mod_crc(_X_POWERS[k & 31], shift)
        length >>= 1
        k += 1
    return shift


class DeflateSegment:
    """A burst as raw deflate blocks ending on a sync flush, with what a gzip trailer needs of its plain bytes.

    Every client's trailer holds the CRC-32 of everything it was sent, and clients join at different bursts,
    so each extends its own CRC by each segment. Running zlib's CRC over a 175 KB batch once per client would
    cost a thousand clients ~0.1 s a batch; instead a large segment carries four byte tables of the linear map
    "CRC of some bytes → CRC of those bytes followed by this segment's" (zlib's `crc32_combine`, tabulated),
    so extending costs four lookups whatever the segment's length. The tables cost about what zlib's CRC
    over `TABULATE_AFTER_BYTES` costs, so they are built only once a segment's clients have run zlib's CRC
    over that many of its bytes: a segment few clients get (a small batch, progress, heartbeats, the end)
    never pays for them.
    """

    __slots__ = ("_crc_bytes", "_plain", "_tables", "crc", "data", "length")

    TABULATE_AFTER_BYTES = 256 * 1024

    def __init__(self, data: bytes, plain: bytes) -> None:
        self.data = data
        self.crc = zlib.crc32(plain)
        self.length = len(plain)
        self._plain = plain
        self._tables: tuple[list[int], ...] | None = None
        self._crc_bytes = 0  # bytes of this segment run through zlib's CRC for clients so far

    @classmethod
    def of(cls, plain: bytes) -> DeflateSegment:
        # A fresh compressor's memory (window, match chains, hash table) is sized by its window and memory
        # level, and most of a small segment's cost is touching it: at the full 32 KB window, ~256 KB for a
        # one-row batch of 2 KB. A window no longer than the segment finds every match the full one would
        # (no match reaches outside the segment), so small segments get one that fits, and a hash table
        # scaled with it. Any inflater reads the result: a raw deflate stream's window only bounds distances.
        window_bits = min(zlib.MAX_WBITS, max(_MIN_WINDOW_BITS, (len(plain) - 1).bit_length()))
        memory_level = min(zlib.DEF_MEM_LEVEL, window_bits - _WINDOW_BITS_PER_MEMORY_LEVEL)
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -window_bits, memory_level)
        return cls(compressor.compress(plain) + compressor.flush(zlib.Z_SYNC_FLUSH), plain)

    def extend_crc(self, crc: int) -> int:
        """The CRC-32 of (bytes whose CRC is `crc`) followed by this segment's plain bytes."""
        tables = self._tables
        if tables is None:
            self._crc_bytes += self.length
            if self._crc_bytes <= self.TABULATE_AFTER_BYTES:
                return zlib.crc32(self._plain, crc)
            tables = self._tables = _shift_tables(_crc_shift(self.length))
        low, second, third, high = tables
        return low[crc & 0xFF] ^ second[(crc >> 8) & 0xFF] ^ third[(crc >> 16) & 0xFF] ^ high[crc >> 24] ^ self.crc


def _shift_tables(shift: int) -> tuple[list[int], ...]:
    """Byte tables of crc ↦ shift × crc (mod the polynomial), which is linear in crc: entry v of table k is
    the product for v in byte k; a CRC's image is the XOR of its four bytes' entries."""
    basis = [_multiply_mod_crc(shift, 1 << bit) for bit in range(32)]
    tables = []
    for byte in range(4):
        table = [0] * 256
        for value in range(1, 256):
            lowest = value & -value
            table[value] = table[value ^ lowest] ^ basis[8 * byte + lowest.bit_length() - 1]
        tables.append(table)
    return tuple(tables)


class GzipStream:
    """One response's gzip framing around shared deflate segments (RFC 1952).

    Only the 10-byte header, the running CRC and length, and the 8-byte trailer are per client; the
    compressed events themselves are the segments every client shares.
    """

    #: Magic, deflate, no flags, no mtime (the stream is not a file), no extra flags, unknown OS.
    HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    #: A final, empty fixed-Huffman block: ends the deflate stream after the last sync-flushed segment.
    _LAST_BLOCK = b"\x03\x00"

    def __init__(self) -> None:
        self._crc = 0
        self._length = 0
        self._started = False

    def start(self) -> bytes:
        """The header, once: a response may send it before its first burst so that no burst carries it."""
        if self._started:
            return b""
        self._started = True
        return self.HEADER

    def encode(self, burst: Burst) -> bytes:
        segment = burst.deflated()
        self._crc = segment.extend_crc(self._crc)
        self._length += segment.length
        return self.start() + segment.data  # once started, b"" + data is data itself: no copy

    def finish(self) -> bytes:
        """The end of the gzip member; header included if nothing was encoded."""
        return self.start() + self._LAST_BLOCK + struct.pack("<II", self._crc, self._length & 0xFFFFFFFF)


def _data(**fields: object) -> str:
    return json.dumps(fields, separators=(",", ":"), allow_nan=False)


def result_event(scan_id: str, batch: int, first_seq: int, rows: tuple[str, ...]) -> StreamEvent:
    """Rows `first_seq .. first_seq+len(rows)-1` of batch `batch`; `rows` are `encode_rows` output."""
    last_seq = first_seq + len(rows) - 1
    head = _data(scan_id=scan_id, batch=batch, first_seq=first_seq, last_seq=last_seq)
    event = StreamEvent(RESULT, last_seq, f'{head[:-1]},"rows":[{",".join(rows)}]}}')
    event._rows, event._first_seq, event._scan_id, event._batch = rows, first_seq, scan_id, batch
    return event


def progress_event(
    scan_id: str,
    seq: int,
    *,
    batch: int,
    signals: int,
    scanned: int | None = None,
    total: int | None = None,
    elapsed_s: float | None = None,
) -> StreamEvent:
    """Counts after `batch`. Partition tails know neither `scanned` nor `total` (files hold only results)."""
    elapsed = None if elapsed_s is None else round(elapsed_s, 4)
    return StreamEvent(
        PROGRESS,
        seq,
        _data(
            scan_id=scan_id, batch=batch, results=seq, signals=signals, scanned=scanned, total=total, elapsed_s=elapsed
        ),
    )


def end_event(scan_id: str, seq: int, reason: str, message: str | None = None) -> StreamEvent:
    return StreamEvent(END, seq, _data(scan_id=scan_id, reason=reason, results=seq, message=message))


def lagging_event(scan_id: str, seq: int, queue_size: int) -> StreamEvent:
    """Sent instead of the events a slow client could not keep up with; it says where to resume."""
    message = (
        f"more than {queue_size} events waited for this client; it is disconnected — reconnect with "
        f"Last-Event-ID: {seq} (or ?after={seq}) to resume"
    )
    return StreamEvent(LAGGING, seq, _data(scan_id=scan_id, last_seq=seq, message=message))


def heartbeat_event(seq: int) -> StreamEvent:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    return StreamEvent(HEARTBEAT, seq, _data(time=now))
