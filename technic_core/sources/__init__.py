"""Market-data sources behind one protocol, so the rest of Technic never cares where bars come from.

A source answers four questions for NYSE sessions: which symbols were listed (point in time), their daily
bars, the index / volatility-index series, and earnings events. Sources count their calls and cache hits
so runs can report them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import polars as pl

from technic_core.config import Settings
from technic_core.errors import UnknownSourceError
from technic_core.storage import LocalStorage, open_storage

#: Symbol of the broad-market index series in `index_bars` (an S&P 500 tracker, like SPY).
INDEX_SYMBOL = "SPY"
#: Symbol of the volatility index series in `index_bars` (like VIX); its OHLC are index levels.
VOLATILITY_SYMBOL = "VIX"


@dataclass
class SourceStats:
    """Calls a source made to its upstream and lookups it answered from its cache."""

    api_calls: int = 0
    cache_hits: int = 0


@runtime_checkable
class MarketDataSource(Protocol):
    """What the pipeline needs from a market-data provider. All frames follow `technic_core.schema`."""

    name: str

    @property
    def stats(self) -> SourceStats:
        """The source's counters (read-only here, so a source may keep a subclass that counts more)."""
        ...

    def reference(self, session: dt.date) -> pl.DataFrame:
        """Symbols listed on `session` with `schema.REFERENCE` columns, sorted by symbol."""
        ...

    def bars(self, start: dt.date, end: dt.date, symbols: Sequence[str] | None = None) -> pl.DataFrame:
        """`schema.BARS` rows for sessions in [start, end], sorted by (date, symbol); halted days absent."""
        ...

    def index_bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """`schema.BARS` rows of `INDEX_SYMBOL` and `VOLATILITY_SYMBOL` for sessions in [start, end]."""
        ...

    def earnings(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """`schema.EARNINGS` rows with report dates in [start, end] (empty where the source has none)."""
        ...


def _simulated(settings: Settings) -> MarketDataSource:
    from technic_core.sources.simulated import SimulatedMarket, SimulationConfig

    # The checkpoints are a local speed-up only (the market is a pure function of its seed): under an
    # object-store root there is no local directory to keep them in, so each process simulates from the start.
    storage = open_storage(settings.warehouse)
    epoch = settings.sim_epoch or SimulationConfig.epoch
    return SimulatedMarket(
        SimulationConfig(n_symbols=settings.sim_symbols, seed=settings.sim_seed, epoch=epoch),
        state_cache_dir=storage.root / ".cache" / "simulated" if isinstance(storage, LocalStorage) else None,
    )


def _polygon(settings: Settings) -> MarketDataSource:
    from technic_core.sources.polygon import PolygonSource

    return PolygonSource.from_settings(settings)


def _files(settings: Settings) -> MarketDataSource:
    from technic_core.sources.files import FilesSource

    return FilesSource.from_settings(settings)


#: Registered sources by name; `make_source` builds one from `Settings`.
SOURCE_FACTORIES: dict[str, Callable[[Settings], MarketDataSource]] = {
    "simulated": _simulated,
    "polygon": _polygon,
    "files": _files,
}


def make_source(settings: Settings) -> MarketDataSource:
    """Build the source `settings.source` names, or fail listing the known names."""
    factory = SOURCE_FACTORIES.get(settings.source)
    if factory is None:
        known = ", ".join(sorted(SOURCE_FACTORIES))
        raise UnknownSourceError(f"unknown source {settings.source!r}; known sources: {known}")
    return factory(settings)
