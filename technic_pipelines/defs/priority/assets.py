"""`symbol_priority_scores`: each session's scan plan, from what was known before the session.

The asset scores every screened symbol (`technic_core.daily.plan_session`) and writes the plan to
`priority/date=YYYY-MM-DD/`. It depends on the session's `universe` (membership only) and on the
`price_bars` of the sessions before it; it also reads the previous sessions' `results` but cannot declare
that without a cycle (see `technic_core.daily` for how the scan refreshes a plan that predates them).
"""

import time

import polars as pl
from dagster import (
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

from technic_core import daily
from technic_core.priority import (
    ACTIVITY_SESSIONS,
    FACTOR_COLUMNS,
    HIGH_TIER_ABOVE,
    LOW_TIER_BELOW,
    TIERS,
    PriorityConfig,
)
from technic_core.scalars import as_float, as_int
from technic_pipelines.metadata import Metadata, run_sessions
from technic_pipelines.partitions import session_partitions
from technic_pipelines.resources import MarketDataResource, WarehouseResource

#: Bins of the priority-score histogram in the asset's metadata.
SCORE_BINS = tuple(range(0, 101, 10))


def _plan_description(config: PriorityConfig) -> str:
    weights = config.weights
    return (
        "Scan priority of every screened symbol, from information before the session only: historical "
        f"signal chance from the last {config.history_sessions} sessions' scans ({weights.historical:.0%}), "
        f"market activity from the previous {ACTIVITY_SESSIONS} sessions' bars ({weights.activity:.0%}), "
        f"earnings surprises ({weights.fundamental:.0%}) and the previous scan's technical setup "
        f"({weights.setup:.0%}). Tier (high > {HIGH_TIER_ABOVE:g}, low < {LOW_TIER_BELOW:g}), batch and rank "
        f"of the plan the scan follows, with {config.exploration_share:.0%} seeded exploration from the lower "
        "tiers. One Parquet file per session under priority/date=YYYY-MM-DD/."
    )


@asset(
    partitions_def=session_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[
        "universe",
        AssetDep(
            "price_bars",
            partition_mapping=TimeWindowPartitionMapping(
                start_offset=-ACTIVITY_SESSIONS, end_offset=-1, allow_nonexistent_upstream_partitions=True
            ),
        ),
    ],
    group_name="scan",
    pool="market_data",
    kinds={"polars", "parquet"},
    description=_plan_description(daily.DEFAULT_PRIORITY),
)
def symbol_priority_scores(
    context: AssetExecutionContext, warehouse: WarehouseResource, market_data: MarketDataResource
) -> MaterializeResult:
    started = time.perf_counter()
    store = warehouse.get()
    source = market_data.get(store)
    sessions = run_sessions(context)
    earnings = daily.source_earnings(source, sessions[0], sessions[-1])
    rows = 0
    for session in sessions:
        plan = daily.plan_session(store, session, earnings)
        rows += plan.height
    context.log.info("wrote %d priority partitions (%d rows)", len(sessions), rows)
    return MaterializeResult(
        metadata={**plan_metadata(plan), "sessions": len(sessions), "seconds": round(time.perf_counter() - started, 3)}
    )


def plan_metadata(plan: pl.DataFrame) -> Metadata:
    """UI metadata of one session's plan: tier counts, the score distribution and the factor means."""
    score = plan.get_column("priority_score")
    tiers = dict(plan.get_column("priority_tier").value_counts().iter_rows())
    reasons = plan.get_column("fundamental_reason").value_counts().sort("fundamental_reason")
    quantiles = {f"score_p{int(q * 100):02d}": round(float(score.quantile(q) or 0.0), 2) for q in (0.1, 0.5, 0.9)}
    return {
        "dagster/row_count": plan.height,
        "session": str(plan.get_column("date")[0]) if plan.height else "",
        **{f"tier_{tier}": int(tiers.get(tier, 0)) for tier in TIERS},
        "explorers": int(plan.get_column("exploration").sum()),
        "batches": as_int(plan.get_column("batch").max() or 0) + 1 if plan.height else 0,
        **quantiles,
        **{f"mean_{name}": round(as_float(plan.get_column(name).mean() or 0.0), 2) for name in FACTOR_COLUMNS},
        "score_distribution": MetadataValue.md(_score_histogram(score)),
        "fundamental_reasons": MetadataValue.md(
            "\n".join(
                ["| reason | symbols |", "| --- | --- |"]
                + [f"| {reason} | {count} |" for reason, count in reasons.iter_rows()]
            )
        ),
    }


def _score_histogram(score: pl.Series) -> str:
    """Symbols per ten-point band of priority_score, as a markdown table."""
    bands = (
        score.to_frame("score")
        .select(((pl.col("score") // 10).clip(0, 9) * 10).cast(pl.Int64).alias("band"))
        .group_by("band")
        .len()
    )
    counts = dict(bands.iter_rows())
    rows = [f"| {low}–{low + 10} | {counts.get(low, 0)} |" for low in SCORE_BINS[:-1]]
    return "\n".join(["| priority_score | symbols |", "| --- | --- |", *rows])
