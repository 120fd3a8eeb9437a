"""Smart symbol prioritization: scan the symbols most likely to signal first, so the first Buy/Strong Buy
results reach users within the first batch and a scan can stop early without missing much.

A symbol's priority for session t is a weighted sum of four factor scores, each on 0–100 with 50 meaning
"no evidence either way", computed only from what is known *before* session t (so a plan can be built and
persisted before the session's bars arrive). Default weights 40/30/20/10 (`FactorWeights`).

What predicts today's signal
----------------------------
A signal is ``tech_rating ≥ 70`` (`scoring.SIGNAL_THRESHOLDS["Buy"]`). On the simulated market (5,000
names, 300 sessions) the day-over-day rating change behaves like a random-walk step with a spread of about
5 points: its lag-1 autocorrelation is ≈ 0.01, and extrapolating the last change or smoothing several past
ratings both rank *worse* than yesterday's rating alone; re-running the indicators on a "flat" bar for
today (to roll the windows forward) gains under half a point. So the strongest evidence is yesterday's rating
and its distance from the threshold measured in daily rating moves; older ratings and hit counts add
noise, not information. The rest is today's own move, which no plan made before the session can know:
ranking by the session's actual ratings would put only ~90 % of the signals in the first quarter on
average, because on many days more than a quarter of all names signal (`bench/prioritization.py`).

The factors are designed around that:

``historical_score`` (40 %) — past `results` partitions
    Each past rating r observed k sessions before t becomes the probability that it is a signal today if the
    rating has random-walked since: ``p = Φ((r + alpha tilt − 70) / (σ √k))``, σ being the pooled
    day-over-day rating spread measured in the history (default 5 when too little history). This one number
    is both a signal rate (it is the chance of a hit) and a signal quality (a rating far above the
    threshold is a near-certain hit). Observations are averaged with time-decay weights
    ``2^(−(k−1)/half_life)`` together with the neutral prior 0.5 at weight `prior_weight`, so a symbol
    never scanned gets 50 and an old observation fades into the prior. The default half-life is short
    (0.5 sessions) because longer ones measurably blur yesterday's rating. When a result carries an ML
    `alpha_score` (0–100, 50 neutral) it tilts the rating by up to ±`alpha_tilt` points.
``activity_score`` (30 %) — bars of the 22 sessions before t (never t itself)
    Mean of four saturated votes: 21-session momentum, close against its 20-session mean, volume surge
    (log of last volume over the 20-session mean, when positive) signed by the last move, and volatility
    (Parkinson, from the high/low ranges) relative to the session's median name: active names cross the
    threshold more often. Close to the
    rating's own inputs, so it agrees with the historical factor when both exist and carries the plan
    alone when there is no scan history yet.
``fundamental_score`` (20 %) — earnings events reported before t
    The latest report's surprise, saturated (``tanh(surprise / 5 %)``) and decayed by its age with a
    half-life of `fundamental_half_life_sessions`: a report after the close of t−1 moves the stock at t's
    open, which yesterday's rating cannot know. Reports on or after t are ignored (their surprise is not
    yet known). Without a report the score is a neutral 50 and `fundamental_reason` says why
    (`FUNDAMENTAL_REASONS`).
``setup_score`` (10 %) — the previous scan's indicators
    Position in the 20-session range (near the high votes +1) and indicator convergence: the share of
    close > SMA 50, SMA 50 > SMA 200, MACD > signal, RSI in 50–70 and positive one-month momentum, as a
    vote in [−1, 1].

Tiers: high above 70, low below 40, medium in between (`tier_of`).

Batch plan and exploration
--------------------------
Symbols are ranked by score; an `exploration_share` of them (default 10 %) is drawn, seeded per session,
uniformly from the symbols outside the high tier, and spread evenly through the plan, so every batch holds
that share of explorers. Explorers find the unexpected opportunities score order would reach late, and give
the reordering an unbiased look at the lower tiers early in the scan. Every symbol appears exactly once. The
price, measured: about 4 percentage points of the first-quarter share.

Dynamic reordering
------------------
`SectorHitRateReorder` (a `ScanHooks.reorder`) re-ranks the symbols not yet scanned after each batch by the
hit rates seen so far per sector and industry, *relative to what their priority tiers predicted* (hits
among scanned high-tier symbols are expected; a sector hitting more than its tier mix implies is hot today).
Explorers keep their slots. On the simulated market it changes little (+0.02 percentage points of the
first-quarter share): sector moves there are small next to each stock's own, so that even knowing every sector's rating
drift of the day exactly would add only ~0.3 points. It is meant for real markets' sector days, and
`PriorityConfig.reorder` switches it off.

Everything is vectorized in polars over all symbols at once; no Python loop runs per symbol.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import polars as pl
from pydantic import Field, field_validator, model_validator

from technic_core import calendar, schema
from technic_core.config import StrictModel
from technic_core.scoring import BUY_SIGNALS, SIGNAL_THRESHOLDS

_log = logging.getLogger(__name__)

#: polars engine of every query here. The default (streaming) engine sums a group's floats in an order that
#: varies run to run (differences near 1e-13), and a re-materialized plan must be byte-identical; the
#: in-memory engine sums in row order.
_ENGINE = "in-memory"

#: The rating at which a symbol signals (Buy); what the plan tries to find early.
SIGNAL_THRESHOLD = SIGNAL_THRESHOLDS["Buy"]
#: A factor score meaning "no evidence either way".
NEUTRAL_SCORE = 50.0
#: Tier bounds on priority_score: high strictly above, low strictly below, medium in between (inclusive).
HIGH_TIER_ABOVE = 70.0
LOW_TIER_BELOW = 40.0
TIER_HIGH, TIER_MEDIUM, TIER_LOW = "high", "medium", "low"
TIERS = (TIER_HIGH, TIER_MEDIUM, TIER_LOW)

#: Day-over-day rating spread assumed until the history holds enough consecutive ratings to measure it.
DEFAULT_RATING_DAILY_STD = 5.0
#: Consecutive rating pairs needed before the measured spread replaces the default.
MIN_RATING_CHANGES = 30
#: Bounds on the measured spread, so a degenerate history cannot make every probability 0 or 1.
RATING_DAILY_STD_BOUNDS = (1.0, 25.0)
#: Factor of the logistic approximation of the normal CDF, Φ(z) ≈ 1 / (1 + e^(−1.702 z)) (error < 0.01).
_LOGISTIC_PROBIT = 1.702

#: Sessions of bars the activity factor reads: 21-session momentum needs 22 closes.
MOMENTUM_SESSIONS = 21
ACTIVITY_SESSIONS = MOMENTUM_SESSIONS + 1
#: Window of the volume mean, the close mean and the volatility.
ACTIVITY_WINDOW = 20
#: Input values that make a vote tanh(1) ≈ 0.76: about one typical cross-sectional sigma.
MOMENTUM_SCALE = 0.10
TREND_SCALE = 0.03
VOLUME_SURGE_SCALE = 1.0
#: Percent surprise that makes the fundamental vote tanh(1); the simulated median |surprise| is ≈ 5 %.
SURPRISE_SCALE = 5.0

#: RSI band the setup factor counts as bullish but not overbought.
SETUP_RSI_BAND = (50.0, 70.0)

#: `fundamental_reason` values: why a symbol's fundamental score is what it is.
REASON_SURPRISE = "earnings_surprise"
REASON_NO_SURPRISE = "report_without_surprise"
REASON_NO_REPORT = "no_recent_report"
REASON_NO_SOURCE = "source_has_no_earnings"
FUNDAMENTAL_REASONS = (REASON_SURPRISE, REASON_NO_SURPRISE, REASON_NO_REPORT, REASON_NO_SOURCE)

#: Result columns the historical and setup factors read from past `results` partitions.
HISTORY_COLUMNS = (
    "date", "symbol", "tech_rating", "alpha_score", "close", "sma_50", "sma_200", "macd", "macd_signal",
    "rsi", "mom_21", "dist_high_20", "dist_low_20",
)

FACTOR_COLUMNS = ("historical_score", "activity_score", "fundamental_score", "setup_score")
FUNDAMENTAL_SCHEMA = {"symbol": pl.String, "fundamental_score": pl.Float64, "fundamental_reason": pl.String}


class FactorWeights(StrictModel):
    """Weight of each factor in priority_score: none negative, summing to 1 (so the score stays on 0–100)."""

    historical: float = 0.40
    activity: float = 0.30
    fundamental: float = 0.20
    setup: float = 0.10

    @field_validator("historical", "activity", "fundamental", "setup")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if not value >= 0:  # also rejects NaN
            raise ValueError(f"must be a number ≥ 0, got {value}")
        return value

    @model_validator(mode="after")
    def _sum_to_one(self) -> "FactorWeights":
        total = self.historical + self.activity + self.fundamental + self.setup
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ValueError(
                f"weights must sum to 1, got {total:g} (historical {self.historical:g} + activity "
                f"{self.activity:g} + fundamental {self.fundamental:g} + setup {self.setup:g})"
            )
        return self

    def as_dict(self) -> dict[str, float]:
        """Weight by factor score column."""
        return dict(zip(FACTOR_COLUMNS, (self.historical, self.activity, self.fundamental, self.setup)))


class PriorityConfig(StrictModel):
    """How priorities are scored and planned. Build from untrusted input with `config.validated`, which turns
    a bad field into a `ConfigError` naming it."""

    weights: FactorWeights = Field(default_factory=FactorWeights)
    half_life_sessions: float = Field(
        0.5, gt=0, le=260, description="age (sessions) at which a past rating counts half as much as yesterday's"
    )
    history_sessions: int = Field(5, ge=1, le=260, description="past sessions of results the history reads")
    prior_weight: float = Field(
        0.01, ge=0, description="weight of the neutral prior, in units of a one-session-old observation"
    )
    alpha_tilt: float = Field(
        2.5, ge=0, le=30, description="rating points an alpha_score of 100 adds (and one of 0 takes away)"
    )
    fundamental_half_life_sessions: float = Field(1.0, gt=0, le=260, description="half-life of a surprise")
    earnings_lookback_sessions: int = Field(10, ge=1, le=260, description="sessions back a report still counts")
    exploration_share: float = Field(0.10, ge=0, le=0.5, description="share of each batch drawn from lower tiers")
    seed: int = Field(0, ge=0, description="seed of the exploration draw (combined with the session)")
    reorder: bool = Field(True, description="re-rank after each batch by sector and industry hit rates")
    reorder_strength: float = Field(20.0, ge=0, description="priority points per e-fold of a group's hit lift")
    reorder_prior_hits: float = Field(5.0, gt=0, description="pseudo-hits shrinking a group's lift toward 1")


# --------------------------------------------------------------------------------------------- factors


def _normal_cdf(z: pl.Expr) -> pl.Expr:
    return 1.0 / (1.0 + (-_LOGISTIC_PROBIT * z).exp())


def _vote(value: pl.Expr, scale: float) -> pl.Expr:
    """A continuous vote in (−1, 1); NaN (0 / 0) counts as missing."""
    return (value / scale).tanh().fill_nan(None)


def _sign_vote(condition: pl.Expr) -> pl.Expr:
    """+1 when `condition` holds, −1 when not, null when it cannot be judged."""
    return condition.cast(pl.Float64) * 2.0 - 1.0


def _from_votes(*votes: pl.Expr) -> pl.Expr:
    """50 + 50 × the mean of the available votes; 50 when none is available."""
    return (NEUTRAL_SCORE + NEUTRAL_SCORE * pl.mean_horizontal(*votes)).fill_null(NEUTRAL_SCORE)


def _session_ages(session: dt.date, count: int) -> pl.LazyFrame:
    """The `count` sessions before `session` with their age: 1 for the previous session, 2 before it, …"""
    days = calendar.sessions_back(calendar.previous_session(session), count)
    return pl.LazyFrame({"date": days, "age": np.arange(len(days), 0, -1)}, schema={"date": pl.Date, "age": pl.Int64})


def _historical(history: pl.DataFrame, session: dt.date, config: PriorityConfig) -> pl.LazyFrame:
    past = (
        history.lazy()
        .select("date", "symbol", "tech_rating", "alpha_score")
        .join(_session_ages(session, config.history_sessions), on="date")
        .filter(pl.col("tech_rating").is_not_null())
    )
    tilt = ((pl.col("alpha_score") - 50.0) / 50.0).clip(-1.0, 1.0).fill_null(0.0)
    projected = pl.col("tech_rating") + config.alpha_tilt * tilt
    spread = pl.col("rating_daily_std") * pl.col("age").cast(pl.Float64).sqrt()
    weight = 0.5 ** ((pl.col("age") - 1) / config.half_life_sessions)
    prior = config.prior_weight
    return (
        past.join(_rating_daily_std(past), how="cross")
        .select("symbol", (weight * _normal_cdf((projected - SIGNAL_THRESHOLD) / spread)).alias("evidence"),
                weight.alias("weight"))
        .group_by("symbol")
        .agg(pl.col("evidence", "weight").sum())
        .select(
            "symbol",
            (100.0 * (pl.col("evidence") + 0.5 * prior) / (pl.col("weight") + prior)).alias("historical_score"),
        )
    )


def _rating_daily_std(past: pl.LazyFrame) -> pl.LazyFrame:
    """One row, `rating_daily_std`: the pooled spread of the newest day-over-day rating changes in `past`.

    Pooled, because one symbol's handful of changes is mostly noise; from the newest pair of consecutive
    sessions only, because thousands of symbols are plenty and the plan stays cheap. Falls back to
    `DEFAULT_RATING_DAILY_STD` with fewer than `MIN_RATING_CHANGES` symbols rated on both sessions.
    """
    newest = past.filter(pl.col("age") == pl.col("age").min())
    before = past.filter(pl.col("age") == pl.col("age").min() + 1).select(
        "symbol", pl.col("tech_rating").alias("before")
    )
    change = pl.col("tech_rating") - pl.col("before")
    return newest.join(before, on="symbol").select(
        pl.when(pl.len() >= MIN_RATING_CHANGES)
        .then(change.std().clip(*RATING_DAILY_STD_BOUNDS))
        .otherwise(DEFAULT_RATING_DAILY_STD)
        .alias("rating_daily_std")
    )


def _activity(bars: pl.DataFrame, session: dt.date) -> pl.LazyFrame:
    window = calendar.sessions_back(calendar.previous_session(session), ACTIVITY_SESSIONS)
    date, close, volume = pl.col("date"), pl.col("close"), pl.col("volume")
    recent = date >= window[-ACTIVITY_WINDOW]
    per_symbol = (
        bars.lazy()
        .filter(date.is_between(window[0], window[-1]))
        .select(
            "symbol",
            pl.when(date == window[-1]).then(close).alias("last"),
            pl.when(date == window[-2]).then(close).alias("previous"),
            pl.when(date == window[0]).then(close).alias("month_ago"),
            pl.when(date == window[-1]).then(volume).alias("last_volume"),
            pl.when(recent).then(close).alias("recent_close"),
            pl.when(recent).then(volume).alias("recent_volume"),
            pl.when(recent).then((pl.col("high") / pl.col("low")).log().pow(2)).alias("range_variance"),
        )
        .group_by("symbol")
        .agg(
            pl.col("last", "previous", "month_ago", "last_volume").max(),
            pl.col("recent_close", "recent_volume", "range_variance").mean(),
            pl.col("recent_close").count().alias("recent_bars"),
        )
    )
    full = pl.col("recent_bars") == ACTIVITY_WINDOW
    surge = (pl.col("last_volume") / pl.when(full).then(pl.col("recent_volume"))).log().clip(lower_bound=0.0)
    direction = (pl.col("last") - pl.col("previous")).sign()
    relative_volatility = (pl.col("range_variance") / pl.col("range_variance").median()).sqrt() - 1.0
    return per_symbol.select(
        "symbol",
        _from_votes(
            _vote(pl.col("last") / pl.col("month_ago") - 1.0, MOMENTUM_SCALE),
            _vote(pl.col("last") / pl.when(full).then(pl.col("recent_close")) - 1.0, TREND_SCALE),
            _vote(surge * direction, VOLUME_SURGE_SCALE),
            _vote(relative_volatility, 1.0),
        ).alias("activity_score"),
    )


def _fundamental(earnings: pl.DataFrame | None, session: dt.date, config: PriorityConfig) -> pl.LazyFrame:
    if earnings is None:
        return pl.LazyFrame(schema=FUNDAMENTAL_SCHEMA)
    # A report dated d (after that day's close) moves the stock at the first session after d; its age is that
    # session's age + 1, so a report after the previous close has age 1 and counts in full.
    reacts = pl.concat(
        [_session_ages(session, config.earnings_lookback_sessions),
         pl.LazyFrame({"date": [session], "age": [0]}, schema={"date": pl.Date, "age": pl.Int64})]
    ).rename({"date": "reacts", "age": "reacts_age"})
    first = calendar.sessions_back(calendar.previous_session(session), config.earnings_lookback_sessions)[0]
    latest = (
        earnings.lazy()
        .filter(pl.col("date").is_between(first, session, closed="left"))
        .group_by("symbol")
        .agg(pl.col("date", "surprise_pct").sort_by("date").last())
        .sort("date")
        .join_asof(reacts, left_on="date", right_on="reacts", strategy="forward", allow_exact_matches=False)
    )
    surprise = pl.col("surprise_pct")
    fade = 0.5 ** (pl.col("reacts_age") / config.fundamental_half_life_sessions)
    return latest.select(
        "symbol",
        (NEUTRAL_SCORE + NEUTRAL_SCORE * _vote(surprise, SURPRISE_SCALE) * fade)
        .fill_null(NEUTRAL_SCORE)
        .alias("fundamental_score"),
        pl.when(surprise.is_null())
        .then(pl.lit(REASON_NO_SURPRISE))
        .otherwise(pl.lit(REASON_SURPRISE))
        .alias("fundamental_reason"),
    )


def _setup(history: pl.DataFrame, session: dt.date) -> pl.LazyFrame:
    previous = history.lazy().filter(pl.col("date") < session)
    latest = previous.filter(pl.col("date") == pl.col("date").max())
    above_low, below_high = pl.col("dist_low_20").abs(), pl.col("dist_high_20").abs()
    convergence = pl.mean_horizontal(
        _sign_vote(pl.col("close") > pl.col("sma_50")),
        _sign_vote(pl.col("sma_50") > pl.col("sma_200")),
        _sign_vote(pl.col("macd") > pl.col("macd_signal")),
        _sign_vote(pl.col("rsi").is_between(*SETUP_RSI_BAND)),
        _sign_vote(pl.col("mom_21") > 0),
    )
    range_position = (2.0 * above_low / (above_low + below_high) - 1.0).fill_nan(None)
    return latest.select("symbol", _from_votes(range_position, convergence).alias("setup_score"))


def historical_scores(history: pl.DataFrame, session: dt.date, config: PriorityConfig) -> pl.DataFrame:
    """`symbol`, `historical_score` of every symbol rated in the `config.history_sessions` sessions before
    `session`; `history` holds `results` rows of any sessions. Symbols never rated there are absent (the
    neutral prior, in `score_symbols`). The model is in the module docstring."""
    return _historical(history, session, config).collect(engine=_ENGINE)


def activity_scores(bars: pl.DataFrame, session: dt.date) -> pl.DataFrame:
    """`symbol`, `activity_score` from the bars of the `ACTIVITY_SESSIONS` sessions before `session`.

    Bars of `session` itself (and later) are ignored, so the score exists before the session ends. Every
    figure is a masked aggregate over calendar sessions rather than over each symbol's sorted bars — sorting
    the panel would cost more than the whole rest of the plan — so a vote whose inputs are missing (a young
    symbol, a halt on a session it reads) drops out of the mean, and volatility is the Parkinson estimate
    from each bar's high/low range, which needs no previous bar.
    """
    return _activity(bars, session).collect(engine=_ENGINE)


def fundamental_scores(earnings: pl.DataFrame | None, session: dt.date, config: PriorityConfig) -> pl.DataFrame:
    """`symbol`, `fundamental_score`, `fundamental_reason` of symbols with a report in the
    `config.earnings_lookback_sessions` sessions before `session`.

    `earnings` holds `schema.EARNINGS` rows of any date range, or is None when the source has no earnings at
    all (`score_symbols` then records `REASON_NO_SOURCE`). Reports dated on or after `session` are ignored: a
    source may already know their surprise, a plan made before the session may not.
    """
    return _fundamental(earnings, session, config).collect(engine=_ENGINE)


def setup_scores(history: pl.DataFrame, session: dt.date) -> pl.DataFrame:
    """`symbol`, `setup_score` from the newest scan before `session` in `history` (`results` rows); symbols
    that scan did not rate are absent (neutral in `score_symbols`)."""
    return _setup(history, session).collect(engine=_ENGINE)


def tier_of(score: pl.Expr) -> pl.Expr:
    """The priority tier of a score expression: high > 70, low < 40, medium otherwise."""
    return (
        pl.when(score > HIGH_TIER_ABOVE)
        .then(pl.lit(TIER_HIGH))
        .when(score < LOW_TIER_BELOW)
        .then(pl.lit(TIER_LOW))
        .otherwise(pl.lit(TIER_MEDIUM))
    )


def _combined(factors: pl.LazyFrame, config: PriorityConfig) -> pl.LazyFrame:
    """`factors` with neutral fills, `priority_score` and `priority_tier`."""
    weighted = pl.sum_horizontal(pl.col(name) * weight for name, weight in config.weights.as_dict().items())
    return (
        factors.with_columns(pl.col(*FACTOR_COLUMNS).fill_null(NEUTRAL_SCORE))
        .with_columns(weighted.alias("priority_score"))
        .with_columns(tier_of(pl.col("priority_score")).alias("priority_tier"))
    )


def score_symbols(
    symbols: pl.Series | list[str],
    history: pl.DataFrame,
    bars: pl.DataFrame,
    earnings: pl.DataFrame | None,
    session: dt.date,
    config: PriorityConfig,
) -> pl.DataFrame:
    """Factor scores, `fundamental_reason`, `priority_score` and `priority_tier` of each of `symbols`.

    `history` holds past `results` rows, `bars` and `earnings` any range: each factor reads only what
    precedes `session`. A symbol a factor knows nothing about gets its neutral 50, so a session with no
    history at all still gets valid scores. The four factors are planned and collected as one query.
    """
    no_report = REASON_NO_SOURCE if earnings is None else REASON_NO_REPORT
    factors = (
        pl.LazyFrame({"symbol": symbols}, schema={"symbol": pl.String})
        .unique(maintain_order=True)
        .join(_historical(history, session, config), on="symbol", how="left", maintain_order="left")
        .join(_activity(bars, session), on="symbol", how="left", maintain_order="left")
        .join(_fundamental(earnings, session, config), on="symbol", how="left", maintain_order="left")
        .join(_setup(history, session), on="symbol", how="left", maintain_order="left")
        .with_columns(pl.col("fundamental_reason").fill_null(pl.lit(no_report)))
    )
    return _combined(factors, config).collect(engine=_ENGINE)


# ------------------------------------------------------------------------------------------------ plan


def build_plan(scores: pl.DataFrame, session: dt.date, batch_size: int, config: PriorityConfig) -> pl.DataFrame:
    """The `schema.PRIORITY` plan of `session` from `score_symbols` output: every symbol exactly once.

    Score order (ties by symbol) with `exploration_share` of the symbols drawn uniformly, seeded by
    (`config.seed`, session), from outside the high tier. The two streams are merged by evenly spaced keys —
    the k-th of n exploited symbols at (k + ½) / n, the j-th of m explorers at (j + ½) / m — so every batch
    of `batch_size` holds the exploration share, and an exploited symbol comes first.
    """
    ranked = scores.sort(["priority_score", "symbol"], descending=[True, False], nulls_last=True)
    count = ranked.height
    pool = ranked.get_column("priority_tier").ne(TIER_HIGH).arg_true().to_numpy()
    explorer_count = min(round(config.exploration_share * count), len(pool))
    explorers = pool[np.random.default_rng([config.seed, session.toordinal()]).permutation(len(pool))[:explorer_count]]
    exploring = np.zeros(count, dtype=bool)
    exploring[explorers] = True
    key = np.empty(count)
    key[~exploring] = (np.arange(count - explorer_count) + 0.5) / max(count - explorer_count, 1)
    key[explorers] = (np.arange(explorer_count) + 0.5) / max(explorer_count, 1)
    order = np.lexsort((exploring, key))
    rank = pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
    _log.debug("plan of %s: %d symbols, %d explorers from a pool of %d", session, count, explorer_count, len(pool))
    return schema.conform(
        ranked[order].with_columns(
            pl.lit(session, dtype=pl.Date).alias("date"),
            pl.Series("exploration", exploring[order]),
            rank.alias("rank"),
            ((rank - 1) // batch_size).alias("batch"),
        ),
        schema.PRIORITY,
        "priority",
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
    screened = universe.filter(pl.col("passed")).get_column("symbol")
    return build_plan(score_symbols(screened, history, bars, earnings, session, config), session, batch_size, config)


def refresh_plan(
    plan: pl.DataFrame, history: pl.DataFrame, session: dt.date, batch_size: int, config: PriorityConfig
) -> pl.DataFrame:
    """`plan` re-scored with the current `history`, keeping its activity and fundamental factors.

    Why: a single-run backfill materializes every session's plan before any session's scan, so a stored plan
    may predate the previous session's results. The two factors that read results are recomputed; the two
    that need bars and earnings (which the scan does not load) are kept as stored.
    """
    factors = (
        plan.lazy()
        .select("symbol", "activity_score", "fundamental_score", "fundamental_reason")
        .join(_historical(history, session, config), on="symbol", how="left", maintain_order="left")
        .join(_setup(history, session), on="symbol", how="left", maintain_order="left")
    )
    return build_plan(_combined(factors, config).collect(engine=_ENGINE), session, batch_size, config)


# ------------------------------------------------------------------------------------------ reordering


class SectorHitRateReorder:
    """A `ScanHooks.reorder`: after each batch, move symbols of sectors and industries that signal more often
    than their priority tiers predicted ahead, and those that signal less behind.

    Lift of a group = (hits + κ) / (expected + κ), where a scanned symbol's expected hit is the hit rate so
    far of its tier (indirect standardization: a sector scanned mostly from the high tier is not "hot" for
    hitting often), and κ = `reorder_prior_hits` shrinks small groups toward 1. An industry's lift is measured
    against its sector's, and the two multiply. A remaining symbol's score becomes
    ``priority_score + strength × ln(lift)``; the exploited symbols are re-sorted by it while explorers (and
    symbols the plan does not know) keep their slots.

    Why the bookkeeping: the hook runs after every batch on the scan's critical path, so it keeps running
    counts per group (only the newest batch's results are read), holds the symbols as integer indices, and
    recognises the list it returned last time instead of re-reading thousands of strings. `elapsed_s` and
    `calls` record its own cost, for the overhead metric.
    """

    def __init__(self, plan: pl.DataFrame, reference: pl.DataFrame, config: PriorityConfig) -> None:
        industry = pl.concat_str(pl.col("sector").fill_null(""), pl.col("industry").fill_null(""), separator="\x1f")
        groups = (
            plan.lazy()
            .select("symbol", "priority_score", "priority_tier", "exploration", "rank")
            .join(reference.lazy().select("symbol", "sector", "industry"), on="symbol", how="left")
            .select(
                "symbol", "priority_score", "exploration", "rank",
                (pl.col("sector").fill_null("").rank("dense").cast(pl.Int64) - 1).alias("sector"),
                (industry.rank("dense").cast(pl.Int64) - 1).alias("industry"),
                pl.col("priority_tier").replace_strict(TIERS, range(len(TIERS)), default=len(TIERS) - 1,
                                                       return_dtype=pl.Int64).alias("tier"),
            )
            .sort("symbol")
            .collect(engine=_ENGINE)
        )
        # Sorted by symbol, so a symbol's index is also its place in the lookup table (until one is adopted).
        self._symbols = groups.get_column("symbol").to_numpy()
        # Fixed-width copies for lookups: numpy compares those in C, object arrays one Python call at a time.
        self._sorted_symbols, self._sorted_index = self._symbols.astype(str), np.arange(groups.height)
        self._score = groups.get_column("priority_score").to_numpy()
        self._rank = groups.get_column("rank").to_numpy()
        self._pinned = groups.get_column("exploration").to_numpy().astype(bool)
        self._tier = groups.get_column("tier").to_numpy()
        self._sector = groups.get_column("sector").to_numpy()
        self._industry = groups.get_column("industry").to_numpy()
        self._planned = groups.height
        sectors = int(self._sector.max(initial=-1)) + 1
        industries = int(self._industry.max(initial=-1)) + 1
        self._industry_sector = np.zeros(industries, dtype=np.int64)
        self._industry_sector[self._industry] = self._sector
        # running counts: [scanned, hits] per tier, and per group × tier with hits per group
        self._by_tier = np.zeros((2, len(TIERS)))
        self._sector_counts = np.zeros((sectors, len(TIERS)))
        self._sector_hits = np.zeros(sectors)
        self._industry_counts = np.zeros((industries, len(TIERS)))
        self._industry_hits = np.zeros(industries)
        self._strength = config.reorder_strength
        self._prior_hits = config.reorder_prior_hits
        self._results_seen = 0
        # The plan's own order counts as "returned last time", so a scan that follows the plan takes the
        # cheap path from its first call on.
        self._returned_index = np.argsort(self._rank)
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
        reordered[movable] = candidates[np.lexsort((self._rank[candidates], -adjusted))]
        self._returned_index, self._returned = reordered, self._symbols[reordered].tolist()
        self.calls += 1
        self.elapsed_s += time.perf_counter() - started
        return self._returned

    def _count(self, batch: pl.DataFrame) -> None:
        """Add one batch's results to the running hit counts per tier, sector and industry."""
        index = self._lookup(batch.get_column("symbol").to_numpy())
        planned = (index >= 0) & (index < self._planned)
        index = index[planned]
        hits = np.isin(batch.get_column("signal").to_numpy()[planned], BUY_SIGNALS).astype(float)
        tier = self._tier[index]
        np.add.at(self._by_tier, (0, tier), 1.0)
        np.add.at(self._by_tier, (1, tier), hits)
        np.add.at(self._sector_counts, (self._sector[index], tier), 1.0)
        np.add.at(self._sector_hits, self._sector[index], hits)
        np.add.at(self._industry_counts, (self._industry[index], tier), 1.0)
        np.add.at(self._industry_hits, self._industry[index], hits)

    def _industry_log_lift(self) -> np.ndarray:
        """ln(sector lift × industry-within-sector lift) per industry code."""
        rate = self._by_tier[1] / np.maximum(self._by_tier[0], 1.0)
        kappa = self._prior_hits
        sector_lift = (self._sector_hits + kappa) / (self._sector_counts @ rate + kappa)
        lift_of_sector = sector_lift[self._industry_sector]
        industry_expected = (self._industry_counts @ rate) * lift_of_sector
        return np.log(lift_of_sector * (self._industry_hits + kappa) / (industry_expected + kappa))

    def _indices(self, remaining: list[str]) -> np.ndarray:
        """Indices of `remaining`: a tail of the list returned last time (a list comparison, cheap while the
        strings are the very objects handed out), else looked up, symbols outside the plan adopted first."""
        consumed = len(self._returned) - len(remaining)
        if consumed >= 0 and self._returned[consumed:] == remaining:
            return self._returned_index[consumed:]
        symbols = np.array(remaining, dtype=object)
        index = self._lookup(symbols)
        if (index < 0).any():
            self._adopt(symbols[index < 0])
            index = self._lookup(symbols)
        return index

    def _lookup(self, symbols: np.ndarray) -> np.ndarray:
        """Index of each symbol, −1 where unknown."""
        found = _sorted_position(self._sorted_symbols, symbols)
        return np.where(found >= 0, self._sorted_index[found], -1)

    def _adopt(self, symbols: np.ndarray) -> None:
        """Give symbols outside the plan (a scan may add screened symbols a stale plan lacks) pinned places
        after the planned ones: they keep their slots, and their results are not counted, having no tier."""
        self._symbols = np.concatenate([self._symbols, symbols])
        self._pinned = np.concatenate([self._pinned, np.ones(len(symbols), dtype=bool)])
        self._sorted_index = np.argsort(self._symbols.astype(str))
        self._sorted_symbols = self._symbols.astype(str)[self._sorted_index]


def _sorted_position(sorted_symbols: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """Position of each of `symbols` in `sorted_symbols` (a sorted fixed-width string array), −1 where absent.

    A binary search in C: the hooks that call it run after every batch on the scan's critical path, where
    a join would rebuild a hash table of the whole plan each time.
    """
    if not len(sorted_symbols) or not len(symbols):
        return np.full(len(symbols), -1, dtype=np.int64)
    symbols = symbols.astype(str)
    found = np.minimum(np.searchsorted(sorted_symbols, symbols), len(sorted_symbols) - 1)
    return np.where(sorted_symbols[found] == symbols, found, -1)


_ANNOTATION_COLUMNS = ("priority_score", "priority_tier")


class PlanAnnotator:
    """A `ScanHooks.enrich`: each result gets its `priority_score` and `priority_tier` from the plan it was
    scanned under, so the plan travels with the result to the warehouse and the streams; symbols the plan
    lacks get nulls. The plan is sorted once; `elapsed_s` is its cost, part of the prioritization overhead."""

    def __init__(self, plan: pl.DataFrame) -> None:
        ordered = plan.select("symbol", *_ANNOTATION_COLUMNS).sort("symbol")
        self._symbols = ordered.get_column("symbol").to_numpy().astype(str)
        self._score = ordered.get_column("priority_score").to_numpy()
        self._tier = ordered.get_column("priority_tier").to_numpy()
        self.elapsed_s = 0.0

    def __call__(self, results: pl.DataFrame) -> pl.DataFrame:
        started = time.perf_counter()
        found = _sorted_position(self._symbols, results.get_column("symbol").to_numpy())
        known = found >= 0
        score = np.where(known, self._score[found], np.nan) if len(self._symbols) else np.full(len(found), np.nan)
        tier = np.where(known, self._tier[found], None) if len(self._symbols) else np.full(len(found), None)
        # Built from its columns: `with_columns` on a 35-column batch costs several times the lookup itself.
        kept = [results.get_column(name) for name in results.columns if name not in _ANNOTATION_COLUMNS]
        annotated = pl.DataFrame([
            *kept,
            pl.Series("priority_score", score, dtype=pl.Float64, nan_to_null=True),
            pl.Series("priority_tier", tier, dtype=pl.String),
        ])
        self.elapsed_s += time.perf_counter() - started
        return annotated


# --------------------------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class OrderMetrics:
    """How early a visiting order met the session's signals.

    Counts include the signal's own symbol, so a signal scanned first counts 1 (and a ratio against random
    order stays defined); None when the scan met fewer signals.
    """

    signals: int
    share_signals_first_quarter: float | None
    symbols_to_first_signal: int | None
    symbols_to_fifth_signal: int | None


def order_metrics(positions: pl.DataFrame, scanned: int) -> OrderMetrics:
    """Metrics of a visiting order from `positions` (`position`: 0-based index in the order, `hit`: bool) of
    the scanned symbols; `scanned` counts every symbol visited, rated or not."""
    hits = positions.filter(pl.col("hit")).get_column("position").sort()
    count = hits.len()
    return OrderMetrics(
        signals=count,
        share_signals_first_quarter=float((hits < 0.25 * scanned).mean()) if count else None,
        symbols_to_first_signal=int(hits[0]) + 1 if count >= 1 else None,
        symbols_to_fifth_signal=int(hits[4]) + 1 if count >= 5 else None,
    )


def scan_positions(results: pl.DataFrame, batch_size: int) -> pl.DataFrame:
    """`symbol`, `position`, `hit` of a scan's results: batch × batch_size + the row's place in its batch's
    publication (`seq`) order — what a stream consumer sees. Rejected symbols leave no row, so within a batch
    they are not counted."""
    return results.select(
        "symbol",
        (pl.col("batch") * batch_size + pl.col("seq").rank("ordinal").over("batch") - 1).cast(pl.Int64).alias(
            "position"
        ),
        pl.col("signal").is_in(BUY_SIGNALS).fill_null(False).alias("hit"),
    )


def session_metrics(
    plan: pl.DataFrame,
    results: pl.DataFrame,
    scanned: int,
    batch_size: int,
    prioritization_s: float | None = None,
    scan_s: float | None = None,
) -> dict[str, float | int | None]:
    """Per-session prioritization metrics of a scan that followed `plan`.

    Share of the signals found in the first 25 % of the `scanned` symbols, symbols scanned up to the first
    and fifth signal, the signal rate per tier of the plan (None for an empty tier) and, given the time spent
    on prioritization and the scan's duration, the overhead as % of scan time.
    """
    measured = order_metrics(scan_positions(results, batch_size), scanned)
    by_tier = (
        results.select("symbol", pl.col("signal").is_in(BUY_SIGNALS).fill_null(False).alias("hit"))
        .join(plan.select("symbol", "priority_tier"), on="symbol", how="left")
        .group_by("priority_tier")
        .agg(pl.col("hit").mean().alias("rate"), pl.len().alias("count"))
    )
    rates = {tier: rate for tier, rate, _ in by_tier.iter_rows()}
    counts = {tier: count for tier, _, count in by_tier.iter_rows()}
    overhead = 100.0 * prioritization_s / scan_s if prioritization_s is not None and scan_s else None
    return {
        "signals": measured.signals,
        "share_signals_first_quarter": measured.share_signals_first_quarter,
        "symbols_to_first_signal": measured.symbols_to_first_signal,
        "symbols_to_fifth_signal": measured.symbols_to_fifth_signal,
        **{f"signal_rate_{tier}": rates.get(tier) for tier in TIERS},
        **{f"scanned_{tier}": counts.get(tier, 0) for tier in TIERS},
        "overhead_pct": overhead,
    }
