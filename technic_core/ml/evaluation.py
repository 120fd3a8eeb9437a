"""Walk-forward evaluation: purged, embargoed folds over sessions, and the cross-sectional metrics.

Why walk-forward: a model is used on sessions after the ones it learned from, so it is judged that way —
each fold trains on a window of past sessions and predicts the block of sessions that follows.

Why purge and embargo: the label of session s is the return to s + h, so a training label within h
sessions of the test block overlaps the test labels' period, and a model would be graded on returns it has
partly seen. The purge drops those training sessions (purge ≥ h); the embargo drops `embargo` more sessions
(≥ h) in front of the test block, because features and labels of neighbouring sessions are autocorrelated
(trailing features, overlapping return windows) and a margin keeps that leak out too. The gap between the
last training session and the first test session is therefore purge + embargo calendar sessions.

Metrics, each per session and then summarized, because a scan ranks stocks within one session:

* rank IC: Spearman correlation of predictions and realized forward returns across the session's symbols;
  `rank_ic` is its mean over sessions.
* ICIR: mean / standard deviation of the daily rank IC (per session, not annualized): how steady the skill is.
* decile spread: mean return of the top prediction decile minus the bottom decile, per session, averaged.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from technic_core import calendar
from technic_core.errors import ConfigError
from technic_core.scalars import as_float

#: Fewest symbols with a prediction and a label for a session to count in the metrics.
MIN_SYMBOLS_PER_SESSION = 20
DECILES = 10


@dataclass(frozen=True)
class Fold:
    """Sessions whose labels train the model, and the block of later sessions it is tested on."""

    train: tuple[dt.date, ...]
    test: tuple[dt.date, ...]


@dataclass(frozen=True)
class Metrics:
    """Cross-sectional skill of one predictor over a set of sessions."""

    rank_ic: float
    icir: float
    decile_spread: float
    sessions: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "rank_ic": _rounded(self.rank_ic),
            "icir": _rounded(self.icir),
            "decile_spread": _rounded(self.decile_spread),
            "sessions": self.sessions,
        }


def walk_forward_folds(
    sessions: Sequence[dt.date],
    horizon: int,
    test_sessions: int,
    min_train_sessions: int,
    max_train_sessions: int,
    purge: int | None = None,
    embargo: int | None = None,
    max_folds: int | None = None,
) -> list[Fold]:
    """Consecutive test blocks of `test_sessions` labeled sessions, each with the training window before it.

    Blocks are laid back from the latest session, so the last block is always full and every horizon is
    evaluated on the same latest sessions. A session s trains a fold only if it lies at least purge +
    embargo calendar sessions before the fold's first test session (module docstring); of those, the
    latest `max_train_sessions` are used (a rolling window: old regimes age out and training time stays
    bounded). Blocks continue backwards while at least `min_train_sessions` qualify, at most `max_folds`
    of them. Purge and embargo default to, and must be at least, `horizon`. Folds are returned oldest first.
    """
    purge = horizon if purge is None else purge
    embargo = horizon if embargo is None else embargo
    if purge < horizon or embargo < horizon:
        raise ConfigError(f"purge ({purge}) and embargo ({embargo}) must be at least the horizon ({horizon})")
    if test_sessions < 1 or min_train_sessions < 1 or max_train_sessions < min_train_sessions:
        raise ConfigError(
            f"walk-forward needs test_sessions ≥ 1 and 1 ≤ min_train_sessions ≤ max_train_sessions, got "
            f"{test_sessions}, {min_train_sessions}, {max_train_sessions}"
        )
    ordered = sorted(set(sessions))
    if not ordered:
        return []
    position = {day: i for i, day in enumerate(calendar.sessions_between(ordered[0], ordered[-1]))}
    gap = purge + embargo
    folds: list[Fold] = []
    end = len(ordered)
    while end > 0 and (max_folds is None or len(folds) < max_folds):
        start = max(0, end - test_sessions)
        first_test = position[ordered[start]]
        eligible = [day for day in ordered[:start] if position[day] <= first_test - gap]
        if len(eligible) < min_train_sessions:
            break
        folds.append(Fold(train=tuple(eligible[-max_train_sessions:]), test=tuple(ordered[start:end])))
        end = start
    return folds[::-1]


def minimum_labeled_sessions(horizon: int, test_sessions: int, min_train_sessions: int) -> int:
    """Labeled sessions one fold needs with the default purge and embargo: train + gap + one test block."""
    return min_train_sessions + 2 * horizon + test_sessions


def daily_rank_ic(frame: pl.DataFrame, prediction: str, label: str) -> pl.DataFrame:
    """`date` and `rank_ic` for every session with at least `MIN_SYMBOLS_PER_SESSION` usable rows."""
    usable = frame.filter(pl.col(prediction).is_not_null() & pl.col(label).is_not_null())
    return (
        usable.group_by("date")
        .agg(pl.len().alias("symbols"), pl.corr(prediction, label, method="spearman").alias("rank_ic"))
        .filter((pl.col("symbols") >= MIN_SYMBOLS_PER_SESSION) & pl.col("rank_ic").is_not_nan())
        .select("date", "rank_ic")
        .sort("date")
    )


def daily_decile_spread(frame: pl.DataFrame, prediction: str, label: str) -> pl.DataFrame:
    """`date` and `spread`: mean `label` of the top prediction decile minus that of the bottom decile."""
    usable = frame.filter(pl.col(prediction).is_not_null() & pl.col(label).is_not_null())
    decile = ((pl.col(prediction).rank("ordinal") - 1) * DECILES / pl.len()).floor().over("date").alias("decile")
    means = (
        usable.with_columns(decile)
        .group_by("date")
        .agg(
            pl.len().alias("symbols"),
            pl.col(label).filter(pl.col("decile") == DECILES - 1).mean().alias("top"),
            pl.col(label).filter(pl.col("decile") == 0).mean().alias("bottom"),
        )
    )
    return (
        means.filter(pl.col("symbols") >= MIN_SYMBOLS_PER_SESSION)
        .select("date", (pl.col("top") - pl.col("bottom")).alias("spread"))
        .sort("date")
    )


def evaluate(frame: pl.DataFrame, prediction: str, label: str) -> Metrics:
    """Rank IC, ICIR and decile spread of `prediction` against `label` over the sessions of `frame`."""
    ics = daily_rank_ic(frame, prediction, label).get_column("rank_ic")
    spreads = daily_decile_spread(frame, prediction, label).get_column("spread")
    mean_ic = as_float(ics.mean()) if ics.len() else math.nan
    deviation = as_float(ics.std()) if ics.len() > 1 else math.nan
    return Metrics(
        rank_ic=mean_ic,
        icir=mean_ic / deviation if deviation and not math.isnan(deviation) else math.nan,
        decile_spread=as_float(spreads.mean()) if spreads.len() else math.nan,
        sessions=ics.len(),
    )


def _rounded(value: float) -> float | None:
    """Six decimals for JSON; NaN (no usable session) becomes null, which JSON can represent."""
    return None if math.isnan(value) else round(value, 6)
