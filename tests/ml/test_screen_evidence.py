"""Screens over a labeled simulated warehouse: hits against a plain per-symbol reference, and evidence that
tells a screen that pays (the top decile of the simulator's planted alpha) from one that cannot (a random
decile)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from technic_core import calendar, schema
from technic_core.ml.labels import label_ready
from technic_core.screens import compile
from technic_core.screens.evaluation import (
    hits_between,
    performance,
    rating_performance,
    result_columns,
    saved_screen_hits,
    screen_outcomes,
)
from technic_core.screens.library import BUILTINS, SavedScreen, ScreenVersion

FIRST, LAST = dt.date(2019, 6, 3), dt.date(2019, 6, 14)


def test_hits_follow_a_plain_per_symbol_reference(store):
    text = "rsi < 50 and close > prev(close) and sector != 'Energy'"
    hits = hits_between(store, compile(text, result_columns()), FIRST, LAST, columns=["close"]).collect()

    rows = store.read("results", calendar.previous_session(FIRST), LAST).select(
        "date", "symbol", "close", "rsi", "sector"
    )
    by_key = {(r["symbol"], r["date"]): r for r in rows.iter_rows(named=True)}
    expected = set()
    for row in rows.iter_rows(named=True):
        prior = by_key.get((row["symbol"], calendar.previous_session(row["date"])))
        if row["date"] < FIRST or prior is None or None in (row["rsi"], row["close"], prior["close"]):
            continue
        if row["rsi"] < 50 and row["close"] > prior["close"] and row["sector"] != "Energy":
            expected.add((row["date"], row["symbol"]))
    assert expected and set(hits.select("date", "symbol").iter_rows()) == expected
    for _, day in hits.group_by("date"):
        ratings = day.join(rows, on=["date", "symbol"]).get_column("symbol")
        assert ratings.len() == day.height  # every hit is a stored row of its session


def test_saved_screens_rank_their_hits_and_a_broken_screen_fails_alone(store):
    broken = SavedScreen(
        name="reads-nothing-stored",
        title="",
        description="",
        expression="no_such_column < 30",
        versions=(ScreenVersion(1, "0" * 12, "no_such_column < 30"),),
    )
    hits, failures = saved_screen_hits(store, [*BUILTINS, broken], FIRST, LAST)
    assert hits.columns == list(schema.SCREEN_HITS)
    assert [f.screen for f in failures] == ["reads-nothing-stored"]
    assert "no_such_column" in failures[0].message
    for _, group in hits.group_by("screen", "date"):
        assert group.sort("rank").get_column("rank").to_list() == list(range(1, group.height + 1))
    oversold = hits.filter(pl.col("screen") == "oversold")
    stored = store.read("results", FIRST, LAST).filter(pl.col("rsi") < 30)
    assert set(oversold.select("date", "symbol").iter_rows()) == set(stored.select("date", "symbol").iter_rows())


def _evidence_of(store, pick) -> pl.DataFrame:
    """Evidence of a screen whose hits on each labeled session are `pick(session, outcomes)`."""
    bar_sessions = set(store.sessions("bars"))
    parts = []
    for session in store.sessions("outcomes"):
        if not label_ready(session, bar_sessions):
            continue
        outcomes = store.read("outcomes", session, session)
        hits = (
            pick(session, outcomes)
            .select("date", "symbol")
            .with_columns(
                pl.lit("probe").alias("screen"),
                pl.lit(1, dtype=pl.Int64).alias("screen_version"),
                pl.lit("x").alias("screen_fingerprint"),
                pl.lit(1, dtype=pl.Int64).alias("rank"),
            )
        )
        results = store.read("results", session, session)
        evidence, _ = screen_outcomes(schema.conform(hits, schema.SCREEN_HITS, "screens"), outcomes, results)
        parts.append(evidence.filter(pl.col("kind") == "screen"))
    return performance(pl.concat(parts)).row(0, named=True)


def test_a_screen_on_the_planted_alpha_pays_and_a_random_one_does_not(store, market):
    sessions = store.sessions("outcomes")
    oracle = market.oracle_expected_return(sessions[0], sessions[-1], 5)
    rng = np.random.default_rng(11)

    def top_decile(session, outcomes):
        today = oracle.filter(pl.col("date") == session).join(outcomes.select("symbol"), on="symbol")
        return today.filter(pl.col("expected_return") >= pl.col("expected_return").quantile(0.9))

    def random_decile(session, outcomes):
        return outcomes.filter(pl.Series(rng.random(outcomes.height) < 0.1))

    planted, random = _evidence_of(store, top_decile), _evidence_of(store, random_decile)
    assert planted["sessions"] == random["sessions"] > 50
    assert planted["excess_5d"] > 0 and planted["t_excess_5d"] > 3
    assert abs(random["t_excess_5d"]) < 2 and abs(random["excess_5d"]) < planted["excess_5d"] / 3


def test_signal_bands_and_ratings_are_measured_on_the_same_sessions(store):
    session = store.sessions("outcomes")[10]
    outcomes = store.read("outcomes", session, session)
    results = store.read("results", session, session)
    evidence, ic = screen_outcomes(schema.empty(schema.SCREEN_HITS), outcomes, results)
    bands = evidence.filter(pl.col("kind") == "signal")
    assert bands.height == outcomes.height  # every scanned symbol is in exactly one band
    universe_mean = outcomes.get_column("fwd_ret_5d").mean()
    row = bands.row(0, named=True)
    assert row["excess_5d"] == pytest.approx(row["fwd_ret_5d"] - universe_mean)
    tech = ic.filter(pl.col("rating") == "tech_rating").row(0, named=True)
    joined = outcomes.select("symbol", "fwd_ret_5d").join(results.select("symbol", "tech_rating"), on="symbol")
    reference = np.corrcoef(joined["tech_rating"].rank().to_numpy(), joined["fwd_ret_5d"].rank().to_numpy())[0, 1]
    assert tech["rank_ic_5d"] == pytest.approx(reference)
    summary = rating_performance(ic)
    assert summary.filter(pl.col("rating") == "tech_rating").get_column("sessions").item() == 1


def test_the_screen_assets_backfill_a_new_screen_and_measure_it(store):
    from dagster import materialize

    from technic_core.screens import ScreenLibrary
    from technic_pipelines.defs.screens.assets import screen_hits, screen_performance
    from technic_pipelines.partitions import session_key
    from technic_pipelines.resources import WarehouseResource

    library = ScreenLibrary(store)
    library.put("cheap-and-strong", "close < 50 and tech_rating > 60")
    resources = {"warehouse": WarehouseResource(root=str(store.root))}
    tags = {
        "dagster/asset_partition_range_start": session_key(FIRST),
        "dagster/asset_partition_range_end": session_key(LAST),
    }
    backfill = materialize([screen_hits], resources=resources, tags=tags)
    assert backfill.success
    checks = {e.check_name: e for e in backfill.get_asset_check_evaluations()}
    assert checks["screen_hits_unique"].passed and checks["screen_hits_all_evaluated"].passed
    stored = store.read("screens", FIRST, LAST).filter(pl.col("screen") == "cheap-and-strong")
    expected = store.read("results", FIRST, LAST).filter((pl.col("close") < 50) & (pl.col("tech_rating") > 60))
    assert set(stored.select("date", "symbol").iter_rows()) == set(expected.select("date", "symbol").iter_rows())
    assert stored.get_column("screen_version").unique().to_list() == [1]

    library.put("cheap-and-strong", "close < 40 and tech_rating > 60")  # a changed screen is a new version
    rerun = materialize([screen_hits], resources=resources, partition_key=session_key(LAST))
    assert rerun.success
    assert store.read("screens", FIRST, FIRST).filter(pl.col("screen") == "cheap-and-strong")[
        "screen_version"
    ].unique().to_list() == [1]
    assert store.read("screens", LAST, LAST).filter(pl.col("screen") == "cheap-and-strong")[
        "screen_version"
    ].unique().to_list() == [2]

    measured = materialize([screen_performance], resources=resources, tags=tags)
    assert measured.success
    evidence = store.read("screen_outcomes", FIRST, LAST)
    assert {"screen", "signal"} <= set(evidence.get_column("kind").unique())
    metadata = measured.get_asset_materialization_events()[-1].materialization.metadata
    assert (
        "cheap-and-strong" in metadata["performance"].value and "data:image/png" in metadata["excess_by_screen"].value
    )


def test_the_cli_screens_stored_results_and_explains_a_bad_expression(store):
    from typer.testing import CliRunner

    from technic_pipelines.cli import app

    runner = CliRunner()
    day = LAST.isoformat()
    as_csv = runner.invoke(
        app, ["screen", "rsi < 40", "--date", day, "--format", "csv", "--warehouse", str(store.root)]
    )
    assert as_csv.exit_code == 0, as_csv.output
    shown = pl.read_csv(as_csv.stdout.encode())
    expected = store.read("results", LAST, LAST).filter(pl.col("rsi") < 40)
    assert sorted(shown.get_column("symbol")) == sorted(expected.get_column("symbol"))
    assert shown.columns[:2] == ["symbol", "close"] and "rsi" in shown.columns

    table = runner.invoke(
        app, ["screen", "oversold", "--date", day, "--warehouse", str(store.root)], env={"COLUMNS": "80"}
    )
    assert table.exit_code == 0 and "oversold" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80

    bad = runner.invoke(app, ["screen", "rsi < and close", "--date", day, "--warehouse", str(store.root)])
    assert bad.exit_code == 2 and "at 6 (line 1, column 7)" in bad.output
    unknown = runner.invoke(app, ["screen", "rsii < 30", "--warehouse", str(store.root)])
    assert unknown.exit_code == 2 and "rsi" in unknown.output
