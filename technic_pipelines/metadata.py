"""What every domain's definitions share: the session a run covers, bar-window dependencies, asset checks
built from `technic_core.quality` rules, and metadata rendered for the UI (markdown tables and charts)."""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Iterable

import matplotlib

matplotlib.use("Agg")  # no display: charts are rendered to PNG for the UI's markdown metadata
import matplotlib.pyplot as plt
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    TimeWindowPartitionMapping,
)

from technic_core.quality import CheckOutcome, CheckRule
from technic_core.sources import MarketDataSource
from technic_pipelines.partitions import key_session


def run_sessions(context: AssetExecutionContext) -> list[dt.date]:
    """The sessions of the run's partition keys (one on the daily schedule, hundreds in a backfill)."""
    return [key_session(key) for key in context.partition_keys]


def bars_window(sessions: int) -> AssetDep:
    """Dependency on the `sessions` price_bars partitions ending at this partition."""
    return AssetDep(
        "price_bars",
        partition_mapping=TimeWindowPartitionMapping(
            start_offset=-(sessions - 1), allow_nonexistent_upstream_partitions=True
        ),
    )


# -------------------------------------------------------------------------------------------- checks


def check_specs(asset_name: str, rules: Iterable[CheckRule]) -> list[AssetCheckSpec]:
    """One spec per rule; only rules whose failure means corrupt data block downstream assets."""
    return [
        AssetCheckSpec(rule.name, asset=asset_name, description=rule.description, blocking=rule.blocking)
        for rule in rules
    ]


def check_results(outcomes: Iterable[CheckOutcome], rules: Iterable[CheckRule]) -> list[AssetCheckResult]:
    """The outcomes as check results: a failed plausibility rule is a warning, a failed data rule an error."""
    blocking = {rule.name: rule.blocking for rule in rules}
    return [
        AssetCheckResult(
            check_name=outcome.name,
            passed=outcome.passed,
            severity=AssetCheckSeverity.ERROR if blocking[outcome.name] else AssetCheckSeverity.WARN,
            description=outcome.description,
            metadata={**outcome.metadata, "blocking": blocking[outcome.name]},
        )
        for outcome in outcomes
    ]


# ------------------------------------------------------------------------------------------ metadata


def source_counters(source: MarketDataSource) -> tuple[int, int]:
    return source.stats.api_calls, source.stats.cache_hits


def source_metadata(source: MarketDataSource, before: tuple[int, int]) -> dict[str, object]:
    """The source's calls and cache hits since `before` (`source_counters` at the step's start)."""
    calls, hits = source_counters(source)
    return {"api_calls": calls - before[0], "cache_hits": hits - before[1], "source": source.name}


def markdown_table(frame: pl.DataFrame, float_digits: int = 2) -> str:
    """A small frame as a markdown table for the UI's metadata panel."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"

    def cell(value: object) -> str:
        return f"{value:.{float_digits}f}" if isinstance(value, float) else str(value)

    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *rows])


def count_table(counts: Iterable[tuple[str, int]], label: str) -> str:
    """(label, count) pairs as a two-column markdown table."""
    return markdown_table(pl.DataFrame(list(counts), schema={label: pl.String, "count": pl.Int64}, orient="row"))


def markdown_image(figure: plt.Figure, alt: str) -> str:
    """A matplotlib figure as an inline PNG for markdown metadata (closed afterwards)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"
