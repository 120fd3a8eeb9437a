"""Forward-return labels: close(t) → close(t + h) over h NYSE sessions, with no look-ahead.

`t + h` is the h-th *session* after t on the exchange calendar, not the h-th bar the symbol happens to
have: a symbol halted on session t + h has no close there, so it gets no label (null) rather than a
return over a longer, different window. A label never becomes zero for want of data; "unknown" and "flat"
are different facts and a model must not learn the second from the first.

Labels of session t exist only once the bars of t + max(HORIZONS) are in hand (`label_ready`), which is
what the `signal_outcomes` asset waits for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from technic_core import calendar, schema
from technic_core.errors import ConfigError
from technic_core.ml.features import centered_rank
from technic_core.scalars import as_date

#: Label horizons in sessions.
HORIZONS: tuple[int, ...] = (5, 10)


def label_column(horizon: int) -> str:
    """The outcomes column holding the `horizon`-session forward return."""
    if horizon not in HORIZONS:
        raise ConfigError(f"no label for horizon {horizon}; horizons: {', '.join(map(str, HORIZONS))}")
    return f"fwd_ret_{horizon}d"


def target_session(session: dt.date, horizon: int) -> dt.date | None:
    """The session `horizon` sessions after `session`, or None beyond the calendar's horizon."""
    ahead = calendar.sessions_between(session + dt.timedelta(days=1), session + dt.timedelta(days=2 * horizon + 10))
    return ahead[horizon - 1] if len(ahead) >= horizon else None


def label_ready(session: dt.date, bar_sessions: set[dt.date] | Sequence[dt.date]) -> bool:
    """True when the bars of every horizon's target session are available, i.e. all labels of `session`
    are known."""
    available = set(bar_sessions)
    targets = [target_session(session, horizon) for horizon in HORIZONS]
    return all(target is not None and target in available for target in targets)


def forward_returns(bars: pl.DataFrame, horizons: Sequence[int] = HORIZONS) -> pl.DataFrame:
    """`symbol`, `date` and `fwd_ret_<h>d` (simple return close(t+h)/close(t) − 1) for every bar of `bars`.

    Null where the symbol has no bar on session t + h — including every t + h beyond the panel's last
    session. Vectorized: one join per horizon on (symbol, target session).
    """
    columns = {"symbol": pl.String, "date": pl.Date, **{label_column(h): pl.Float64 for h in horizons}}
    if bars.height == 0:
        return pl.DataFrame(schema=columns)
    closes = bars.select("symbol", "date", "close")
    dates = closes.get_column("date")
    last = as_date(dates.max()) + dt.timedelta(days=3 * max(horizons) + 10)
    sessions = calendar.sessions_between(as_date(dates.min()), last)
    position = pl.DataFrame(
        {"date": sessions, "index": range(len(sessions))}, schema={"date": pl.Date, "index": pl.Int64}
    )
    indexed = closes.join(position, on="date", how="inner")
    labelled = indexed
    for horizon in horizons:
        future = indexed.select(
            "symbol", (pl.col("index") - horizon).alias("index"), pl.col("close").alias("future_close")
        )
        labelled = (
            labelled.join(future, on=["symbol", "index"], how="left")
            .with_columns((pl.col("future_close") / pl.col("close") - 1.0).alias(label_column(horizon)))
            .drop("future_close")
        )
    return labelled.select(list(columns)).sort("symbol", "date")


def session_outcomes(results: pl.DataFrame, bars: pl.DataFrame, session: dt.date) -> pl.DataFrame:
    """`schema.OUTCOMES` rows of `session`: each scanned symbol's signal, rating and realized forward returns.

    `results` are the session's scan results; `bars` must cover `session` and its target sessions (checked,
    so a caller cannot write a partition of half-known labels by mistake).
    """
    have = set(bars.get_column("date").unique().to_list()) if bars.height else set()
    if not label_ready(session, have):
        missing = [str(target_session(session, h)) for h in HORIZONS if target_session(session, h) not in have]
        raise ConfigError(f"labels of {session} need the bars of session(s) {', '.join(missing)}, not yet loaded")
    wanted = [session, *(target_session(session, h) for h in HORIZONS)]
    labels = forward_returns(bars.filter(pl.col("date").is_in(wanted))).filter(pl.col("date") == session)
    outcomes = (
        results.filter(pl.col("date") == session)
        .select("date", "symbol", "signal", "tech_rating")
        .join(labels, on=["symbol", "date"], how="left")
    )
    return schema.conform(outcomes, schema.OUTCOMES, "outcomes")


def ranked_label(column: str) -> pl.Expr:
    """Per-session percentile rank of a label, centered in (-0.5, 0.5); models regress on this.

    Why ranks: the cross-section of returns is fat-tailed and its dispersion swings with the regime; the
    ordering within a session is what a scan's ranking uses, and ranks weigh every session equally.
    """
    return centered_rank(column).over("date")
