"""Keeping stored bars in the basis of every known split: the split-journal side of `PolygonSource`.

When the journal learns a split, the stored `bars` and `index_bars` partitions before it are restated
locally, guarded by each file's hash so an interrupted restatement resumes without adjusting anything twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from typing import Any

import polars as pl

from technic_core import schema
from technic_core.sources import SourceStats
from technic_core.sources.polygon.client import _PAGE_LIMIT, _Requester
from technic_core.sources.polygon.parsing import _split_rows
from technic_core.sources.polygon.splits import (
    JOURNAL_PATH,
    SplitJournal,
    _Restatement,
    adjust_for_splits,
    splits_frame,
)
from technic_core.storage import AnyPath
from technic_core.warehouse import Warehouse

_log = logging.getLogger(__name__)


class _SplitRestatements:
    """Mixed into `PolygonSource`: the split journal it keeps, and the restatement of stored partitions.

    Uses the source's `warehouse`, `stats`, `_journal` and `_run` (one batch of requests).
    """

    warehouse: Warehouse
    stats: SourceStats
    _journal: SplitJournal | None
    _run: Callable[[Callable[[_Requester], Any]], Any]

    def _splits_journal(self) -> SplitJournal:
        if self._journal is None:
            self._journal = SplitJournal.load(self.warehouse.root / JOURNAL_PATH)
        return self._journal

    def _adjusted(self, raw: pl.DataFrame) -> pl.DataFrame:
        return schema.conform(adjust_for_splits(raw, splits_frame(self._splits_journal().splits)), schema.BARS, "bars")

    def _sync_splits(self, first: dt.date, last: dt.date) -> None:
        """Make the journal cover splits that affect sessions from `first` on, through the newer of `last`
        and the newest stored session, restating stored partitions for splits learned after them."""
        journal = self._splits_journal()
        self._finish_restatements(journal)
        stored = self.warehouse.sessions("bars")
        basis = max(last, stored[-1]) if stored else last
        # splits after `first` adjust the bars returned; splits after the oldest stored session, stored ones
        lower = min([first, *stored[:1]]) + dt.timedelta(days=1)
        gaps = journal.gaps(lower, basis)
        if not gaps:
            self.stats.cache_hits += 1
            return

        async def fetch(requester: _Requester) -> list[dict]:
            rows: list[dict] = []
            for low, high in gaps:
                params = {
                    "execution_date.gte": low.isoformat(),
                    "execution_date.lte": high.isoformat(),
                    "order": "asc",
                    "sort": "execution_date",
                    "limit": str(_PAGE_LIMIT),
                }
                rows += await requester.pages("/v3/reference/splits", params, f"splits executed {low}..{high}")
            return rows

        splits = _split_rows(self._run(fetch))
        newer_than = journal.covered_through
        journal.add(splits, gaps[0][0], gaps[-1][1])
        later = [s for s in splits if newer_than is not None and s.execution_date > newer_than]
        if later and stored:
            horizon = max(s.execution_date for s in later)
            journal.restatements.append(_Restatement(later, self._partition_hashes(horizon)))
        journal.save()
        self._finish_restatements(journal)

    def _partition_hashes(self, before: dt.date) -> dict[str, str]:
        hashes = {}
        for dataset in ("bars", "index_bars"):
            for session in self.warehouse.sessions(dataset):
                if session < before:
                    for file in self.warehouse.partition_files(dataset, session):
                        hashes[f"{dataset}/{session.isoformat()}"] = _file_sha256(file)
        return hashes

    def _finish_restatements(self, journal: SplitJournal) -> None:
        """Apply pending restatements to partitions whose file is still the one planned for.

        A changed hash means the partition was restated already (a run died before saving the journal) or
        rewritten since with bars that include the split, so adjusting it again would be wrong.
        """
        while journal.restatements:
            restatement = journal.restatements[0]
            factors = splits_frame(restatement.splits)
            restated = 0
            for key, digest in sorted(restatement.partitions.items()):
                dataset, day = key.split("/")
                session = dt.date.fromisoformat(day)
                files = self.warehouse.partition_files(dataset, session)
                if len(files) != 1 or _file_sha256(files[0]) != digest:
                    continue
                stored = self.warehouse.read(dataset, session, session)
                adjusted = adjust_for_splits(stored, factors)
                if not adjusted.equals(stored):
                    self.warehouse.write_partition(dataset, session, adjusted)
                    restated += 1
            _log.info(
                "polygon restated splits=%d partitions=%d symbols=%s",
                len(restatement.splits),
                restated,
                sorted({s.symbol for s in restatement.splits})[:10],
            )
            journal.restatements.pop(0)
            journal.save()


def _file_sha256(path: AnyPath) -> str:
    """A stored partition's digest; read whole, which works for a local file and an object alike."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
