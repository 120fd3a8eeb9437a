"""Splits: the `Split` record, adjusting bars for splits, and the journal of splits the stored bars include.

Bars are stored in the share basis of every split in the journal (`JOURNAL_PATH` under the warehouse root);
the journal is state, not cache. See the package docstring (`technic_core.sources.polygon`) for why.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import polars as pl

from technic_core.errors import DataSourceError
from technic_core.storage import AnyPath
from technic_core.warehouse import write_json_atomic

#: Where the split journal lives under the warehouse root.
JOURNAL_PATH = Path("polygon") / "splits.json"
_JOURNAL_VERSION = 1
_PRICE_COLUMNS = ("open", "high", "low", "close", "vwap")


class Split(NamedTuple):
    """A split of `symbol` effective from `execution_date`: `split_from` old shares became `split_to`."""

    symbol: str
    execution_date: dt.date
    split_from: float
    split_to: float

    @property
    def price_factor(self) -> float:
        """What a price before the split is multiplied by to be comparable with prices after it."""
        return self.split_from / self.split_to


def splits_frame(splits: Iterable[Split]) -> pl.DataFrame:
    rows = [(s.symbol, s.execution_date, s.price_factor) for s in splits]
    return pl.DataFrame(
        rows, schema={"symbol": pl.String, "execution_date": pl.Date, "factor": pl.Float64}, orient="row"
    )


def adjust_for_splits(bars: pl.DataFrame, splits: pl.DataFrame) -> pl.DataFrame:
    """`bars` in the share basis after every split in `splits` (`splits_frame` columns).

    A bar of a symbol on a session before a split's execution date has its prices multiplied by the split's
    price factor and its volume divided by it (trades are unchanged); several later splits multiply. Adjusted
    values are rounded to 6 decimals (prices) and 3 (volume), so restating stored bars split by split and
    adjusting raw bars for all splits at once give the same numbers.
    """
    if bars.is_empty() or splits.is_empty():
        return bars
    factors = (
        bars.select("symbol", "date")
        .join(splits, on="symbol")
        .filter(pl.col("execution_date") > pl.col("date"))
        .group_by("symbol", "date")
        .agg(pl.col("factor").product().alias("_factor"))
    )
    if factors.is_empty():
        return bars
    factor = pl.col("_factor")

    def adjusted(column: str, value: pl.Expr) -> pl.Expr:
        return pl.when(factor.is_null()).then(pl.col(column)).otherwise(value).alias(column)

    return (
        bars.join(factors, on=["symbol", "date"], how="left", maintain_order="left")
        .with_columns(
            *(adjusted(c, (pl.col(c) * factor).round(6)) for c in _PRICE_COLUMNS),
            adjusted("volume", (pl.col("volume") / factor).round(3)),
        )
        .drop("_factor")
    )


@dataclass
class _Restatement:
    """Splits learned after stored partitions were written, and those partitions' hashes before restating."""

    splits: list[Split]
    partitions: dict[str, str]  # "<dataset>/<session>" → sha256 of the file as it was when planned


@dataclass
class SplitJournal:
    """Which splits stored bars include (execution dates in [covered_from, covered_through]) and any
    restatement still under way. Saved atomically as JSON; see the package docstring."""

    path: AnyPath  # under the warehouse root: a local file or an object
    covered_from: dt.date | None = None
    covered_through: dt.date | None = None
    splits: list[Split] = field(default_factory=list)
    restatements: list[_Restatement] = field(default_factory=list)

    @classmethod
    def load(cls, path: AnyPath) -> SplitJournal:
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
            if data.get("version") != _JOURNAL_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {_JOURNAL_VERSION}")
            return cls(
                path,
                _date_or_none(data["covered_from"]),
                _date_or_none(data["covered_through"]),
                [_split_from_json(row) for row in data["splits"]],
                [
                    _Restatement([_split_from_json(row) for row in r["splits"]], dict(r["partitions"]))
                    for r in data["restatements"]
                ],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DataSourceError(
                f"split journal {path} is unreadable ({exc}); it records which splits the stored bars include, "
                "so restore it or re-backfill into a new warehouse"
            ) from exc

    def save(self) -> None:
        write_json_atomic(
            self.path,
            {
                "version": _JOURNAL_VERSION,
                "covered_from": _iso_or_none(self.covered_from),
                "covered_through": _iso_or_none(self.covered_through),
                "splits": [_split_to_json(s) for s in self.splits],
                "restatements": [
                    {"splits": [_split_to_json(s) for s in r.splits], "partitions": r.partitions}
                    for r in self.restatements
                ],
            },
        )

    def gaps(self, first: dt.date, last: dt.date) -> list[tuple[dt.date, dt.date]]:
        """Execution-date ranges inside [first, last] the journal does not cover yet."""
        if first > last:
            return []
        if self.covered_from is None or self.covered_through is None:
            return [(first, last)]
        gaps = []
        if first < self.covered_from:
            gaps.append((first, min(last, self.covered_from - dt.timedelta(days=1))))
        if last > self.covered_through:
            gaps.append((max(first, self.covered_through + dt.timedelta(days=1)), last))
        return gaps

    def add(self, splits: Iterable[Split], first: dt.date, last: dt.date) -> None:
        """Record `splits` and that [first, last] is now covered (it must touch the covered range)."""
        known = {(s.symbol, s.execution_date) for s in self.splits}
        for split in splits:
            if (split.symbol, split.execution_date) not in known:
                known.add((split.symbol, split.execution_date))
                self.splits.append(split)
        self.splits.sort(key=lambda s: (s.execution_date, s.symbol))
        self.covered_from = first if self.covered_from is None else min(self.covered_from, first)
        self.covered_through = last if self.covered_through is None else max(self.covered_through, last)


def _split_to_json(split: Split) -> list[object]:
    return [split.symbol, split.execution_date.isoformat(), split.split_from, split.split_to]


def _split_from_json(row: Sequence[str | float]) -> Split:
    symbol, day, split_from, split_to = row
    return Split(str(symbol), dt.date.fromisoformat(str(day)), float(split_from), float(split_to))


def _date_or_none(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def _iso_or_none(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()
