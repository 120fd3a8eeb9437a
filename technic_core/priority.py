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

Everything is vectorized over all symbols at once — numpy over integer symbol codes (the factors section
says why not polars) — except the hooks' dict lookups of one batch's few hundred symbols.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from technic_core import calendar, schema
from technic_core.config import StrictModel
from technic_core.scoring import BUY_SIGNALS, SIGNAL_THRESHOLDS

_log = logging.getLogger(__name__)

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
#
# The factors are numpy over integer symbol codes, not polars queries. Why: a plan is made before every
# session (and the API makes one per ad-hoc scan), and at ~4,000 screened symbols polars' fixed costs —
# planning each query, hashing strings in each join and group_by — were most of a plan's time. Here every
# symbol column is encoded once (`_Codes`), after which a per-symbol aggregate is one np.bincount and aligning
# a factor to the screened symbols one gather.
#
# Missing values: polars nulls arrive as NaN, and NaN means "missing" throughout. Stored bars, results and
# earnings hold no NaN of their own (the quality checks reject NaN prices and ratings; indicators turn NaN
# into null), so on every valid input this is polars' null semantics. The factor functions run with numpy's
# divide and invalid warnings off: NaN from 0 / 0 or log(0) is how missing inputs propagate, not an error.
_nan_is_missing = np.errstate(divide="ignore", invalid="ignore")


class _Codes:
    """One integer code per distinct string across several string columns, so the columns can be joined and
    grouped as integers. `of[i]` holds the codes of column i, `strings` the string of each code.

    pyarrow's dictionary encoding over all columns at once (one hash table, so a string has one code in every
    column): about two thirds of the time of polars' string group_by on a 100,000-row bar panel, and reading
    polars' string views without a copy. A null gets a code of its own.
    """

    def __init__(self, *columns: pl.Series) -> None:
        arrays = [column.to_arrow(compat_level=pl.CompatLevel.newest()) for column in columns]
        encoded = pc.dictionary_encode(pa.chunked_array(arrays, type=pa.string_view()), null_encoding="encode")
        # pyarrow drops empty chunks, so the codes are split by the columns' lengths, not by chunk
        codes = [chunk.indices.to_numpy().astype(np.intp) for chunk in encoded.chunks]
        all_codes = np.concatenate([np.empty(0, dtype=np.intp), *codes])
        self.of = np.split(all_codes, np.cumsum([len(array) for array in arrays])[:-1])
        self.strings = pl.Series(encoded.chunk(0).dictionary if encoded.num_chunks else [], dtype=pl.String)
        self.size = len(self.strings)

    def frame(self, name: str, values: np.ndarray) -> pl.DataFrame:
        """`symbol` and column `name` of the codes whose `values` (indexed by code) are not NaN."""
        known = ~np.isnan(values)
        return pl.DataFrame({"symbol": self.strings.filter(known), name: values[known]})


@dataclass(frozen=True)
class _Rows:
    """A frame's rows as numpy: the code of each row's symbol (`_Codes`) and its day number (NaN when null)."""

    frame: pl.DataFrame
    codes: np.ndarray
    days: np.ndarray

    @classmethod
    def of(cls, frame: pl.DataFrame, codes: np.ndarray) -> "_Rows":
        return cls(frame, codes, frame.get_column("date").cast(pl.Float64).to_numpy())

    def values(self, column: str) -> np.ndarray:
        """A float column, NaN where null."""
        return self.frame.get_column(column).cast(pl.Float64).to_numpy()


def _day_numbers(days: list[dt.date]) -> np.ndarray:
    """Days since the epoch, as polars stores a Date: comparable with `_Rows.days`."""
    return np.array(days, dtype="datetime64[D]").astype(np.float64)


def _per_symbol_mean(codes: np.ndarray, values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and count of the non-missing `values` per symbol code (`codes` of the same rows); NaN mean for none."""
    known = ~np.isnan(values)
    if not known.all():
        codes, values = codes[known], values[known]
    count = np.bincount(codes, minlength=size)
    return np.bincount(codes, weights=values, minlength=size) / count, count


def _per_symbol_value(codes: np.ndarray, rows: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """The value of each symbol code's row among `rows` (a mask of one date: bars and results hold one row per
    symbol and date), NaN for a symbol without one."""
    value = np.full(size, np.nan)
    value[codes[rows]] = values[rows]
    return value


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-_LOGISTIC_PROBIT * z))


def _vote(value: np.ndarray, scale: float) -> np.ndarray:
    """A continuous vote in (−1, 1); missing (NaN, also 0 / 0) stays missing."""
    return np.tanh(value / scale)


def _sign_vote(holds: np.ndarray, *inputs: np.ndarray) -> np.ndarray:
    """+1 where `holds`, −1 where not, NaN where one of the `inputs` it was judged from is missing."""
    vote = np.where(holds, 1.0, -1.0)
    for value in inputs:
        vote[np.isnan(value)] = np.nan
    return vote


def _mean_of_votes(*votes: np.ndarray) -> np.ndarray:
    """Mean of the available (non-NaN) votes, summed left to right as polars' mean_horizontal; NaN where none."""
    total, count = np.zeros(len(votes[0])), np.zeros(len(votes[0]))
    for vote in votes:
        known = ~np.isnan(vote)
        total += np.where(known, vote, 0.0)
        count += known
    return total / count


def _from_votes(*votes: np.ndarray) -> np.ndarray:
    """50 + 50 × the mean of the available votes; 50 when none is available."""
    mean = _mean_of_votes(*votes)
    return NEUTRAL_SCORE + NEUTRAL_SCORE * np.where(np.isnan(mean), 0.0, mean)


@_nan_is_missing
def _historical(history: _Rows, size: int, session: dt.date, config: PriorityConfig) -> np.ndarray:
    """historical_score per symbol code; NaN for a symbol not rated in the `history_sessions` before `session`."""
    days = _day_numbers(calendar.sessions_back(calendar.previous_session(session), config.history_sessions))
    slot = np.searchsorted(days, history.days)  # a null day (NaN) sorts past the end
    dated = days[np.minimum(slot, len(days) - 1)] == history.days
    rating = history.values("tech_rating")
    rated = np.flatnonzero(dated & ~np.isnan(rating))
    code, rating, age = history.codes[rated], rating[rated], len(days) - slot[rated]
    alpha = history.values("alpha_score")[rated]
    tilt = np.where(np.isnan(alpha), 0.0, np.clip((alpha - 50.0) / 50.0, -1.0, 1.0))
    # per age (1 … history_sessions), then gathered: a power per row costs more than the rest of the factor
    ages = np.arange(len(days) + 1, dtype=np.float64)
    spread = (_rating_daily_std(code, rating, age, size) * np.sqrt(ages))[age]
    weight = (0.5 ** ((ages - 1) / config.half_life_sessions))[age]
    evidence = weight * _normal_cdf((rating + config.alpha_tilt * tilt - SIGNAL_THRESHOLD) / spread)
    prior = config.prior_weight
    score = (
        100.0 * (np.bincount(code, weights=evidence, minlength=size) + 0.5 * prior)
        / (np.bincount(code, weights=weight, minlength=size) + prior)
    )
    score[np.bincount(code, minlength=size) == 0] = np.nan
    return score


def _rating_daily_std(code: np.ndarray, rating: np.ndarray, age: np.ndarray, size: int) -> float:
    """The pooled spread of the newest day-over-day rating changes among the rated rows (`code`, `rating`,
    `age` per row).

    Pooled, because one symbol's handful of changes is mostly noise; from the newest pair of consecutive
    sessions only, because thousands of symbols are plenty and the plan stays cheap. Falls back to
    `DEFAULT_RATING_DAILY_STD` with fewer than `MIN_RATING_CHANGES` symbols rated on both sessions.
    """
    if not len(age):
        return DEFAULT_RATING_DAILY_STD
    newest, before = age == age.min(), age == age.min() + 1
    change = rating[newest] - _per_symbol_value(code, before, rating, size)[code[newest]]
    change = change[~np.isnan(change)]
    if len(change) < MIN_RATING_CHANGES:
        return DEFAULT_RATING_DAILY_STD
    return float(np.clip(change.std(ddof=1), *RATING_DAILY_STD_BOUNDS))


@_nan_is_missing
def _activity(bars: _Rows, size: int, session: dt.date) -> np.ndarray:
    """activity_score per symbol code; NaN for a symbol without bars in the `ACTIVITY_SESSIONS` before `session`."""
    window = _day_numbers(calendar.sessions_back(calendar.previous_session(session), ACTIVITY_SESSIONS))
    code, day = bars.codes, bars.days
    listed = np.zeros(size, dtype=bool)
    listed[code[(day >= window[0]) & (day <= window[-1])]] = True
    close, volume = bars.values("close"), bars.values("volume")
    last_day = day == window[-1]
    last = _per_symbol_value(code, last_day, close, size)
    last_volume = _per_symbol_value(code, last_day, volume, size)
    previous = _per_symbol_value(code, day == window[-2], close, size)
    month_ago = _per_symbol_value(code, day == window[0], close, size)
    recent = np.flatnonzero((day >= window[-ACTIVITY_WINDOW]) & (day <= window[-1]))
    recent_code = code[recent]
    recent_close, recent_bars = _per_symbol_mean(recent_code, close[recent], size)
    recent_volume, _ = _per_symbol_mean(recent_code, volume[recent], size)
    high_low = bars.values("high")[recent] / bars.values("low")[recent]
    range_variance, _ = _per_symbol_mean(recent_code, np.log(high_low) ** 2, size)
    measured = range_variance[listed & ~np.isnan(range_variance)]
    median = np.median(measured) if len(measured) else np.nan
    full = recent_bars == ACTIVITY_WINDOW
    surge = np.maximum(np.log(last_volume / np.where(full, recent_volume, np.nan)), 0.0)
    score = _from_votes(
        _vote(last / month_ago - 1.0, MOMENTUM_SCALE),
        _vote(last / np.where(full, recent_close, np.nan) - 1.0, TREND_SCALE),
        _vote(surge * np.sign(last - previous), VOLUME_SURGE_SCALE),
        _vote(np.sqrt(range_variance / median) - 1.0, 1.0),
    )
    return np.where(listed, score, np.nan)


def _reports(earnings: pl.DataFrame, session: dt.date, config: PriorityConfig) -> pl.DataFrame:
    """The reports a plan for `session` may know of: dated in the `earnings_lookback_sessions` before it."""
    lookback = calendar.sessions_back(calendar.previous_session(session), config.earnings_lookback_sessions)
    first, end = _day_numbers([lookback[0], session])
    day = earnings.get_column("date").cast(pl.Float64).to_numpy()
    return earnings[np.flatnonzero((day >= first) & (day < end))]


@_nan_is_missing
def _fundamental(reports: _Rows, size: int, session: dt.date, config: PriorityConfig) -> tuple[np.ndarray, np.ndarray]:
    """fundamental_score per symbol code (NaN for a symbol without a report among `reports`, see `_reports`)
    and whether its latest report carries a surprise."""
    score, surprised = np.full(size, np.nan), np.zeros(size, dtype=bool)
    if not len(reports.codes):
        return score, surprised
    # latest report per symbol: the last row of each symbol's run in (symbol, date, row) order
    order = np.lexsort((reports.days, reports.codes))
    latest = order[np.append(reports.codes[order][1:] != reports.codes[order][:-1], True)]
    # A report dated d (after that day's close) moves the stock at the first session after d; its age is that
    # session's age + 1, so a report after the previous close has age 1 and counts in full.
    reacts = calendar.sessions_back(calendar.previous_session(session), config.earnings_lookback_sessions) + [session]
    age = np.arange(len(reacts) - 1, -1, -1)[np.searchsorted(_day_numbers(reacts), reports.days[latest], side="right")]
    surprise = reports.values("surprise_pct")[latest]
    faded = _vote(surprise, SURPRISE_SCALE) * 0.5 ** (age / config.fundamental_half_life_sessions)
    score[reports.codes[latest]] = NEUTRAL_SCORE + NEUTRAL_SCORE * np.where(np.isnan(faded), 0.0, faded)
    surprised[reports.codes[latest]] = ~np.isnan(surprise)
    return score, surprised


@_nan_is_missing
def _setup(history: _Rows, size: int, session: dt.date) -> np.ndarray:
    """setup_score per symbol code from the newest scan before `session`; NaN for a symbol it did not rate."""
    score = np.full(size, np.nan)
    before = history.days < _day_numbers([session])[0]
    if not before.any():
        return score
    rows = np.flatnonzero(history.days == history.days[before].max())
    close, sma_50, sma_200, macd, macd_signal, rsi, mom_21, dist_high_20, dist_low_20 = (
        history.values(name)[rows]
        for name in (
            "close", "sma_50", "sma_200", "macd", "macd_signal", "rsi", "mom_21", "dist_high_20", "dist_low_20"
        )
    )
    above_low, below_high = np.abs(dist_low_20), np.abs(dist_high_20)
    convergence = _mean_of_votes(
        _sign_vote(close > sma_50, close, sma_50),
        _sign_vote(sma_50 > sma_200, sma_50, sma_200),
        _sign_vote(macd > macd_signal, macd, macd_signal),
        _sign_vote((rsi >= SETUP_RSI_BAND[0]) & (rsi <= SETUP_RSI_BAND[1]), rsi),
        _sign_vote(mom_21 > 0, mom_21),
    )
    score[history.codes[rows]] = _from_votes(2.0 * above_low / (above_low + below_high) - 1.0, convergence)
    return score


def _history_factors(
    history: _Rows, keys: np.ndarray, size: int, session: dt.date, config: PriorityConfig
) -> dict[str, np.ndarray]:
    """The two factors that read past results, at the symbol codes `keys`."""
    return {
        "historical_score": _historical(history, size, session, config)[keys],
        "setup_score": _setup(history, size, session)[keys],
    }


def historical_scores(history: pl.DataFrame, session: dt.date, config: PriorityConfig) -> pl.DataFrame:
    """`symbol`, `historical_score` of every symbol rated in the `config.history_sessions` sessions before
    `session`; `history` holds `results` rows of any sessions. Symbols never rated there are absent (the
    neutral prior, in `score_symbols`). The model is in the module docstring."""
    codes = _Codes(history.get_column("symbol"))
    scores = _historical(_Rows.of(history, codes.of[0]), codes.size, session, config)
    return codes.frame("historical_score", scores)


def activity_scores(bars: pl.DataFrame, session: dt.date) -> pl.DataFrame:
    """`symbol`, `activity_score` from the bars of the `ACTIVITY_SESSIONS` sessions before `session`.

    Bars of `session` itself (and later) are ignored, so the score exists before the session ends. Every
    figure is a masked aggregate over calendar sessions rather than over each symbol's sorted bars — sorting
    the panel would cost more than the whole rest of the plan — so a vote whose inputs are missing (a young
    symbol, a halt on a session it reads) drops out of the mean, and volatility is the Parkinson estimate
    from each bar's high/low range, which needs no previous bar.
    """
    codes = _Codes(bars.get_column("symbol"))
    return codes.frame("activity_score", _activity(_Rows.of(bars, codes.of[0]), codes.size, session))


def fundamental_scores(earnings: pl.DataFrame | None, session: dt.date, config: PriorityConfig) -> pl.DataFrame:
    """`symbol`, `fundamental_score`, `fundamental_reason` of symbols with a report in the
    `config.earnings_lookback_sessions` sessions before `session`.

    `earnings` holds `schema.EARNINGS` rows of any date range, or is None when the source has no earnings at
    all (`score_symbols` then records `REASON_NO_SOURCE`). Reports dated on or after `session` are ignored: a
    source may already know their surprise, a plan made before the session may not.
    """
    if earnings is None:
        return pl.DataFrame(schema=FUNDAMENTAL_SCHEMA)
    reports = _reports(earnings, session, config)
    codes = _Codes(reports.get_column("symbol"))
    scores, surprised = _fundamental(_Rows.of(reports, codes.of[0]), codes.size, session, config)
    known = ~np.isnan(scores)
    return codes.frame("fundamental_score", scores).with_columns(
        _reasons(scores[known], surprised[known], REASON_NO_REPORT)
    )


def _reasons(fundamental: np.ndarray, surprised: np.ndarray, no_report: str) -> pl.Series:
    """`fundamental_reason` of each fundamental score (NaN: no report, which `no_report` explains)."""
    reason = np.where(
        np.isnan(fundamental),
        FUNDAMENTAL_REASONS.index(no_report),
        np.where(surprised, FUNDAMENTAL_REASONS.index(REASON_SURPRISE), FUNDAMENTAL_REASONS.index(REASON_NO_SURPRISE)),
    )
    return pl.Series("fundamental_reason", np.array(FUNDAMENTAL_REASONS, dtype=object)[reason], dtype=pl.String)


def setup_scores(history: pl.DataFrame, session: dt.date) -> pl.DataFrame:
    """`symbol`, `setup_score` from the newest scan before `session` in `history` (`results` rows); symbols
    that scan did not rate are absent (neutral in `score_symbols`)."""
    codes = _Codes(history.get_column("symbol"))
    scores = _setup(_Rows.of(history, codes.of[0]), codes.size, session)
    return codes.frame("setup_score", scores)
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
    return pl.DataFrame({
        "symbol": symbols,
        "historical_score": filled["historical_score"],
        "activity_score": filled["activity_score"],
        "fundamental_score": filled["fundamental_score"],
        "fundamental_reason": reasons,
        "setup_score": filled["setup_score"],
        "priority_score": priority,
    }).with_columns(tier_of(pl.col("priority_score")).alias("priority_tier"))


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


# ------------------------------------------------------------------------------------------------ plan


def build_plan(scores: pl.DataFrame, session: dt.date, batch_size: int, config: PriorityConfig) -> pl.DataFrame:
    """The `schema.PRIORITY` plan of `session` from `score_symbols` output: every symbol exactly once.

    Score order (ties by symbol) with `exploration_share` of the symbols drawn uniformly, seeded by
    (`config.seed`, session), from outside the high tier. The two streams are merged by evenly spaced keys —
    the k-th of n exploited symbols at (k + ½) / n, the j-th of m explorers at (j + ½) / m — so every batch
    of `batch_size` holds the exploration share, and an exploited symbol comes first.
    """
    ranked = _descending(  # rows of `scores` in score order
        scores.get_column("priority_score").to_numpy(),
        lambda: scores.select(
            pl.arg_sort_by(["priority_score", "symbol"], descending=[True, False], nulls_last=True)
        ).to_series().to_numpy(),
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
    # polars queries, each costing about as much as the whole draw.
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


# ------------------------------------------------------------------------------------------ reordering


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
    scan leaves the caches cold, and there every numpy or polars call costs ~10 µs, more than the loop.
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


def _descending(key: np.ndarray, with_ties: Callable[[], np.ndarray]) -> np.ndarray:
    """The order of `key` descending, or `with_ties()` when some keys are equal or missing (NaN).

    Why: numpy's unstable sort is vectorized and about twice as fast as a stable one or a sort on two keys,
    and equal scores are rare enough that checking for them costs less than always breaking ties.
    """
    order = np.argsort(-key)  # NaN sorts last, so one check of the last key finds any
    ordered = key[order]
    tied = (ordered[1:] == ordered[:-1]).any() or bool(np.isnan(ordered[-1:]).any())
    return with_ties() if tied else order


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

    Why so spare: it runs on every batch on the scan's critical path, where a join, or even rebuilding the
    batch's ~40 columns as a new frame, costs several times the lookup itself. A batch's symbols are looked
    up in a dict of (score, tier) (see `SectorHitRateReorder`) and the two columns appended to a shallow copy
    of the batch.
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
