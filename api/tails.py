"""Partition tails: publish each result batch file of a session as it appears, to that session's topic.

Notification comes from watchfiles (inotify on Linux) on the partition directory, so a new batch is seen a
few milliseconds after its rename; the watcher also wakes every `poll_interval_s` and re-lists the
directory, so a lost notification (or a filesystem without them, where watchfiles is forced to poll) costs
latency, never events. Before the partition directory exists, its nearest existing ancestor is watched the
same way. A warehouse on an object store has no notifications at all: there the tail looks every
`poll_interval_s` (a batch object is whole once visible, so polling only costs latency). All file and
object reading runs in worker threads; only publishing touches the event loop.

A tail reads batch files in batch-number order and never skips a gap (a file still being written elsewhere
shows up later, whole). Rows whose seq it already published are dropped, so a re-run of the scan that
rewrites the partition with identical data (Dagster re-materialization) publishes nothing twice.

The stream ends when the pipeline's scan-history row for the session (`scan_runs/daily-<date>.parquet`,
written after the last batch) reports as many results as were published: its end reason becomes the `end`
event's. Until then — the pipeline is still writing, or has not started — the tail keeps watching.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import anyio
import polars as pl
from watchfiles import Change, awatch

from api.events import END_ERROR, StreamEvent, encode_rows, end_event, progress_event, result_event, sse_burst
from api.hub import Topic
from technic_core import schema
from technic_core.daily import daily_scan_id
from technic_core.scoring import BUY_SIGNALS
from technic_core.storage import AnyPath
from technic_core.warehouse import DATASETS, PARTITION_FILE, Warehouse

logger = logging.getLogger(__name__)

_BATCH_FILE = re.compile(r"^batch=(\d{5})\.parquet$")
#: How long watchfiles waits for quiet after a change before it reports (ms): a batch file arrives by one
#: rename, so there is nothing to wait for, and the shortest step wakes the tail soonest.
_STEP_MS = 1
_DEBOUNCE_MS = 50


def _is_batch_file(change: Change, path: str) -> bool:
    return _BATCH_FILE.match(Path(path).name) is not None


class PartitionTail:
    """Follows `results/date=<session>/` for one topic until the session's scan is complete."""

    def __init__(self, store: Warehouse, topic: Topic, session: dt.date, poll_interval_s: float) -> None:
        self.store = store
        self.topic = topic
        self.session = session
        self.poll_ms = max(1, round(poll_interval_s * 1000))
        self.directory = store.root / DATASETS["results"].name / f"date={session.isoformat()}"
        self._history_file = store.root / DATASETS["scan_runs"].name / f"{daily_scan_id(session)}.parquet"
        self._history_mtime: int | None = None
        self._history_row: _HistoryRow | None = None
        self._next_batch = 0
        self._signals = 0

    async def run(self) -> None:
        """Publish until complete; any failure ends the stream with reason `error` instead of hanging it."""
        try:
            while not await self._follow():
                logger.info("results partition removed, waiting for it", extra={"session": self.session.isoformat()})
        except Exception as exc:
            logger.exception("partition tail failed", extra={"session": self.session.isoformat()})
            self.topic.publish(end_event(self.topic.scan_id, self.topic.last_seq, END_ERROR, str(exc)))

    async def _follow(self) -> bool:
        """Watch the partition; True once complete, False if its directory disappeared meanwhile."""
        await self._wait_for_directory()
        try:
            async for _ in self._wakeups(self.directory, _is_batch_file):
                if await self._catch_up():
                    return True
        except FileNotFoundError:
            return False
        return False

    async def _wait_for_directory(self) -> None:
        if not isinstance(self.directory, Path):
            while not await anyio.to_thread.run_sync(self.directory.is_dir):
                await asyncio.sleep(self.poll_ms / 1000)
            return
        while not self.directory.is_dir():
            ancestor = next(parent for parent in self.directory.parents if parent.is_dir())
            async for _ in self._wakeups(ancestor, None, recursive=False):
                if self.directory.is_dir() or not ancestor.is_dir():
                    break

    async def _wakeups(
        self, path: AnyPath, watch_filter: Callable[[Change, str], bool] | None, recursive: bool = False
    ) -> AsyncIterator[None]:
        """Yield once as soon as `path` is watched, then on each relevant change and at least every poll
        interval.

        The first yield is what makes looking safe: whatever lands after it is reported, so a caller that
        looks then misses nothing — looking before the watch exists would miss a file renamed in between
        (e.g. a session's first batch, written right after its directory appeared) until the next poll.
        watchfiles creates its watch before its first wait, so one pass of the event loop after starting
        the iteration the watch exists.

        Falls back to watchfiles' own polling when the OS refuses a notification watch (e.g. the inotify
        watch limit is reached), so a busy host degrades to polling latency instead of failing the stream;
        an object-store prefix is only ever polled.
        """
        if not isinstance(path, Path):
            while True:
                yield None
                await asyncio.sleep(self.poll_ms / 1000)
        for force_polling in (False, True):
            pending: asyncio.Future[set[tuple[Change, str]]] | None = None
            try:
                changes = awatch(
                    path,
                    watch_filter=watch_filter,
                    step=_STEP_MS,
                    debounce=_DEBOUNCE_MS,
                    rust_timeout=self.poll_ms,
                    yield_on_timeout=True,
                    recursive=recursive,
                    force_polling=force_polling,
                    poll_delay_ms=self.poll_ms,
                )
                pending = asyncio.ensure_future(anext(changes))
                await asyncio.sleep(0)  # the watcher runs up to its first wait: its watch exists from here on
                if pending.done():
                    pending.result()  # a refused watch raises here, before anyone relies on it
                yield None
                while True:
                    try:
                        await pending
                    except StopAsyncIteration:
                        return
                    yield None
                    pending = asyncio.ensure_future(anext(changes))
            except OSError as exc:
                if force_polling or not path.exists():
                    raise
                logger.warning("file notification unavailable, polling", extra={"path": str(path), "error": str(exc)})
            finally:
                if pending is not None:
                    pending.cancel()

    async def _catch_up(self) -> bool:
        """Publish every new whole batch in order; True once the session's scan is known to be complete."""
        while True:
            path = self.directory / f"batch={self._next_batch:05d}.parquet"
            batch = await anyio.to_thread.run_sync(
                _load_batch, path, self.topic.scan_id, self._next_batch, self.topic.last_seq, self._signals
            )
            if batch is None:
                break
            self._publish(batch)
            self._next_batch += 1
        return await self._publish_end_if_complete()

    async def _read_compacted(self) -> None:
        """Publish what a compacted partition holds beyond the batches read: the pipeline compacts a finished
        session (after its scan-history row), and a tail still behind then finds no next batch file; the
        batches live on in one file whose rows keep their batch numbers."""
        compacted = await anyio.to_thread.run_sync(
            _load_compacted,
            self.directory / PARTITION_FILE,
            self.topic.scan_id,
            self._next_batch,
            self.topic.last_seq,
            self._signals,
        )
        for loaded in compacted or ():
            self._publish(loaded)
            self._next_batch = loaded.batch + 1

    def _publish(self, batch: _Batch) -> None:
        """Hand a loaded batch's events to the topic (only this tail publishes to it, so the `last_seq` the
        batch was loaded against is still the topic's)."""
        if not batch.events:
            return
        if batch.first_seq != self.topic.last_seq + 1:
            logger.warning(
                "seq gap in results partition",
                extra={
                    "session": self.session.isoformat(),
                    "expected": self.topic.last_seq + 1,
                    "got": batch.first_seq,
                },
            )
        self._signals = batch.signals
        for event in batch.events:
            self.topic.publish(event)

    async def _publish_end_if_complete(self) -> bool:
        history = await self._history()
        if history is None:
            return False
        if history.result_count != self.topic.last_seq:
            await self._read_compacted()
        if history.result_count != self.topic.last_seq:
            return False
        self.topic.publish(end_event(self.topic.scan_id, self.topic.last_seq, history.end_reason or "complete"))
        return True

    async def _history(self) -> _HistoryRow | None:
        """The session's scan-history row, read again only when its file changed; None while there is none."""
        try:
            mtime = await anyio.to_thread.run_sync(_mtime_ns, self._history_file)
        except FileNotFoundError:
            return None
        if mtime != self._history_mtime:
            self._history_mtime = mtime
            self._history_row = await anyio.to_thread.run_sync(_read_history_row, self._history_file)
        return self._history_row


@dataclass(frozen=True)
class _Batch:
    """A batch's rows the topic lacks, as ready-to-send events (none when it holds no new row)."""

    events: tuple[StreamEvent, ...]
    first_seq: int
    #: Buy signals published on the session so far, this batch included.
    signals: int
    batch: int


def _load_batch(path: AnyPath, scan_id: str, batch: int, last_seq: int, signals: int) -> _Batch | None:
    """Read batch file `path` and build its `result` and `progress` events for rows after `last_seq`, all in
    the calling worker thread: the JSON rows, the SSE frames and the joined write every subscriber gets, plain
    and compressed, so the event loop only hands the events out. None while the file does not exist."""
    frame = _read_batch(path)
    return None if frame is None else _batch_events(frame, scan_id, batch, last_seq, signals)


def _load_compacted(path: AnyPath, scan_id: str, next_batch: int, last_seq: int, signals: int) -> list[_Batch] | None:
    """The batches from `next_batch` on of a compacted partition (`Warehouse.compact_results`: one file, each
    row keeping its `batch`), each built as `_load_batch` builds one; None when there is no such file."""
    frame = _read_batch(path)
    if frame is None:
        return None
    batches = []
    for (batch,), rows in frame.filter(pl.col("batch") >= next_batch).partition_by("batch", as_dict=True).items():
        loaded = _batch_events(rows, scan_id, int(batch), last_seq, signals)
        batches.append(loaded)
        last_seq = loaded.events[0].seq if loaded.events else last_seq
        signals = loaded.signals
    return batches


def _batch_events(frame: pl.DataFrame, scan_id: str, batch: int, last_seq: int, signals: int) -> _Batch:
    fresh = frame.filter(pl.col("seq") > last_seq)
    if fresh.height == 0:
        return _Batch((), last_seq + 1, signals, batch)
    first_seq = int(fresh.get_column("seq")[0])
    signals += int(fresh.get_column("signal").is_in(BUY_SIGNALS).sum())
    result = result_event(scan_id, batch, first_seq, encode_rows(fresh))
    events = (result, progress_event(scan_id, result.seq, batch=batch, signals=signals))
    sse_burst(list(events)).deflated()  # what a live subscriber receives, plain and gzip: built here, once
    return _Batch(events, first_seq, signals, batch)


def _read_batch(path: AnyPath) -> pl.DataFrame | None:
    """The batch file in the results schema, or None while it does not exist (yet, or any more).

    Files written before an optional column existed lack it; it is added as null, as warehouse reads do.
    """
    try:
        frame = _read_parquet(path)
    except FileNotFoundError:
        return None
    absent = [
        pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.RESULTS.items() if name not in frame.columns
    ]
    return schema.conform(frame.with_columns(absent), schema.RESULTS, f"results batch {path}").sort("seq")


class _HistoryRow(NamedTuple):
    """What a scan's `scan_runs` row tells a tail: how many results it wrote and why it ended."""

    result_count: int | None
    end_reason: str | None


def _read_history_row(path: AnyPath) -> _HistoryRow | None:
    try:
        frame = _read_parquet(path, columns=["result_count", "end_reason"])
    except FileNotFoundError:
        return None
    if not frame.height:
        return None
    row = frame.row(0, named=True)  # an Int64 and a String column (schema.SCAN_RUNS): int or None, str or None
    return _HistoryRow(row["result_count"], row["end_reason"])


def _mtime_ns(path: AnyPath) -> int:
    return path.stat().st_mtime_ns


def _read_parquet(path: AnyPath, columns: list[str] | None = None) -> pl.DataFrame:
    """A local file by its path, an object through its bytes (polars takes no `StoragePath`)."""
    return pl.read_parquet(path if isinstance(path, Path) else io.BytesIO(path.read_bytes()), columns=columns)
