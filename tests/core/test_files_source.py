"""Files source: messy but realistic CSV / Parquet imports, validation naming file and line, strictness."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from technic_core import calendar, schema
from technic_core.config import Settings
from technic_core.errors import ConfigError, DataSourceError
from technic_core.sources import INDEX_SYMBOL, VOLATILITY_SYMBOL, MarketDataSource, make_source
from technic_core.sources.files import FilesSource, parse_dates
from technic_core.warehouse import Warehouse

SESSIONS = calendar.sessions_between(dt.date(2024, 3, 1), dt.date(2024, 3, 28))
#: Every calendar day from 2024-03-01 (a Friday) to 2024-04-05: weekends and Good Friday (03-29) included.
DAYS = [dt.date(2024, 3, 1) + dt.timedelta(days=n) for n in range(36)]
DAY_SESSIONS = [d for d in DAYS if calendar.is_session(d)]


def bar(symbol: str, session: dt.date) -> dict[str, float]:
    """The true bar every file format below encodes (no two sessions of a symbol alike)."""
    close = 10.0 + len(symbol) + (session - SESSIONS[0]).days * 0.5
    volume = 1_000.0 * len(symbol)
    return {"open": close - 0.25, "high": close + 0.5, "low": close - 0.5, "close": close, "volume": volume}


def expected(symbols: list[str], sessions: list[dt.date] = SESSIONS) -> pl.DataFrame:
    rows = [{"symbol": s, "date": d, **bar(s, d)} for d in sessions for s in sorted(symbols)]
    return schema.conform(pl.DataFrame(rows).with_columns(vwap=None, trades=None), schema.BARS, "expected")


def yahoo_rows(symbol: str, date_format: str, sessions: list[dt.date] = SESSIONS) -> list[dict[str, object]]:
    return [
        {
            "Date": d.strftime(date_format),
            "Open": b["open"],
            "High": b["high"],
            "Low": b["low"],
            "Close": b["close"],
            "Adj Close": b["close"] * 0.97,
            "Volume": int(b["volume"]),
        }
        for d in sessions
        for b in [bar(symbol, d)]
    ]


def calendar_day_rows(
    symbol: str, date_format: str, days: list[dt.date], fill_volume: str = "repeat"
) -> list[dict[str, object]]:
    """Yahoo rows resampled to calendar days: a non-session day repeats the previous session's bar, with its
    volume (``fill_volume="repeat"``) or none (``"zero"``, as resamplers that sum volume write)."""
    rows, last = [], None
    for day in days:
        if calendar.is_session(day):
            last = yahoo_rows(symbol, date_format, [day])[0]
            rows.append(last)
        elif last is not None:
            volume = last["Volume"] if fill_volume == "repeat" else 0
            rows.append({**last, "Date": day.strftime(date_format), "Volume": volume})
    return rows


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.write_text("\n".join(",".join(str(v) for v in line) for line in [header, *rows]) + "\n")


def write_yahoo(path: Path, rows: list[dict[str, object]]) -> None:
    write_csv(path, list(rows[0]), [list(r.values()) for r in rows])


MESSY_WEEKEND_DAYS = 8  # 2024-03-02/03, 09/10, 16/17, 23/24 in AAPL.csv


@pytest.fixture
def messy(tmp_path) -> Path:
    """A directory the way users have them: four layouts and formats, index files, a universe file."""
    directory = tmp_path / "data"
    directory.mkdir()
    # pandas export resampled to calendar days: unnamed index column first, shuffled columns, US dates with
    # a time of day, weekends repeating Friday's bar
    rows = calendar_day_rows("AAPL", "%m/%d/%Y 00:00:00", [d for d in DAYS if d <= SESSIONS[-1]])
    header = ["", "Volume", "Adj Close", "Date", "Close", "Low", "Open", "High"]
    write_csv(directory / "AAPL.csv", header, [[i, *(r[h] for h in header[1:])] for i, r in enumerate(rows)])
    # lower-case Parquet with zone-aware timestamps at midnight New York, and extra columns
    msft = pl.DataFrame(yahoo_rows("MSFT", "%Y-%m-%d")).with_columns(
        pl.col("Date").str.to_datetime("%Y-%m-%d").dt.replace_time_zone("America/New_York")
    )
    msft.rename(str.lower).with_columns(dividends=0.0).write_parquet(directory / "msft.parquet")
    # long format with a ticker column, ISO datetimes in UTC and two-digit US years mixed in
    long_rows = []
    for symbol in ("XOM", "JNJ"):
        for n, row in enumerate(yahoo_rows(symbol, "%Y-%m-%dT00:00:00Z")):
            date = row["Date"] if n % 2 else dt.date.fromisoformat(row["Date"][:10]).strftime("%-m/%-d/%y")
            long_rows.append([symbol.lower(), date, row["Open"], row["High"], row["Low"], row["Close"], row["Volume"]])
    write_csv(directory / "prices_long.csv", ["Ticker", "date", "open", "high", "low", "close", "volume"], long_rows)
    # index files: SPY like a stock, Yahoo's ^VIX without a volume column
    spy = yahoo_rows("SPY", "%Y-%m-%d")
    write_csv(directory / "SPY.csv", list(spy[0]), [list(r.values()) for r in spy])
    vix = yahoo_rows("^VIX", "%Y-%m-%d")
    levels = ["Date", "Open", "High", "Low", "Close"]
    write_csv(directory / "^VIX.csv", levels, [[r[k] for k in levels] for r in vix])
    write_csv(
        directory / "universe.csv",
        ["Symbol", "Name", "Sector", "Industry", "Market Cap"],
        [
            ["AAPL", "Apple Inc.", "Technology", "Consumer Electronics", 3.0e12],
            ["MSFT", "Microsoft", "Information Technology", "Software", 3.1e12],
            ["XOM", "Exxon Mobil", "energy", "Oil & Gas", 4.5e11],
            ["JNJ", "Johnson & Johnson", "Pharma-ish", "Drugs", 3.8e11],
            ["TSLA", "Tesla", "Consumer Cyclical", "Autos", 7.0e11],
        ],
    )
    (directory / "README.txt").write_text("not data")
    return directory


def test_messy_files_import_into_clean_bars(messy, caplog):
    source = FilesSource(messy)
    assert isinstance(source, MarketDataSource)
    bars = source.bars(SESSIONS[0], SESSIONS[-1])
    assert bars.equals(expected(["AAPL", "MSFT", "XOM", "JNJ"]))
    assert source.bars(SESSIONS[3], SESSIONS[5], symbols=["JNJ"]).equals(expected(["JNJ"], SESSIONS[3:6]))

    index = source.index_bars(SESSIONS[0], SESSIONS[-1])
    assert index.get_column("symbol").unique().sort().to_list() == sorted([INDEX_SYMBOL, VOLATILITY_SYMBOL])
    vix = index.filter(pl.col("symbol") == VOLATILITY_SYMBOL)
    assert vix.height == len(SESSIONS) and vix["volume"].to_list() == [0.0] * len(SESSIONS)
    assert vix["close"].to_list() == [bar("^VIX", d)["close"] for d in SESSIONS]
    assert source.stats.api_calls == 6 and source.stats.cache_hits == 2, "six files read once, then memory"
    assert source.stats.forward_filled_rows_dropped == MESSY_WEEKEND_DAYS


def test_reference_comes_from_the_universe_file_with_gics_sectors(messy, caplog):
    source = FilesSource(messy)
    reference = source.reference(SESSIONS[4])
    rows = {row["symbol"]: row for row in reference.iter_rows(named=True)}
    assert list(rows) == ["AAPL", "JNJ", "MSFT", "XOM"], "TSLA has no bars; SPY and VIX are not stocks"
    assert rows["AAPL"]["sector"] == "Information Technology" and rows["XOM"]["sector"] == "Energy"
    assert rows["JNJ"]["sector"] == "Pharma-ish", "unknown sectors are kept, not fatal"
    assert rows["MSFT"]["market_cap"] == 3.1e12 and rows["AAPL"]["name"] == "Apple Inc."
    assert reference.schema == pl.Schema(schema.REFERENCE)
    assert "Pharma-ish" in caplog.text


def test_without_a_universe_file_reference_is_the_symbols_whose_bars_span_the_session(tmp_path):
    directory = tmp_path / "plain"
    directory.mkdir()
    for symbol, sessions in (("AAA", SESSIONS), ("BBB", SESSIONS[:5]), ("CCC", SESSIONS[10:])):
        rows = yahoo_rows(symbol, "%Y-%m-%d", sessions)
        write_csv(directory / f"{symbol}.csv", list(rows[0]), [list(r.values()) for r in rows])
    source = FilesSource(directory)
    assert source.reference(SESSIONS[2]).get_column("symbol").to_list() == ["AAA", "BBB"]
    later = source.reference(SESSIONS[12])
    assert later.get_column("symbol").to_list() == ["AAA", "CCC"]
    assert later.get_column("sector").null_count() == 2


def add_bad_files(directory: Path) -> None:
    """A duplicated row (a re-download appended twice) and a bad price (a vendor's null and a zero)."""
    rows = yahoo_rows("DUPE", "%Y-%m-%d")
    rows.insert(3, rows[2])
    write_csv(directory / "DUPE.csv", list(rows[0]), [list(r.values()) for r in rows])
    rows = yahoo_rows("BADP", "%Y-%m-%d")
    rows[1]["Close"] = 0
    rows[6]["Low"] = "null"
    write_csv(directory / "BADP.csv", list(rows[0]), [list(r.values()) for r in rows])


def test_strict_import_fails_naming_every_bad_file_and_line(messy):
    add_bad_files(messy)
    source = FilesSource(messy, strict=True)
    with pytest.raises(DataSourceError) as raised:
        source.bars(SESSIONS[0], SESSIONS[-1])
    message = str(raised.value)
    assert "2 invalid file(s)" in message and "nothing was imported" in message
    assert "DUPE.csv lines 4, 5: duplicate date (first: '2024-03-05')" in message
    assert "BADP.csv line 3: a price is zero or negative (first: '2024-03-04')" in message
    assert "BADP.csv line 8: low is missing or not a number" in message
    with pytest.raises(DataSourceError):
        source.reference(SESSIONS[0])


def test_lenient_import_skips_bad_files_whole(messy, caplog):
    add_bad_files(messy)
    source = FilesSource(messy, strict=False)
    bars = source.bars(SESSIONS[0], SESSIONS[-1])
    assert bars.equals(expected(["AAPL", "MSFT", "XOM", "JNJ"])), "no row of a bad file gets in"
    assert sorted(source.skipped) == ["BADP.csv", "DUPE.csv"]
    assert "duplicate date" in source.skipped["DUPE.csv"][0]
    assert "skipped file=BADP.csv" in caplog.text


YAHOO = ["Date", "Open", "High", "Low", "Close", "Volume"]
NOT_A_SESSION = (
    "date is not an NYSE session and the row does not repeat the previous session's bar (wrong calendar or time zone?)"
)
GOOD = ["2024-03-01", 1, 2, 0.5, 1.5, 10]


@pytest.mark.parametrize(
    ("header", "rows", "problem"),
    [
        (
            ["Date", "Open", "High", "Close", "Volume"],
            [["2024-03-01", 1, 2, 1.5, 10]],
            "AAA.csv: missing column(s) low",
        ),
        (
            YAHOO,
            [GOOD, ["03-04-2024", 1, 2, 0.5, 1.5, 10]],
            "AAA.csv line 3: date is not an ISO or US date (first: '03-04-2024')",
        ),
        (
            YAHOO,
            [["2024-03-02", 1, 2, 0.5, 1.5, 10]],
            f"AAA.csv line 2: {NOT_A_SESSION} (first: '2024-03-02')",
        ),  # a Saturday, no session before it
        (
            YAHOO,
            [["2024-03-28", 1, 2, 0.5, 1.5, 10], ["2024-03-29", 1, 2, 0.5, 1.6, 10]],
            f"AAA.csv line 3: {NOT_A_SESSION} (first: '2024-03-29')",
        ),  # Good Friday with a new close
        (
            YAHOO,
            [["2024-03-28", 1, 2, 0.5, 1.5, 10], ["2024-03-29", 1, 2, 0.5, 1.5, 11]],
            f"AAA.csv line 3: {NOT_A_SESSION} (first: '2024-03-29')",
        ),  # Good Friday with a new volume
        (YAHOO, [["2024-03-01", 1, 0.5, 2, 1.5, 10]], "AAA.csv line 2: high is below low"),
        (YAHOO, [["2024-03-01", 1, 2, 0.5, 2.5, 10]], "high is below open or close"),
        (YAHOO, [["2024-03-01", -1, 2, 0.5, 1.5, 10]], "a price is zero or negative"),
        (YAHOO, [["2024-03-01", 1, 2, 0.5, 1.5, -10]], "volume is negative"),
        (YAHOO, [["2024-03-01", 1, 2, 0.5, '"1,5"', 10]], "close is missing or not a number"),  # a decimal comma
        (YAHOO, [["2024-03-01", 1, 2, 0.5, "NaN", 10]], "AAA.csv line 2: close is missing or not a number"),
        (YAHOO, [["2024-03-01", 1, 2, 0.5, 1.5, '"12,34"']], "volume is missing or not a number"),  # not in threes
        (
            ["Date", "Close", "close", "Open", "High", "Low", "Volume"],
            [["2024-03-01", 1, *GOOD[1:]]],
            "'Close' and 'close' are both close",
        ),
    ],
)
def test_each_validation_rule_names_file_and_line(tmp_path, header, rows, problem):
    write_csv(tmp_path / "AAA.csv", header, rows)
    with pytest.raises(DataSourceError, match="invalid file") as raised:
        FilesSource(tmp_path).bars(dt.date(2024, 3, 1), dt.date(2024, 3, 1))
    assert problem in str(raised.value)


def test_parquet_problems_name_rows_and_universe_problems_name_lines(tmp_path):
    frame = pl.DataFrame(
        {
            "Date": ["2024-03-01", "2024-03-04"],
            "Open": [1.0, 1.0],
            "High": [2.0, 2.0],
            "Low": [0.5, 3.0],
            "Close": [1.5, 1.5],
            "Volume": [10, 10],
        }
    )
    frame.write_parquet(tmp_path / "AAA.parquet")
    universe = [["AAA", "Energy", "big"], ["aaa", "Energy", 1e9]]
    write_csv(tmp_path / "universe.csv", ["symbol", "sector", "market_cap"], universe)
    with pytest.raises(DataSourceError) as raised:
        FilesSource(tmp_path).bars(dt.date(2024, 3, 1), dt.date(2024, 3, 4))
    message = str(raised.value)
    assert "AAA.parquet row 2: high is below low" in message
    assert "universe.csv line 2: market_cap is not a number" in message
    assert "universe.csv lines 2, 3: duplicate symbol" in message


def test_a_symbol_in_two_files_is_refused(tmp_path):
    rows = yahoo_rows("AAA", "%Y-%m-%d")
    write_csv(tmp_path / "AAA.csv", list(rows[0]), [list(r.values()) for r in rows])
    write_csv(tmp_path / "all.csv", ["symbol", *rows[0]], [["AAA", *r.values()] for r in rows])
    with pytest.raises(DataSourceError, match=r"all\.csv: symbol\(s\) AAA also in AAA\.csv"):
        FilesSource(tmp_path).bars(SESSIONS[0], SESSIONS[-1])


def test_two_files_of_one_index_series_are_refused(tmp_path):
    for name in ("VIX", "^VIX"):
        write_yahoo(tmp_path / f"{name}.csv", yahoo_rows(name, "%Y-%m-%d"))
    write_yahoo(tmp_path / "AAA.csv", yahoo_rows("AAA", "%Y-%m-%d"))
    with pytest.raises(DataSourceError, match=r"\^VIX.csv: symbol\(s\) VIX also in VIX.csv"):
        FilesSource(tmp_path).index_bars(SESSIONS[0], SESSIONS[-1])


def test_rows_before_the_calendar_are_dropped_not_fatal(tmp_path):
    rows = [["1999-12-31", 1, 2, 0.5, 1.5, 10], ["2024-03-01", 1, 2, 0.5, 1.5, 10]]
    write_csv(tmp_path / "OLD.csv", ["Date", "Open", "High", "Low", "Close", "Volume"], rows)
    bars = FilesSource(tmp_path).bars(dt.date(1990, 1, 1), dt.date(2024, 12, 31))
    assert bars.get_column("date").to_list() == [dt.date(2024, 3, 1)]


def import_one(directory: Path, name: str, rows: list[dict[str, object]], **kwargs) -> FilesSource:
    directory.mkdir()
    write_yahoo(directory / name, rows)
    return FilesSource(directory, **kwargs)


@pytest.mark.parametrize("order", ["ascending", "descending"])
@pytest.mark.parametrize("fill_volume", ["repeat", "zero"])
def test_forward_filled_weekend_and_holiday_rows_are_dropped_and_counted(tmp_path, caplog, order, fill_volume):
    rows = calendar_day_rows("AAA", "%Y-%m-%d", DAYS, fill_volume)
    filled = import_one(tmp_path / "days", "AAA.csv", rows[::-1] if order == "descending" else rows)
    bars = filled.bars(DAYS[0], DAYS[-1])
    sessions_only = import_one(tmp_path / "sessions", "AAA.csv", yahoo_rows("AAA", "%Y-%m-%d", DAY_SESSIONS))
    assert bars.equals(sessions_only.bars(DAYS[0], DAYS[-1])) and bars.height == len(DAY_SESSIONS)
    dropped = filled.stats.forward_filled_rows_dropped
    assert dropped == len(DAYS) - len(DAY_SESSIONS) == 11, "ten weekend days and Good Friday"
    assert sessions_only.stats.forward_filled_rows_dropped == 0
    warnings = [r.getMessage() for r in caplog.records if "forward-filled" in r.getMessage()]
    assert warnings == [
        "files AAA.csv: dropped forward-filled rows=11 (non-session dates repeating the previous session's bar)"
    ]


def test_a_holiday_row_with_new_prices_fails_naming_file_and_line_or_skips_the_file(tmp_path):
    rows = calendar_day_rows("AAA", "%Y-%m-%d", DAYS)
    holiday = next(n for n, r in enumerate(rows) if r["Date"] == "2024-03-29")
    rows[holiday] = {**rows[holiday], "Close": rows[holiday]["Close"] + 0.25}  # a bar of the wrong day
    directory = tmp_path / "data"
    directory.mkdir()
    write_yahoo(directory / "AAA.csv", rows)
    write_yahoo(directory / "BBB.csv", calendar_day_rows("BBB", "%Y-%m-%d", DAYS))
    with pytest.raises(DataSourceError) as raised:
        FilesSource(directory).bars(DAYS[0], DAYS[-1])
    assert f"AAA.csv line {holiday + 2}: {NOT_A_SESSION} (first: '2024-03-29')" in str(raised.value)
    lenient = FilesSource(directory, strict=False)
    assert lenient.bars(DAYS[0], DAYS[-1]).get_column("symbol").unique().to_list() == ["BBB"]
    assert list(lenient.skipped) == ["AAA.csv"]
    assert lenient.stats.forward_filled_rows_dropped == 11, "the skipped file's rows are not counted as dropped"


def test_dates_a_day_early_from_a_time_zone_conversion_fail(tmp_path):
    """Midnight-UTC stamps converted to New York label each bar with the previous day: Monday's bar lands on
    a Sunday with new prices, which no forward fill explains."""
    rows = yahoo_rows("AAA", "%Y-%m-%d", SESSIONS[:5])
    for row in rows:
        row["Date"] = f"{dt.date.fromisoformat(row['Date']) - dt.timedelta(days=1)} 19:00:00-05:00"
    with pytest.raises(DataSourceError) as raised:
        import_one(tmp_path / "data", "AAA.csv", rows).bars(SESSIONS[0], SESSIONS[-1])
    assert f"AAA.csv line 3: {NOT_A_SESSION} (first: '2024-03-03 19:00:00-05:00')" in str(raised.value)


def test_thousands_separators_and_dollar_signs_are_numbers(tmp_path):
    header = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]
    rows = [
        ["2024-03-01", '"1,234.50"', '"$1,240.00"', '" 1,230.25 "', "$1235", '"$1,198.00"', '"12,345,678"'],
        ["2024-03-04", "$12.30", "$12.50", "$12.00", "12.40", "12.1", "1200"],
    ]
    write_csv(tmp_path / "AAA.csv", header, rows)
    bars = FilesSource(tmp_path).bars(SESSIONS[0], SESSIONS[-1])
    assert bars.select("open", "high", "low", "close", "volume").rows() == [
        (1234.5, 1240.0, 1230.25, 1235.0, 12_345_678.0),
        (12.3, 12.5, 12.0, 12.4, 1200.0),
    ]


def test_zone_aware_dates_label_their_session(tmp_path):
    header = ["Date", "Open", "High", "Low", "Close", "Volume"]
    stamps = [
        "2024-03-01 00:00:00-05:00",
        "2024-03-04T00:00:00Z",
        "2024-03-05 05:00:00+00:00",
        "2024-03-06T00:00:00.000-05:00",
    ]
    write_csv(tmp_path / "AAA.csv", header, [[stamp, 1, 2, 0.5, 1.5, 10] for stamp in stamps])
    bars = FilesSource(tmp_path).bars(SESSIONS[0], SESSIONS[-1])
    assert bars.get_column("date").to_list() == SESSIONS[:4]


def test_adj_close_present_or_absent_changes_nothing(tmp_path):
    with_adjusted = yahoo_rows("AAA", "%Y-%m-%d")
    without = [{k: v for k, v in row.items() if k != "Adj Close"} for row in with_adjusted]
    present = import_one(tmp_path / "present", "AAA.csv", with_adjusted).bars(SESSIONS[0], SESSIONS[-1])
    absent = import_one(tmp_path / "absent", "AAA.csv", without).bars(SESSIONS[0], SESSIONS[-1])
    assert present.equals(expected(["AAA"])) and absent.equals(present), "close is the Close column, never Adj Close"


def test_benchmarks_in_the_universe_are_not_stocks(tmp_path, caplog):
    for symbol in ("AAA", "SPY", "QQQ", "^GSPC"):
        write_yahoo(tmp_path / f"{symbol}.csv", yahoo_rows(symbol, "%Y-%m-%d"))
    universe = [["AAA", "Energy", "1e9"], ["SPY", "", ""], ["QQQ", "", ""], ["^GSPC", "", ""]]
    write_csv(tmp_path / "universe.csv", ["symbol", "sector", "market_cap"], universe)
    source = FilesSource(tmp_path)
    assert source.reference(SESSIONS[3]).get_column("symbol").to_list() == ["AAA"]
    assert source.bars(SESSIONS[0], SESSIONS[-1]).equals(expected(["AAA"])), "benchmarks are not in the stock bars"
    assert source.index_bars(SESSIONS[0], SESSIONS[-1]).get_column("symbol").unique().to_list() == [INDEX_SYMBOL]
    assert "benchmark symbols=['QQQ', '^GSPC']" in caplog.text
    assert "without bars" not in caplog.text, "index and benchmark rows of the universe are not missing stocks"


def test_a_universe_of_symbols_only_has_no_benchmarks_but_carets_are_never_stocks(tmp_path):
    for symbol in ("AAA", "QQQ", "^NDX"):
        write_yahoo(tmp_path / f"{symbol}.csv", yahoo_rows(symbol, "%Y-%m-%d"))
    write_csv(tmp_path / "universe.csv", ["symbol", "sector"], [["AAA", ""], ["QQQ", ""], ["^NDX", ""]])
    source = FilesSource(tmp_path)
    assert source.reference(SESSIONS[3]).get_column("symbol").to_list() == ["AAA", "QQQ"]
    assert source.bars(SESSIONS[0], SESSIONS[-1]).get_column("symbol").unique().sort().to_list() == ["AAA", "QQQ"]


def test_listings_delistings_and_halts_in_reference_and_bars(tmp_path):
    histories = {
        "AAA": SESSIONS,
        "IPO": SESSIONS[10:],  # lists mid-file
        "GONE": SESSIONS[:6],  # delisted
        "HALT": SESSIONS[:7] + SESSIONS[10:],  # three sessions halted
    }
    for symbol, sessions in histories.items():
        write_yahoo(tmp_path / f"{symbol}.csv", yahoo_rows(symbol, "%Y-%m-%d", sessions))
    write_csv(tmp_path / "universe.csv", ["symbol", "sector"], [[s, "Energy"] for s in histories])
    source = FilesSource(tmp_path)

    def listed(session: dt.date) -> list[str]:
        return source.reference(session).get_column("symbol").to_list()

    assert listed(SESSIONS[5]) == ["AAA", "GONE", "HALT"]
    assert listed(SESSIONS[8]) == ["AAA", "HALT"], "a halted symbol stays listed through its gap"
    assert listed(SESSIONS[10]) == ["AAA", "HALT", "IPO"]
    assert source.bars(SESSIONS[8], SESSIONS[8]).get_column("symbol").to_list() == ["AAA"], "no bar while halted"
    assert source.bars(SESSIONS[0], SESSIONS[-1]).equals(
        pl.concat([expected([s], d) for s, d in histories.items()]).sort("date", "symbol")
    )


def test_dates_parse_iso_and_us_with_or_without_a_time():
    text = pl.Series(
        [
            "2024-03-01",
            "3/1/2024",
            "03/01/24",
            "2024-03-01 16:00:00-05:00",
            "2024-03-01T00:00:00Z",
            "3/1/2024 12:00 AM",
            "2024/03/01",
            "March 1",
            "",
            None,
        ]
    )
    parsed = pl.select(parse_dates(pl.lit(text))).to_series().to_list()
    assert parsed == [dt.date(2024, 3, 1)] * 6 + [None] * 4


def test_make_source_builds_files_from_settings(messy, tmp_path):
    with pytest.raises(ConfigError, match="TECHNIC_FILES_DIR"):
        make_source(Settings(source="files"))
    with pytest.raises(ConfigError, match="not a directory"):
        make_source(Settings(source="files", files_dir=tmp_path / "missing"))
    env = {"TECHNIC_SOURCE": "files", "TECHNIC_FILES_DIR": str(messy), "TECHNIC_FILES_STRICT": "false"}
    source = make_source(Settings.from_env(env))
    assert isinstance(source, FilesSource) and source.strict is False and source.directory == messy


def test_a_strict_failure_writes_no_partition_through_the_pipeline(messy, tmp_path, monkeypatch):
    from technic_pipelines.definitions import BARS_BACKFILL_JOB, defs

    add_bad_files(messy)
    root = tmp_path / "warehouse"
    monkeypatch.setenv("TECHNIC_SOURCE", "files")
    monkeypatch.setenv("TECHNIC_FILES_DIR", str(messy))
    monkeypatch.setenv("TECHNIC_WAREHOUSE", str(root))
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: SESSIONS[0].isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: SESSIONS[4].isoformat(),
    }
    result = defs.resolve_job_def(BARS_BACKFILL_JOB).execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=tags, raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error.cause.message
    assert "DUPE.csv" in failure and "BADP.csv" in failure
    assert Warehouse(root).sessions("bars") == [] and Warehouse(root).sessions("index_bars") == []

    monkeypatch.setenv("TECHNIC_FILES_STRICT", "false")
    lenient = defs.resolve_job_def(BARS_BACKFILL_JOB).execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=tags, raise_on_error=False
    )
    assert lenient.success
    materializations = lenient.asset_materializations_for_node("price_bars")
    dropped = {m.metadata["forward_filled_rows_dropped"].value for m in materializations}
    assert dropped == {MESSY_WEEKEND_DAYS}, "price_bars shows the forward-filled rows its import dropped"
    assert Warehouse(root).sessions("bars") == SESSIONS[:5]
    assert Warehouse(root).read("bars").get_column("symbol").unique().sort().to_list() == ["AAPL", "JNJ", "MSFT", "XOM"]
