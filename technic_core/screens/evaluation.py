"""Screens over the warehouse: their hits on stored results, and whether those hits paid.

One evaluation serves every caller: the Dagster assets (`screen_hits`, `screen_performance`), the API's
`?where=` filters, saved-screen hits and history, and the CLI. A screen is evaluated over a range of sessions
in one lazy query that reads only the columns it needs; `prev(x)` comes from a join of each row with the same
symbol's row on the previous NYSE session (a symbol without one gets null, so its `prev` comparisons are
false).

Evidence (`screen_outcomes`, `performance`): a labeled session's hits are joined with their realized forward
returns (`outcomes`, written only once t+10 exists, so nothing here looks ahead) and compared with the mean
of the whole scanned universe on the same session. Signal bands (`signal`, `consensus_signal`) are measured
the same way, and numeric ratings by their daily rank IC.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from technic_core import calendar, schema
from technic_core.ml.labels import HORIZONS, label_column
from technic_core.screens.language import Kind, Screen, column_kinds, compile, prev_name
from technic_core.screens.library import SavedScreen, ScreenLibrary
from technic_core.warehouse import Warehouse

#: Columns every hit row carries, whatever the screen reads.
KEY_COLUMNS = ("date", "symbol")
#: The order of a screen's hits when it names none: best TechRating first.
DEFAULT_SORT = ("tech_rating", True)
#: Numeric ratings whose daily rank IC is measured.
RATINGS = ("tech_rating", "consensus_rating", "alpha_score")
#: Categorical ratings whose bands are measured like screens.
BANDS = ("signal", "consensus_signal")
SCREEN, SIGNAL_BAND = "screen", "signal"


def result_columns() -> dict[str, Kind]:
    """What a screen over stored results may read: every results column a screen can use."""
    return column_kinds(schema.RESULTS)


def _read(
    store: Warehouse, columns: Iterable[str], first: dt.date, last: dt.date, *, with_previous: bool
) -> pl.LazyFrame:
    """Results of [first, last] with `columns` (and the keys); with `with_previous`, also the session before
    `first`, so the first session's rows find their previous-session row."""
    start = calendar.previous_session(first) if with_previous else first
    wanted = list(dict.fromkeys((*KEY_COLUMNS, *columns)))
    return store.scan("results", start, last).select(wanted)


def _join_previous(frame: pl.LazyFrame, columns: Sequence[str], first: dt.date, last: dt.date) -> pl.LazyFrame:
    """`frame` (sessions from the one before `first` to `last`) restricted to [first, last], with
    `prev_name(c)` for each of `columns`: the same symbol's value on the previous session."""
    sessions = calendar.sessions_between(calendar.previous_session(first), last)
    previous_of = pl.LazyFrame(
        {"date": sessions[1:], "_previous": sessions[:-1]}, schema={"date": pl.Date, "_previous": pl.Date}
    )
    prior = frame.select("symbol", pl.col("date").alias("_previous"), *(pl.col(c).alias(prev_name(c)) for c in columns))
    return (
        frame.filter(pl.col("date") >= first)
        .join(previous_of, on="date", how="left")
        .join(prior, on=["symbol", "_previous"], how="left")
        .drop("_previous")
    )


def _ordered(hits: pl.LazyFrame, sort: tuple[str, bool] | None) -> pl.LazyFrame:
    """Hits in each session's display order: the sort column (nulls last), then symbol."""
    column, descending = sort or DEFAULT_SORT
    return hits.sort(["date", column, "symbol"], descending=[False, descending, False], nulls_last=True)


def hits_between(
    store: Warehouse,
    screen: Screen,
    first: dt.date,
    last: dt.date,
    columns: Sequence[str] = (),
    sort: tuple[str, bool] | None = None,
) -> pl.LazyFrame:
    """The result rows of sessions [first, last] that `screen` selects, with `columns` besides the keys, in
    each session's display order (`sort`: column and descending, default best TechRating first)."""
    order = sort or DEFAULT_SORT
    reads = [*screen.columns, *columns, order[0]]
    if screen.prev_columns:
        frame = _read(store, [*reads, *screen.prev_columns], first, last, with_previous=True)
        frame = _join_previous(frame, sorted(screen.prev_columns), first, last)
    else:
        frame = _read(store, reads, first, last, with_previous=False)
    shown = list(dict.fromkeys((*KEY_COLUMNS, *columns, order[0])))
    return _ordered(screen.apply(frame), order).select(shown)


@dataclass(frozen=True)
class ScreenFailure:
    """A saved screen that could not be evaluated (e.g. it reads a column the stored results lack)."""

    screen: str
    message: str


def saved_screen_hits(
    store: Warehouse, screens: Sequence[SavedScreen], first: dt.date, last: dt.date
) -> tuple[pl.DataFrame, list[ScreenFailure]]:
    """Every screen's hits on every session of [first, last] (`schema.SCREEN_HITS`), with the screens that
    failed to evaluate; one query per screen over the whole range, so a backfill costs no more per session."""
    kinds = result_columns()
    frames: list[pl.DataFrame] = []
    failures: list[ScreenFailure] = []
    for saved in screens:
        try:
            screen = saved.compile(kinds)
            sort = (saved.sort_by, saved.descending) if saved.sort_by else None
            hits = hits_between(store, screen, first, last, sort=sort).select(KEY_COLUMNS).collect()
        except Exception as exc:  # noqa: BLE001 - one broken screen must not cost the other screens their hits
            failures.append(ScreenFailure(saved.name, str(exc)))
            continue
        frames.append(
            hits.with_columns(
                pl.lit(saved.name).alias("screen"),
                pl.lit(saved.version, dtype=pl.Int64).alias("screen_version"),
                pl.lit(saved.fingerprint).alias("screen_fingerprint"),
                pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("date").alias("rank"),
            )
        )
    hits = pl.concat(frames) if frames else schema.empty(schema.SCREEN_HITS)
    return schema.conform(hits, schema.SCREEN_HITS, "screens"), failures


# ------------------------------------------------------------------------------------------ evidence


def _labels() -> list[str]:
    return [label_column(horizon) for horizon in HORIZONS]


def screen_outcomes(
    hits: pl.DataFrame, outcomes: pl.DataFrame, results: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One labeled session's evidence: the forward returns of each screen hit and of each signal band's
    members against the session's universe mean (`schema.SCREEN_OUTCOMES`), and each rating's rank IC
    (`schema.RATING_IC`).

    `hits`: the session's `schema.SCREEN_HITS`; `outcomes`: its `schema.OUTCOMES` (the scanned universe with
    labels); `results`: its results with the band and rating columns (any missing one is skipped).
    """
    labels = _labels()
    universe = outcomes.select("date", "symbol", *labels)
    means = universe.select(pl.col(label).mean() for label in labels)
    excess = [
        (pl.col(label) - means.get_column(label)[0]).alias(label.replace("fwd_ret", "excess")) for label in labels
    ]
    parts = [
        hits.join(universe, on=["date", "symbol"], how="inner").select(
            "date",
            pl.lit(SCREEN).alias("kind"),
            pl.col("screen").alias("name"),
            "screen_version",
            "symbol",
            *labels,
        )
    ]
    members = universe.join(results.select("symbol", *(b for b in BANDS if b in results.columns)), on="symbol")
    for band in BANDS:
        if band in members.columns:
            parts.append(
                members.filter(pl.col(band).is_not_null()).select(
                    "date",
                    pl.lit(band).alias("kind"),
                    pl.col(band).alias("name"),
                    pl.lit(None, dtype=pl.Int64).alias("screen_version"),
                    "symbol",
                    *labels,
                )
            )
    evidence = pl.concat(parts, how="vertical_relaxed").with_columns(excess)
    return schema.conform(evidence, schema.SCREEN_OUTCOMES, "screen_outcomes"), _rating_ic(universe, results)


def _rating_ic(universe: pl.DataFrame, results: pl.DataFrame) -> pl.DataFrame:
    """Spearman correlation of each rating with each forward return across the session's symbols."""
    rows = []
    for rating in (r for r in RATINGS if r in results.columns):
        joined = universe.join(results.select("symbol", rating), on="symbol").drop_nulls(rating)
        row: dict[str, object] = {"rating": rating, "symbols": joined.height}
        for label in _labels():
            pairs = joined.drop_nulls(label)
            row[label.replace("fwd_ret", "rank_ic")] = _spearman(pairs.get_column(rating), pairs.get_column(label))
        rows.append(row)
    if not rows or universe.is_empty():
        return schema.empty(schema.RATING_IC)
    session = universe.get_column("date")[0]
    return schema.conform(
        pl.DataFrame(rows).with_columns(pl.lit(session, dtype=pl.Date).alias("date")), schema.RATING_IC, "rating_ic"
    )


def _spearman(left: pl.Series, right: pl.Series) -> float | None:
    """Rank correlation, or None when either side is constant or there are fewer than three pairs."""
    if left.len() < 3:
        return None
    value = pl.DataFrame({"a": left.rank(), "b": right.rank()}).select(pl.corr("a", "b")).item()
    return None if value is None or math.isnan(value) else float(value)


def session_evidence(store: Warehouse, session: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`screen_outcomes` of a stored, labeled session (its hits, outcomes and results)."""
    hits = store.read("screens", session, session) if store.has_partition("screens", session) else None
    results = store.scan("results", session, session)
    present = [c for c in (*BANDS, *RATINGS) if c in results.collect_schema().names()]
    return screen_outcomes(
        hits if hits is not None else schema.empty(schema.SCREEN_HITS),
        store.read("outcomes", session, session),
        results.select("symbol", *present).collect(),
    )


def performance(evidence: pl.DataFrame) -> pl.DataFrame:
    """Per (kind, name): sessions, hits, and for each horizon the hits' mean and median forward return, their
    mean excess over the universe, the share positive and the t-statistic of the daily mean excess.

    `evidence`: `schema.SCREEN_OUTCOMES` rows over any range of labeled sessions.
    """
    per_horizon = []
    for horizon in HORIZONS:
        ret, exc = label_column(horizon), label_column(horizon).replace("fwd_ret", "excess")
        per_horizon += [
            pl.col(ret).mean().alias(f"mean_{horizon}d"),
            pl.col(ret).median().alias(f"median_{horizon}d"),
            pl.col(exc).mean().alias(f"excess_{horizon}d"),
            (pl.col(ret) > 0).mean().alias(f"positive_{horizon}d"),
        ]
    summary = evidence.group_by("kind", "name").agg(
        pl.col("date").n_unique().alias("sessions"), pl.len().alias("hits"), *per_horizon
    )
    daily = evidence.group_by("kind", "name", "date").agg(
        pl.col(label_column(h).replace("fwd_ret", "excess")).mean().alias(f"daily_{h}d") for h in HORIZONS
    )
    t_stats = daily.group_by("kind", "name").agg(
        (pl.col(f"daily_{h}d").mean() / pl.col(f"daily_{h}d").std() * pl.len().sqrt()).alias(f"t_excess_{h}d")
        for h in HORIZONS
    )
    return summary.join(t_stats, on=["kind", "name"], how="left").sort("kind", "name")


def rating_performance(ic: pl.DataFrame) -> pl.DataFrame:
    """Per rating: sessions, mean daily rank IC and its information ratio (mean / std) for each horizon."""
    columns = [label_column(h).replace("fwd_ret", "rank_ic") for h in HORIZONS]
    return (
        ic.group_by("rating")
        .agg(
            pl.len().alias("sessions"),
            *(pl.col(c).mean().alias(f"mean_{c}") for c in columns),
            *((pl.col(c).mean() / pl.col(c).std()).alias(f"icir_{c.removeprefix('rank_ic_')}") for c in columns),
        )
        .sort("rating")
    )


def evidence_between(
    store: Warehouse, first: dt.date | None = None, last: dt.date | None = None, names: Mapping[str, str] | None = None
) -> pl.DataFrame:
    """Stored `screen_outcomes` rows of [first, last] (open where None), optionally only `names` (name → kind)."""
    if not store.sessions("screen_outcomes"):
        return schema.empty(schema.SCREEN_OUTCOMES)
    frame = store.scan("screen_outcomes", first, last)
    if names:
        wanted = pl.any_horizontal((pl.col("name") == name) & (pl.col("kind") == kind) for name, kind in names.items())
        frame = frame.filter(wanted)
    return frame.collect()


@dataclass(frozen=True)
class ResolvedScreen:
    """What a user named: a saved screen (with its own order) or an expression typed on the spot."""

    screen: Screen
    saved: SavedScreen | None = None

    @property
    def sort(self) -> tuple[str, bool] | None:
        if self.saved is None or self.saved.sort_by is None:
            return None
        return self.saved.sort_by, self.saved.descending


def resolve(library: ScreenLibrary, name_or_expression: str) -> ResolvedScreen:
    """A saved screen's name, else an expression over the result columns (`ScreenError` when it is neither)."""
    saved = library.load().screens.get(name_or_expression.strip())
    if saved is not None:
        return ResolvedScreen(saved.compile(result_columns()), saved)
    return ResolvedScreen(compile(name_or_expression, result_columns()))
