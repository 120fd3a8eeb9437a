"""Bar history written in chunks of sessions (`daily.write_bars`), and the setting that moves the simulated
market's first session back for long histories."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest

from technic_core import calendar, daily
from technic_core.config import Settings
from technic_core.errors import DataSourceError
from technic_core.sources import make_source
from technic_core.sources.simulated import SimulatedMarket, SimulationConfig
from technic_core.sources.simulated.source import _RECENT_CHECKPOINTS, _SPARSE_CHECKPOINTS
from technic_core.warehouse import Warehouse

EPOCH = dt.date(2021, 3, 1)
#: 23 sessions: with chunks of 5, four boundaries inside the range and a short last chunk.
SPAN = calendar.sessions_between(dt.date(2021, 3, 8), dt.date(2021, 4, 8))


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return SimulatedMarket(SimulationConfig(n_symbols=40, epoch=EPOCH))


def partition_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*.parquet"))}


def test_chunked_writes_the_same_partitions_as_one_fetch(market, tmp_path):
    assert len(SPAN) == 23
    one_shot, chunked = Warehouse(tmp_path / "one"), Warehouse(tmp_path / "chunked")
    messages: list[str] = []
    whole = daily.write_bars(one_shot, market, SPAN, chunk_sessions=len(SPAN))
    parts = daily.write_bars(chunked, market, SPAN, chunk_sessions=5, progress=messages.append)
    assert parts == whole
    assert parts.sessions == SPAN and parts.rows == market.bars(SPAN[0], SPAN[-1]).height
    assert len(messages) == 5 and messages[-1].endswith("(23/23 sessions)")
    files = partition_bytes(chunked.root)
    assert len(files) == 2 * len(SPAN)  # bars and index_bars, one file each per session
    assert files == partition_bytes(one_shot.root)


def simulated_lengths(market: SimulatedMarket) -> list[int]:
    """The number of sessions of each simulation `market` runs from now on."""
    lengths: list[int] = []
    simulate = market._model.simulate_sessions

    def recording(state, first, length):
        lengths.append(length)
        return simulate(state, first, length)

    market._model.simulate_sessions = recording  # type: ignore[method-assign]
    return lengths


def test_the_simulator_continues_where_it_stopped_in_the_process_and_the_next_one(tmp_path):
    config = SimulationConfig(n_symbols=40, epoch=EPOCH, checkpoint_interval=16)
    market = SimulatedMarket(config, state_cache_dir=tmp_path / "cache")
    lengths = simulated_lengths(market)
    daily.write_bars(Warehouse(tmp_path / "w"), market, SPAN, chunk_sessions=5)
    assert sum(lengths) == len(calendar.sessions_between(EPOCH, SPAN[-1]))  # each session once, whatever the chunks

    next_day = calendar.next_session(SPAN[-1])
    resumed = SimulatedMarket(config, state_cache_dir=tmp_path / "cache")
    lengths = simulated_lengths(resumed)
    assert resumed.bars(next_day, next_day).equals(SimulatedMarket(config).bars(next_day, next_day))
    assert lengths == [1]


def test_the_simulator_keeps_few_states_in_memory_and_reads_old_sessions_again_identically():
    config = SimulationConfig(n_symbols=20, epoch=EPOCH, checkpoint_interval=2)
    market = SimulatedMarket(config)
    sessions = calendar.sessions_between(EPOCH, dt.date(2021, 9, 30))  # 148 sessions: 74 blocks
    market.bars(sessions[0], sessions[-1])
    assert len(market._checkpoints) <= 1 + _RECENT_CHECKPOINTS + _SPARSE_CHECKPOINTS < len(sessions) // 2
    fresh = SimulatedMarket(config)
    for old in (sessions[3], sessions[41], sessions[100]):
        assert market.bars(old, old).equals(fresh.bars(old, old))


def test_stored_bars_reads_chunk_by_chunk_what_one_read_per_session_gives(market, tmp_path):
    store = Warehouse(tmp_path / "w")
    for written in (SPAN[:7], SPAN[9:]):  # a gap of two sessions
        daily.write_bars(store, market, written)
    stored = list(daily.stored_bars(store, SPAN, chunk_sessions=5))
    assert [session for session, _ in stored] == SPAN
    for session, bars in stored:
        assert bars.equals(store.read("bars", session, session))
    assert [bars.height for _, bars in stored[7:9]] == [0, 0]


def test_a_history_starting_inside_the_range_is_left_out_or_refused(market, tmp_path):
    span = calendar.sessions_between(dt.date(2021, 2, 22), SPAN[-1])
    sandbox = daily.write_bars(Warehouse(tmp_path / "sandbox"), market, span, every_session=False, chunk_sessions=4)
    assert sandbox.sessions == [s for s in span if s >= EPOCH]
    pipeline = Warehouse(tmp_path / "pipeline")
    with pytest.raises(DataSourceError, match="first 2021-02-22"):
        daily.write_bars(pipeline, market, span, chunk_sessions=4)
    assert pipeline.sessions("bars") == [] and pipeline.sessions("index_bars") == []


class MissingSession:
    """The simulated market with no bars for one session, as a vendor with a gap."""

    name = "gappy"

    def __init__(self, market: SimulatedMarket, missing: dt.date) -> None:
        self.market, self.missing = market, missing

    def bars(self, start: dt.date, end: dt.date, symbols: Sequence[str] | None = None) -> pl.DataFrame:
        return self.market.bars(start, end, symbols).filter(pl.col("date") != self.missing)

    def index_bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        return self.market.index_bars(start, end)


def test_a_gap_fails_its_chunk_before_writing_it_and_keeps_the_chunks_before(market, tmp_path):
    store = Warehouse(tmp_path / "w")
    with pytest.raises(DataSourceError, match=f"first {SPAN[12]}; nothing from {SPAN[10]} on was written"):
        daily.write_bars(store, MissingSession(market, SPAN[12]), SPAN, chunk_sessions=5)
    assert store.sessions("bars") == SPAN[:10] == store.sessions("index_bars")


def test_chunk_size_must_be_positive(market, tmp_path):
    with pytest.raises(ValueError, match="chunk_sessions"):
        daily.write_bars(Warehouse(tmp_path / "w"), market, SPAN, chunk_sessions=0)


def test_sim_epoch_setting_moves_the_simulated_history_start(tmp_path):
    environ = {"TECHNIC_SIM_SYMBOLS": "20", "TECHNIC_WAREHOUSE": str(tmp_path / "w")}
    moved = make_source(Settings.from_env({**environ, "TECHNIC_SIM_EPOCH": "2016-12-05"}))
    assert isinstance(moved, SimulatedMarket) and moved.config.epoch == dt.date(2016, 12, 5)
    assert moved.bars(dt.date(2016, 12, 2), dt.date(2016, 12, 5)).get_column("date").unique().to_list() == [
        dt.date(2016, 12, 5)
    ]
    default = make_source(Settings.from_env(environ))
    assert isinstance(default, SimulatedMarket) and default.config.epoch == SimulationConfig().epoch
