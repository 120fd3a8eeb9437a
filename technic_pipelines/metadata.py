"""What every domain's definitions share: the session a run covers, bar-window dependencies, asset checks
built from `technic_core.quality` rules, and metadata rendered for the UI (markdown tables and charts)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
from collections.abc import Iterable
from typing import TypeAlias

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
    MetadataValue,
    TimeWindowPartitionMapping,
)

from technic_core.quality import CheckOutcome, CheckRule
from technic_core.sources import MarketDataSource
from technic_pipelines.partitions import key_session

#: A metadata value Dagster takes as it is: a `MetadataValue`, or a plain value it wraps itself (the subset of
#: Dagster's `RawMetadataValue`, which it does not export, that Technic's assets use).
MetadataEntry: TypeAlias = MetadataValue | str | int | float | bool | None
#: An asset's metadata: name → value, shown in the UI.
Metadata: TypeAlias = dict[str, MetadataEntry]


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
    """The outcomes as check results: a failed plausibility rule is a warning, a failed data or serving rule
    an error."""
    by_name = {rule.name: rule for rule in rules}
    return [
        AssetCheckResult(
            check_name=outcome.name,
            passed=outcome.passed,
            severity=check_severity(by_name[outcome.name]),
            description=outcome.description,
            metadata={**outcome.metadata, "blocking": by_name[outcome.name].blocking},
        )
        for outcome in outcomes
    ]


def check_severity(rule: CheckRule) -> AssetCheckSeverity:
    return AssetCheckSeverity.ERROR if rule.is_error else AssetCheckSeverity.WARN


# ------------------------------------------------------------------------------------------ metadata


def source_counters(source: MarketDataSource) -> dict[str, int]:
    """Every counter of the source's stats: calls and cache hits, plus any a source adds (the files source
    counts the forward-filled rows it dropped)."""
    return dataclasses.asdict(source.stats)


def source_metadata(source: MarketDataSource, before: dict[str, int]) -> dict[str, int | str]:
    """Each of the source's counters since `before` (`source_counters` at the step's start)."""
    return {
        **{name: value - before[name] for name, value in source_counters(source).items()},
        "source": source.name,
    }


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
