"""The daily scan job: every session-partitioned asset of a session (or a range, in one run)."""

from dagster import AssetSelection, define_asset_job

DAILY_SCAN_JOB = "daily_scan_job"
#: The session-partitioned assets of the daily pipeline, in dependency order, across the domains.
SESSION_ASSETS = (
    "price_bars",
    "universe",
    "market_conditions",
    "symbol_priority_scores",
    "scan_results",
    "screen_hits",
)

daily_scan_job = define_asset_job(
    DAILY_SCAN_JOB,
    selection=AssetSelection.assets(*SESSION_ASSETS),
    description="Every session-partitioned asset of one session (or a range, in one run), in dependency order.",
)
