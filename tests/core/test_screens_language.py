"""The screen language: examples evaluated on a small hand-made frame against plain-Python references,
precedence, nulls, prev() with a previous-session frame, the normal form, every error class with its place,
limits and pathological inputs, and a seeded fuzz loop."""

from __future__ import annotations

import math
import operator
import random
import time
from collections.abc import Callable

import polars as pl
import pytest

from technic_core.errors import TechnicError
from technic_core.screens import (
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_LITERAL_LENGTH,
    MAX_TERMS,
    Kind,
    ScreenError,
    ScreenLimitError,
    ScreenSyntaxError,
    ScreenTypeError,
    UnknownNameError,
    column_kinds,
    compile,
    fingerprint,
    kind_of,
    normalize,
    prev_name,
    with_previous,
)

NAN = float("nan")

#: The session's rows; None and NaN are missing values, on purpose in different places.
ROWS = [
    {"symbol": "AAA", "close": 110.0, "sma_50": 105.0, "sma_200": 100.0, "change_1d": 0.06, "rsi": 72.0,
     "rel_volume": 3.5, "sector": "Energy", "signal": "Strong Buy", "new_high_52w": True, "golden_cross": False,
     "close_vs_sma_50": 0.01, "history_sessions": 300},
    {"symbol": "BBB", "close": 48.0, "sma_50": 50.0, "sma_200": 49.0, "change_1d": -0.07, "rsi": 25.0,
     "rel_volume": 1.0, "sector": "Health Care", "signal": "Sell", "new_high_52w": False, "golden_cross": True,
     "close_vs_sma_50": -0.04, "history_sessions": 250},
    {"symbol": "CCC", "close": 20.0, "sma_50": None, "sma_200": None, "change_1d": 0.04, "rsi": NAN,
     "rel_volume": None, "sector": None, "signal": None, "new_high_52w": None, "golden_cross": None,
     "close_vs_sma_50": None, "history_sessions": 40},
    {"symbol": "DDD", "close": 101.0, "sma_50": 102.0, "sma_200": 100.0, "change_1d": 0.0, "rsi": 30.0,
     "rel_volume": 0.0, "sector": "Information Technology", "signal": "Buy", "new_high_52w": True,
     "golden_cross": False, "close_vs_sma_50": -0.0098, "history_sessions": 260},
    {"symbol": "EEE", "close": 70.0, "sma_50": 69.0, "sma_200": 71.0, "change_1d": 0.051, "rsi": 70.0,
     "rel_volume": 3.0, "sector": "Energy", "signal": "Strong Buy", "new_high_52w": False, "golden_cross": False,
     "close_vs_sma_50": 0.0145, "history_sessions": 500},
    {"symbol": "FFF", "close": 5.0, "sma_50": 6.0, "sma_200": 4.0, "change_1d": None, "rsi": 50.0,
     "rel_volume": 2.0, "sector": "Utilities", "signal": "Neutral", "new_high_52w": False, "golden_cross": False,
     "close_vs_sma_50": -0.1667, "history_sessions": 260},
]  # fmt: skip
#: The previous session's rows: no row for FFF (prev() of it is null), one for a symbol no longer listed.
PREVIOUS = [
    {"symbol": "AAA", "close": 99.0, "sma_200": 100.0, "sma_50": 101.0},
    {"symbol": "BBB", "close": 50.0, "sma_200": 49.5, "sma_50": 50.0},
    {"symbol": "CCC", "close": 19.0, "sma_200": None, "sma_50": None},
    {"symbol": "DDD", "close": 101.0, "sma_200": 100.0, "sma_50": 102.0},
    {"symbol": "EEE", "close": 72.0, "sma_200": 71.0, "sma_50": 69.0},
    {"symbol": "ZZZ", "close": 1.0, "sma_200": 1.0, "sma_50": 1.0},
]
SCHEMA = {
    "symbol": pl.String,
    "close": pl.Float64,
    "sma_50": pl.Float64,
    "sma_200": pl.Float64,
    "change_1d": pl.Float64,
    "rsi": pl.Float64,
    "rel_volume": pl.Float64,
    "sector": pl.Categorical,
    "signal": pl.String,
    "new_high_52w": pl.Boolean,
    "golden_cross": pl.Boolean,
    "close_vs_sma_50": pl.Float64,
    "history_sessions": pl.Int64,
}
COLUMNS = column_kinds(SCHEMA)
FRAME = pl.DataFrame(ROWS, schema=SCHEMA)
PREVIOUS_FRAME = pl.DataFrame(PREVIOUS, schema={name: SCHEMA[name] for name in PREVIOUS[0]})
ALL_PREV = ("close", "sma_50", "sma_200")
FULL = with_previous(FRAME, PREVIOUS_FRAME, ALL_PREV)
#: For screens that may read prev() of any column: the session itself stands in for the previous one.
FUZZ_FRAME = with_previous(FRAME, FRAME, COLUMNS)


def hits(text: str, frame: pl.DataFrame = FULL) -> list[str]:
    return compile(text, COLUMNS).apply(frame)["symbol"].to_list()


# ------------------------------------------------------------------ plain-Python references


def _v(value: object) -> object:
    """None for a missing value (None or NaN), else the value."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _cmp(op: Callable[[object, object], bool], a: object, b: object) -> bool:
    """A comparison as the language defines it: false when either side is missing."""
    a, b = _v(a), _v(b)
    return a is not None and b is not None and op(a, b)


def _flag(value: object) -> bool:
    return bool(_v(value))


lt, le, gt, ge, eq, ne = operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne
PREV = {row["symbol"]: row for row in PREVIOUS}


def _p(row: dict, column: str) -> object:
    return PREV.get(row["symbol"], {}).get(column)


EXAMPLES: list[tuple[str, Callable[[dict], bool]]] = [
    ("change_1d > 0.04", lambda r: _cmp(gt, r["change_1d"], 0.04)),
    ("change_1d > 4e-2", lambda r: _cmp(gt, r["change_1d"], 0.04)),
    ("change_1d < -0.05", lambda r: _cmp(lt, r["change_1d"], -0.05)),
    ("rel_volume > 3", lambda r: _cmp(gt, r["rel_volume"], 3)),
    ("rel_volume >= 3", lambda r: _cmp(ge, r["rel_volume"], 3)),
    ("rsi < 30", lambda r: _cmp(lt, r["rsi"], 30)),
    ("rsi <= 30", lambda r: _cmp(le, r["rsi"], 30)),
    ("rsi != 70", lambda r: _cmp(ne, r["rsi"], 70)),
    ("rsi == 70.0", lambda r: _cmp(eq, r["rsi"], 70)),
    ('sector == "Energy"', lambda r: _cmp(eq, r["sector"], "Energy")),
    ("sector != 'Energy'", lambda r: _cmp(ne, r["sector"], "Energy")),
    ('signal == "Strong Buy"', lambda r: _cmp(eq, r["signal"], "Strong Buy")),
    ("golden_cross", lambda r: _flag(r["golden_cross"])),
    ("not golden_cross", lambda r: not _flag(r["golden_cross"])),
    ("golden_cross == false", lambda r: _cmp(eq, r["golden_cross"], False)),
    (
        'new_high_52w and sector in ("Information Technology", "Health Care")',
        lambda r: _flag(r["new_high_52w"]) and r["sector"] in ("Information Technology", "Health Care"),
    ),
    (
        "close > sma_200 and prev(close) <= prev(sma_200)",
        lambda r: _cmp(gt, r["close"], r["sma_200"]) and _cmp(le, _p(r, "close"), _p(r, "sma_200")),
    ),
    (
        "close > sma_200 and sma_50 > sma_200 and abs(close_vs_sma_50) < 0.02",
        lambda r: _cmp(gt, r["close"], r["sma_200"])
        and _cmp(gt, r["sma_50"], r["sma_200"])
        and _v(r["close_vs_sma_50"]) is not None
        and abs(r["close_vs_sma_50"]) < 0.02,
    ),
    ("rsi between 30 and 70", lambda r: _cmp(ge, r["rsi"], 30) and _cmp(le, r["rsi"], 70)),
    ("not (rsi between 30 and 70)", lambda r: not (_cmp(ge, r["rsi"], 30) and _cmp(le, r["rsi"], 70))),
    ("sector in ('Energy', 'Utilities')", lambda r: r["sector"] in ("Energy", "Utilities")),
    (
        "sector not in ('Energy', 'Utilities')",
        lambda r: _v(r["sector"]) is not None and r["sector"] not in ("Energy", "Utilities"),
    ),
    ("history_sessions in (250, 260)", lambda r: r["history_sessions"] in (250, 260)),
    ("close / sma_50 - 1 > 0.01", lambda r: _cmp(gt, _v(r["sma_50"]) and r["close"] / r["sma_50"] - 1, 0.01)),
    ("(close - sma_200) * 2 >= 20", lambda r: _cmp(ge, _v(r["sma_200"]) and (r["close"] - r["sma_200"]) * 2, 20)),
    ("close - sma_200 * 2 < 0", lambda r: _cmp(lt, _v(r["sma_200"]) and r["close"] - r["sma_200"] * 2, 0)),
    ("-close < -100", lambda r: _cmp(lt, -r["close"], -100)),
    ("max(sma_50, sma_200) < close", lambda r: _cmp(lt, _v(r["sma_50"]) and max(r["sma_50"], r["sma_200"]), r["close"])),
    ("min(sma_50, sma_200, 100) >= 50", lambda r: _cmp(ge, _v(r["sma_50"]) and min(r["sma_50"], r["sma_200"], 100), 50)),
    ("abs(change_1d) >= 0.05", lambda r: _cmp(ge, _v(r["change_1d"]) and abs(r["change_1d"]), 0.05)),
    ("change_1d > 0.05 or rsi < 30", lambda r: _cmp(gt, r["change_1d"], 0.05) or _cmp(lt, r["rsi"], 30)),
    ("true", lambda r: True),
    ("FALSE", lambda r: False),
    ("prev(close) < close", lambda r: _cmp(lt, _p(r, "close"), r["close"])),
    ("close / (rel_volume - rel_volume) > 0", lambda r: False),
]  # fmt: skip


@pytest.mark.parametrize(("text", "reference"), EXAMPLES, ids=[text for text, _ in EXAMPLES])
def test_examples_match_plain_python(text, reference):
    expected = [row["symbol"] for row in ROWS if reference(row)]
    assert hits(text) == expected
    assert compile(text, COLUMNS).apply(FULL.lazy()).collect()["symbol"].to_list() == expected


def test_precedence_and_binds_tighter_than_or():
    # AAA: change_1d > 0.05 only; BBB: rsi < 30 only.
    assert hits("change_1d > 0.05 or rsi < 30 and sector == 'Energy'") == ["AAA", "EEE"]
    assert hits("change_1d > 0.05 or (rsi < 30 and sector == 'Energy')") == ["AAA", "EEE"]
    assert hits("(change_1d > 0.05 or rsi < 30) and sector == 'Energy'") == ["AAA", "EEE"]
    assert hits("(change_1d > 0.05 or rsi < 30) and sector == 'Health Care'") == ["BBB"]
    assert hits("change_1d > 0.05 or rsi < 30 and sector == 'Health Care'") == ["AAA", "BBB", "EEE"]
    # not binds tighter than and, looser than a comparison; * before +; unary minus before *.
    assert hits("not rsi > 50 and close > 40") == hits("(not (rsi > 50)) and close > 40") == ["BBB", "DDD"]
    assert hits("close - sma_50 * 2 > 0") == hits("close - (sma_50 * 2) > 0") == []
    assert hits("-close * 2 < -200") == ["AAA", "DDD"]


def test_nulls_make_comparisons_false_and_not_their_complement():
    # CCC has no rsi (NaN), FFF no change_1d: neither side of a comparison holds, `not` flips the false.
    assert "CCC" not in hits("rsi > 70") and "CCC" not in hits("rsi <= 70")
    assert "CCC" in hits("not (rsi > 70)")
    assert "FFF" not in hits("change_1d != 0") and "FFF" not in hits("change_1d == 0")
    # A null subject is in no list and outside none; a null boolean column reads as false.
    assert "CCC" not in hits("sector in ('Energy')") and "CCC" not in hits("sector not in ('Energy')")
    assert "CCC" not in hits("new_high_52w") and "CCC" in hits("not new_high_52w")
    # Arithmetic and min/max with a null are null, never a number from the other operands.
    assert "CCC" not in hits("max(sma_50, close) > 0") and "CCC" not in hits("sma_50 + 1 > 0 or sma_50 + 1 <= 0")


def test_prev_reads_the_previous_sessions_row_per_symbol():
    screen = compile("close > sma_200 and prev(close) <= prev(sma_200)", COLUMNS)
    assert screen.columns == {"close", "sma_200"}
    assert screen.prev_columns == {"close", "sma_200"}
    assert screen.required_columns == {"close", "sma_200", "prev__close", "prev__sma_200"}
    assert prev_name("close") == "prev__close"
    joined = with_previous(FRAME, PREVIOUS_FRAME, screen.prev_columns)
    assert joined["symbol"].to_list() == FRAME["symbol"].to_list()  # order kept, no row added or lost
    assert joined.filter(pl.col("symbol") == "FFF")["prev__close"].to_list() == [None]
    assert screen.apply(joined)["symbol"].to_list() == ["AAA"]
    lazy = with_previous(FRAME.lazy(), PREVIOUS_FRAME.lazy(), screen.prev_columns)
    assert isinstance(lazy, pl.LazyFrame)
    assert screen.apply(lazy).collect()["symbol"].to_list() == ["AAA"]
    assert with_previous(FRAME, PREVIOUS_FRAME, []) is FRAME


def test_with_previous_refuses_two_previous_rows_for_a_symbol():
    doubled = pl.concat([PREVIOUS_FRAME, PREVIOUS_FRAME.head(1)])
    with pytest.raises(pl.exceptions.ComputeError):
        with_previous(FRAME, doubled, ["close"])


def test_columns_read_are_reported():
    screen = compile("abs(close_vs_sma_50) < 0.02 and sector in ('Energy') or prev(rsi) > rsi", COLUMNS)
    assert screen.columns == {"close_vs_sma_50", "sector", "rsi"}
    assert screen.prev_columns == {"rsi"}


def test_literals_and_keywords():
    assert hits("close >= 1.1E2") == ["AAA"]
    assert hits("close >= .5e2 AND Sector In ('Energy')".replace("Sector", "sector")) == ["AAA", "EEE"]
    assert hits("close > 100 Or NOT True") == ["AAA", "DDD"]
    frame = pl.DataFrame({"symbol": ["a", "b", "c"], "name": ['say "hi"', "it's", "back\\slash"]})
    columns = {"name": Kind.STRING}
    assert compile(r'name == "say \"hi\""', columns).apply(frame)["symbol"].to_list() == ["a"]
    assert compile(r"name == 'it\'s'", columns).apply(frame)["symbol"].to_list() == ["b"]
    assert compile(r'name == "back\\slash"', columns).apply(frame)["symbol"].to_list() == ["c"]


def test_string_and_enum_columns_compare_with_strings():
    frame = pl.DataFrame({"symbol": ["a", "b"], "tier": pl.Series(["high", "low"], dtype=pl.Enum(["high", "low"]))})
    columns = column_kinds(frame.schema)
    assert compile("tier == 'high'", columns).apply(frame)["symbol"].to_list() == ["a"]
    assert compile("tier in ('low', 'unknown')", columns).apply(frame)["symbol"].to_list() == ["b"]


def test_column_kinds_from_polars_dtypes():
    dtypes = {
        "f": pl.Float64,
        "i": pl.Int64(),
        "d": pl.Decimal(10, 2),
        "b": pl.Boolean,
        "s": pl.String,
        "c": pl.Categorical(),
        "day": pl.Date,
        "at": pl.Datetime("us", "UTC"),
        "tags": pl.List(pl.String),
    }
    assert column_kinds(dtypes) == {
        "f": Kind.NUMBER,
        "i": Kind.NUMBER,
        "d": Kind.NUMBER,
        "b": Kind.BOOLEAN,
        "s": Kind.STRING,
        "c": Kind.STRING,
        "day": Kind.DATE,
    }
    assert kind_of(pl.Struct({"a": pl.Int64})) is None


def test_dates_compare_with_dates_only():
    import datetime as dt

    frame = pl.DataFrame({"symbol": ["a", "b"], "listed": [dt.date(2020, 1, 1), dt.date(2024, 1, 1)]})
    frame = frame.with_columns(pl.lit(dt.date(2023, 1, 1)).alias("cutoff"))
    columns = column_kinds(frame.schema)
    assert compile("listed < cutoff", columns).apply(frame)["symbol"].to_list() == ["a"]
    with pytest.raises(ScreenTypeError):
        compile("listed < '2023-01-01'", columns)
    with pytest.raises(ScreenTypeError):
        compile("listed + 1 > cutoff", columns)


# ------------------------------------------------------------------ normal form


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("  rsi<30   AND  sector=='Energy' ", 'rsi < 30 and sector == "Energy"'),
        ("(a or b) and c", "(a or b) and c"),
        ("a or (b and c)", "a or b and c"),
        ("a and (b and c)", "a and b and c"),
        ("(x - y) - z > 0", "x - y - z > 0"),
        ("x - (y - z) > 0", "x - (y - z) > 0"),
        ("(a + b) * c > 1", "(a + b) * c > 1"),
        ("x > -(-5)", "x > 5"),
        ("x > 5.0e0", "x > 5"),
        ("x > .05", "x > 0.05"),
        ("x in (-1, 2.50)", "x in (-1, 2.5)"),
        ("NOT (a > 1) == TRUE", "not (a > 1) == true"),
        ("not (a and b)", "not (a and b)"),
        ("- -x > 0", "--x > 0"),
        ("x between -1 and (2 + 3)", "x between -1 and 2 + 3"),
    ],
)
def test_normal_form(text, normal):
    assert normalize(text) == normal
    assert normalize(normal) == normal


def test_layout_does_not_change_the_fingerprint():
    variants = [
        "rsi<30 and sector=='Energy'",
        "RSI < 30".lower() + ' AND sector == "Energy"',
        "(rsi < 30) and (sector == 'Energy')",
    ]
    prints = {fingerprint(normalize(text)) for text in variants}
    assert len(prints) == 1 and len(prints.pop()) == 12
    screen = compile(variants[0], COLUMNS)
    assert screen.normalized == normalize(variants[2]) and screen.fingerprint == fingerprint(screen.normalized)
    assert fingerprint(normalize("rsi < 31")) != screen.fingerprint


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("text", "error", "position", "message", "expected"),
    [
        ("close > ", ScreenSyntaxError, 7, "expected a value after '>'", ("a value",)),
        ("close > > 2", ScreenSyntaxError, 8, "expected a value after '>', found '>'", ("a value",)),
        ("rsi < 30 < 40", ScreenSyntaxError, 9, "found '<'", ("'and'", "'or'", "end of input")),
        ("(rsi > 3", ScreenSyntaxError, 8, "expected ')' after '3'", ("')'",)),
        ("rsi > 3)", ScreenSyntaxError, 7, "found ')'", None),
        ("rsi in 3", ScreenSyntaxError, 7, "expected '(' after 'in'", ("'('",)),
        ("close $ 3", ScreenSyntaxError, 6, "unexpected character '$'", None),
        ("sector == 'Energy", ScreenSyntaxError, 10, "unterminated string", ("a value",)),
        ("", ScreenSyntaxError, 0, "the screen is empty", ("a condition",)),
        ("sector > 3", ScreenTypeError, 0, "'>' takes a number or a date, but sector is a string", None),
        ('rsi == "x"', ScreenTypeError, 7, 'cannot compare rsi (a number) with "x" (a string)', ("a number",)),
        ("abs(sector) > 1", ScreenTypeError, 4, "abs takes a number, but sector is a string", ("a number",)),
        ("prev(3) > 1", ScreenTypeError, 5, "prev takes one column name", ("a column name",)),
        ("prev(close + 1) > 1", ScreenTypeError, 5, "prev takes one column name", None),
        ("prev() > 1", ScreenTypeError, 0, "prev takes one column name", None),
        ("golden_cross + 1 > 2", ScreenTypeError, 0, "arithmetic takes a number", ("a number",)),
        ("-golden_cross < 0", ScreenTypeError, 1, "'-' takes a number", None),
        ("rsi", ScreenTypeError, 0, "a screen needs a condition (true or false), but rsi is a number", None),
        ("rsi > 3 and close", ScreenTypeError, 12, "'and' needs a condition", ("a condition",)),
        ("not sector", ScreenTypeError, 4, "'not' needs a condition", None),
        ("sector in ('Energy', 3)", ScreenTypeError, 21, "cannot compare sector (a string) with 3", None),
        ("rsi between 'a' and 3", ScreenTypeError, 12, "'between' on a number takes a number", None),
        ("golden_cross between 1 and 2", ScreenTypeError, 0, "'between' takes a number or a date", None),
        ("abs(1, 2) > 0", ScreenTypeError, 0, "abs takes one number, not 2 values", None),
        ("max(rsi) > 0", ScreenTypeError, 0, "max takes two or more numbers, not 1", None),
        ("rsii > 3", UnknownNameError, 0, "unknown column 'rsii'; did you mean rsi?", ("rsi",)),
        ("close > prev(sma200)", UnknownNameError, 13, "did you mean sma_200", None),
        ("RSI > 3", UnknownNameError, 0, "did you mean rsi?", ("rsi",)),
        ("xyzzy > 3", UnknownNameError, 0, "unknown column 'xyzzy'", ()),
        ("mx(rsi, 3) > 0", UnknownNameError, 0, "unknown function 'mx'; did you mean max?", ("max",)),
        ("1e999 > close", ScreenLimitError, 0, "out of range", ()),
    ],
)
def test_errors_say_what_and_where(text, error, position, message, expected):
    with pytest.raises(error) as raised:
        compile(text, COLUMNS)
    assert isinstance(raised.value, ScreenError) and isinstance(raised.value, TechnicError)
    assert raised.value.position == position
    assert message in raised.value.message
    assert str(raised.value).endswith(f"at {position} (line 1, column {position + 1})")
    if expected is not None:
        assert raised.value.expected == expected


def test_error_position_on_later_lines_and_as_data():
    text = "rsi < 30\n  and sector ==\n  )"
    with pytest.raises(ScreenSyntaxError) as raised:
        compile(text, COLUMNS)
    error = raised.value
    assert (error.position, error.line, error.column) == (27, 3, 3)
    assert error.to_dict() == {
        "error": "ScreenSyntaxError",
        "message": "expected a value after '==', found ')'",
        "position": 27,
        "line": 3,
        "column": 3,
        "expected": ["a value"],
    }
    with pytest.raises(UnknownNameError) as unknown:
        compile("rsi < 30 and\nsectr == 'Energy'", COLUMNS)
    assert (unknown.value.line, unknown.value.column) == (2, 1)
    assert unknown.value.to_dict()["suggestions"] == ["sector"]


# ------------------------------------------------------------------ limits and pathological input


def _refused_quickly(text: str) -> ScreenError:
    started = time.perf_counter()
    with pytest.raises(ScreenError) as raised:
        compile(text, COLUMNS)
    assert time.perf_counter() - started < 0.5
    return raised.value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(" * 10_000 + "rsi > 1" + ")" * 10_000, f"longer than {MAX_LENGTH} characters"),
        ("(" * 1_999 + "rsi", f"parentheses nest deeper than {MAX_DEPTH} levels"),
        ("not " * 990 + "golden_cross", f"nests deeper than {MAX_DEPTH} levels"),
        ("-" * 3_990 + "rsi > 1", f"nests deeper than {MAX_DEPTH} levels"),
        ("abs(" * 500 + "rsi" + ")" * 500 + " > 1", f"parentheses nest deeper than {MAX_DEPTH} levels"),
        (" + ".join(["rsi"] * 300) + " > 1", f"more than {MAX_TERMS} terms"),
        (" or ".join(["golden_cross"] * 250), f"more than {MAX_TERMS} terms"),
        ("rsi > " + "9" * 1_000_000, f"longer than {MAX_LENGTH} characters"),
        ("sector == '" + "x" * 1_000_000 + "'", f"longer than {MAX_LENGTH} characters"),
        ("rsi > " + "9" * 3_000, f"a number longer than {MAX_LITERAL_LENGTH} characters"),
        ("sector == '" + "x" * 3_000 + "'", f"a string longer than {MAX_LITERAL_LENGTH} characters"),
        ("sector == '" + "x" * 3_000, "unterminated string"),
        ("x" * 3_000 + " > 1", f"a name longer than {MAX_LITERAL_LENGTH} characters"),
        ("rsi > 1" + " " * 5_000, f"longer than {MAX_LENGTH} characters"),
        ("rsi > 1 " + "and rsi > 1 " * 400, f"longer than {MAX_LENGTH} characters"),
    ],
    ids=lambda value: value[:30] if isinstance(value, str) else None,
)
def test_pathological_input_is_refused_quickly(text, message):
    error = _refused_quickly(text)
    assert isinstance(error, ScreenSyntaxError if message == "unterminated string" else ScreenLimitError)
    assert message in error.message


def test_limits_are_inclusive():
    assert hits("(" * MAX_DEPTH + "rsi > 70" + ")" * MAX_DEPTH) == ["AAA"]
    assert hits("not " * (MAX_DEPTH - 2) + "rsi > 70") == ["AAA"]
    assert compile(" + ".join(["rsi"] * (MAX_TERMS - 1)) + " > 0", COLUMNS).columns == {"rsi"}
    assert hits("sector != '" + "x" * (MAX_LITERAL_LENGTH - 2) + "'") == ["AAA", "BBB", "DDD", "EEE", "FFF"]
    long = "rsi > 70" + " " * (MAX_LENGTH - len("rsi > 70"))
    assert hits(long) == ["AAA"]


def test_long_flat_chains_compile_and_evaluate():
    # 199 terms in one chain: no recursion over the chain, in our code or in polars.
    text = "(" + " or ".join(f"close > {value}" for value in range(99)) + ") and rsi > 0"
    assert hits(text) == ["AAA", "BBB", "DDD", "EEE", "FFF"]
    assert len(hits(" + ".join(["close"] * 150) + " > 0")) == 6


# ------------------------------------------------------------------ fuzz

#: Pieces of screens, valid and not: soups of them are mostly wrong in interesting ways.
VOCABULARY = [
    *COLUMNS, "prev", "abs", "min", "max", "foo", "(", ")", ",", "and", "or", "not", "in", "between",
    "true", "false", "<", "<=", ">", ">=", "==", "!=", "+", "-", "*", "/", "0", "1", "0.5", "1e3", "-2",
    "'Energy'", '"Strong Buy"', "'", '"', "$", "=", "!", ".", "1e999", "\n", "\\", "é",
]  # fmt: skip


def _check_any_outcome(text: str) -> None:
    try:
        screen = compile(text, COLUMNS)
    except ScreenError:
        return
    result = screen.apply(FUZZ_FRAME)  # whatever compiles, polars evaluates
    again = compile(screen.normalized, COLUMNS)
    assert again.normalized == screen.normalized
    assert again.apply(FUZZ_FRAME)["symbol"].to_list() == result["symbol"].to_list()


def test_fuzz_token_soups_and_random_bytes_raise_only_screen_errors():
    rng = random.Random(20240601)
    for _ in range(1_500):
        words = rng.choices(VOCABULARY, k=rng.randint(0, 12))
        _check_any_outcome(" ".join(words) if rng.random() < 0.7 else "".join(words))
    for _ in range(500):
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        _check_any_outcome(raw.decode("latin-1"))
        _check_any_outcome(raw.decode("utf-8", errors="replace"))


def test_fuzz_generated_valid_screens_round_trip():
    rng = random.Random(7)
    numbers = [name for name, kind in COLUMNS.items() if kind is Kind.NUMBER]

    def number(depth: int) -> str:
        choice = rng.randrange(6 if depth < 3 else 2)
        if choice == 0:
            return rng.choice(numbers)
        if choice == 1:
            return rng.choice(["0", "1.5", "-2", "100", "0.04", "3e1"])
        if choice == 2:
            return f"{number(depth + 1)} {rng.choice('+-*/')} {number(depth + 1)}"
        if choice == 3:
            return f"({number(depth + 1)})"
        if choice == 4:
            return f"{rng.choice(['abs', 'prev'])}({rng.choice(numbers)})"
        return f"{rng.choice(['min', 'max'])}({number(depth + 1)}, {number(depth + 1)})"

    def condition(depth: int) -> str:
        choice = rng.randrange(7 if depth < 3 else 3)
        if choice == 0:
            return f"{number(depth + 1)} {rng.choice(['<', '<=', '>', '>=', '==', '!='])} {number(depth + 1)}"
        if choice == 1:
            return rng.choice(["golden_cross", "new_high_52w", "true", "sector in ('Energy', 'Utilities')"])
        if choice == 2:
            return f"{number(depth + 1)} between {number(depth + 1)} and {number(depth + 1)}"
        if choice == 3:
            return f"not {condition(depth + 1)}"
        if choice == 4:
            return f"({condition(depth + 1)})"
        return f"{condition(depth + 1)} {rng.choice(['and', 'or'])} {condition(depth + 1)}"

    for _ in range(300):
        text = condition(0)
        screen = compile(text, COLUMNS)
        _check_any_outcome(text)
        assert compile(screen.normalized, COLUMNS).fingerprint == screen.fingerprint
