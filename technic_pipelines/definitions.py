"""The one `Definitions` object Technic's code location exposes.

Loaded by `dagster dev` / the webserver / the daemon through `[tool.dagster] module_name` (and
`workspace.yaml`), and imported as-is by `technic run`, so the CLI materializes exactly what the UI shows.
"""

from __future__ import annotations

from dagster import Definitions

from technic_pipelines.assets import session_assets
from technic_pipelines.ml import ml_asset_checks, ml_assets, ml_sensors
from technic_pipelines.jobs import BARS_BACKFILL_JOB, DAILY_SCAN_JOB, daily_scan_job, price_bars_backfill_job
from technic_pipelines.resources import MarketDataResource, WarehouseResource
from technic_pipelines.schedules import market_open_schedule

defs = Definitions(
    assets=[*session_assets, *ml_assets],
    asset_checks=ml_asset_checks,
    sensors=ml_sensors,
    jobs=[daily_scan_job, price_bars_backfill_job],
    schedules=[market_open_schedule],
    resources={"warehouse": WarehouseResource(), "market_data": MarketDataResource()},
)

__all__ = ["BARS_BACKFILL_JOB", "DAILY_SCAN_JOB", "defs"]
