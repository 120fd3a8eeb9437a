"""The one `Definitions` object Technic's code location exposes.

Loaded by `dagster dev` / the webserver / the daemon through `[tool.dagster] module_name` (and
`workspace.yaml`), and imported as-is by `technic run`, so the CLI materializes exactly what the UI shows.
"""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job

from technic_pipelines.assets import session_assets
from technic_pipelines.resources import MarketDataResource, WarehouseResource

DAILY_SCAN_JOB = "daily_scan_job"
BARS_BACKFILL_JOB = "price_bars_backfill_job"

daily_scan_job = define_asset_job(
    DAILY_SCAN_JOB,
    selection=AssetSelection.assets(*session_assets),
    description="Every session-partitioned asset of one session (or a range, in one run), in dependency order.",
)

price_bars_backfill_job = define_asset_job(
    BARS_BACKFILL_JOB,
    selection=AssetSelection.assets("price_bars"),
    description="Bar history only: run over a partition range to load the lookback a scan needs, in one run.",
)

defs = Definitions(
    assets=session_assets,
    jobs=[daily_scan_job, price_bars_backfill_job],
    resources={"warehouse": WarehouseResource(), "market_data": MarketDataResource()},
)
