"""Market data: bars and index bars per session, and the job that loads bar history in one run."""

from dagster import AssetSelection, Definitions, define_asset_job

from technic_pipelines.defs.market_data.assets import price_bars

BARS_BACKFILL_JOB = "price_bars_backfill_job"

price_bars_backfill_job = define_asset_job(
    BARS_BACKFILL_JOB,
    selection=AssetSelection.assets(price_bars),
    description="Bar history only: run over a partition range to load the lookback a scan needs, in one run.",
)

defs = Definitions(assets=[price_bars], jobs=[price_bars_backfill_job])
