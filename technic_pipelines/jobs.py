"""Jobs over the session-partitioned assets; every one runs a partition range as a single run."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from technic_pipelines.assets import session_assets

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
