"""Dagster resources: thin wrappers that hand assets the core warehouse and market-data source.

Unset fields fall back to the `TECHNIC_*` variables (`Settings.from_env`) when a run starts, not when the
code location loads, so the UI, the daemon and `technic run` (which sets them from its options) always
point at the same data, and a field set in the launchpad wins over the environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

from dagster import ConfigurableResource

from technic_core.config import Settings
from technic_core.sources import MarketDataSource, make_source
from technic_core.warehouse import Warehouse


class WarehouseResource(ConfigurableResource):
    """The Parquet warehouse root (default: `TECHNIC_WAREHOUSE`, else `warehouse/`): a local directory or an
    object-store URI such as `s3://bucket/prefix` (see `technic_core.storage`)."""

    root: Optional[str] = None

    def get(self) -> Warehouse:
        return Warehouse(Settings.from_env(warehouse=self.root).warehouse)


@lru_cache(maxsize=4)
def _shared_source(settings: Settings) -> MarketDataSource:
    """One source per configuration and process: the simulator's checkpoints and vendors' caches survive
    across the assets of a run and across in-process runs of the CLI."""
    return make_source(settings)


class MarketDataResource(ConfigurableResource):
    """Which market-data source assets read (default: `TECHNIC_SOURCE`, else simulated)."""

    source: Optional[str] = None
    sim_symbols: Optional[int] = None
    sim_seed: Optional[int] = None

    def settings(self, warehouse: Warehouse | None = None) -> Settings:
        """Source settings; `warehouse` pins the caches (simulator checkpoints, vendor reference data) to
        the warehouse the assets write, even when that root came from the launchpad, not the environment."""
        return Settings.from_env(
            source=self.source,
            sim_symbols=self.sim_symbols,
            sim_seed=self.sim_seed,
            # The URI as text: a local root's path, or e.g. 's3://...', which `Warehouse` restores from Settings.
            warehouse=warehouse.uri if warehouse is not None else None,
        )

    def get(self, warehouse: Warehouse | None = None) -> MarketDataSource:
        return _shared_source(self.settings(warehouse))

    def identity(self) -> dict[str, object]:
        """What the data in a warehouse was produced from; a warehouse must not mix two sources."""
        settings = self.settings()
        if settings.source == "simulated":
            return {"source": settings.source, "sim_symbols": settings.sim_symbols, "sim_seed": settings.sim_seed}
        if settings.source == "files":
            return {"source": settings.source, "files_dir": str(settings.files_dir)}
        if settings.source == "polygon":
            return {"source": settings.source, "base_url": settings.polygon_base_url}
        return {"source": settings.source}
