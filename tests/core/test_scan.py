"""run_scan: batching, ordering, seq, rejections with reasons and early termination."""

import datetime as dt
import itertools

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from technic_core import calendar, schema
from technic_core.config import ScanConfig
from technic_core.scan import (
    END_COMPLETE,
    END_MAX_SIGNALS,
    END_STOPPED,
    END_TIMEOUT,
    ScanHistory,
    run_scan,
    scan_candidates,
)

SESSION = dt.date(2024, 6, 28)
SECTORS = ("Energy", "Utilities", "Financials")


def _panel(n_symbols: int = 40, n_sessions: int = 300, young: int = 3, seed: int = 11) -> pl.DataFrame:
    """Random-walk bars; the last `young` symbols only have 12 bars (too little history)."""
    rng = np.random.default_rng(seed)
    sessions = calendar.sessions_back(SESSION, n_sessions)
    frames = []
    for i in range(n_symbols):
        days = sessions[-12:] if i >= n_symbols - young else sessions
        drift = rng.normal(0.0, 0.002)
        close = 50 * np.exp(np.cumsum(rng.normal(drift, 0.02, len(days))))
        open_ = close * np.exp(rng.normal(0, 0.005, len(days)))
        frames.append(
            pl.DataFrame(
                {
                    "symbol": f"S{i:03d}",
                    "date": days,
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.01,
                    "low": np.minimum(open_, close) * 0.99,
                    "close": close,
                    "volume": rng.lognormal(13, 0.4, len(days)),
                    "vwap": close,
                    "trades": np.full(len(days), 100),
                }
            )
        )
    return schema.conform(pl.concat(frames), schema.BARS, "bars")


def _universe(bars: pl.DataFrame, failing: tuple[str, ...] = ("S000",)) -> pl.DataFrame:
    symbols = bars.get_column("symbol").unique().sort()
    return pl.DataFrame(
        {
            "date": SESSION,
            "symbol": symbols,
            "name": symbols,
            "sector": [SECTORS[i % 3] for i in range(symbols.len())],
            "industry": "Test",
            "market_cap": 1e9,
            "shares_outstanding": 10_000_000,
            "list_date": dt.date(2000, 1, 3),
            "delist_date": None,
            "close": 50.0,
            "avg_dollar_volume": 5e6,
            "daily_volatility": 0.02,
            "history_sessions": 300,
            "passed": [s not in failing for s in symbols],
            "reason": [("price_below_min" if s in failing else None) for s in symbols],
        }
    ).pipe(schema.conform, schema.UNIVERSE, "universe")


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return _panel()


def test_full_scan_publishes_every_screened_symbol_once(bars):
    universe = _universe(bars)
    run = run_scan(ScanConfig(batch_size=7), SESSION, bars, universe, regime="bull_normal")
    batches = list(run)
    results = pl.concat([b.results for b in batches])
    rejections = pl.concat([b.rejections for b in batches])
    assert run.end_reason == END_COMPLETE
    assert [b.batch for b in batches] == list(range(len(batches)))
    assert results.get_column("seq").to_list() == list(range(1, results.height + 1))
    screened = set(universe.filter(pl.col("passed")).get_column("symbol"))
    assert set(results.get_column("symbol")) | set(rejections.get_column("symbol")) == screened
    assert not set(results.get_column("symbol")) & set(rejections.get_column("symbol"))
    assert "S000" not in screened  # failed screening: not scanned at all
    assert set(rejections.get_column("symbol")) == {"S037", "S038", "S039"}
    assert set(rejections.get_column("reason")) == {"insufficient_history"}
    assert results.get_column("tech_rating").is_null().sum() == 0
    assert results.get_column("tech_rating").is_nan().sum() == 0
    assert results.get_column("close").is_null().sum() == 0
    assert (results.get_column("date") == SESSION).all()
    assert set(results.get_column("regime")) == {"bull_normal"}
    assert results.schema == pl.Schema(schema.RESULTS)
    assert run.results == results.height and run.rejected == rejections.height == 3
    assert batches[-1].scanned == run.total == len(screened)


def test_results_match_a_single_pass_over_all_symbols(bars):
    """Batching must not change any number: compare batch size 5 with one batch of everything."""
    universe = _universe(bars)
    small = pl.concat([b.results for b in run_scan(ScanConfig(batch_size=5), SESSION, bars, universe)])
    whole = pl.concat([b.results for b in run_scan(ScanConfig(batch_size=1000), SESSION, bars, universe)])
    columns = [c for c in schema.RESULTS if c not in ("batch", "seq")]
    # SIMD reductions may differ in the last bits with the frame's length; nothing more
    assert_frame_equal(small.select(columns).sort("symbol"), whole.select(columns).sort("symbol"), rel_tol=1e-12)


def test_a_small_first_batch_changes_only_the_batch_boundaries(bars):
    universe = _universe(bars)
    uniform = pl.concat([b.results for b in run_scan(ScanConfig(batch_size=8), SESSION, bars, universe)])
    batches = list(run_scan(ScanConfig(batch_size=8), SESSION, bars, universe, first_batch_size=3))
    scanned = [b.scanned for b in batches]
    assert scanned[:3] == [3, 11, 19] and scanned[-1] == batches[-1].total
    results = pl.concat([b.results for b in batches])
    assert results.get_column("seq").to_list() == list(range(1, results.height + 1))
    columns = [c for c in schema.RESULTS if c != "batch"]
    assert_frame_equal(results.select(columns), uniform.select(columns), rel_tol=1e-12)
    capped = list(run_scan(ScanConfig(batch_size=8), SESSION, bars, universe, first_batch_size=50))
    assert [b.scanned for b in capped] == [
        b.scanned for b in run_scan(ScanConfig(batch_size=8), SESSION, bars, universe)
    ]
    with pytest.raises(ValueError, match="first_batch_size"):
        run_scan(ScanConfig(), SESSION, bars, universe, first_batch_size=0)


def test_order_decides_visiting_sequence_and_unplanned_symbols_follow(bars):
    universe = _universe(bars)
    order = ["S020", "S005", "S999", "S010"]  # S999 does not exist: ignored
    candidates = scan_candidates(universe, ScanConfig(), order)
    assert candidates[:3] == ["S020", "S005", "S010"]
    assert sorted(candidates) == sorted(universe.filter(pl.col("passed")).get_column("symbol").to_list())
    first = next(iter(run_scan(ScanConfig(batch_size=3), SESSION, bars, universe, order=order)))
    assert first.results.get_column("symbol").to_list() == ["S020", "S005", "S010"]


def test_sector_filter_and_max_symbols(bars):
    universe = _universe(bars)
    energy = scan_candidates(universe, ScanConfig(sectors=("Energy",)), None)
    expected = universe.filter(pl.col("passed") & (pl.col("sector") == "Energy")).get_column("symbol").to_list()
    assert energy == sorted(expected)
    assert len(scan_candidates(universe, ScanConfig(max_symbols=4), None)) == 4


def test_max_signals_stops_after_the_batch_that_reaches_it(bars):
    universe = _universe(bars)
    full = pl.concat([b.results for b in run_scan(ScanConfig(batch_size=4), SESSION, bars, universe)])
    total_signals = full.get_column("signal").is_in(["Buy", "Strong Buy"]).sum()
    assert total_signals >= 2, "fixture must contain signals"
    run = run_scan(ScanConfig(batch_size=4, max_signals=1), SESSION, bars, universe)
    batches = list(run)
    assert run.end_reason == END_MAX_SIGNALS
    assert run.signals >= 1
    assert run.scanned < run.total
    # every batch before the last had no signal, otherwise the scan would have stopped there
    assert all(b.signals == 0 for b in batches[:-1])


def test_timeout_and_stop_request_end_the_scan(bars):
    universe = _universe(bars)
    ticks = itertools.count(0.0, 1.0)  # every clock read advances one second
    run = run_scan(ScanConfig(batch_size=4, timeout_s=3), SESSION, bars, universe, clock=lambda: next(ticks))
    batches = list(run)
    assert run.end_reason == END_TIMEOUT
    assert 0 < len(batches) < -(-run.total // 4)

    calls = {"n": 0}

    def stop_after_two() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    run = run_scan(ScanConfig(batch_size=4), SESSION, bars, universe, should_stop=stop_after_two)
    assert len(list(run)) == 2
    assert run.end_reason == END_STOPPED


def test_symbol_without_bar_on_session_is_rejected_with_reason(bars):
    universe = _universe(bars)
    halted = bars.filter(~((pl.col("symbol") == "S004") & (pl.col("date") == SESSION)))
    rejections = pl.concat([b.rejections for b in run_scan(ScanConfig(), SESSION, halted, universe)])
    assert rejections.filter(pl.col("symbol") == "S004").get_column("reason").to_list() == ["no_bar_on_session"]


def test_min_tech_rating_filters_but_keeps_seq_gapless(bars):
    universe = _universe(bars)
    run = run_scan(ScanConfig(batch_size=6, min_tech_rating=50), SESSION, bars, universe)
    batches = list(run)
    results = pl.concat([b.results for b in batches])
    assert (results.get_column("tech_rating") >= 50).all()
    assert results.get_column("seq").to_list() == list(range(1, results.height + 1))
    below = pl.concat([b.rejections for b in batches]).filter(pl.col("reason") == "below_min_tech_rating")
    assert below.height > 0


def test_enrich_hook_adds_columns_to_every_result_once(bars):
    universe = _universe(bars)
    seen_sizes = []

    def enrich(results: pl.DataFrame) -> pl.DataFrame:
        seen_sizes.append(results.height)
        # a hook may add a column named like the numbering: the engine's own numbering wins
        return results.with_columns((pl.col("tech_rating") / 100).alias("alpha_score"), pl.lit(-1).alias("seq"))

    from technic_core.scan import ScanHooks

    run = run_scan(ScanConfig(batch_size=10), SESSION, bars, universe, hooks=ScanHooks(enrich=enrich))
    batches = list(run)
    results = pl.concat([b.results for b in batches])
    assert 0 not in seen_sizes and sum(seen_sizes) == results.height
    assert len(seen_sizes) < len(batches), "enriched per computation pass, not per batch"
    assert (results.get_column("alpha_score") * 100 - results.get_column("tech_rating")).abs().max() < 1e-12
    assert results.get_column("seq").to_list() == list(range(1, results.height + 1))


def test_an_enrich_hook_that_drops_rows_is_refused(bars):
    from technic_core.scan import ScanHooks

    hooks = ScanHooks(enrich=lambda results: results.head(1))
    with pytest.raises(ValueError, match="enrich hook must keep the rows"):
        list(run_scan(ScanConfig(batch_size=10), SESSION, bars, _universe(bars), hooks=hooks))


def test_reorder_hook_changes_the_remaining_order_and_must_keep_the_set(bars):
    universe = _universe(bars)
    from technic_core.scan import ScanHooks

    calls = []

    def reverse(remaining: list[str], so_far: pl.DataFrame) -> list[str]:
        calls.append((len(remaining), so_far.height))
        return list(reversed(remaining))

    run = run_scan(ScanConfig(batch_size=10), SESSION, bars, universe, hooks=ScanHooks(reorder=reverse))
    batches = list(run)
    candidates = scan_candidates(universe, ScanConfig(), None)
    assert batches[0].results.get_column("symbol").to_list() == candidates[:10]
    second = batches[1].results.get_column("symbol").to_list() + batches[1].rejections.get_column("symbol").to_list()
    assert set(second) == set(list(reversed(candidates[10:]))[:10])
    assert calls[0][1] == batches[0].results.height

    def lossy(remaining: list[str], so_far: pl.DataFrame) -> list[str]:
        return remaining[1:]

    with pytest.raises(ValueError, match="reorder hook"):
        list(run_scan(ScanConfig(batch_size=10), SESSION, bars, universe, hooks=ScanHooks(reorder=lossy)))


def test_tiny_batches_call_the_reorder_hook_every_few_symbols_with_every_result_so_far(bars):
    from technic_core.scan import REORDER_MIN_SYMBOLS, ScanHooks

    universe = _universe(bars)
    calls: list[tuple[int, int]] = []

    def keep(remaining: list[str], so_far: pl.DataFrame) -> list[str]:
        calls.append((len(remaining), so_far.height))
        return remaining

    batches = list(run_scan(ScanConfig(batch_size=1), SESSION, bars, universe, hooks=ScanHooks(reorder=keep)))
    total = len(batches)
    assert total > 3 * REORDER_MIN_SYMBOLS
    scanned_at_calls = [total - remaining for remaining, _ in calls]
    assert scanned_at_calls[0] == 1  # after the first batch, as with any batch size
    assert all(later - earlier == REORDER_MIN_SYMBOLS for earlier, later in itertools.pairwise(scanned_at_calls))
    assert len(calls) == 1 + (total - 2) // REORDER_MIN_SYMBOLS
    results_before = [sum(b.results.height for b in batches[:scanned]) for scanned in scanned_at_calls]
    assert [height for _, height in calls] == results_before


def test_rows_within_a_batch_follow_the_visiting_order(bars):
    universe = _universe(bars)
    order = ["S030", "S002", "S017", "S008", "S025"]
    first = next(iter(run_scan(ScanConfig(batch_size=5), SESSION, bars, universe, order=order)))
    assert first.results.get_column("symbol").to_list() == order


def test_row_order_and_bars_outside_the_window_do_not_change_results(bars):
    """Batches are cut from the history per batch (binary search on symbol-sorted bars, a filter
    otherwise): any row order, later sessions, sessions before the lookback and a `ScanHistory` prepared
    once and scanned before give the same results as bars holding exactly the window, sorted."""
    universe = _universe(bars)
    config = ScanConfig(batch_size=6, lookback_sessions=120)
    window = calendar.sessions_back(SESSION, 120)
    expected = list(run_scan(config, SESSION, bars.filter(pl.col("date").is_in(window)), universe))
    later = bars.filter(pl.col("date") == SESSION).with_columns(
        pl.col("date").map_elements(calendar.next_session, return_dtype=pl.Date), pl.col("close") * 3
    )
    extended = pl.concat([bars, later])
    prepared = ScanHistory.of(extended.sort("symbol", "date"))
    list(run_scan(ScanConfig(batch_size=50), calendar.next_session(SESSION), prepared, universe))  # used before
    variants = {
        "symbol-major": extended.sort("symbol", "date"),
        "date-major": extended.sort("date", "symbol"),
        "shuffled": extended.sample(fraction=1.0, shuffle=True, seed=3),
        "prepared": prepared,
    }
    for name, variant in variants.items():
        run = run_scan(config, SESSION, variant, universe)
        got = list(run)
        assert run.end_reason == END_COMPLETE, name
        assert len(got) == len(expected), name
        for ours, theirs in zip(got, expected):
            assert ours.results.equals(theirs.results, null_equal=True), name
            assert ours.rejections.equals(theirs.rejections, null_equal=True), name
