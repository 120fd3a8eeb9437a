"""The `symbol_priority_scores` asset, and what `scan_results` calls to follow the plan it persisted.

The asset scores every screened symbol of a session from what was known before it (`technic_core.priority`)
and writes the session's plan to `priority/date=YYYY-MM-DD/`. It depends on the session's `universe`
(membership only) and on the `price_bars` of the sessions before it. It also reads the previous sessions'
`results`, but cannot declare that: `scan_results` depends on this asset, so the reverse dependency would
be a cycle in the asset graph. The consequence, handled by `prioritized_scan`: in a single-run backfill
every session's plan is written before any session's scan, so a plan can predate its history. The scan
side notices (a results file newer than the plan) and refreshes the two factors that read results.
"""

import datetime as dt
import logging
import time
import warnings
from dataclasses import dataclass

import polars as pl
from dagster import (
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    BetaWarning,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

from technic_core import calendar
from technic_core.config import ScanConfig
from technic_core.priority import (
    ACTIVITY_SESSIONS,
    FACTOR_COLUMNS,
    HISTORY_COLUMNS,
    TIERS,
    PlanAnnotator,
    PriorityConfig,
    SectorHitRateReorder,
    prioritize,
    refresh_plan,
    session_metrics,
)
from technic_core.scan import ScanHooks, ScanRun
from technic_core.warehouse import Warehouse
from technic_pipelines.partitions import key_session, session_partitions
from technic_pipelines.resources import MarketDataResource, WarehouseResource

# Single-run backfills and tolerant window mappings are beta in dagster 1.13, opted into knowingly (as in
# technic_pipelines.assets, whichever of the two modules is imported first).
warnings.filterwarnings("ignore", category=BetaWarning)

_log = logging.getLogger(__name__)

DEFAULT_PRIORITY = PriorityConfig()
#: The scan configuration plans are batched for; `scan_results` scans with the same one.
DEFAULT_SCAN = ScanConfig()
#: Sessions of earnings the asset asks for to learn whether the source has any: every listed company
#: reports quarterly, so a year without a single report means the source has no earnings data.
EARNINGS_PROBE_SESSIONS = 260
#: Bins of the priority-score histogram in the asset's metadata.
SCORE_BINS = tuple(range(0, 101, 10))


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
    kinds={"polars", "parquet"},
    description=(
        "Scan priority of every screened symbol, from information before the session only: historical "
        "signal chance from recent scans (40 %), market activity from the previous sessions' bars (30 %), "
        "earnings surprises (20 %) and the previous scan's technical setup (10 %). Tier (high > 70, low < 40), "
        "batch and rank of the plan the scan follows, with 10 % seeded exploration from the lower tiers. One "
        "Parquet file per session under priority/date=YYYY-MM-DD/."
    ),
)
def symbol_priority_scores(
    context: AssetExecutionContext, warehouse: WarehouseResource, market_data: MarketDataResource
) -> MaterializeResult:
    started = time.perf_counter()
    store, source = warehouse.get(), market_data.get()
    sessions = [key_session(key) for key in context.partition_keys]
    earnings = source.earnings(
        calendar.sessions_back(sessions[0], EARNINGS_PROBE_SESSIONS)[0], calendar.previous_session(sessions[-1])
    )
    reported = earnings if earnings.height else None  # None: the source has no earnings data at all
    rows = 0
    for session in sessions:
        plan = plan_session(store, session, reported, DEFAULT_SCAN.batch_size, DEFAULT_PRIORITY)
        store.write_partition("priority", session, plan)
        rows += plan.height
    context.log.info("wrote %d priority partitions (%d rows)", len(sessions), rows)
    return MaterializeResult(
        metadata={**plan_metadata(plan), "sessions": len(sessions), "seconds": round(time.perf_counter() - started, 3)}
    )


def plan_session(
    store: Warehouse,
    session: dt.date,
    earnings: pl.DataFrame | None,
    batch_size: int,
    config: PriorityConfig,
) -> pl.DataFrame:
    """The plan of `session` from the warehouse: its universe, the results of the `config.history_sessions`
    sessions before it and the bars of the `ACTIVITY_SESSIONS` before it. `earnings` as in
    `technic_core.priority.fundamental_scores` (None: the source has none)."""
    previous = calendar.previous_session(session)
    history = _history(store, session, config)
    bars = store.read("bars", calendar.sessions_back(previous, ACTIVITY_SESSIONS)[0], previous)
    universe = store.read("universe", session, session)
    return prioritize(universe, history, bars, earnings, session, batch_size, config)


def plan_metadata(plan: pl.DataFrame) -> dict[str, object]:
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
        "batches": int(plan.get_column("batch").max() or 0) + 1 if plan.height else 0,
        **quantiles,
        **{f"mean_{name}": round(float(plan.get_column(name).mean() or 0.0), 2) for name in FACTOR_COLUMNS},
        "score_distribution": MetadataValue.md(_score_histogram(score)),
        "fundamental_reasons": MetadataValue.md(
            "\n".join(["| reason | symbols |", "| --- | --- |"]
                      + [f"| {reason} | {count} |" for reason, count in reasons.iter_rows()])
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


def _history(store: Warehouse, session: dt.date, config: PriorityConfig) -> pl.DataFrame:
    """The result columns the priority factors read, for the history window before `session`."""
    window = calendar.sessions_back(calendar.previous_session(session), config.history_sessions)
    return store.scan("results", window[0], window[-1]).select(HISTORY_COLUMNS).collect()


# ----------------------------------------------------------------------------------- scan_results side


@dataclass
class PrioritizedScan:
    """A session's plan made ready for `run_scan(order=..., hooks=...)`, and the metadata it yields after.

    `order` is None (scan alphabetically) when prioritization is off or the session has no plan; `note`
    then says why. `setup_s` is the time spent loading (and, if stale, refreshing) the plan and building
    the hooks — with the hooks' own time (annotating and reordering) it is the prioritization overhead on the scan's path.
    """

    plan: pl.DataFrame | None
    order: list[str] | None
    hooks: ScanHooks
    batch_size: int
    setup_s: float = 0.0
    refreshed: bool = False
    note: str = ""
    reorder: SectorHitRateReorder | None = None
    annotator: PlanAnnotator | None = None

    def metadata(self, results: pl.DataFrame, run: ScanRun) -> dict[str, object]:
        """Prioritization metadata for the scan's MaterializeResult, keys prefixed `priority_`."""
        if self.plan is None:
            return {"priority_followed": False, "priority_note": self.note}
        hook_s = sum(hook.elapsed_s for hook in (self.reorder, self.annotator) if hook is not None)
        measured = session_metrics(
            self.plan, results, run.scanned, self.batch_size, self.setup_s + hook_s, run.elapsed_s - hook_s
        )
        return {
            "priority_followed": True,
            "priority_plan_refreshed": self.refreshed,
            "priority_reordered": self.reorder is not None,
            **{f"priority_{key}": _rounded(value) for key, value in measured.items() if value is not None},
        }


def prioritized_scan(
    store: Warehouse,
    session: dt.date,
    universe: pl.DataFrame,
    scan_config: ScanConfig = DEFAULT_SCAN,
    config: PriorityConfig = DEFAULT_PRIORITY,
) -> PrioritizedScan:
    """Load `session`'s plan for a scan with `scan_config` over `universe` (the session's `schema.UNIVERSE`).

    A plan older than a results partition of its history window (single-run backfills write all plans
    first) is refreshed from the current history and written back, so the stored plan is always the one
    the scan followed. The hooks annotate results with their priority and, when `config.reorder`, reorder
    by sector and industry hit rates after each batch.
    """
    started = time.perf_counter()
    if not scan_config.prioritize:
        return PrioritizedScan(None, None, ScanHooks(), scan_config.batch_size, note="prioritization is off")
    if not store.has_partition("priority", session):
        _log.warning("no priority plan for %s: scanning in symbol order", session)
        return PrioritizedScan(None, None, ScanHooks(), scan_config.batch_size, note="no plan for the session")
    plan = store.read("priority", session, session)
    refreshed = _stale(store, session, config)
    if refreshed:
        plan = refresh_plan(plan, _history(store, session, config), session, scan_config.batch_size, config)
        store.write_partition("priority", session, plan)
        _log.info("refreshed the priority plan of %s from newer results", session)
    reorder = SectorHitRateReorder(plan, universe, config) if config.reorder else None
    annotator = PlanAnnotator(plan)
    hooks = ScanHooks(enrich=annotator, reorder=reorder)
    return PrioritizedScan(
        plan=plan,
        order=plan.get_column("symbol").to_list(),
        hooks=hooks,
        batch_size=scan_config.batch_size,
        setup_s=time.perf_counter() - started,
        refreshed=refreshed,
        reorder=reorder,
        annotator=annotator,
    )


def _stale(store: Warehouse, session: dt.date, config: PriorityConfig) -> bool:
    """True when a results file of the plan's history window is newer than the plan's file."""
    written = max(path.stat().st_mtime_ns for path in store.partition_files("priority", session))
    window = calendar.sessions_back(calendar.previous_session(session), config.history_sessions)
    return any(
        path.stat().st_mtime_ns > written for day in window for path in store.partition_files("results", day)
    )


def _rounded(value: object) -> object:
    return round(value, 4) if isinstance(value, float) else value

