"""The four factor scores, designed around what predicts today's signal (see the package docstring):

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
    threshold more often. Close to the rating's own inputs, so it agrees with the historical factor when
    both exist and carries the plan alone when there is no scan history yet.
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
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from technic_core import calendar
from technic_core.priority.codes import (
    _Codes,
    _day_numbers,
    _nan_is_missing,
    _per_symbol_mean,
    _per_symbol_value,
    _Rows,
)
from technic_core.priority.config import (
    FUNDAMENTAL_REASONS,
    NEUTRAL_SCORE,
    REASON_NO_REPORT,
    REASON_NO_SURPRISE,
    REASON_SURPRISE,
    SIGNAL_THRESHOLD,
    PriorityConfig,
)

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
#: Percent surprise that makes the fundamental vote tanh(1): about the simulated market's median |surprise|.
SURPRISE_SCALE = 5.0

#: RSI band the setup factor counts as bullish but not overbought.
SETUP_RSI_BAND = (50.0, 70.0)

#: Result columns the historical and setup factors read from past `results` partitions.
HISTORY_COLUMNS = (
    "date",
    "symbol",
    "tech_rating",
    "alpha_score",
    "close",
    "sma_50",
    "sma_200",
    "macd",
    "macd_signal",
    "rsi",
    "mom_21",
    "dist_high_20",
    "dist_low_20",
)

FUNDAMENTAL_SCHEMA = {"symbol": pl.String, "fundamental_score": pl.Float64, "fundamental_reason": pl.String}


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
        100.0
        * (np.bincount(code, weights=evidence, minlength=size) + 0.5 * prior)
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
    reacts = [*calendar.sessions_back(calendar.previous_session(session), config.earnings_lookback_sessions), session]
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
            "close",
            "sma_50",
            "sma_200",
            "macd",
            "macd_signal",
            "rsi",
            "mom_21",
            "dist_high_20",
            "dist_low_20",
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
