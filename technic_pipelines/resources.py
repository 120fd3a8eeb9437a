"""Dagster resources: thin wrappers that hand assets the core warehouse and market-data source.

Every field is Dagster config that defaults to unset; an unset field is read from `Settings` (the `TECHNIC_*`
variables, then `.env`, then Settings' default) when a run starts, not when the code location loads, so the
UI, the daemon and the CLI point at the same data. Any field can be set per run, in the launchpad or as
run config, and then wins over the environment, e.g.:

    {"resources": {"warehouse": {"config": {"root": "s3://bucket/w"}},
                   "market_data": {"config": {"source": "simulated", "sim_symbols": 500}}}}

`EnvVar` is not used: it fails a run when its variable is unset, whereas every setting here has a default.
"""

from __future__ import annotations

from functools import lru_cache

from dagster import ConfigurableResource
from pydantic import Field

from technic_core.config import Settings
from technic_core.sources import MarketDataSource, make_source
from technic_core.warehouse import Warehouse


class WarehouseResource(ConfigurableResource):
    """The Parquet warehouse root (default: `TECHNIC_WAREHOUSE`, else `warehouse/`): a local directory or an
    object-store URI such as `s3://bucket/prefix` (see `technic_core.storage`)."""

    root: str | None = Field(default=None, description="warehouse root (unset: TECHNIC_WAREHOUSE, else warehouse/)")

    def get(self) -> Warehouse:
        return Warehouse(Settings.from_env(warehouse=self.root).warehouse)


@lru_cache(maxsize=4)
def _shared_source(settings: Settings) -> MarketDataSource:
    """One source per configuration and process: the simulator's checkpoints and vendors' caches survive
    across the assets of a run and across in-process runs of the CLI."""
    return make_source(settings)


class MarketDataResource(ConfigurableResource):
    """Which market-data source assets read (default: `TECHNIC_SOURCE`, else simulated)."""

    source: str | None = Field(default=None, description="simulated | polygon | files (unset: TECHNIC_SOURCE)")
    sim_symbols: int | None = Field(default=None, description="simulated market size (unset: TECHNIC_SIM_SYMBOLS)")
    sim_seed: int | None = Field(default=None, description="simulated market seed (unset: TECHNIC_SIM_SEED)")

    def settings(self, warehouse: Warehouse | None = None) -> Settings:
        """Source settings; `warehouse` pins the caches (simulator checkpoints, vendor reference data) to
        the warehouse the assets write, even when that root came from the launchpad, not the environment."""
        return Settings.from_env(
            source=self.source,
            sim_symbols=self.sim_symbols,
            sim_seed=self.sim_seed,
            # As text, which `Settings.warehouse` keeps as given: a local root's path, or e.g. 's3://...'.
            warehouse=warehouse.uri if warehouse is not None else None,
        )

    def get(self, warehouse: Warehouse | None = None) -> MarketDataSource:
        return _shared_source(self.settings(warehouse))

    def identity(self) -> dict[str, object]:
        """What the data in a warehouse was produced from; a warehouse must not mix two sources."""
        settings = self.settings()
        if settings.source == "simulated":
            # the epoch only when set, so the default market's identity (and its warehouses) stay as they were
            epoch = {} if settings.sim_epoch is None else {"sim_epoch": settings.sim_epoch.isoformat()}
            return {
                "source": settings.source,
                "sim_symbols": settings.sim_symbols,
                "sim_seed": settings.sim_seed,
                **epoch,
            }
        if settings.source == "files":
            return {"source": settings.source, "files_dir": str(settings.files_dir)}
        if settings.source == "polygon":
            return {"source": settings.source, "base_url": settings.polygon_base_url}
        return {"source": settings.source}
