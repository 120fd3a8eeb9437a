"""Streaming delivery: a real `technic serve` process (uvicorn, one worker) on loopback, N concurrent SSE
clients on one session while result batches land, and the time to the first result of an ad-hoc scan.

Three processes, so no side measures itself: the server; a writer that lands result batches the way the
pipeline does (`Warehouse.write_result_batch`, temp file + rename) and records the instant each rename
completes (the file's appearance); and this process, whose clients speak raw HTTP/1.1 and only peek at the
head of each SSE chunk, so client overhead stays small next to the server's. All times are
CLOCK_MONOTONIC, one clock for every process on the machine.

Per client and batch, latency = receipt of the batch's `result` event − the batch file's appearance. Runs
cover each client count at each batch size — 250 rows (the daily scan's batch, ~175 KB of JSON per event)
and 25 rows — and each response encoding: gzip (what browsers' EventSource and httpx ask for; the server
compresses each burst once for all clients, ~5× fewer bytes) and identity (a client that asks for none).
Each configuration runs `--repeat` times (fresh session each) and reports the median of its runs' figures,
since a shared 2-core machine swings them. Lost and duplicated counts are per row seq over all clients,
summed over the repeats. The first-result time runs from just before `POST /scan/stream` is sent to the
receipt of the first `result` event on its (gzip) stream (median of several scans after a warm-up), for the
default `ScanConfig` and for a 50-symbol quick scan. A whole ad-hoc scan (`--adhoc-symbols`, to the end of its
stream) is timed in one batch and at `batch_size` 1: its cost should grow with rows, not batches (≤ 2×). Writes `bench/results/streaming.json`; the top-level
figures are the largest client count at the first batch size and the first encoding, with that client
count's p99 for every encoding beside them.

    python bench/streaming.py [--symbols 5000] [--clients 100 1000] [--batch-rows 250 25] [--encodings gzip identity]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import httpx

try:  # the clients' event loop: uvloop (uvicorn's own) when installed, so client overhead stays small
    from uvloop import run as run_loop
except ImportError:
    from asyncio import run as run_loop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests.api.support`, shared with the API tests

from api.events import GzipStream
from technic_core import calendar
from technic_core.warehouse import Warehouse
from tests.api.support import build_warehouse, daily_history_row, serve_process, simulate

RESULTS = Path(__file__).parent / "results" / "streaming.json"
KEY = "bench-key"
#: Sessions after the simulated one; each client run streams a fresh one.
LIVE_SESSIONS_AFTER = dt.date(2024, 6, 28)
ENCODINGS = ("gzip", "identity")
_HEAD = re.compile(rb'"first_seq":(\d+),"last_seq":(\d+)')


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# ------------------------------------------------------------------ writer process


def _land_batches(root: str, session_iso: str, staged: list[str], interval_s: float, total: int, out) -> None:
    """Write staged batches into the session's partition, one every `interval_s`; report rename instants."""
    import polars as pl

    appeared: dict[str, float] = {}
    original_replace = os.replace

    def timed_replace(source, target) -> None:
        original_replace(source, target)
        appeared[str(target)] = time.monotonic()

    # A local warehouse's only rename (`technic_core.storage`, temp file + `os.replace`) is the instant a file
    # appears; patched on `os` itself, which this writer process has to itself.
    os.replace = timed_replace
    store = Warehouse(root)
    session = dt.date.fromisoformat(session_iso)
    stamps = []
    frames = [pl.read_parquet(path).with_columns(date=pl.lit(session)) for path in staged]
    for number, frame in enumerate(frames):
        path = store.write_result_batch(session, number, frame)
        stamps.append(appeared[str(path)])
        time.sleep(interval_s)  # pacing: batches land one by one, as a scan computes them
    store.append_scan_run(daily_history_row(session, total))
    out.send(stamps)


# ------------------------------------------------------------------ raw SSE client


class Receipts:
    """What one client received: (first_seq, last_seq, monotonic receipt) per result event."""

    def __init__(self) -> None:
        self.results: list[tuple[int, int, float]] = []
        self.first_result = asyncio.Event()
        self.closed = asyncio.Event()
        self.ended = False


class SseClient(asyncio.BufferedProtocol):
    """A minimal SSE-over-HTTP/1.1 client that never copies event bodies.

    The server sends each burst of SSE events as one HTTP chunk. The client keeps only the first bytes of
    each chunk (`id`, `event` and the result's seq range) and counts the rest, so at 1,000 streams the bench
    machine's cores go to the server, not to parsing. An event is received when its chunk's last byte
    arrives. With `gzip` it asks for a gzip stream, as browsers and httpx do; each chunk is then one
    self-contained deflate segment (`api.events.Burst`), so inflating its first bytes reads the same head.
    """

    _PEEK = 300
    _PEEK_COMPRESSED = 1024  # deflate's block header plus well over _PEEK bytes of output
    _LINE_WINDOW = 1024
    _READ_SIZE = 256 * 1024

    def __init__(self, path: str, receipts: Receipts, gzip: bool) -> None:
        encoding = "gzip" if gzip else "identity"
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nAccept-Encoding: {encoding}\r\n"
            f"X-API-Key: {KEY}\r\n\r\n"
        ).encode()
        self.gzip = gzip
        self.gzip_header_left = len(GzipStream.HEADER) if gzip else 0
        self.peek_limit = self._PEEK_COMPRESSED if gzip else self._PEEK
        self.receipts = receipts
        self.transport: asyncio.Transport | None = None
        self.pending = bytearray()  # response head or a chunk-size line, until complete
        self.in_head = True
        self.remaining = 0  # bytes left of the current chunk, its trailing CRLF included
        self.peek = bytearray()
        self.buffer = memoryview(bytearray(self._READ_SIZE))

    def get_buffer(self, sizehint: int) -> memoryview:
        """Reads land in one reused buffer: a plain Protocol gets a fresh 256 KiB `bytes` per read, whose
        allocation and page faults would cost the bench machine more than the parsing does."""
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.buffer[:nbytes])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.receipts.closed.set()

    def data_received(self, data: memoryview) -> None:
        now, position = time.monotonic(), 0
        while position < len(data):
            if self.remaining:
                taken = min(self.remaining, len(data) - position)
                if len(self.peek) < self.peek_limit:
                    self.peek += data[position : position + min(taken, self.peek_limit - len(self.peek))]
                self.remaining -= taken
                position += taken
                if not self.remaining:
                    self._event_complete(now)
                continue
            # A response head or chunk-size line: short, but it may straddle two reads.
            marker = b"\r\n\r\n" if self.in_head else b"\r\n"
            window = bytes(self.pending) + data[position : position + self._LINE_WINDOW]
            end = window.find(marker)
            if end < 0:
                self.pending += data[position:]
                return
            position += end + len(marker) - len(self.pending)
            self.pending.clear()
            line = window[:end]
            if self.in_head:
                if not line.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"unexpected response: {line[:200]!r}")
                if self.gzip != (b"\r\ncontent-encoding: gzip" in line.lower()):
                    raise RuntimeError(f"asked for gzip={self.gzip}, got: {line[:500]!r}")
                self.in_head = False
                continue
            size = int(line, 16)
            if size == 0:
                self.transport.close()  # type: ignore[union-attr]
                return
            self.remaining = size + 2

    def _event_complete(self, now: float) -> None:
        head = bytes(self.peek)
        self.peek.clear()
        if self.gzip:
            head, self.gzip_header_left = head[self.gzip_header_left :], 0
            head = zlib.decompressobj(-zlib.MAX_WBITS).decompress(head, self._PEEK)
        if b"\nevent: result\n" in head[:40]:
            first, last = _HEAD.search(head).groups()  # type: ignore[union-attr]
            self.receipts.results.append((int(first), int(last), now))
            self.receipts.first_result.set()
        elif b"\nevent: end\n" in head[:40]:
            self.receipts.ended = True
            self.transport.close()  # type: ignore[union-attr]


async def _sse_client(port: int, path: str, receipts: Receipts, gzip: bool = True) -> asyncio.Transport:
    connect = asyncio.get_running_loop().create_connection
    transport, _ = await connect(lambda: SseClient(path, receipts, gzip), "127.0.0.1", port)
    return transport  # type: ignore[return-value]


async def _subscribers(client: httpx.AsyncClient) -> int:
    return (await client.get("/health")).json()["streams"]["subscribers"]


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process (Linux /proc), to tell server cost from client cost and the
    server's Python from its socket writes (system time: loopback TCP)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


async def _stream_run(
    port: int, server_pid: int, clients: int, gzip: bool, session: dt.date, writer_args: tuple
) -> dict:
    path = f"/events/results/{session.isoformat()}"
    receipts = [Receipts() for _ in range(clients)]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        for receipt in receipts:
            await _sse_client(port, path, receipt, gzip)
        deadline = time.monotonic() + 60
        while await _subscribers(http) < clients:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {await _subscribers(http)} of {clients} clients subscribed")
            await asyncio.sleep(0.05)
        parent, child = multiprocessing.Pipe()
        writer = multiprocessing.get_context("spawn").Process(target=_land_batches, args=(*writer_args, child))
        cpu_before = _cpu_seconds(server_pid)
        client_cpu_before = _cpu_seconds(os.getpid())
        writer.start()
        await asyncio.wait_for(asyncio.gather(*(receipt.closed.wait() for receipt in receipts)), timeout=300)
        user_s, system_s = (after - before for after, before in zip(_cpu_seconds(server_pid), cpu_before))
        client_cpu_s = sum(_cpu_seconds(os.getpid())) - sum(client_cpu_before)
        appeared = await asyncio.to_thread(parent.recv)
        await asyncio.to_thread(writer.join)
    figures = _delivery_figures(receipts, appeared, writer_args[-1], clients)
    figures["server_cpu_ms_per_batch"] = round((user_s + system_s) * 1000 / len(appeared), 1)
    figures["server_system_cpu_ms_per_batch"] = round(system_s * 1000 / len(appeared), 1)
    figures["client_cpu_ms_per_batch"] = round(client_cpu_s * 1000 / len(appeared), 1)
    figures["load_average_1m"] = round(os.getloadavg()[0], 2)  # right after the run: how shared the cores were
    return figures


def _delivery_figures(receipts: list[Receipts], appeared: list[float], total: int, clients: int) -> dict:
    latencies, unique, delivered = [], 0, 0
    for receipt in receipts:
        seen: set[int] = set()
        for batch, (first, last, received) in enumerate(receipt.results):
            latencies.append((received - appeared[batch]) * 1000)
            delivered += last - first + 1
            seen.update(range(first, last + 1))
        unique += len(seen & set(range(1, total + 1)))
    return {
        "clients": clients,
        "batches": len(appeared),
        "rows_per_client": total,
        "p50_latency_ms": round(statistics.median(latencies), 2),
        "p99_latency_ms": round(_percentile(latencies, 0.99), 2),
        "max_latency_ms": round(max(latencies), 2),
        "lost_events": clients * total - unique,
        "duplicated_events": delivered - unique,
        "clients_ended": sum(receipt.ended for receipt in receipts),
    }


def _median_of(repeats: list[dict]) -> dict:
    """Median latency figures over repeated runs of one configuration; losses and duplicates summed."""
    summed = ("lost_events", "duplicated_events")
    return {
        key: (sum(run[key] for run in repeats) if key in summed else statistics.median(run[key] for run in repeats))
        for key in repeats[0]
        if key not in ("clients_ended",)
    } | {"clients_ended": min(run["clients_ended"] for run in repeats)}


# ------------------------------------------------------------------ first ad-hoc result


async def _streamed_scan(
    http: httpx.AsyncClient, port: int, config: dict
) -> tuple[float, dict, Receipts, asyncio.Transport]:
    """Once no scan is active: the instant before `POST /scan/stream`, its answer, and a client on its stream."""
    while (await http.get("/scans/active")).json()["scans"]:
        await asyncio.sleep(0.01)
    sent = time.monotonic()
    started = (await http.post("/scan/stream", json=config)).json()
    receipts = Receipts()
    transport = await _sse_client(port, f"/events/results/{started['scan_id']}", receipts)
    return sent, started, receipts, transport


async def _first_result_ms(port: int, config: dict) -> float:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, headers={"X-API-Key": KEY}) as http:
        sent, started, receipts, transport = await _streamed_scan(http, port, config)
        await asyncio.wait_for(receipts.first_result.wait(), 60)
        received = receipts.results[0][2]
        # Stop, and wait until the worker has finished the batch it is computing before the next scan is
        # timed: a deleted scan leaves the active list at once, but its batch still runs to the end.
        await http.post(f"/scan/stop/{started['scan_id']}")
        while (await http.get(f"/scan/stats/{started['scan_id']}")).json()["status"] != "finished":
            await asyncio.sleep(0.01)
        await http.delete(f"/scan/{started['scan_id']}")
        transport.close()
        return (received - sent) * 1000


async def _first_results(port: int, config: dict, runs: int) -> list[float]:
    await _first_result_ms(port, config)  # warm-up: first polars plans, thread pools
    return [await _first_result_ms(port, config) for _ in range(runs)]


async def _whole_scan_s(port: int, config: dict) -> float:
    """Seconds from sending `POST /scan/stream` to the end of the scan's (gzip) event stream."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, headers={"X-API-Key": KEY}) as http:
        sent, started, receipts, _ = await _streamed_scan(http, port, config)
        await asyncio.wait_for(receipts.closed.wait(), 120)  # the server ends the stream after `end`
        elapsed = time.monotonic() - sent
        await http.delete(f"/scan/{started['scan_id']}")
        return elapsed


async def _whole_scans_s(port: int, config: dict, runs: int) -> list[float]:
    await _whole_scan_s(port, config)  # warm-up
    return [await _whole_scan_s(port, config) for _ in range(runs)]


# ------------------------------------------------------------------ orchestration


#: What the delivery runs need of the server: room for 1,000 streams on one key and long subscriber queues.
SERVER_ENV = {
    "TECHNIC_API_KEYS": KEY,
    "TECHNIC_API_MAX_STREAMS_PER_KEY": "100000",
    "TECHNIC_API_MAX_SCANS_PER_KEY": "100",
    "TECHNIC_API_SUBSCRIBER_QUEUE": "1024",
}


def _stage(market_results, rows_per_batch: int, max_batches: int, directory: Path) -> tuple[list[str], int]:
    """Cut the session's results (seq order) into batch files of `rows_per_batch` rows, at most `max_batches`."""
    import polars as pl

    staged, total = [], 0
    for number in range(min(max_batches, -(-market_results.height // rows_per_batch))):
        frame = market_results.slice(number * rows_per_batch, rows_per_batch).with_columns(batch=pl.lit(number))
        staged.append(str(directory / f"staged-{rows_per_batch}-{number:05d}.parquet"))
        frame.write_parquet(staged[-1])
        total += frame.height
    return staged, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=5000)
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument(
        "--batch-rows",
        type=int,
        nargs="+",
        default=[250, 25],
        help="rows per landed batch; the first is the headline (250 = the daily scan's batch size)",
    )
    parser.add_argument(
        "--encodings",
        nargs="+",
        choices=ENCODINGS,
        default=list(ENCODINGS),
        help="response encodings the clients ask for; the first is the headline (gzip: what browsers and httpx ask)",
    )
    parser.add_argument("--max-batches", type=int, default=20, help="batches landed per run")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between landed batches")
    parser.add_argument("--first-result-runs", type=int, default=20)
    parser.add_argument(
        "--adhoc-symbols", type=int, default=250, help="symbols of the whole-scan timing (one batch vs batch size 1)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per configuration; the report gives their median (shared machines are noisy)",
    )
    args = parser.parse_args()

    load_before = os.getloadavg()  # the machine may be shared: the report says how busy it was (1/5/15 min)
    with tempfile.TemporaryDirectory(prefix="technic-bench-") as temp:
        root = Path(temp) / "warehouse"
        built = time.perf_counter()
        market = simulate(n_symbols=args.symbols)
        build_warehouse(Warehouse(root), market)
        print(
            f"warehouse: {args.symbols} symbols, {market.results.height} result rows, {time.perf_counter() - built:.1f}s"
        )
        server, port = serve_process(root, Path(temp) / "server.log", SERVER_ENV)
        try:
            # The server preloads scan inputs in the background at start-up; a first scan waits for that, so
            # no delivery run below shares the CPU with it.
            run_loop(_first_result_ms(port, {"max_symbols": 5}))
            runs = []
            session = LIVE_SESSIONS_AFTER
            for rows in args.batch_rows:
                staged, total = _stage(market.results, rows, args.max_batches, Path(temp))
                for encoding, clients in itertools.product(args.encodings, args.clients):
                    repeats = []
                    for _ in range(args.repeat):
                        session = calendar.next_session(session)
                        writer_args = (str(root), session.isoformat(), staged, args.interval, total)
                        gzip = encoding == "gzip"
                        repeats.append(run_loop(_stream_run(port, server.pid, clients, gzip, session, writer_args)))
                    runs.append({"batch_rows": rows, "encoding": encoding, **_median_of(repeats), "repeats": repeats})
                    print(json.dumps({key: value for key, value in runs[-1].items() if key != "repeats"}))
            default_scan, quick_scan = {}, {"max_symbols": 50, "batch_size": 10}
            default_ms = run_loop(_first_results(port, default_scan, args.first_result_runs))
            quick_ms = run_loop(_first_results(port, quick_scan, args.first_result_runs))
            # A scan's cost should grow with its rows, not its batches: the same symbols in one batch and
            # one symbol per batch, through the API, to the end of the stream.
            one_batch, one_each = (
                {"max_symbols": args.adhoc_symbols, "batch_size": size, "prioritize": True}
                for size in (args.adhoc_symbols, 1)
            )
            one_batch_s = run_loop(_whole_scans_s(port, one_batch, args.first_result_runs))
            one_each_s = run_loop(_whole_scans_s(port, one_each, args.first_result_runs))
        finally:
            server.terminate()
            server.wait(timeout=30)

    def largest(rows: int, encoding: str) -> dict:
        matching = [run for run in runs if run["batch_rows"] == rows and run["encoding"] == encoding]
        return max(matching, key=lambda run: run["clients"])

    headline = largest(args.batch_rows[0], args.encodings[0])
    report = {
        **{
            key: headline[key]
            for key in ("clients", "p50_latency_ms", "p99_latency_ms", "lost_events", "duplicated_events")
        },
        "batch_rows": headline["batch_rows"],
        "encoding": headline["encoding"],
        **{
            f"p99_latency_ms_{encoding}": largest(args.batch_rows[0], encoding)["p99_latency_ms"]
            for encoding in args.encodings
        },
        "first_result_ms": round(statistics.median(default_ms), 2),
        "first_result_p90_ms": round(_percentile(default_ms, 0.9), 2),
        "first_result_config": "ScanConfig() defaults: every screened symbol, 250 per batch after a first batch of 25 (api.scans.FIRST_BATCH_SIZE)",
        "first_result_quick_scan_ms": round(statistics.median(quick_ms), 2),
        "first_result_quick_scan_p90_ms": round(_percentile(quick_ms, 0.9), 2),
        "first_result_quick_scan_config": quick_scan,
        "adhoc_scan_symbols": args.adhoc_symbols,
        "adhoc_scan_one_batch_s": round(statistics.median(one_batch_s), 4),
        "adhoc_scan_batch_size_1_s": round(statistics.median(one_each_s), 4),
        "adhoc_batch_size_1_vs_one_batch": round(statistics.median(one_each_s) / statistics.median(one_batch_s), 3),
        "runs": runs,
        "symbols": args.symbols,
        "interval_s": args.interval,
        "cpus": os.cpu_count(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "uptime_load_average_1_5_15": {
            "before": [round(value, 2) for value in load_before],
            "after": [round(value, 2) for value in os.getloadavg()],
        },
        "server": "technic serve: uvicorn, one worker; clients and batch writer in two other processes",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
