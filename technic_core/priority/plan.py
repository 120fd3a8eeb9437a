"""The plan: priority score and tier from the four factors, and the order a session's scan visits symbols.

Batch plan and exploration
--------------------------
Symbols are ranked by score; an `exploration_share` of them (default 10 %) is drawn, seeded per session,
uniformly from the symbols outside the high tier, and spread evenly through the plan, so every batch holds
that share of explorers. Explorers find the unexpected opportunities score order would reach late, and give
the reordering an unbiased look at the lower tiers early in the scan. Every symbol appears exactly once.
Exploring costs some of the first-quarter share (`exploration_cost_share_first_quarter` in
`bench/results/prioritization.json`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import numpy as np
import polars as pl

from technic_core import schema
from technic_core.priority.codes import _Codes, _Rows
from technic_core.priority.config import (
    FACTOR_COLUMNS,
    HIGH_TIER_ABOVE,
    LOW_TIER_BELOW,
    NEUTRAL_SCORE,
    REASON_NO_REPORT,
    REASON_NO_SOURCE,
    TIER_HIGH,
    TIER_LOW,
    TIER_MEDIUM,
    PriorityConfig,
)
from technic_core.priority.factors import _activity, _fundamental, _history_factors, _reasons, _reports

_log = logging.getLogger(__name__)


def tier_of(score: pl.Expr) -> pl.Expr:
    """The priority tier of a score expression: high > 70, low < 40, medium otherwise."""
    return (
        pl.when(score > HIGH_TIER_ABOVE)
        .then(pl.lit(TIER_HIGH))
        .when(score < LOW_TIER_BELOW)
        .then(pl.lit(TIER_LOW))
        .otherwise(pl.lit(TIER_MEDIUM))
    )


def _scored(
    symbols: pl.Series, factors: dict[str, np.ndarray], reasons: pl.Series, config: PriorityConfig
) -> pl.DataFrame:
    """The `score_symbols` frame of `symbols` from their four factor scores (NaN: no evidence, the neutral
    50) and fundamental reasons."""
    filled = {name: np.where(np.isnan(factors[name]), NEUTRAL_SCORE, factors[name]) for name in FACTOR_COLUMNS}
    priority = sum(filled[name] * weight for name, weight in config.weights.as_dict().items())
    return pl.DataFrame(
        {
            "symbol": symbols,
            "historical_score": filled["historical_score"],
            "activity_score": filled["activity_score"],
            "fundamental_score": filled["fundamental_score"],
            "fundamental_reason": reasons,
            "setup_score": filled["setup_score"],
            "priority_score": priority,
        }
    ).with_columns(tier_of(pl.col("priority_score")).alias("priority_tier"))


def score_symbols(
    symbols: pl.Series | list[str],
    history: pl.DataFrame,
    bars: pl.DataFrame,
    earnings: pl.DataFrame | None,
    session: dt.date,
    config: PriorityConfig,
) -> pl.DataFrame:
    """Factor scores, `fundamental_reason`, `priority_score` and `priority_tier` of each of `symbols` (once
    each, in order of first appearance).

    `history` holds past `results` rows, `bars` and `earnings` any range: each factor reads only what
    precedes `session`. A symbol a factor knows nothing about gets its neutral 50, so a session with no
    history at all still gets valid scores. All symbol columns share one `_Codes`.
    """
    keys = pl.Series("symbol", symbols, dtype=pl.String)
    reports = schema.empty(schema.EARNINGS) if earnings is None else _reports(earnings, session, config)
    codes = _Codes(keys, history.get_column("symbol"), bars.get_column("symbol"), reports.get_column("symbol"))
    key_codes, history_codes, bar_codes, report_codes = codes.of
    first = np.sort(np.unique(key_codes, return_index=True)[1])
    if len(first) < len(keys):
        keys, key_codes = keys[first], key_codes[first]
    fundamental, surprised = _fundamental(_Rows.of(reports, report_codes), codes.size, session, config)
    factors = {
        **_history_factors(_Rows.of(history, history_codes), key_codes, codes.size, session, config),
        "activity_score": _activity(_Rows.of(bars, bar_codes), codes.size, session)[key_codes],
        "fundamental_score": fundamental[key_codes],
    }
    no_report = REASON_NO_SOURCE if earnings is None else REASON_NO_REPORT
    return _scored(keys, factors, _reasons(factors["fundamental_score"], surprised[key_codes], no_report), config)


def build_plan(scores: pl.DataFrame, session: dt.date, batch_size: int, config: PriorityConfig) -> pl.DataFrame:
    """The `schema.PRIORITY` plan of `session` from `score_symbols` output: every symbol exactly once.

    Score order (ties by symbol) with `exploration_share` of the symbols drawn uniformly, seeded by
    (`config.seed`, session), from outside the high tier. The two streams are merged by evenly spaced keys —
    the k-th of n exploited symbols at (k + ½) / n, the j-th of m explorers at (j + ½) / m — so every batch
    of `batch_size` holds the exploration share, and an exploited symbol comes first.
    """
    ranked = _descending(  # rows of `scores` in score order
        scores.get_column("priority_score").to_numpy(),
        lambda: (
            scores.select(pl.arg_sort_by(["priority_score", "symbol"], descending=[True, False], nulls_last=True))
            .to_series()
            .to_numpy()
        ),
    )
    count = len(ranked)
    # a null tier compares null, which numpy's bool conversion (None → False) keeps out of the pool
    pool = np.flatnonzero(scores.get_column("priority_tier").ne(TIER_HIGH).to_numpy().astype(bool)[ranked])
    explorer_count = min(round(config.exploration_share * count), len(pool))
    explorers = pool[np.random.default_rng([config.seed, session.toordinal()]).permutation(len(pool))[:explorer_count]]
    exploring = np.zeros(count, dtype=bool)
    exploring[explorers] = True
    key = np.empty(count)
    key[~exploring] = (np.arange(count - explorer_count) + 0.5) / max(count - explorer_count, 1)
    key[explorers] = (np.arange(explorer_count) + 0.5) / max(explorer_count, 1)
    order = np.lexsort((exploring, key))
    rank = np.arange(1, count + 1)
    _log.debug("plan of %s: %d symbols, %d explorers from a pool of %d", session, count, explorer_count, len(pool))
    # Assembled from its columns in schema order: with_columns and a conforming select would be two more
    # polars queries, each costing as much as the whole draw.
    planned = scores[ranked[order]]
    added = {
        "date": np.full(count, np.datetime64(session, "D")),
        "exploration": exploring[order],
        "rank": rank,
        "batch": (rank - 1) // batch_size,
    }
    return pl.DataFrame(
        {name: added[name] if name in added else planned.get_column(name) for name in schema.PRIORITY},
        schema=schema.PRIORITY,
    )


def prioritize(
    universe: pl.DataFrame,
    history: pl.DataFrame,
    bars: pl.DataFrame,
    earnings: pl.DataFrame | None,
    session: dt.date,
    batch_size: int,
    config: PriorityConfig,
) -> pl.DataFrame:
    """The plan of `session` for the symbols `universe` (`schema.UNIVERSE`) lets through the pre-screen.

    Only membership is read from the universe: its figures include the session's own close.
    """
    screened = universe.get_column("symbol").filter(universe.get_column("passed"))
    return build_plan(score_symbols(screened, history, bars, earnings, session, config), session, batch_size, config)


def refresh_plan(
    plan: pl.DataFrame, history: pl.DataFrame, session: dt.date, batch_size: int, config: PriorityConfig
) -> pl.DataFrame:
    """`plan` re-scored with the current `history`, keeping its activity and fundamental factors.

    Why: a single-run backfill materializes every session's plan before any session's scan, so a stored plan
    may predate the previous session's results. The two factors that read results are recomputed; the two
    that need bars and earnings (which the scan does not load) are kept as stored.
    """
    keys = plan.get_column("symbol")
    codes = _Codes(keys, history.get_column("symbol"))
    key_codes, history_codes = codes.of
    factors = {
        **_history_factors(_Rows.of(history, history_codes), key_codes, codes.size, session, config),
        **{name: plan.get_column(name).to_numpy() for name in ("activity_score", "fundamental_score")},
    }
    scores = _scored(keys, factors, plan.get_column("fundamental_reason"), config)
    return build_plan(scores, session, batch_size, config)


def _descending(key: np.ndarray, with_ties: Callable[[], np.ndarray]) -> np.ndarray:
    """The order of `key` descending, or `with_ties()` when some keys are equal or missing (NaN).

    Why: numpy's unstable sort is vectorized and faster than a stable one or a sort on two keys,
    and equal scores are rare enough that checking for them costs less than always breaking ties.
    """
    order = np.argsort(-key)  # NaN sorts last, so one check of the last key finds any
    ordered = key[order]
    tied = (ordered[1:] == ordered[:-1]).any() or bool(np.isnan(ordered[-1:]).any())
    return with_ties() if tied else order
