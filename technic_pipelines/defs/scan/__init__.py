"""The scan: screening, market conditions and the batched, prioritized scan of each session, the daily scan
job over every session asset and the market-open schedule that runs it."""

from dagster import Definitions

from technic_pipelines.defs.scan.assets import market_conditions, scan_results, universe
from technic_pipelines.defs.scan.jobs import DAILY_SCAN_JOB, daily_scan_job
from technic_pipelines.defs.scan.schedules import market_open_schedule

defs = Definitions(
    assets=[universe, market_conditions, scan_results], jobs=[daily_scan_job], schedules=[market_open_schedule]
)

__all__ = ["DAILY_SCAN_JOB", "defs"]
