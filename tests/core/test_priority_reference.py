"""The numpy prioritization against a straightforward polars reference, on a random market with the awkward
cases real data has: missing and late bars, null volumes and indicators, unrated and unscreened symbols,
several reports per symbol, reports on and after the session, symbols no input knows.

The reference is the plain formulation of each factor (joins, group_bys, masked aggregates) and of the reorder
hook (hit rates recomputed from all results at every call), so a difference is a bug in the fast path's
bookkeeping, not a disagreement about the model.
"""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from technic_core import calendar, schema
from technic_core.priority import (
    ACTIVITY_SESSIONS,
    ACTIVITY_WINDOW,
    DEFAULT_RATING_DAILY_STD,
    FACTOR_COLUMNS,
    MIN_RATING_CHANGES,
    MOMENTUM_SCALE,
    NEUTRAL_SCORE,
    RATING_DAILY_STD_BOUNDS,
    REASON_NO_REPORT,
    REASON_NO_SURPRISE,
    REASON_SURPRISE,
    SETUP_RSI_BAND,
    SIGNAL_THRESHOLD,
    SURPRISE_SCALE,
    TIERS,
    TREND_SCALE,
    VOLUME_SURGE_SCALE,
    PriorityConfig,
    SectorHitRateReorder,
    activity_scores,
    build_plan,
    fundamental_scores,
    historical_scores,
    refresh_plan,
    score_symbols,
    setup_scores,
    tier_of,
)
from technic_core.scoring import BUY_SIGNALS, signal_from_rating

SESSION = dt.date(2024, 6, 28)
PREVIOUS = calendar.previous_session(SESSION)
CONFIG = PriorityConfig()
SECTORS = ("Energy", "Utilities", "Health Care", None)
TOLERANCE = 1e-9


# ------------------------------------------------------------------------------------------ random market


def _market(seed: int) -> dict[str, pl.DataFrame]:
    """Bars, results, earnings and a reference of 200 symbols, and 150 of them (plus 5 unknown) screened."""
    rng = np.random.default_rng(seed)
    symbols = [f"S{i:03d}" for i in range(200)]
    days = calendar.sessions_back(SESSION, 30)  # the session's own bars must be ignored
    bars = []
    for i, symbol in enumerate(symbols):
        start = rng.integers(0, 15) if i % 7 == 0 else 0  # young symbols
        kept = [d for d in days[start:] if rng.random() > 0.05]  # missing bars
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, len(kept))))
        volume = rng.lognormal(13, 0.5, len(kept))
        volume[rng.random(len(kept)) < 0.03] = np.nan
        bars.append(
            pl.DataFrame(
                {
                    "symbol": symbol,
                    "date": kept,
                    "open": close,
                    "high": close * (1 + rng.uniform(0, 0.04, len(kept))),
                    "low": close * (1 - rng.uniform(0, 0.04, len(kept))),
                    "close": close,
                    "volume": volume,
                    "vwap": close,
                    "trades": 100,
                }
            ).with_columns(pl.col("volume").fill_nan(None))
        )
    results = []
    level = dict(zip(symbols, rng.uniform(20, 95, len(symbols))))  # ratings persist, so the tiers spread
    for day in calendar.sessions_back(SESSION, 7):
        rated = [s for s in symbols if rng.random() < 0.9]
        n = len(rated)
        rating = np.array([level[s] for s in rated]) + rng.normal(0, 5, n)
        frame = pl.DataFrame(
            {
                "symbol": rated,
                "date": day,
                "tech_rating": np.where(rng.random(n) < 0.03, np.nan, rating),
                "alpha_score": np.where(rng.random(n) < 0.3, np.nan, rng.uniform(0, 100, n)),
                **{
                    name: np.where(rng.random(n) < 0.1, np.nan, rng.normal(100, 10, n))
                    for name in ("close", "sma_50", "sma_200", "macd", "macd_signal")
                },
                "rsi": rng.uniform(20, 80, n),
                "mom_21": rng.normal(0, 0.1, n),
                "dist_high_20": -rng.uniform(0, 0.2, n),
                "dist_low_20": rng.uniform(0, 0.2, n),
            }
        ).with_columns(pl.col(pl.Float64).fill_nan(None))
        results.append(frame.with_columns(signal_from_rating(pl.col("tech_rating")).alias("signal")))
    reports = [
        (symbol, day, None if rng.random() < 0.1 else float(rng.normal(0, 8)))
        for symbol in symbols
        for day in calendar.sessions_back(calendar.next_session(calendar.next_session(SESSION)), 16)
        if rng.random() < 0.08
    ]
    history = pl.concat(results, how="diagonal")
    missing = [pl.lit(None, dtype=t).alias(name) for name, t in schema.RESULTS.items() if name not in history.columns]
    screened = [symbols[i] for i in rng.permutation(200)[:150]] + [f"NEW{i}" for i in range(5)]
    return {
        "bars": schema.conform(pl.concat(bars), schema.BARS, "bars"),
        "history": schema.conform(history.with_columns(missing), schema.RESULTS, "results"),
        "earnings": pl.DataFrame(reports, schema=schema.EARNINGS, orient="row"),
        "reference": pl.DataFrame(
            {
                "symbol": symbols,
                "sector": [SECTORS[i % 4] for i in range(200)],
                "industry": [None if i % 11 == 0 else f"industry {i % 5}" for i in range(200)],
            }
        ),
        "screened": pl.Series("symbol", screened),
    }


# --------------------------------------------------------------------------------------- reference factors


def _vote(value: pl.Expr, scale: float) -> pl.Expr:
    return (value / scale).tanh().fill_nan(None)


def _sign_vote(condition: pl.Expr) -> pl.Expr:
    return condition.cast(pl.Float64) * 2.0 - 1.0


def _from_votes(*votes: pl.Expr) -> pl.Expr:
    return (NEUTRAL_SCORE + NEUTRAL_SCORE * pl.mean_horizontal(*votes)).fill_null(NEUTRAL_SCORE)


def _ages(session: dt.date, count: int) -> pl.DataFrame:
    days = calendar.sessions_back(calendar.previous_session(session), count)
    return pl.DataFrame({"date": days, "age": np.arange(len(days), 0, -1)}, schema={"date": pl.Date, "age": pl.Int64})


def _reference_historical(history: pl.DataFrame, session: dt.date, config: PriorityConfig) -> pl.DataFrame:
    past = history.join(_ages(session, config.history_sessions), on="date").filter(pl.col("tech_rating").is_not_null())
    newest, before = (past.filter(pl.col("age") == past.get_column("age").min() + k) for k in (0, 1))
    change = newest.join(before, on="symbol").select(pl.col("tech_rating") - pl.col("tech_rating_right")).to_series()
    low, high = RATING_DAILY_STD_BOUNDS
    std = min(max(change.std(), low), high) if change.len() >= MIN_RATING_CHANGES else DEFAULT_RATING_DAILY_STD
    tilt = ((pl.col("alpha_score") - 50.0) / 50.0).clip(-1.0, 1.0).fill_null(0.0)
    spread = std * pl.col("age").cast(pl.Float64).sqrt()
    z = (pl.col("tech_rating") + config.alpha_tilt * tilt - SIGNAL_THRESHOLD) / spread
    weight = 0.5 ** ((pl.col("age") - 1) / config.half_life_sessions)
    prior = config.prior_weight
    return (
        past.group_by("symbol")
        .agg((weight * (1.0 / (1.0 + (-1.702 * z).exp()))).sum().alias("evidence"), weight.sum().alias("weight"))
        .select(
            "symbol",
            (100.0 * (pl.col("evidence") + 0.5 * prior) / (pl.col("weight") + prior)).alias("historical_score"),
        )
    )


def _reference_activity(bars: pl.DataFrame, session: dt.date) -> pl.DataFrame:
    window = calendar.sessions_back(calendar.previous_session(session), ACTIVITY_SESSIONS)
    date, close, volume = pl.col("date"), pl.col("close"), pl.col("volume")
    recent = date >= window[-ACTIVITY_WINDOW]
    per_symbol = (
        bars.filter(date.is_between(window[0], window[-1]))
        .group_by("symbol")
        .agg(
            close.filter(date == window[-1]).max().alias("last"),
            close.filter(date == window[-2]).max().alias("previous"),
            close.filter(date == window[0]).max().alias("month_ago"),
            volume.filter(date == window[-1]).max().alias("last_volume"),
            close.filter(recent).mean().alias("recent_close"),
            volume.filter(recent).mean().alias("recent_volume"),
            (pl.col("high") / pl.col("low")).log().pow(2).filter(recent).mean().alias("range_variance"),
            close.filter(recent).count().alias("recent_bars"),
        )
    )
    full = pl.col("recent_bars") == ACTIVITY_WINDOW
    surge = (pl.col("last_volume") / pl.when(full).then(pl.col("recent_volume"))).log().clip(lower_bound=0.0)
    return per_symbol.select(
        "symbol",
        _from_votes(
            _vote(pl.col("last") / pl.col("month_ago") - 1.0, MOMENTUM_SCALE),
            _vote(pl.col("last") / pl.when(full).then(pl.col("recent_close")) - 1.0, TREND_SCALE),
            _vote(surge * (pl.col("last") - pl.col("previous")).sign(), VOLUME_SURGE_SCALE),
            _vote((pl.col("range_variance") / pl.col("range_variance").median()).sqrt() - 1.0, 1.0),
        ).alias("activity_score"),
    )


def _reference_fundamental(earnings: pl.DataFrame, session: dt.date, config: PriorityConfig) -> pl.DataFrame:
    reacts = pl.concat(
        [
            _ages(session, config.earnings_lookback_sessions),
            pl.DataFrame({"date": [session], "age": [0]}, schema={"date": pl.Date, "age": pl.Int64}),
        ]
    )
    first = calendar.sessions_back(calendar.previous_session(session), config.earnings_lookback_sessions)[0]
    latest = (
        earnings.filter(pl.col("date").is_between(first, session, closed="left"))
        .sort("date")
        .group_by("symbol")
        .agg(pl.col("date", "surprise_pct").last())
        .sort("date")
        .join_asof(
            reacts.rename({"date": "reacts"}),
            left_on="date",
            right_on="reacts",
            strategy="forward",
            allow_exact_matches=False,
        )
    )
    fade = 0.5 ** (pl.col("age") / config.fundamental_half_life_sessions)
    return latest.select(
        "symbol",
        (NEUTRAL_SCORE + NEUTRAL_SCORE * _vote(pl.col("surprise_pct"), SURPRISE_SCALE) * fade)
        .fill_null(NEUTRAL_SCORE)
        .alias("fundamental_score"),
        pl.when(pl.col("surprise_pct").is_null())
        .then(pl.lit(REASON_NO_SURPRISE))
        .otherwise(pl.lit(REASON_SURPRISE))
        .alias("fundamental_reason"),
    )


def _reference_setup(history: pl.DataFrame, session: dt.date) -> pl.DataFrame:
    previous = history.filter(pl.col("date") < session)
    latest = previous.filter(pl.col("date") == previous.get_column("date").max())
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


def _reference_scores(market: dict[str, pl.DataFrame], config: PriorityConfig) -> pl.DataFrame:
    weighted = pl.sum_horizontal(pl.col(name) * weight for name, weight in config.weights.as_dict().items())
    factors = (
        _reference_historical(market["history"], SESSION, config),
        _reference_activity(market["bars"], SESSION),
        _reference_fundamental(market["earnings"], SESSION, config),
        _reference_setup(market["history"], SESSION),
    )
    scores = market["screened"].to_frame()
    for factor in factors:
        scores = scores.join(factor, on="symbol", how="left", maintain_order="left")
    return (
        scores.with_columns(
            pl.col("fundamental_reason").fill_null(REASON_NO_REPORT), pl.col(*FACTOR_COLUMNS).fill_null(NEUTRAL_SCORE)
        )
        .with_columns(weighted.alias("priority_score"))
        .with_columns(tier_of(pl.col("priority_score")).alias("priority_tier"))
    )


def _assert_same_scores(fast: pl.DataFrame, reference: pl.DataFrame) -> None:
    """Same rows (by symbol) and columns; floats equal up to rounding, everything else exactly."""
    assert sorted(fast.columns) == sorted(reference.columns)
    assert fast.height == reference.height
    both = fast.join(reference, on="symbol", how="inner", suffix="_reference")
    assert both.height == fast.height
    for name, dtype in fast.schema.items():
        if name == "symbol":
            continue
        ours, theirs = both.get_column(name), both.get_column(f"{name}_reference")
        if dtype == pl.Float64:
            assert ours.is_null().equals(theirs.is_null()), name
            assert (ours - theirs).abs().max() < TOLERANCE, name
        else:
            assert ours.equals(theirs, check_names=False), name


@pytest.fixture(scope="module", params=[1, 2, 3])
def market(request) -> dict[str, pl.DataFrame]:
    return _market(request.param)


def test_each_factor_matches_the_reference(market):
    _assert_same_scores(
        historical_scores(market["history"], SESSION, CONFIG), _reference_historical(market["history"], SESSION, CONFIG)
    )
    _assert_same_scores(activity_scores(market["bars"], SESSION), _reference_activity(market["bars"], SESSION))
    _assert_same_scores(
        fundamental_scores(market["earnings"], SESSION, CONFIG),
        _reference_fundamental(market["earnings"], SESSION, CONFIG),
    )
    _assert_same_scores(setup_scores(market["history"], SESSION), _reference_setup(market["history"], SESSION))


def test_activity_matches_the_reference_in_any_row_order():
    """Bars in date order (as stored), in symbol order (as cached for scans) or shuffled, with a halt and a
    listing: the same scores."""
    rng = np.random.default_rng(5)
    days = calendar.sessions_back(PREVIOUS, 30)
    panel = pl.DataFrame(
        {
            "date": np.repeat(np.array(days, dtype="datetime64[D]"), 60),
            "symbol": [f"S{i:02d}" for i in range(60)] * len(days),
        }
    )
    panel = panel.filter(
        ~((pl.col("symbol") == "S07") & (pl.col("date") == days[-3])),  # a halt
        ~((pl.col("symbol") == "S59") & (pl.col("date") < days[10])),  # a listing
    )
    close = 40 * np.exp(np.cumsum(rng.normal(0, 0.02, panel.height)))
    bars = schema.conform(
        panel.with_columns(
            open=close,
            high=close * 1.02,
            low=close * rng.uniform(0.95, 0.99, panel.height),
            close=close,
            volume=rng.lognormal(12, 0.4, panel.height),
            vwap=close,
            trades=pl.lit(10),
        ),
        schema.BARS,
        "bars",
    )
    reference = _reference_activity(bars, SESSION)
    for order in (bars, bars.sort("symbol", "date"), bars.sample(fraction=1.0, shuffle=True, seed=1)):
        _assert_same_scores(activity_scores(order, SESSION), reference)


def test_scores_match_the_reference_in_order(market):
    config = PriorityConfig(
        weights={"historical": 0.7, "activity": 0.1, "fundamental": 0.1, "setup": 0.1},
        half_life_sessions=2.0,
        prior_weight=0.3,
    )
    fast = score_symbols(market["screened"], market["history"], market["bars"], market["earnings"], SESSION, config)
    reference = _reference_scores(market, config)
    assert fast.columns == reference.columns
    assert fast.get_column("symbol").equals(reference.get_column("symbol"))
    _assert_same_scores(fast, reference)
    assert set(fast.get_column("priority_tier")) == set(TIERS)  # the random market exercises every tier


def test_refresh_matches_scoring_afresh(market):
    def plan(history: pl.DataFrame) -> pl.DataFrame:
        scores = score_symbols(market["screened"], history, market["bars"], market["earnings"], SESSION, CONFIG)
        return build_plan(scores, SESSION, 20, CONFIG)

    stale, fresh = plan(market["history"].clear()), plan(market["history"])
    refreshed = refresh_plan(stale, market["history"], SESSION, 20, CONFIG)
    assert refreshed.get_column("symbol").equals(fresh.get_column("symbol"))
    _assert_same_scores(refreshed, fresh)


# ----------------------------------------------------------------------------------------- reference reorder


def _reference_reorder(
    plan: pl.DataFrame, reference: pl.DataFrame, config: PriorityConfig, remaining: list[str], results: pl.DataFrame
) -> list[str]:
    """The reorder hook's order from scratch: hit rates per tier, sector and industry over all results so far."""
    groups = plan.join(reference, on="symbol", how="left").with_columns(
        pl.col("sector").fill_null(""),
        pl.concat_str(pl.col("sector", "industry").fill_null(""), separator="/").alias("industry"),
    )
    scanned = results.select("symbol", pl.col("signal").is_in(BUY_SIGNALS).cast(pl.Float64).alias("hit")).join(
        groups, on="symbol"
    )
    rates = scanned.group_by("priority_tier").agg(pl.col("hit").mean().alias("rate"))
    scanned = scanned.join(rates, on="priority_tier")
    kappa = config.reorder_prior_hits
    sectors = scanned.group_by("sector").agg(
        ((pl.col("hit").sum() + kappa) / (pl.col("rate").sum() + kappa)).alias("sector_lift")
    )
    industries = (
        scanned.join(sectors, on="sector")
        .group_by("industry")
        .agg(
            (
                pl.col("sector_lift").first()
                * (pl.col("hit").sum() + kappa)
                / (pl.col("rate").sum() * pl.col("sector_lift").first() + kappa)
            )
            .log()
            .alias("log_lift")
        )
    )
    adjusted = (
        groups.join(sectors, on="sector", how="left")
        .join(industries, on="industry", how="left")
        .select(
            "symbol",
            "exploration",
            "rank",
            (
                pl.col("priority_score")
                + config.reorder_strength * pl.col("log_lift").fill_null(pl.col("sector_lift").log()).fill_null(0.0)
            ).alias("adjusted"),
        )
    )
    order = pl.DataFrame({"symbol": remaining}).with_row_index("slot").join(adjusted, on="symbol", how="left")
    pinned = order.filter(pl.col("exploration").fill_null(True))
    moved = order.filter(~pl.col("exploration").fill_null(True)).sort(["adjusted", "rank"], descending=[True, False])
    slots = sorted(set(range(len(remaining))) - set(pinned.get_column("slot")))
    placed = dict(zip(pinned.get_column("slot"), pinned.get_column("symbol")))
    placed.update(zip(slots, moved.get_column("symbol")))
    return [placed[slot] for slot in range(len(remaining))]


def test_reorder_matches_the_reference_through_a_scan(market):
    config = CONFIG.model_copy(update={"reorder_strength": 40.0, "reorder_prior_hits": 1.0})
    scores = score_symbols(market["screened"], market["history"], market["bars"], market["earnings"], SESSION, config)
    plan = build_plan(scores, SESSION, 20, config)
    hook = SectorHitRateReorder(plan, market["reference"], config)
    rng = np.random.default_rng(7)
    order, published = plan.get_column("symbol").to_list(), []
    hot = {"Energy"}
    sector_of = dict(market["reference"].select("symbol", "sector").iter_rows())
    while len(order) > 20:
        batch, remaining = order[:20], order[20:]
        scanned = [s for s in batch if rng.random() > 0.1]  # some symbols leave no result
        hit_rate = [0.8 if sector_of.get(s) in hot else 0.15 for s in scanned]
        signals = ["Buy" if rng.random() < rate else "Hold" for rate in hit_rate]
        published.append(pl.DataFrame({"symbol": scanned, "signal": signals}))
        if len(published) == 3:
            remaining = [*remaining[::-1], "LATE"]  # not the list the hook returned, and a symbol it never saw
        results = pl.concat(published)
        order = hook(remaining, results)
        assert order == _reference_reorder(plan, market["reference"], config, remaining, results)
    assert hook.calls >= 5
