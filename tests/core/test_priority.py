"""Symbol prioritization: each factor, tiers, the exploration plan, reordering, metrics and bad config."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from technic_core import calendar, schema
from technic_core.config import ScanConfig, validated
from technic_core.errors import ConfigError
from technic_core.priority import (
    NEUTRAL_SCORE,
    REASON_NO_REPORT,
    REASON_NO_SOURCE,
    REASON_NO_SURPRISE,
    REASON_SURPRISE,
    TIER_HIGH,
    PlanAnnotator,
    PriorityConfig,
    SectorHitRateReorder,
    activity_scores,
    build_plan,
    fundamental_scores,
    historical_scores,
    order_metrics,
    prioritize,
    refresh_plan,
    score_symbols,
    session_metrics,
    setup_scores,
    tier_of,
)
from technic_core.scan import ScanHooks, run_scan
from technic_core.scoring import signal_from_rating

SESSION = dt.date(2024, 6, 28)
PREVIOUS = calendar.previous_session(SESSION)
SECTORS = ("Energy", "Utilities")
CONFIG = PriorityConfig()


def _results(day: dt.date, ratings: dict[str, float], **columns: object) -> pl.DataFrame:
    """`schema.RESULTS` rows of `day` with the given ratings; other columns null unless given."""
    symbols = list(ratings)
    frame = pl.DataFrame({"symbol": symbols, "tech_rating": list(ratings.values())}).with_columns(
        pl.lit(day).alias("date"),
        signal_from_rating(pl.col("tech_rating")).alias("signal"),
        *(pl.lit(value).alias(name) for name, value in columns.items()),
    )
    missing = [
        pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.RESULTS.items() if name not in frame.columns
    ]
    return schema.conform(frame.with_columns(missing), schema.RESULTS, "results")


def _bars(closes: dict[str, list[float]], end: dt.date, volumes: dict[str, list[float]] | None = None) -> pl.DataFrame:
    """Daily bars ending `end` (inclusive), one close list per symbol (oldest first); 1 % high/low range."""
    frames = []
    for symbol, series in closes.items():
        days = calendar.sessions_back(end, len(series))
        volume = (volumes or {}).get(symbol, [1e6] * len(series))
        frames.append(
            pl.DataFrame({"symbol": symbol, "date": days, "close": series, "volume": volume}).with_columns(
                pl.col("close").alias("open"),
                (pl.col("close") * 1.01).alias("high"),
                (pl.col("close") * 0.99).alias("low"),
                pl.col("close").alias("vwap"),
                pl.lit(100).alias("trades"),
            )
        )
    return schema.conform(pl.concat(frames), schema.BARS, "bars")


def _earnings(rows: list[tuple[str, dt.date, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema.EARNINGS, orient="row")


def _score(frame: pl.DataFrame, symbol: str, column: str) -> float:
    return frame.filter(pl.col("symbol") == symbol).get_column(column).item()


def _scores(symbols: list[str], priority_scores: list[float]) -> pl.DataFrame:
    """`score_symbols`-shaped rows with given priority scores (factor columns all neutral)."""
    return pl.DataFrame({"symbol": symbols, "priority_score": priority_scores}).with_columns(
        *(
            pl.lit(NEUTRAL_SCORE).alias(c)
            for c in ("historical_score", "activity_score", "fundamental_score", "setup_score")
        ),
        pl.lit(REASON_NO_REPORT).alias("fundamental_reason"),
        tier_of(pl.col("priority_score")).alias("priority_tier"),
    )


# ------------------------------------------------------------------------------------------------ factors


def test_historical_score_follows_distance_from_the_signal_threshold():
    history = _results(PREVIOUS, {"HIGH": 85.0, "EDGE": 70.0, "LOW": 40.0})
    scores = historical_scores(history, SESSION, CONFIG)
    assert _score(scores, "HIGH", "historical_score") > 90
    assert abs(_score(scores, "EDGE", "historical_score") - 50.0) < 1
    assert _score(scores, "LOW", "historical_score") < 5
    assert "NEW" not in scores.get_column("symbol").to_list()  # never scanned: the prior, in score_symbols


def test_historical_score_decays_with_age_and_half_life():
    old = calendar.sessions_back(SESSION, 4)[0]  # three sessions before the previous one
    aged = historical_scores(
        pl.concat([_results(PREVIOUS, {"FRESH": 80.0}), _results(old, {"STALE": 80.0})]), SESSION, CONFIG
    )
    assert 50 < _score(aged, "STALE", "historical_score") < _score(aged, "FRESH", "historical_score")

    mixed = pl.concat(
        [_results(PREVIOUS, {"TURN": 80.0}), _results(calendar.previous_session(PREVIOUS), {"TURN": 40.0})]
    )
    short = _score(historical_scores(mixed, SESSION, CONFIG), "TURN", "historical_score")
    long = _score(
        historical_scores(mixed, SESSION, CONFIG.model_copy(update={"half_life_sessions": 20.0})),
        "TURN",
        "historical_score",
    )
    assert short > long > 0  # a long half-life lets the older, weaker rating weigh more


def test_historical_score_ignores_the_session_itself_and_tilts_with_alpha():
    base = _results(PREVIOUS, {"A": 68.0})
    same_day = _results(SESSION, {"A": 99.0})
    assert historical_scores(pl.concat([base, same_day]), SESSION, CONFIG).equals(
        historical_scores(base, SESSION, CONFIG)
    )
    tilted = historical_scores(_results(PREVIOUS, {"A": 68.0}, alpha_score=100.0), SESSION, CONFIG)
    assert _score(tilted, "A", "historical_score") > _score(
        historical_scores(base, SESSION, CONFIG), "A", "historical_score"
    )


def test_activity_rewards_momentum_and_ignores_the_session_bar():
    up = [50.0 * 1.01**i for i in range(30)]
    down = [50.0 * 0.99**i for i in range(30)]
    surge = [1e6] * 29 + [5e6]
    bars = _bars({"UP": up, "DOWN": down}, PREVIOUS, volumes={"UP": surge, "DOWN": [1e6] * 30})
    scores = activity_scores(bars, SESSION)
    assert _score(scores, "UP", "activity_score") > 70
    assert _score(scores, "DOWN", "activity_score") < 40
    crash = _bars({"UP": [1.0]}, SESSION)  # a crash on the session itself must not be seen
    assert activity_scores(pl.concat([bars, crash]), SESSION).sort("symbol").equals(scores.sort("symbol"))


def test_activity_of_a_young_symbol_uses_what_it_has():
    # 21 bars: too few for 21-session momentum (22 closes), enough for the 20-session trend
    young = _bars({"IPO": [10.0 * 1.01**i for i in range(21)], "OLD": [10.0] * 30}, PREVIOUS)
    scores = activity_scores(young, SESSION)
    assert 50 < _score(scores, "IPO", "activity_score") < 100


def test_fundamental_uses_past_surprises_only_and_fades_them():
    two_back = calendar.previous_session(PREVIOUS)
    four_back = calendar.sessions_back(PREVIOUS, 4)[0]
    earnings = _earnings(
        [
            ("BEAT", PREVIOUS, 12.0),
            ("MISS", PREVIOUS, -12.0),
            ("OLD", four_back, 12.0),
            ("BLANK", two_back, None),
            ("TODAY", SESSION, 50.0),
            ("TWICE", four_back, -20.0),
            ("TWICE", PREVIOUS, 20.0),
        ]
    )
    scores = fundamental_scores(earnings, SESSION, CONFIG)
    assert _score(scores, "BEAT", "fundamental_score") > 90
    assert _score(scores, "MISS", "fundamental_score") < 10
    assert 50 < _score(scores, "OLD", "fundamental_score") < _score(scores, "BEAT", "fundamental_score")
    assert _score(scores, "TWICE", "fundamental_score") > 90  # the latest report counts
    assert _score(scores, "BLANK", "fundamental_score") == NEUTRAL_SCORE
    assert _score(scores, "BLANK", "fundamental_reason") == REASON_NO_SURPRISE
    assert _score(scores, "BEAT", "fundamental_reason") == REASON_SURPRISE
    assert "TODAY" not in scores.get_column("symbol").to_list()  # reported on the session: not yet known


def test_fundamental_reasons_without_reports_or_without_a_source():
    empty = schema.empty(schema.RESULTS)
    bars = schema.empty(schema.BARS)
    with_source = score_symbols(["A"], empty, bars, _earnings([]), SESSION, CONFIG)
    without = score_symbols(["A"], empty, bars, None, SESSION, CONFIG)
    assert with_source.get_column("fundamental_reason").to_list() == [REASON_NO_REPORT]
    assert without.get_column("fundamental_reason").to_list() == [REASON_NO_SOURCE]
    assert without.get_column("fundamental_score").to_list() == [NEUTRAL_SCORE]


def test_setup_reads_the_newest_previous_scan():
    bullish = dict(
        close=110.0,
        sma_50=100.0,
        sma_200=90.0,
        macd=1.0,
        macd_signal=0.5,
        rsi=60.0,
        mom_21=0.05,
        dist_high_20=-0.01,
        dist_low_20=0.2,
    )
    bearish = dict(
        close=80.0,
        sma_50=100.0,
        sma_200=110.0,
        macd=-1.0,
        macd_signal=-0.5,
        rsi=35.0,
        mom_21=-0.05,
        dist_high_20=-0.2,
        dist_low_20=0.01,
    )
    older = calendar.previous_session(PREVIOUS)
    history = pl.concat(
        [
            _results(PREVIOUS, {"BULL": 60.0}, **bullish),
            _results(PREVIOUS, {"BEAR": 40.0}, **bearish),
            _results(older, {"GONE": 60.0}, **bullish),
        ]
    )
    scores = setup_scores(history, SESSION)
    assert _score(scores, "BULL", "setup_score") > 90
    assert _score(scores, "BEAR", "setup_score") < 10
    assert "GONE" not in scores.get_column("symbol").to_list()


def test_scores_are_bitwise_reproducible():
    """A re-materialized plan must be byte-identical, so sums may not depend on thread scheduling."""
    rng = np.random.default_rng(11)
    symbols = [f"S{i:04d}" for i in range(3000)]
    history = pl.concat(
        [
            _results(day, dict(zip(symbols, rng.uniform(20, 95, len(symbols)).tolist())))
            for day in calendar.sessions_back(PREVIOUS, 5)
        ]
    )
    bars = _bars({s: (50 + rng.normal(0, 1, 25).cumsum()).tolist() for s in symbols[:500]}, PREVIOUS)
    first = score_symbols(symbols, history, bars, None, SESSION, CONFIG)
    assert all(score_symbols(symbols, history, bars, None, SESSION, CONFIG).equals(first) for _ in range(5))


# ----------------------------------------------------------------------------------------- weights, tiers


def test_weights_that_are_negative_or_do_not_sum_to_one_are_rejected_by_name():
    with pytest.raises(ConfigError, match=r"weights\.activity: .*must be a number ≥ 0"):
        validated(PriorityConfig, {"weights": {"historical": 0.8, "activity": -0.1, "fundamental": 0.2, "setup": 0.1}})
    with pytest.raises(ConfigError, match=r"weights: .*must sum to 1, got 0\.9"):
        validated(PriorityConfig, {"weights": {"historical": 0.3, "activity": 0.3, "fundamental": 0.2, "setup": 0.1}})
    with pytest.raises(ConfigError, match="weights"):
        validated(PriorityConfig, {"weights": {"historical": float("nan")}})
    with pytest.raises(ConfigError, match="exploration_share"):
        validated(PriorityConfig, {"exploration_share": 0.9})


def test_custom_weights_change_the_score():
    only_history = validated(
        PriorityConfig, {"weights": {"historical": 1, "activity": 0, "fundamental": 0, "setup": 0}}
    )
    history = _results(PREVIOUS, {"A": 90.0})
    bars = _bars({"A": [50.0 * 0.98**i for i in range(30)]}, PREVIOUS)
    default = score_symbols(["A"], history, bars, None, SESSION, CONFIG)
    custom = score_symbols(["A"], history, bars, None, SESSION, only_history)
    assert custom.get_column("priority_score").item() == pytest.approx(custom.get_column("historical_score").item())
    assert default.get_column("priority_score").item() < custom.get_column("priority_score").item()


def test_tier_bounds():
    scores = pl.DataFrame({"s": [70.01, 70.0, 55.0, 40.0, 39.99]})
    assert scores.select(tier_of(pl.col("s"))).to_series().to_list() == ["high", "medium", "medium", "medium", "low"]


# ----------------------------------------------------------------------------------------------------- plan


def _many(count: int = 500, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return _scores([f"S{i:04d}" for i in range(count)], rng.uniform(0, 100, count).tolist())


def test_plan_covers_every_symbol_once_with_the_exploration_share_in_every_batch():
    scores = _many()
    plan = build_plan(scores, SESSION, 50, CONFIG)
    assert plan.columns == list(schema.PRIORITY)
    assert sorted(plan.get_column("symbol").to_list()) == sorted(scores.get_column("symbol").to_list())
    assert plan.get_column("rank").to_list() == list(range(1, 501))
    assert plan.get_column("batch").to_list() == [(r - 1) // 50 for r in range(1, 501)]
    explorers = plan.filter(pl.col("exploration"))
    assert explorers.height == 50
    assert TIER_HIGH not in explorers.get_column("priority_tier").to_list()
    per_batch = plan.group_by("batch").agg(pl.col("exploration").sum()).get_column("exploration")
    assert per_batch.min() >= 4 and per_batch.max() <= 6
    exploited = plan.filter(~pl.col("exploration")).get_column("priority_score")
    assert exploited.is_sorted(descending=True)
    assert plan.get_column("symbol")[0] == scores.sort("priority_score", descending=True).get_column("symbol")[0]


def test_same_seed_same_plan_other_seed_other_explorers():
    scores = _many()
    plan = build_plan(scores, SESSION, 50, CONFIG)
    assert plan.equals(build_plan(scores.reverse(), SESSION, 50, CONFIG))
    other = build_plan(scores, SESSION, 50, CONFIG.model_copy(update={"seed": 1}))
    explorers = lambda p: set(p.filter(pl.col("exploration")).get_column("symbol"))  # noqa: E731
    assert explorers(other) != explorers(plan)
    assert explorers(build_plan(scores, PREVIOUS, 50, CONFIG)) != explorers(plan)  # a fresh draw each session


def test_without_exploration_the_plan_is_score_order_and_a_small_pool_caps_it():
    scores = _many()
    plain = build_plan(scores, SESSION, 50, CONFIG.model_copy(update={"exploration_share": 0.0}))
    assert not plain.get_column("exploration").any()
    assert plain.get_column("priority_score").is_sorted(descending=True)
    mostly_high = _scores([f"S{i}" for i in range(20)], [90.0] * 19 + [10.0])
    capped = build_plan(mostly_high, SESSION, 5, CONFIG.model_copy(update={"exploration_share": 0.5}))
    assert capped.filter(pl.col("exploration")).get_column("symbol").to_list() == ["S19"]


def test_no_history_at_all_gives_a_valid_plan():
    universe = pl.DataFrame({"symbol": ["B", "A", "C", "D"], "passed": [True, True, True, False]})
    plan = prioritize(universe, schema.empty(schema.RESULTS), schema.empty(schema.BARS), None, SESSION, 2, CONFIG)
    assert sorted(plan.get_column("symbol").to_list()) == ["A", "B", "C"]
    assert plan.get_column("priority_score").to_list() == [NEUTRAL_SCORE] * 3
    assert set(plan.get_column("priority_tier")) == {"medium"}
    assert plan.get_column("batch").to_list() == [0, 0, 1]
    assert set(plan.get_column("fundamental_reason")) == {REASON_NO_SOURCE}


def test_refresh_keeps_activity_and_fundamental_and_reads_new_history():
    plan = build_plan(
        _scores(["A", "B"], [50.0, 50.0]).with_columns(pl.lit(80.0).alias("activity_score")), SESSION, 10, CONFIG
    )
    refreshed = refresh_plan(plan, _results(PREVIOUS, {"A": 90.0, "B": 30.0}), SESSION, 10, CONFIG)
    assert refreshed.get_column("symbol").to_list() == ["A", "B"]
    assert refreshed.get_column("activity_score").to_list() == [80.0, 80.0]
    assert _score(refreshed, "A", "historical_score") > 90 > 10 > _score(refreshed, "B", "historical_score")


# ----------------------------------------------------------------------------------------------- reorder


def _reference(symbols: list[str], sectors: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"symbol": symbols, "sector": sectors, "industry": [f"{s} industry" for s in sectors]})


def test_reorder_moves_a_hot_sector_ahead_and_keeps_explorers_in_place():
    symbols = [f"S{i:02d}" for i in range(40)]
    sectors = [SECTORS[i % 2] for i in range(40)]
    plan = build_plan(_scores(symbols, [60.0] * 40), SESSION, 10, CONFIG)
    reference = _reference(symbols, sectors)
    hook = SectorHitRateReorder(plan, reference, CONFIG)
    order = plan.get_column("symbol").to_list()
    scanned, remaining = order[:10], order[10:]
    # the first batch: every Energy symbol signals, no Utilities symbol does
    first = _results(SESSION, {s: 80.0 if sectors[symbols.index(s)] == "Energy" else 50.0 for s in scanned})
    first = first.drop("sector", "industry").join(reference, on="symbol", how="left")
    reordered = hook(remaining, first)
    assert sorted(reordered) == sorted(remaining)
    explorer_slots = [i for i, s in enumerate(remaining) if s in set(plan.filter(pl.col("exploration"))["symbol"])]
    assert [reordered[i] for i in explorer_slots] == [remaining[i] for i in explorer_slots]
    moved = [s for s in reordered if s not in {remaining[i] for i in explorer_slots}]
    energy = [s for s in moved if sectors[symbols.index(s)] == "Energy"]
    assert moved[: len(energy)] == energy  # every Energy symbol now precedes every Utilities symbol
    assert hook.calls == 1 and hook.elapsed_s > 0

    still = SectorHitRateReorder(plan, reference, CONFIG.model_copy(update={"reorder_strength": 0.0}))
    assert still(remaining, first) == remaining  # no strength: the plan's order stands


def test_reorder_keeps_symbols_the_plan_does_not_know():
    plan = build_plan(_scores(["A", "B", "C"], [80.0, 60.0, 20.0]), SESSION, 1, CONFIG)
    hook = SectorHitRateReorder(plan, _reference(["A", "B", "C"], ["Energy"] * 3), CONFIG)
    reordered = hook(["C", "NEW", "B"], _results(SESSION, {"A": 80.0}))
    assert sorted(reordered) == ["B", "C", "NEW"] and reordered[1] == "NEW"


def test_annotator_matches_a_join_on_the_plan_and_leaves_unknown_symbols_null():
    plan = build_plan(_scores(["A", "B", "C", "D"], [80.0, 60.0, 20.0, 75.0]), SESSION, 2, CONFIG)
    results = pl.DataFrame(
        {"symbol": ["D", "NEW", "A", "C"], "close": [1.0, 2.0, 3.0, 4.0], "priority_tier": ["stale"] * 4}
    )
    annotator = PlanAnnotator(plan)
    annotated = annotator(results)
    expected = results.drop("priority_tier").join(
        plan.select("symbol", "priority_score", "priority_tier"), on="symbol", how="left", maintain_order="left"
    )
    assert annotated.equals(expected)
    assert annotated.filter(pl.col("symbol") == "NEW").select("priority_score", "priority_tier").null_count().row(
        0
    ) == (1, 1)
    assert annotator.elapsed_s > 0
    assert PlanAnnotator(plan.clear())(results).get_column("priority_score").null_count() == 4


def _panel(symbols: list[str], sessions: int = 80, seed: int = 5) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    closes = {
        s: (50 * np.exp(np.cumsum(rng.normal(0.001 * (i % 5 - 2), 0.02, sessions)))).tolist()
        for i, s in enumerate(symbols)
    }
    return _bars(closes, SESSION)


def test_a_scan_follows_the_plan_with_the_hooks_and_reports_metrics():
    symbols = [f"S{i:02d}" for i in range(40)]
    bars = _panel(symbols)
    universe = pl.DataFrame({"symbol": symbols, "passed": True}).join(
        _reference(symbols, [SECTORS[i % 2] for i in range(40)]), on="symbol"
    )
    previous = pl.concat([b.results for b in run_scan(ScanConfig(), PREVIOUS, bars, universe)])
    plan = prioritize(universe, previous, bars, None, SESSION, 8, CONFIG)
    hook = SectorHitRateReorder(plan, universe, CONFIG)
    run = run_scan(
        ScanConfig(batch_size=8),
        SESSION,
        bars,
        universe,
        order=plan.get_column("symbol").to_list(),
        hooks=ScanHooks(enrich=PlanAnnotator(plan), reorder=hook),
    )
    results = pl.concat([b.results for b in run])
    assert sorted(results.get_column("symbol").to_list()) == symbols
    assert results.get_column("batch").head(8).to_list() == [0] * 8
    assert set(results.head(8).get_column("symbol")) == set(plan.head(8).get_column("symbol"))
    assert results.get_column("priority_tier").is_not_null().all()
    # after the first batch, then once REORDER_MIN_SYMBOLS (10) more symbols were scanned: at 8 and 24 of 40
    assert hook.calls == 2
    metrics = session_metrics(plan, results, run.scanned, 8, prioritization_s=0.01, scan_s=1.0)
    assert metrics["overhead_pct"] == pytest.approx(1.0)
    assert metrics["signals"] == results.get_column("signal").is_in(["Buy", "Strong Buy"]).sum()
    high = results.filter(pl.col("priority_tier") == "high")
    assert high.height > 0
    assert metrics["signal_rate_high"] == pytest.approx(high.get_column("signal").is_in(["Buy", "Strong Buy"]).mean())


# ----------------------------------------------------------------------------------------------- metrics


def test_order_metrics_count_the_signal_itself_and_the_first_quarter():
    positions = pl.DataFrame({"position": list(range(20)), "hit": [i in (0, 2, 3, 4, 7, 15) for i in range(20)]})
    measured = order_metrics(positions, scanned=20)
    assert measured.signals == 6
    assert measured.symbols_to_first_signal == 1
    assert measured.symbols_to_fifth_signal == 8
    assert measured.share_signals_first_quarter == pytest.approx(4 / 6)  # positions 0, 2, 3, 4 are < 5
    few = order_metrics(positions.with_columns((pl.col("position") == 9).alias("hit")), scanned=20)
    assert few.symbols_to_fifth_signal is None and few.symbols_to_first_signal == 10
