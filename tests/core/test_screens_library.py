"""Saved screens: the built-ins against the real catalog and result columns, screens.yaml round trips on a
local and an object-store warehouse, versions, built-in protection, invalid entries reported by name and
line, and updates that lose nothing to a concurrent writer."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import polars as pl
import pytest
import yaml

from technic_core import schema
from technic_core.catalog import compute_catalog, dtypes
from technic_core.screens import ScreenError, ScreenSyntaxError, UnknownNameError, with_previous
from technic_core.screens.library import (
    BUILTINS,
    NAME_PATTERN,
    SCREENS_FILE,
    BuiltinScreenError,
    InvalidScreenError,
    ScreenConflictError,
    ScreenFileError,
    ScreenLibrary,
    ScreenNotFoundError,
    screener_columns,
)
from technic_core.warehouse import Warehouse

MEMORY = fsspec.filesystem("memory")
COLUMNS = screener_columns()
START = dt.datetime(2024, 6, 3, 14, 0, tzinfo=dt.UTC)


class Clock:
    """One minute later on every call, so each saved version has its own time."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dt.datetime:
        self.calls += 1
        return START + dt.timedelta(minutes=self.calls)


@pytest.fixture
def memory_root() -> Iterator[str]:
    root = f"memory://technic-screens-{uuid.uuid4().hex}/warehouse"
    yield root
    base = fsspec.core.url_to_fs(root)[1]
    if MEMORY.exists(base):
        MEMORY.rm(base, recursive=True)


@pytest.fixture(params=["local", "memory"])
def warehouse(request, tmp_path: Path, memory_root: str) -> Warehouse:
    return Warehouse(tmp_path / "warehouse" if request.param == "local" else memory_root)


@pytest.fixture
def library(warehouse: Warehouse) -> ScreenLibrary:
    return ScreenLibrary(warehouse, clock=Clock())


def _write(library: ScreenLibrary, text: str) -> None:
    library.warehouse.storage.write_bytes(library.path, text.encode("utf-8"))


def _file(library: ScreenLibrary) -> str:
    return library.path.read_bytes().decode("utf-8")


# ------------------------------------------------------------------ built-ins


def test_builtins_cover_the_usual_screens_and_compile_against_the_real_columns():
    names = [screen.name for screen in BUILTINS]
    assert len(names) >= 12 and len(set(names)) == len(names)
    assert {
        "top-gainers",
        "top-losers",
        "new-52w-high",
        "new-52w-low",
        "unusual-volume",
        "oversold",
        "overbought",
        "golden-cross",
        "death-cross",
        "breakout-20d",
        "pullback-sma-50",
        "strong-buy",
        "consensus-strong-buy",
    } <= set(names)
    # An empty session with every result and catalog column, in their real dtypes: each built-in evaluates.
    session = pl.DataFrame(schema={**schema.RESULTS, **dtypes()})
    for screen in BUILTINS:
        assert NAME_PATTERN.fullmatch(screen.name) and screen.title and screen.description
        assert screen.builtin and screen.version == 1 and screen.ref == f"{screen.name}@1"
        assert screen.sort_by in COLUMNS
        compiled = screen.compile(COLUMNS)
        assert compiled.fingerprint == screen.fingerprint
        assert compiled.columns | compiled.prev_columns <= set(COLUMNS)
        assert compiled.apply(with_previous(session, session, compiled.prev_columns)).height == 0


def test_the_docs_list_every_builtin_as_defined():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "screens.md").read_text()
    for screen in BUILTINS:
        direction = "↓" if screen.descending else "↑"
        row = f"| `{screen.name}` | {screen.title} | `{screen.expression}` | `{screen.sort_by}` {direction} |"
        assert row in docs


def test_builtins_select_what_their_titles_say():
    library = {screen.name: screen.compile(COLUMNS) for screen in BUILTINS}
    rows = pl.DataFrame(
        {
            "symbol": ["UP", "DOWN", "FLAT"],
            "change_1d": [0.08, -0.09, 0.0],
            "rsi": [75.0, 22.0, 50.0],
            "signal": ["Strong Buy", "Sell", "Neutral"],
            "consensus_signal": ["Buy", "Strong Sell", "Strong Buy"],
            "golden_cross": [True, False, None],
        }
    )

    def hits(name: str) -> list[str]:
        return library[name].apply(rows)["symbol"].to_list()

    assert hits("top-gainers") == ["UP"] and hits("top-losers") == ["DOWN"]
    assert hits("overbought") == ["UP"] and hits("oversold") == ["DOWN"]
    assert hits("strong-buy") == ["UP"] and hits("consensus-strong-buy") == ["FLAT"]
    assert hits("golden-cross") == ["UP"]


def _bars(symbol: str, seed: int, sessions: int = 80) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.002, 0.03, sessions)))
    open_ = close * np.exp(rng.normal(0.0, 0.01, sessions))
    dates = np.busday_offset(np.datetime64("2024-01-02"), np.arange(sessions), roll="forward")
    return pl.DataFrame(
        {
            "symbol": symbol,
            "date": dates.astype("datetime64[D]"),
            "open": open_,
            "high": np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.01, sessions))),
            "low": np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.01, sessions))),
            "close": close,
            "volume": rng.lognormal(13.0, 0.6, sessions),
        }
    )


def test_breakout_is_a_close_above_the_previous_20_sessions_high_on_volume():
    bars = pl.concat([_bars(f"S{seed}", seed) for seed in range(6)])
    catalog = compute_catalog(bars).sort("symbol", "date")
    breakout = next(screen for screen in BUILTINS if screen.name == "breakout-20d").compile(COLUMNS)
    reference = catalog.with_columns(
        prior_high=pl.col("high").shift(1).rolling_max(20).over("symbol"),
    ).filter((pl.col("close") > pl.col("prior_high")) & (pl.col("rel_volume") >= 1.5))
    dates = catalog["date"].unique().sort().to_list()
    found = []
    for previous, session in itertools.pairwise(dates):
        today = catalog.filter(pl.col("date") == session)
        yesterday = catalog.filter(pl.col("date") == previous)
        found.append(breakout.apply(with_previous(today, yesterday, breakout.prev_columns)).select("symbol", "date"))
    hits = pl.concat(found).sort("symbol", "date")
    assert hits.height > 0
    assert hits.rows() == reference.select("symbol", "date").sort("symbol", "date").rows()


# ------------------------------------------------------------------ saving, loading, versions


def test_put_and_load_round_trip_through_the_yaml_file(library):
    assert library.load().screens.keys() == {screen.name for screen in BUILTINS}
    saved = library.put(
        "my-breakouts",
        "close > sma_50\n  and rel_volume > 2",
        title="Mes cassures ↑",
        description="Close over the 50-session SMA on twice the volume.",
        sort_by="rel_volume",
    )
    assert (saved.version, saved.ref, saved.builtin) == (1, "my-breakouts@1", False)
    assert saved.versions[0].saved_at == START + dt.timedelta(minutes=1)
    again = ScreenLibrary(library.warehouse).load()
    assert again.screens["my-breakouts"] == saved
    assert list(again.screens)[: len(BUILTINS)] == [screen.name for screen in BUILTINS]
    assert again.problems == ()
    stored = yaml.safe_load(_file(library))
    assert stored["format"] == 1
    assert stored["screens"]["my-breakouts"] == {
        "title": "Mes cassures ↑",
        "description": "Close over the 50-session SMA on twice the volume.",
        "expression": "close > sma_50\n  and rel_volume > 2",
        "sort_by": "rel_volume",
        "descending": True,
        "versions": [
            {
                "version": 1,
                "fingerprint": saved.fingerprint,
                "expression": "close > sma_50\n  and rel_volume > 2",
                "saved_at": "2024-06-03T14:01:00Z",
            }
        ],
    }
    assert library.get("my-breakouts") == saved


def test_a_changed_expression_is_a_new_version_and_history_is_kept(library):
    first = library.put("cheap", "close < 10")
    assert library.put("cheap", "close<10", title="Cheap stocks").version == 1  # layout and title only
    second = library.put("cheap", "close < 5")
    assert (second.version, [v.version for v in second.versions]) == (2, [1, 2])
    assert second.fingerprint != first.fingerprint
    assert library.version("cheap", 1).expression == "close < 10"
    assert library.version("cheap", 2).fingerprint == second.fingerprint
    with pytest.raises(ScreenNotFoundError):
        library.version("cheap", 3)
    # Deleting keeps the versions for hits that recorded them; saving the name again continues the count.
    assert library.delete("cheap") == second
    assert "cheap" not in library.load().screens
    assert library.load().deleted["cheap"].deleted_at is not None
    assert library.version("cheap", 1).expression == "close < 10"
    with pytest.raises(ScreenNotFoundError):
        library.get("cheap")
    with pytest.raises(ScreenNotFoundError):
        library.delete("cheap")
    revived = library.put("cheap", "close < 3")
    assert [v.version for v in revived.versions] == [1, 2, 3] and revived.deleted_at is None
    assert "deleted_at" not in yaml.safe_load(_file(library))["screens"]["cheap"]


def test_saving_an_unchanged_screen_does_not_rewrite_the_file(library):
    library.put("cheap", "close < 10")
    etag = library.load().etag
    library.put("cheap", "close < 10")
    assert library.load().etag == etag


def test_builtins_cannot_be_overwritten_or_deleted(library):
    with pytest.raises(BuiltinScreenError, match="built-in"):
        library.put("top-gainers", "change_1d > 0.1")
    with pytest.raises(BuiltinScreenError, match="built-in"):
        library.delete("oversold")
    with pytest.raises(ScreenNotFoundError):
        library.delete("never-saved")


def test_put_validates_before_writing(library):
    with pytest.raises(UnknownNameError) as unknown:
        library.put("mine", "rsii < 30")
    assert unknown.value.suggestions == ("rsi",) and unknown.value.position == 0
    with pytest.raises(ScreenSyntaxError):
        library.put("mine", "rsi < ")
    with pytest.raises(InvalidScreenError, match="name"):
        library.put("Mine!", "rsi < 30")
    with pytest.raises(InvalidScreenError, match="name"):
        library.put("x" * 65, "rsi < 30")
    with pytest.raises(InvalidScreenError, match="sort_by"):
        library.put("mine", "rsi < 30", sort_by="nope")
    with pytest.raises(InvalidScreenError, match="title"):
        library.put("mine", "rsi < 30", title="t" * 121)
    assert not library.path.is_file()


# ------------------------------------------------------------------ hand-edited files

HAND_EDITED = """\
format: 1
screens:
  good:
    title: Good
    expression: rsi < 30
  typo:
    expression: rsii < 30
  broken:
    expression: "rsi < "
  Bad Name:
    expression: rsi < 30
  no-expression:
    title: Nothing to run
  top-gainers:
    expression: change_1d > 0.5
  twice:
    expression: rsi < 10
  bad-versions:
    expression: rsi < 30
    versions: [{version: 2, fingerprint: abc, expression: rsi < 30}, {version: 1, fingerprint: d, expression: x}]
  twice:
    expression: rsi < 20
  bad-sort:
    expression: rsi < 30
    sort_by: nope
"""


def test_invalid_entries_are_reported_with_name_and_line_and_the_valid_ones_load(library, caplog):
    _write(library, HAND_EDITED)
    with caplog.at_level(logging.WARNING, logger="technic_core.screens.library"):
        loaded = library.load()
    assert {"good", "twice"} <= loaded.screens.keys()
    assert loaded.screens["twice"].expression == "rsi < 20"  # the later definition, as YAML has it
    assert loaded.screens["top-gainers"].builtin
    problems = {problem.name: problem for problem in loaded.problems}
    assert set(problems) == {
        "typo",
        "broken",
        "Bad Name",
        "no-expression",
        "top-gainers",
        "twice",
        "bad-versions",
        "bad-sort",
    }
    assert problems["typo"].line == 7 and "unknown column 'rsii'; did you mean rsi?" in problems["typo"].message
    assert problems["broken"].line == 9 and "expected a value after '<'" in problems["broken"].message
    assert problems["Bad Name"].line == 10 and "name" in problems["Bad Name"].message
    assert problems["no-expression"].line == 12
    assert problems["top-gainers"].line == 14 and "built-in" in problems["top-gainers"].message
    assert problems["twice"].line == 16 and "defined again at line 21" in problems["twice"].message
    assert problems["bad-versions"].line == 18 and "increase" in problems["bad-versions"].message
    assert problems["bad-sort"].line == 23 and "sort_by" in problems["bad-sort"].message
    assert str(problems["typo"]).startswith(f"{SCREENS_FILE} line 7, screen 'typo': expression: unknown column")
    assert "8 entries left out" in caplog.text and "screen 'typo'" in caplog.text
    # Saving another screen keeps the invalid entries as they were written.
    library.put("another", "rsi > 80")
    stored = yaml.safe_load(_file(library))["screens"]
    assert stored["typo"] == {"expression": "rsii < 30"} and stored["Bad Name"] == {"expression": "rsi < 30"}
    assert {problem.name for problem in library.load().problems} == set(problems) - {"twice"}


def test_saving_over_an_invalid_entry_continues_its_versions(library):
    _write(
        library,
        "screens:\n  old:\n    expression: gone_column > 1\n"
        "    versions:\n    - {version: 4, fingerprint: 0123456789ab, expression: gone_column > 1}\n",
    )
    assert [problem.name for problem in library.load().problems] == ["old"]
    assert [v.version for v in library.put("old", "rsi > 1").versions] == [4, 5]
    _write(library, "screens:\n  old:\n    expression: gone_column > 1\n    versions: oops\n")
    with pytest.raises(ScreenFileError, match="versions"):
        library.put("old", "rsi > 1")


def test_a_hand_edited_expression_is_the_next_version(library):
    saved = library.put("mine", "rsi < 30")
    _write(library, _file(library).replace("expression: rsi < 30\n    versions", "expression: rsi < 25\n    versions"))
    loaded = library.get("mine")
    assert [v.version for v in loaded.versions] == [1, 2]
    assert loaded.versions[1].saved_at is None and loaded.expression == "rsi < 25"
    assert loaded.versions[0] == saved.versions[0]
    resaved = library.put("mine", "rsi < 25")
    assert [v.version for v in resaved.versions] == [1, 2]
    assert yaml.safe_load(_file(library))["screens"]["mine"]["versions"][1]["expression"] == "rsi < 25"


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("screens:\n  a: [unclosed\n", "not valid YAML", 3),
        ("- a\n- b\n", "a 'screens' mapping", 1),
        ("format: 2\nscreens: {}\n", "format 2", 1),
        ("screens: [a, b]\n", "a 'screens' mapping", 1),
    ],
)
def test_an_unreadable_file_leaves_the_builtins_and_is_not_written_over(library, text, message, line):
    _write(library, text)
    loaded = library.load()
    assert loaded.screens.keys() == {screen.name for screen in BUILTINS} and not loaded.readable
    assert message in loaded.problems[0].message and loaded.problems[0].line == line
    with pytest.raises(ScreenFileError, match="fix or remove"):
        library.put("mine", "rsi < 30")
    assert _file(library) == text


def test_an_empty_file_or_empty_screens_is_no_screens(library):
    for text in ("", "# nothing yet\n", "format: 1\nscreens:\n"):
        _write(library, text)
        loaded = library.load()
        assert loaded.readable and loaded.problems == () and len(loaded.screens) == len(BUILTINS)
    library.put("mine", "rsi < 30")
    assert set(yaml.safe_load(_file(library))["screens"]) == {"mine"}


# ------------------------------------------------------------------ concurrency


def test_if_match_refuses_to_save_over_a_change_the_caller_did_not_see(library):
    assert library.load().etag is None
    library.put("a", "rsi < 30")
    etag = library.load().etag
    library.put("b", "rsi < 20")
    with pytest.raises(ScreenConflictError, match="changed since it was read"):
        library.put("a", "rsi < 10", if_match=etag)
    with pytest.raises(ScreenConflictError):
        library.delete("a", if_match=etag)
    assert library.put("a", "rsi < 10", if_match=library.load().etag).version == 2


def test_a_write_landing_during_an_update_is_not_lost(memory_root):
    """On an object store (no lock) the update reads again before its PUT and redoes its change on top."""
    other = ScreenLibrary(Warehouse(memory_root))

    class Racing(Clock):
        def __call__(self) -> dt.datetime:
            if self.calls == 0:
                other.put("theirs", "rsi > 90")  # lands after our read, before our write
            return super().__call__()

    ours = ScreenLibrary(Warehouse(memory_root), clock=Racing())
    ours.put("ours", "rsi < 10")
    assert {"ours", "theirs"} <= ours.load().screens.keys()


def test_concurrent_puts_on_a_local_warehouse_all_land(tmp_path):
    warehouse = Warehouse(tmp_path / "warehouse")
    errors: list[BaseException] = []

    def save(index: int) -> None:
        try:
            ScreenLibrary(warehouse).put(f"screen-{index}", f"rsi < {index}")
        except BaseException as error:  # noqa: BLE001 - handed to the main thread's assertion
            errors.append(error)

    threads = [threading.Thread(target=save, args=(index,)) for index in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {f"screen-{index}" for index in range(12)} <= ScreenLibrary(warehouse).load().screens.keys()
    assert not any(path.name.endswith(".tmp") for path in (tmp_path / "warehouse").iterdir())


def test_screen_errors_are_technic_errors():
    from technic_core.errors import TechnicError

    assert issubclass(ScreenError, TechnicError) and issubclass(BuiltinScreenError, TechnicError)
