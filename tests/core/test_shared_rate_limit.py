"""Polygon's limit is per API key: a rate-limit state in a locked file holds it across processes.

The process tests fork real processes that meet at a barrier and then call as fast as their bucket lets
them, recording wall-clock times: sharing the file, all calls together keep the rate; with a bucket each,
every process keeps it alone and together they exceed it. Each child builds its bucket and opens the file
itself after the fork, so nothing of a limiter is inherited; forking rather than spawning spares each child
re-importing the package.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
import time
from pathlib import Path

import pytest

from technic_core.config import Settings
from technic_core.errors import ConfigError
from technic_core.sources.polygon import PolygonSource, TokenBucket
from technic_core.sources.polygon.shared_limit import LocalRateState, SharedRateState, default_limit_dir
from technic_core.warehouse import Warehouse

#: One slot every half second: wide enough that scheduling jitter on a busy machine stays well inside it.
CALLS_PER_MINUTE = 120
INTERVAL = 60 / CALLS_PER_MINUTE
#: How early a slot may appear to start: clock reads and the event loop's timer resolution.
SLACK = 0.03


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_buckets_sharing_a_file_share_one_rate_and_one_pause(tmp_path):
    clock = VirtualClock()
    path = tmp_path / "limit.rate"
    first, second = (TokenBucket(5, clock=clock, state=SharedRateState(path, wall=clock)) for _ in range(2))
    assert [first.reserve(), second.reserve(), first.reserve(), second.reserve()] == [0.0, 12.0, 24.0, 36.0]

    clock.now += 100.0  # all slots spent: the next starts now
    second.pause(30)
    assert first.paused() and first.reserve() == 30.0


def test_the_state_follows_each_process_clock_through_the_wall_clock(tmp_path):
    """Two buckets whose own clocks disagree by an hour (monotonic clocks of two processes) still agree."""
    wall = VirtualClock()
    path = tmp_path / "limit.rate"
    early = TokenBucket(5, clock=lambda: wall.now - 3_600.0, state=SharedRateState(path, wall=wall))
    late = TokenBucket(5, clock=lambda: wall.now + 3_600.0, state=SharedRateState(path, wall=wall))
    assert early.reserve() == 0.0
    assert late.reserve() == pytest.approx(12.0)


def test_a_new_or_torn_file_is_a_fresh_limit_and_the_default_stays_in_the_bucket(tmp_path):
    path = tmp_path / "limit.rate"
    path.write_bytes(b"torn")
    assert TokenBucket(5, state=SharedRateState(path)).reserve() == 0.0
    assert len(path.read_bytes()) == 16
    assert isinstance(TokenBucket(5).state, LocalRateState)


def test_the_file_is_named_by_a_hash_of_root_and_key_never_the_key(tmp_path):
    one = SharedRateState.for_key(tmp_path, "https://api.polygon.io", "pk-secret-4711")
    assert one.path == SharedRateState.for_key(tmp_path, "https://api.polygon.io", "pk-secret-4711").path
    assert "pk-secret-4711" not in one.path.name and one.path.parent == tmp_path
    assert one.path != SharedRateState.for_key(tmp_path, "https://api.polygon.io", "pk-other").path
    assert one.path != SharedRateState.for_key(tmp_path, "http://127.0.0.1:9", "pk-secret-4711").path
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match="TECHNIC_POLYGON_LIMIT_DIR"):
        SharedRateState.for_key(tmp_path / "a-file" / "below-it", "https://api.polygon.io", "k")


def test_a_source_from_settings_shares_its_limit_in_the_configured_or_temp_directory(tmp_path, monkeypatch):
    env = {"POLYGON_API_KEY": "pk-secret-4711", "TECHNIC_WAREHOUSE": str(tmp_path / "w")}
    configured = PolygonSource.from_settings(Settings.from_env({**env, "TECHNIC_POLYGON_LIMIT_DIR": str(tmp_path)}))
    assert isinstance(configured.limiter.state, SharedRateState)
    assert configured.limiter.state.path.parent == tmp_path

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    by_default = PolygonSource.from_settings(Settings.from_env(env))
    assert isinstance(by_default.limiter.state, SharedRateState)
    assert by_default.limiter.state.path.parent == default_limit_dir() == tmp_path / "tmp" / "technic-rate-limits"
    # built directly (tests, notebooks), a source keeps its own limit
    assert isinstance(PolygonSource("k", Warehouse(tmp_path / "w")).limiter.state, LocalRateState)


def _call(path: str | None, calls: int, barrier, results) -> None:
    """One process: its own bucket, on the shared file when `path` is given; the wall-clock time it passed
    the barrier and the time each of its calls was let through."""
    bucket = TokenBucket(CALLS_PER_MINUTE, state=SharedRateState(Path(path)) if path else None)
    barrier.wait()
    released = time.time()
    stamps = []
    for _ in range(calls):
        asyncio.run(bucket.acquire())
        stamps.append(time.time())
    results.put((released, stamps))


def _calls(path: Path | None, processes: int = 3, calls: int = 2) -> list[tuple[float, list[float]]]:
    """Each process's time past the barrier and times of its calls."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_call, args=(str(path) if path else None, calls, barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
        assert worker.exitcode == 0
    return outcomes


def _early_calls(outcomes: list[tuple[float, list[float]]]) -> list[int]:
    """The k of every k-th call (0-based, over the given processes together) made before k slots had passed
    since the first of them was released: a rate kept means none. A loaded machine only delays calls, so it
    cannot hide an early one."""
    released = min(released for released, _ in outcomes)
    every = sorted(stamp for _, stamps in outcomes for stamp in stamps)
    return [k for k, stamp in enumerate(every) if stamp < released + k * INTERVAL - SLACK]


def test_processes_sharing_the_limit_keep_the_rate_together(tmp_path):
    outcomes = _calls(tmp_path / "limit.rate")
    assert sum(len(stamps) for _, stamps in outcomes) == 6 and _early_calls(outcomes) == []


def test_processes_with_a_bucket_each_exceed_the_rate_together():
    outcomes = _calls(None)
    for outcome in outcomes:  # each keeps the rate on its own...
        assert _early_calls([outcome]) == []
    assert _early_calls(outcomes), "...but together they call faster than it allows"
