"""Saved screens as data: every screen's hits per session (`screen_hits`) and the realized forward returns of
those hits and of the signal bands against the screened universe (`screen_performance`).

Thin loops over `technic_core.screens.evaluation`; the library (built-ins plus the warehouse's screens.yaml) is
read once per run, so a run evaluates one consistent set of screen versions, and each hit row records the
version that produced it.
"""

import datetime as dt
import time

import matplotlib.pyplot as plt
import polars as pl
from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from technic_core.quality import CheckOutcome, CheckRule
from technic_core.screens import ScreenLibrary
from technic_core.screens.evaluation import (
    evidence_between,
    performance,
    rating_performance,
    saved_screen_hits,
    session_evidence,
)
from technic_pipelines.metadata import (
    Metadata,
    check_results,
    check_specs,
    markdown_image,
    markdown_table,
    run_sessions,
)
from technic_pipelines.partitions import session_partitions
from technic_pipelines.resources import WarehouseResource

#: Hits of each screen shown in the metadata's top-hits table.
TOP_HITS_PER_SCREEN = 5

HITS_UNIQUE = CheckRule("screen_hits_unique", "each screen lists a symbol at most once per session", blocking=True)
SCREENS_EVALUATED = CheckRule(
    "screen_hits_all_evaluated",
    "every saved screen was evaluated and screens.yaml has no invalid entry",
    blocking=False,
)
SCREEN_RULES = (HITS_UNIQUE, SCREENS_EVALUATED)


@asset(
    partitions_def=session_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=["scan_results"],
    group_name="screens",
    kinds={"polars", "parquet"},
    check_specs=check_specs("screen_hits", SCREEN_RULES),
    description=(
        "Hits of every saved screen (the built-ins and the warehouse's screens.yaml) on the session's scan "
        "results, in each screen's order, with the screen version that produced them. One file per session "
        "under screens/date=YYYY-MM-DD/. Backfill a range to evaluate a new or changed screen over history "
        "in one run."
    ),
)
def screen_hits(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    started = time.perf_counter()
    store = warehouse.get()
    library = ScreenLibrary(store).load()
    sessions = run_sessions(context)
    hits, failures = saved_screen_hits(store, list(library.screens.values()), sessions[0], sessions[-1])
    duplicates: dict[dt.date, int] = {}
    for session in sessions:
        written = hits.filter(pl.col("date") == session)
        store.write_partition("screens", session, written)
        duplicates[session] = written.height - written.select("screen", "symbol").unique().height
    for failure in failures:
        context.log.warning("screen %s was not evaluated: %s", failure.screen, failure.message)
    problems = [str(problem) for problem in library.problems] + [f"{f.screen}: {f.message}" for f in failures]
    worst = max(duplicates, key=lambda session: duplicates[session])
    outcomes = [
        CheckOutcome(
            HITS_UNIQUE.name,
            duplicates[worst] == 0,
            f"{duplicates[worst]} duplicate (screen, symbol) rows on {worst}",
            {"duplicates": duplicates[worst]},
        ),
        CheckOutcome(
            SCREENS_EVALUATED.name,
            not problems,
            "; ".join(problems) or f"{len(library.screens)} screens evaluated",
            {"screens": len(library.screens), "problems": len(problems)},
        ),
    ]
    last = hits.filter(pl.col("date") == sessions[-1])
    per_screen = (
        pl.DataFrame({"screen": list(library.screens)})
        .join(last.group_by("screen").len("hits"), on="screen", how="left")
        .with_columns(pl.col("hits").fill_null(0))
    )
    top = (
        last.filter(pl.col("rank") <= TOP_HITS_PER_SCREEN)
        .group_by("screen", maintain_order=True)
        .agg(pl.col("symbol").str.join(", ").alias("top hits"))
    )
    metadata: Metadata = {
        "dagster/row_count": hits.height,
        "sessions": len(sessions),
        "screens": len(library.screens),
        "hits_per_screen": MetadataValue.md(markdown_table(per_screen.join(top, on="screen", how="left"))),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return MaterializeResult(metadata=metadata, check_results=check_results(outcomes, SCREEN_RULES))


@asset(
    partitions_def=session_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=["signal_outcomes", "screen_hits"],
    group_name="screens",
    kinds={"polars", "parquet"},
    description=(
        "Do they pay? For a labeled session: each screen hit's and each signal band member's realized 5- and "
        "10-session forward return next to the scanned universe's mean on the same session "
        "(screen_outcomes/), and each rating's daily rank IC (rating_ic/). Only sessions whose labels exist "
        "count, so nothing looks ahead. The metadata summarizes every stored session."
    ),
)
def screen_performance(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    started = time.perf_counter()
    store = warehouse.get()
    sessions = run_sessions(context)
    for session in sessions:
        evidence, ic = session_evidence(store, session)
        store.write_partition("screen_outcomes", session, evidence)
        store.write_partition("rating_ic", session, ic)
    summary = performance(evidence_between(store))
    ratings = rating_performance(store.read("rating_ic")) if store.sessions("rating_ic") else None
    metadata: Metadata = {
        "sessions": len(sessions),
        "labeled_sessions_total": len(store.sessions("screen_outcomes")),
        "performance": MetadataValue.md(markdown_table(_shown(summary), float_digits=4)),
        "excess_by_screen": MetadataValue.md(excess_chart(summary)),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if ratings is not None:
        metadata["rating_ic"] = MetadataValue.md(markdown_table(ratings, float_digits=4))
    return MaterializeResult(metadata=metadata)


def _shown(summary: pl.DataFrame) -> pl.DataFrame:
    """The summary's columns a reader compares first, best 5-session excess first."""
    return summary.select(
        "kind", "name", "sessions", "hits", "mean_5d", "excess_5d", "t_excess_5d", "positive_5d", "excess_10d"
    ).sort("excess_5d", descending=True, nulls_last=True)


def excess_chart(summary: pl.DataFrame) -> str:
    """Horizontal bars: mean 5-session excess return over the universe per screen and band."""
    shown = summary.sort("excess_5d", nulls_last=True).drop_nulls("excess_5d")
    figure, axis = plt.subplots(figsize=(7, max(2.0, 0.25 * shown.height + 1)))
    labels = [f"{kind}: {name}" for kind, name in shown.select("kind", "name").iter_rows()]
    values = shown.get_column("excess_5d").to_list()
    axis.barh(labels, values, color=["#1a7f37" if value > 0 else "#c0392b" for value in values])
    axis.axvline(0.0, color="#666666", linewidth=0.8)
    axis.set_xlabel("mean 5-session return over the screened universe (fraction)")
    axis.set_title("Do they pay? Excess forward return of hits")
    axis.tick_params(axis="y", labelsize=7)
    return markdown_image(figure, "excess return by screen")
