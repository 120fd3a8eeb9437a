"""`SimulatedMarket`: the `MarketDataSource` over the simulated market, with its evaluation-only extras (the
oracle expected return, the hidden regimes), the cache of generated blocks and the checkpoints it resumes from.
The model is described in docs/simulated-market.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from technic_core import calendar, schema
from technic_core.errors import ConfigError
from technic_core.sources import INDEX_SYMBOL, VOLATILITY_SYMBOL, SourceStats
from technic_core.sources.simulated.checkpoints import _PERSISTED_CHECKPOINTS, _PersistedCheckpoints
from technic_core.sources.simulated.config import SimulationConfig
from technic_core.sources.simulated.model import MODEL_VERSION, _MarketModel
from technic_core.sources.simulated.parameters import _MARKET_CAP_BOUNDS, REGIMES, _day_numbers
from technic_core.sources.simulated.planted import _oracle_coefficients
from technic_core.sources.simulated.state import _Block, _State
from technic_core.sources.simulated.universe import _EarningsSchedule, _Universe

#: Columns of `SimulatedMarket.oracle_expected_return`.
ORACLE_SCHEMA: schema.Columns = {
    "symbol": pl.String,
    "date": pl.Date,
    "horizon": pl.Int64,
    "expected_return": pl.Float64,
}

#: Columns of `SimulatedMarket.market_regimes`.
REGIMES_SCHEMA: schema.Columns = {"date": pl.Date, "regime": pl.String}

#: Generated blocks kept in memory (the least recently used is dropped first), so day-by-day requests are cheap.
_BLOCK_CACHE_SIZE = 4
#: Block-start states kept in memory: the first, the newest `_RECENT_CHECKPOINTS` and at most
#: `_SPARSE_CHECKPOINTS` older ones, evenly spread (one every `stride` blocks, the stride doubling as history
#: grows). Memory then stays bounded however long the history (a state holds rings of bars per symbol), and
#: reading an old session again re-simulates at most `stride` blocks.
_RECENT_CHECKPOINTS = 4
_SPARSE_CHECKPOINTS = 16
_BAR_VALUES = ("open", "high", "low", "close", "volume", "vwap", "trades")  # _Block arrays behind a bar row


class SimulatedMarket:
    """A `MarketDataSource` over the simulated market; see docs/simulated-market.md for the model.

    Every public call counts as an API call; one answered without simulating a session counts as a cache
    hit too. Calls are serialized by a lock, so one instance (and its checkpoints) can serve several threads.
    """

    name = "simulated"

    def __init__(self, config: SimulationConfig | None = None, state_cache_dir: Path | None = None) -> None:
        """`state_cache_dir`, when given, persists the newest recursion checkpoint between processes, so a
        daily run resumes near today instead of re-simulating every session since the epoch."""
        self.config = config or SimulationConfig()
        self.stats = SourceStats()
        self._sessions = calendar.sessions_between(self.config.epoch, calendar.last_known_session())
        if not self._sessions:
            raise ConfigError(f"epoch: {self.config.epoch} is after the calendar's last session")
        self._session_days = _day_numbers(np.array(self._sessions, dtype="datetime64[D]"))
        self._universe = _Universe(self.config, self._session_days)
        self._earnings = _EarningsSchedule(self.config, self._universe, self._session_days)
        self._tickers = pl.Series("symbol", self._universe.tickers, dtype=pl.String)
        self._ticker_index = {ticker: i for i, ticker in enumerate(self._universe.tickers.tolist())}
        self._model = _MarketModel(self.config, self._universe, self._earnings, self._session_days)
        #: States before a session, by session index: every block start, and the newest state a simulation
        #: stopped at inside a block (a daily request resumes there instead of at its block's start).
        self._checkpoints: dict[int, _State] = {0: self._model.initial_state()}
        self._blocks: OrderedDict[int, _Block] = OrderedDict()
        self._lock = threading.RLock()
        self._stride = 1  # blocks between the older block-start states kept in memory
        self._state_cache = _PersistedCheckpoints(state_cache_dir, self._market_key()) if state_cache_dir else None

    # --- public API ------------------------------------------------------------------------------------

    def reference(self, session: dt.date) -> pl.DataFrame:
        """Names listed on `session` (`schema.REFERENCE`), sorted by symbol; market cap at its close.

        `delist_date` is filled once the delisting has been announced (5–30 sessions ahead), null before.
        """
        with self._lock:
            self.stats.api_calls += 1
            index = self._session_index(session)
            if index is None:
                self.stats.cache_hits += 1
                return schema.empty(schema.REFERENCE)
            block, simulated = self._block(index // self.config.checkpoint_interval, index, index)
            if not simulated:
                self.stats.cache_hits += 1
            u = self._universe
            listed = np.flatnonzero(u.listed(index))
            delist_index = np.minimum(u.delist_index[listed], len(self._sessions) - 1)
            frame = pl.DataFrame(
                {
                    "symbol": self._tickers.gather(listed),
                    "name": u.company_names[listed],
                    "sector": u.sector_names[listed],
                    "industry": u.industry_names[listed],
                    "market_cap": np.clip(
                        u.shares[listed] * block.close[index - block.first, listed], *_MARKET_CAP_BOUNDS
                    ),
                    "shares_outstanding": u.shares[listed],
                    "list_date": u.list_date[listed],
                    "delist_date": self._session_days[delist_index].astype("datetime64[D]"),
                    "announced": u.announce_index[listed] <= index,
                }
            ).with_columns(pl.when(pl.col("announced")).then(pl.col("delist_date")).alias("delist_date"))
            return schema.conform(frame, schema.REFERENCE, "reference")

    def bars(self, start: dt.date, end: dt.date, symbols: Sequence[str] | None = None) -> pl.DataFrame:
        """`schema.BARS` rows for sessions in [start, end], sorted by (date, symbol); halted days absent.

        Unknown symbols are ignored. Dates before the epoch have no bars; an `end` after the calendar's last
        session raises `ConfigError`.
        """
        columns = None
        if symbols is not None:
            known = [self._ticker_index[s] for s in symbols if s in self._ticker_index]
            columns = np.unique(np.array(known, dtype=np.int64))

        def piece(block: _Block, rows: slice) -> pl.DataFrame:
            def selected(values: np.ndarray) -> np.ndarray:
                return values[rows] if columns is None else values[rows][:, columns]

            has_bar = selected(block.has_bar)
            _session_rows, column = np.nonzero(has_bar)
            return pl.DataFrame(
                {
                    "symbol": self._tickers.gather(column if columns is None else columns[column]),
                    "date": np.repeat(self._session_dates(block, rows), has_bar.sum(axis=1)),
                    **{name: selected(getattr(block, name))[has_bar] for name in _BAR_VALUES},
                }
            )

        return self._collect(start, end, piece, schema.BARS, "bars")

    def index_bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """`INDEX_SYMBOL` and `VOLATILITY_SYMBOL` bars for sessions in [start, end], sorted by (date, symbol).

        The volatility index is a level, not a traded fund: its volume is 0 and it has no vwap or trades.
        """

        def piece(block: _Block, rows: slice) -> pl.DataFrame:
            count = rows.stop - rows.start
            values = block.index_bars[rows].reshape(-1, 6)
            is_index = np.tile([True, False], count)
            return pl.DataFrame(
                {
                    "symbol": np.where(is_index, INDEX_SYMBOL, VOLATILITY_SYMBOL),
                    "date": np.repeat(self._session_dates(block, rows), 2),
                    "open": values[:, 0],
                    "high": values[:, 1],
                    "low": values[:, 2],
                    "close": values[:, 3],
                    "volume": values[:, 4],
                    "vwap": values[:, 5],
                    "trades": np.repeat(block.index_trades[rows], 2),
                    "is_index": is_index,
                }
            ).with_columns(
                pl.when(pl.col("is_index")).then(pl.col(column)).alias(column) for column in ("vwap", "trades")
            )

        return self._collect(start, end, piece, schema.BARS, "index_bars")

    def earnings(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """`schema.EARNINGS` rows with report dates in [start, end], sorted by (date, symbol).

        Reports are after the close; the market reacts at the next session. Every date the simulator answers
        for lies inside its simulated history, so `surprise_pct` is always filled: callers looking from a
        session must ignore the surprises of reports on or after it. The schedule is fixed when the market is
        built, so every call is a cache hit.
        """
        with self._lock:
            self.stats.api_calls += 1
            self.stats.cache_hits += 1
            first, last = self._index_range(start, end)
            rows = self._earnings.between(first, last)
            frame = pl.DataFrame(
                {
                    "symbol": self._tickers.gather(self._earnings.symbol[rows]),
                    "date": self._session_days[self._earnings.session[rows]].astype("datetime64[D]"),
                    "surprise_pct": self._earnings.surprise[rows],
                }
            )
            return schema.conform(frame, schema.EARNINGS, "earnings")

    def oracle_expected_return(self, start: dt.date, end: dt.date, horizon: int) -> pl.DataFrame:
        """The planted part of each symbol's log return from close(t) to close(t + horizon sessions).

        One row (`ORACLE_SCHEMA` columns) per symbol with a bar on t, for sessions t in [start, end], sorted by
        (date, symbol). Ground truth for evaluating models and prioritization — never a model feature.
        """
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ConfigError(f"horizon: {horizon!r} is not a positive number of sessions")
        coefficients = self.config.alpha_strength * _oracle_coefficients(self._model.planted.horizon_weights, horizon)
        history = self.config.alpha_horizon - 1

        def piece(block: _Block, rows: slice) -> pl.DataFrame:
            count = rows.stop - rows.start
            expected = np.zeros((count, self._universe.size))
            for lag, coefficient in enumerate(coefficients):
                first_row = history + rows.start - lag
                expected += coefficient * block.scores[first_row : first_row + count]
            session_rows, symbol = np.nonzero(block.has_bar[rows])
            return pl.DataFrame(
                {
                    "symbol": self._tickers.gather(symbol),
                    "date": self._session_dates(block, rows)[session_rows],
                    "horizon": np.full(len(symbol), horizon, dtype=np.int64),
                    "expected_return": expected[session_rows, symbol],
                }
            )

        return self._collect(start, end, piece, ORACLE_SCHEMA, "oracle")

    def market_regimes(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """The hidden market regime (`REGIMES` names) of each session in [start, end] — evaluation truth for
        regime classifiers, like the oracle never an input to one."""
        names = np.array([regime.name for regime in REGIMES])

        def piece(block: _Block, rows: slice) -> pl.DataFrame:
            return pl.DataFrame({"date": self._session_dates(block, rows), "regime": names[block.regime[rows]]})

        return self._collect(start, end, piece, REGIMES_SCHEMA, "regimes")

    # --- session bookkeeping ---------------------------------------------------------------------------

    def _check_end(self, end: dt.date) -> None:
        last = self._sessions[-1]
        if end > last:
            raise ConfigError(f"{end} is after the simulated market's last session {last} (the calendar's end)")

    def _session_index(self, session: dt.date) -> int | None:
        """Index of `session` among the simulated sessions; None before the epoch."""
        self._check_end(session)
        if session < self._sessions[0]:
            return None
        calendar.require_session(session)
        return self._index_range(session, session)[0]

    def _index_range(self, start: dt.date, end: dt.date) -> tuple[int, int]:
        """First and last session index inside [start, end] (first > last when there is none)."""
        self._check_end(end)
        bounds = _day_numbers(np.array([start, end], dtype="datetime64[D]"))
        first = int(np.searchsorted(self._session_days, bounds[0], side="left"))
        last = int(np.searchsorted(self._session_days, bounds[1], side="right")) - 1
        return first, last

    def _session_dates(self, block: _Block, rows: slice) -> np.ndarray:
        return self._session_days[block.first + rows.start : block.first + rows.stop].astype("datetime64[D]")

    def _collect(
        self,
        start: dt.date,
        end: dt.date,
        piece: Callable[[_Block, slice], pl.DataFrame],
        columns: schema.Columns,
        name: str,
    ) -> pl.DataFrame:
        """Concatenate `piece(block, rows)` over the blocks holding sessions in [start, end], in date order.

        Blocks are fetched one at a time, so a long backfill keeps only a few blocks of dense arrays alive.
        """
        with self._lock:
            self.stats.api_calls += 1
            first, last = self._index_range(start, end)
            interval = self.config.checkpoint_interval
            pieces, simulated = [], False
            for number in range(first // interval, last // interval + 1) if first <= last else ():
                low, high = max(first, number * interval), min(last, (number + 1) * interval - 1)
                block, block_simulated = self._block(number, low, high)
                simulated |= block_simulated
                pieces.append(piece(block, slice(low - block.first, high + 1 - block.first)))
            if not simulated:
                self.stats.cache_hits += 1
            elif self._state_cache is not None:
                # the start of the newest block (a rerun resumes there) and where the simulation stopped (the
                # next day resumes there)
                for index in sorted(self._checkpoints)[-_PERSISTED_CHECKPOINTS:]:
                    self._state_cache.save(index, self._checkpoints[index])
            if not pieces:
                return schema.empty(columns)
            return schema.conform(pl.concat(pieces, rechunk=False), columns, name)

    # --- simulation ------------------------------------------------------------------------------------

    def _block(self, number: int, first: int, last: int) -> tuple[_Block, bool]:
        """Block `number` holding at least sessions `first`…`last` (indices inside it), and whether it had to
        be simulated. A simulation resumes from the newest checkpoint at or before `first` and stops after
        `last`, so a request for the newest session simulates that session, not the rest of its block."""
        cached = self._blocks.get(number)
        if cached is not None and cached.first <= first and last < cached.first + cached.length:
            self._blocks.move_to_end(number)
            return cached, False
        interval = self.config.checkpoint_interval
        start = max(index for index in self._checkpoints if index <= first)
        if self._state_cache is not None and start < first:
            persisted = self._state_cache.load_newest(after=start, upto=first)
            if persisted is not None:
                start, self._checkpoints[persisted[0]] = persisted
        state = self._checkpoints[start].copy()
        while True:  # block by block up to block `number`, recording each block start on the way
            stop = min((start // interval + 1) * interval, last + 1)
            block = self._model.simulate_sessions(state, start, stop - start)
            self._keep_checkpoint(stop, state)
            if stop > last:
                break
            start = stop
        self._blocks[number] = block
        while len(self._blocks) > _BLOCK_CACHE_SIZE:
            self._blocks.popitem(last=False)
        return block, True

    def _keep_checkpoint(self, index: int, state: _State) -> None:
        """Keep a copy of `state`, the state before session `index`: of the states inside blocks only the
        newest, and of the block starts those `_thin_checkpoints` leaves."""
        if index in self._checkpoints:
            return
        interval = self.config.checkpoint_interval
        if index % interval:
            for inside in [i for i in self._checkpoints if i % interval]:
                del self._checkpoints[inside]
        self._checkpoints[index] = state.copy()
        self._thin_checkpoints()

    def _thin_checkpoints(self) -> None:
        """Drop block-start states beyond the first, the newest few and one every `_stride` blocks, doubling
        the stride while more than `_SPARSE_CHECKPOINTS` older ones remain."""
        interval = self.config.checkpoint_interval
        starts = sorted(i for i in self._checkpoints if i % interval == 0)
        older = [i for i in starts[1:-_RECENT_CHECKPOINTS] if (i // interval) % self._stride == 0]
        while len(older) > _SPARSE_CHECKPOINTS:
            self._stride *= 2
            older = [i for i in older if (i // interval) % self._stride == 0]
        kept = {starts[0], *starts[-_RECENT_CHECKPOINTS:], *older}
        for index in starts:
            if index not in kept:
                del self._checkpoints[index]

    def _market_key(self) -> str:
        """Identity of the recursion: config, model version and the session calendar it runs over."""
        digest = hashlib.sha256()
        # "sessions": checkpoints are keyed by session index (they were by block number), so files of the
        # old numbering are never read as states of other sessions
        digest.update(f"{MODEL_VERSION}|sessions|{self.config!r}".encode())
        digest.update(np.asarray(self._session_days).tobytes())
        return digest.hexdigest()[:24]
