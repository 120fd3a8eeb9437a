"""The scan-time hooks of a prioritized scan: `SectorHitRateReorder` (a `ScanHooks.reorder`) and
`PlanAnnotator` (a `ScanHooks.enrich`). Both run on the scan's critical path: the reorder between batches,
the annotator once per computation pass.

Dynamic reordering
------------------
`SectorHitRateReorder` (a `ScanHooks.reorder`) re-ranks the symbols not yet scanned after each batch by the
hit rates seen so far per sector and industry, *relative to what their priority tiers predicted* (hits
among scanned high-tier symbols are expected; a sector hitting more than its tier mix implies is hot today).
Explorers keep their slots. On the simulated market it changes little (`reorder_gain_share_first_quarter` in
`bench/results/prioritization.json`): sector moves there are small next to each stock's own, so that even
knowing every sector's rating drift of the day exactly would add little. It is meant for real markets' sector
days, and `PriorityConfig.reorder` switches it off.
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl

from technic_core.priority.codes import _Codes
from technic_core.priority.config import TIERS, PriorityConfig
from technic_core.priority.plan import _descending
from technic_core.scoring import BUY_SIGNALS


class SectorHitRateReorder:
    """A `ScanHooks.reorder`: after each batch, move symbols of sectors and industries that signal more often
    than their priority tiers predicted ahead, and those that signal less behind.

    Lift of a group = (hits + κ) / (expected + κ), where a scanned symbol's expected hit is the hit rate so
    far of its tier (indirect standardization: a sector scanned mostly from the high tier is not "hot" for
    hitting often), and κ = `reorder_prior_hits` shrinks small groups toward 1. An industry's lift is measured
    against its sector's, and the two multiply. A remaining symbol's score becomes
    ``priority_score + strength × ln(lift)``; the exploited symbols are re-sorted by it (ties by plan rank)
    while explorers (and symbols the plan does not know) keep their slots.

    Why the bookkeeping: the hook runs after every batch on the scan's critical path, so it keeps running
    counts per industry × tier (only the newest batch's results are read), holds the symbols as integer
    indices (plan rows), and recognises the list it returned last time instead of re-reading thousands of
    strings. A batch is counted in one Python loop of dict lookups over its few hundred results: a batch's
    scan leaves the caches cold, and there every numpy or polars call costs more than the loop.
    Building it is numpy over the plan's columns: a polars join and rank cost more than all its calls.
    `elapsed_s` and `calls` record its own cost, for the overhead metric.
    """

    def __init__(self, plan: pl.DataFrame, reference: pl.DataFrame, config: PriorityConfig) -> None:
        symbols = plan.get_column("symbol")
        names = symbols.to_list()
        self._symbols = np.array(names, dtype=object)
        self._index = _row_of(names)
        self._score = plan.get_column("priority_score").to_numpy()
        self._rank = plan.get_column("rank").to_numpy()
        self._pinned = plan.get_column("exploration").to_numpy().astype(bool)
        self._tier = np.full(plan.height, len(TIERS) - 1)  # an unknown tier counts as low
        for code, tier in enumerate(TIERS[:-1]):
            self._tier[plan.get_column("priority_tier").eq(tier).to_numpy().astype(bool)] = code
        self._sector, self._industry = _groups(symbols, reference)
        self._planned = plan.height
        industries = int(self._industry.max(initial=-1)) + 1
        self._industry_sector = np.zeros(industries, dtype=np.int64)
        self._industry_sector[self._industry] = self._sector
        # running counts of scanned symbols and hits per cell (industry × tier) of the planned symbols, as a
        # Python list per row: a batch is counted in one loop over its few hundred results
        self._cell = (self._industry * len(TIERS) + self._tier).tolist()
        self._scanned = np.zeros((industries, len(TIERS)))
        self._hits = np.zeros((industries, len(TIERS)))
        self._strength = config.reorder_strength
        self._prior_hits = config.reorder_prior_hits
        self._results_seen = 0
        # The plan's own order counts as "returned last time", so a scan that follows the plan takes the
        # cheap path from its first call on.
        self._returned_index = np.argsort(self._rank, kind="stable")
        self._returned: list[str] = self._symbols[self._returned_index].tolist()
        self.elapsed_s = 0.0
        self.calls = 0

    def __call__(self, remaining: list[str], results: pl.DataFrame) -> list[str]:
        started = time.perf_counter()
        self._count(results.slice(self._results_seen))
        self._results_seen = results.height
        index = self._indices(remaining)
        movable = np.flatnonzero(~self._pinned[index])
        candidates = index[movable]
        adjusted = self._score[candidates] + self._strength * self._industry_log_lift()[self._industry[candidates]]
        reordered = index.copy()
        ranks = self._rank[candidates]
        reordered[movable] = candidates[_descending(adjusted, lambda: np.lexsort((ranks, -adjusted)))]
        self._returned_index, self._returned = reordered, self._symbols[reordered].tolist()
        self.calls += 1
        self.elapsed_s += time.perf_counter() - started
        return self._returned

    def _count(self, batch: pl.DataFrame) -> None:
        """Add one batch's results to the running counts."""
        index, cells, planned = self._index, self._cell, self._planned
        scanned, hit = [], []
        for symbol, signal in zip(batch.get_column("symbol").to_list(), batch.get_column("signal").to_list()):
            row = index.get(symbol, planned)
            if row < planned:  # symbols outside the plan have no tier, so no expected hit rate
                scanned.append(cells[row])
                if signal in BUY_SIGNALS:
                    hit.append(cells[row])
        shape = self._scanned.shape
        self._scanned += np.bincount(scanned, minlength=self._scanned.size).reshape(shape)
        self._hits += np.bincount(hit, minlength=self._hits.size).reshape(shape)

    def _industry_log_lift(self) -> np.ndarray:
        """ln(sector lift × industry-within-sector lift) per industry code."""
        rate = self._hits.sum(axis=0) / np.maximum(self._scanned.sum(axis=0), 1.0)
        expected, hits = self._scanned @ rate, self._hits.sum(axis=1)
        kappa = self._prior_hits
        sector_lift = (np.bincount(self._industry_sector, weights=hits) + kappa) / (
            np.bincount(self._industry_sector, weights=expected) + kappa
        )
        lift_of_sector = sector_lift[self._industry_sector]
        return np.log(lift_of_sector * (hits + kappa) / (expected * lift_of_sector + kappa))

    def _indices(self, remaining: list[str]) -> np.ndarray:
        """Indices of `remaining`: a tail of the list returned last time (a list comparison, cheap while the
        strings are the very objects handed out), else looked up, symbols outside the plan adopted first."""
        consumed = len(self._returned) - len(remaining)
        if consumed >= 0 and self._returned[consumed:] == remaining:
            return self._returned_index[consumed:]
        unknown = [symbol for symbol in remaining if symbol not in self._index]
        if unknown:
            self._adopt(unknown)
        return np.array([self._index[symbol] for symbol in remaining], dtype=np.int64)

    def _adopt(self, symbols: list[str]) -> None:
        """Give symbols outside the plan (a scan may add screened symbols a stale plan lacks) pinned places
        after the planned ones: they keep their slots, and their results are not counted, having no tier."""
        self._index.update(_row_of(symbols, start=len(self._symbols)))
        self._symbols = np.concatenate([self._symbols, np.array(symbols, dtype=object)])
        self._pinned = np.concatenate([self._pinned, np.ones(len(symbols), dtype=bool)])


def _row_of(symbols: list[str], start: int = 0) -> dict[str, int]:
    """Row number (from `start`) of each symbol."""
    return dict(zip(symbols, range(start, start + len(symbols))))


def _groups(symbols: pl.Series, reference: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Sector and industry codes of `symbols` from `reference` (`symbol`, `sector`, `industry`). A missing
    sector or industry, and a symbol the reference lacks, count as the empty name; an industry is named
    within its sector."""
    reference_columns = (reference.get_column(name) for name in ("symbol", "sector", "industry"))
    codes = _Codes(symbols, *reference_columns, pl.Series(["", None], dtype=pl.String))
    planned_symbols, reference_symbols, sector_of, industry_of, (unnamed, null) = codes.of
    row = np.full(codes.size, reference.height)  # the reference row of each symbol; past the end: none
    row[reference_symbols] = np.arange(reference.height)
    planned = row[planned_symbols]

    def named(names: np.ndarray) -> np.ndarray:
        """The name of each planned symbol, null and no reference row both the empty name."""
        names = np.append(names, unnamed)[planned]
        return np.where(names == null, unnamed, names)

    sector = named(sector_of)
    industry = np.unique(sector * codes.size + named(industry_of), return_inverse=True)[1]
    return np.unique(sector, return_inverse=True)[1], industry


_ANNOTATION_COLUMNS = ("priority_score", "priority_tier")


class PlanAnnotator:
    """A `ScanHooks.enrich`: each result gets its `priority_score` and `priority_tier` from the plan it was
    scanned under, so the plan travels with the result to the warehouse and the streams; symbols the plan
    lacks get nulls. `elapsed_s` is its cost, part of the prioritization overhead.

    Why so spare: it runs on the scan's critical path, where a join, or even rebuilding the results' ~90
    columns as a new frame, costs more than the lookup itself. The results' symbols are looked up in a dict
    of (score, tier) (see `SectorHitRateReorder`) and the two columns appended to a shallow copy.
    """

    def __init__(self, plan: pl.DataFrame) -> None:
        annotations = zip(plan.get_column("priority_score").to_list(), plan.get_column("priority_tier").to_list())
        self._annotations = dict(zip(plan.get_column("symbol").to_list(), annotations))
        self.elapsed_s = 0.0

    def __call__(self, results: pl.DataFrame) -> pl.DataFrame:
        started = time.perf_counter()
        unknown = (None, None)
        found = [self._annotations.get(symbol, unknown) for symbol in results.get_column("symbol").to_list()]
        scores, tiers = zip(*found) if found else ((), ())
        annotated = results.clone()  # shares the columns; dropping and appending below leave `results` intact
        for name in _ANNOTATION_COLUMNS:
            if name in annotated.columns:
                annotated.drop_in_place(name)
        annotated.hstack(
            [pl.Series("priority_score", scores, dtype=pl.Float64), pl.Series("priority_tier", tiers, dtype=pl.String)],
            in_place=True,
        )
        self.elapsed_s += time.perf_counter() - started
        return annotated
