"""The one `Definitions` object Technic's code location exposes, merged from one module per domain.

Loaded by `dagster dev` / the webserver / the daemon through `[tool.dagster] module_name` (and
`workspace.yaml`), and imported as-is by `technic run`, so the CLI materializes exactly what the UI shows.
"""

from __future__ import annotations

from dagster import Definitions

from technic_pipelines.defs import market_data, ml, priority, scan, screens
from technic_pipelines.defs.market_data import BARS_BACKFILL_JOB
from technic_pipelines.defs.operations import alerts
from technic_pipelines.defs.scan import DAILY_SCAN_JOB
from technic_pipelines.resources import MarketDataResource, WarehouseResource

defs = Definitions.merge(
    market_data.defs,
    priority.defs,
    scan.defs,
    ml.defs,
    screens.defs,
    alerts.defs,
    Definitions(resources={"warehouse": WarehouseResource(), "market_data": MarketDataResource()}),
)

__all__ = ["BARS_BACKFILL_JOB", "DAILY_SCAN_JOB", "defs"]
