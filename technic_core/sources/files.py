"""Daily bars imported from a directory of CSV or Parquet files: Technic on a user's own data.

See docs/files-source.md for the user's view: what is dropped, repaired or refused, with an example directory.

What a directory may hold
-------------------------
* One file per symbol (``AAPL.csv``, ``brk-b.parquet``): the file name, upper-cased, is the symbol.
* Long-format files with a ``symbol`` (or ``ticker``) column, many symbols each; the two layouts may mix.
* Yahoo-style columns ``Date, Open, High, Low, Close, Adj Close, Volume`` in any order and case (``vwap`` and
  ``trades`` are read when present; ``Adj Close`` and unknown columns, such as the unnamed index column a
  pandas export starts with, are ignored, so a file with or without ``Adj Close`` imports the same bars).
  Rows may come in any date order (finance sites often export newest first).
* Dates are ISO (``2024-01-02``) or US (``01/02/2024``, ``1/2/24``), optionally followed by a time of day and
  zone (``2024-01-02 00:00:00-05:00``, ``2024-01-02T00:00:00Z``), which are dropped: a daily file labels each
  session by its date, and converting a midnight UTC stamp to New York would move it to the previous day.
* Numbers may carry thousands separators in groups of three (``1,234.50``, quoted in a CSV) and a leading
  dollar sign (``$12.30``). Any other comma (the decimal comma of ``1,5``), ``nan`` or ``inf`` is not a number.
* ``SPY`` and ``VIX`` (or Yahoo's ``^VIX``) are the index and volatility-index series of `index_bars`, not
  stocks, wherever they appear (their own file or a long file's rows; two sources of one are refused as a
  symbol in two files); the volatility file may lack volume (a level has none).
* Benchmarks are read and validated like any file, then set aside: not in `bars`, not in `reference`, never
  scanned (one warning names them). A benchmark is a symbol written with Yahoo's index caret (``^GSPC``,
  ``^NDX``: no stock ticker has one), or one the universe file lists with no sector, market cap or shares
  outstanding while it gives some of these for other symbols (an ETF such as ``QQQ`` exported beside the
  stocks). A universe of bare symbols declares no benchmarks, and without a universe file only carets do.
* An optional ``universe.csv`` or ``universe.parquet``: ``symbol`` plus any of ``sector``, ``industry``,
  ``market_cap``, ``name``, ``shares_outstanding``. Yahoo's sector names map to GICS (``Technology`` →
  ``Information Technology``); other sectors are kept as written, with one warning. Its SPY, VIX and benchmark
  rows are dropped: they describe no stock.

Calendar-day files: forward-filled rows are dropped
---------------------------------------------------
Exports resampled to calendar days repeat the previous session's bar on weekends and holidays. A row dated on
a non-session is dropped when its open, high, low and close equal those of the last session before it among
its symbol's rows (by date), and its volume equals that session's or is zero (resamplers that sum volume
write zero). Each file's dropped rows are counted in one warning and in `stats.forward_filled_rows_dropped`
(`FilesStats`), which the ``price_bars`` asset shows in its metadata. A non-session row with any new figure,
or with no session before it in the file, is an error: the file's dates follow another calendar or were
shifted by a time zone.

Validation, and why it is all-or-nothing per file
-------------------------------------------------
Every file is checked before any bar is returned: missing columns, unparseable dates, non-session dates
(other than forward-filled rows), missing or unparseable numbers, non-positive prices, negative volume, high
below low (or below open/close, low above them: the bar checks downstream reject those too) and duplicate
dates. Each problem names the file and its line (CSV, counting the header as line 1) or row (Parquet). With
`strict` (the default, ``TECHNIC_FILES_STRICT``) any problem fails the import with every problem listed;
otherwise the bad file is skipped whole, with a warning, so no symbol is ever half-imported. Either way the
source returns complete ranges only, and the pipeline writes nothing from a failed import. Rows before the
calendar's first session (`calendar.CALENDAR_START`) cannot be checked or used and are dropped.

What the protocol gets
----------------------
`reference(session)`: the universe file's symbols (or, without one, every symbol with bars) whose bars span
the session — from their first to their last bar, so a history that starts late (a listing) or ends early (a
delisting) is listed only between its bars, and a symbol missing a few sessions inside its span (a trading
halt) stays listed without a bar on them, as the protocol's halted days are; sector, industry and market cap
from the universe file, null without one; list and delist dates null. `earnings` is always empty. Files are
read once, on the first call; `stats.api_calls` counts files read, `stats.cache_hits` calls answered from
memory.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import polars as pl

from technic_core import calendar, schema
from technic_core.config import SECTORS, Settings
from technic_core.errors import ConfigError, DataSourceError
from technic_core.scalars import as_date
from technic_core.sources import INDEX_SYMBOL, VOLATILITY_SYMBOL, SourceStats

_log = logging.getLogger(__name__)

DATA_SUFFIXES = (".csv", ".parquet")
UNIVERSE_STEM = "universe"
#: File or symbol-column names (upper-cased) that hold the index series, and the symbol each becomes.
INDEX_FILES = {"SPY": INDEX_SYMBOL, "VIX": VOLATILITY_SYMBOL, "^VIX": VOLATILITY_SYMBOL}
#: Problems listed in a strict failure before the rest are counted instead.
MAX_LISTED_PROBLEMS = 25
_ROWS_NAMED = 5  # offending rows named per problem

#: Normalized header → column. Normalizing lower-cases and folds spaces, underscores and hyphens.
_BAR_COLUMNS = {
    "date": "date",
    "datetime": "date",
    "timestamp": "date",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "volume": "volume",
    "vwap": "vwap",
    "vw": "vwap",
    "trades": "trades",
    "transactions": "trades",
    "symbol": "symbol",
    "ticker": "symbol",
}
_UNIVERSE_COLUMNS = {
    "symbol": "symbol",
    "ticker": "symbol",
    "sector": "sector",
    "industry": "industry",
    "market cap": "market_cap",
    "marketcap": "market_cap",
    "name": "name",
    "company": "name",
    "company name": "name",
    "shares outstanding": "shares_outstanding",
    "shares": "shares_outstanding",
}
_PRICES = ("open", "high", "low", "close")
#: Yahoo Finance's sector names (lower-cased) → GICS; GICS names themselves match case-insensitively.
SECTOR_ALIASES: dict[str, str] = {
    "technology": "Information Technology",
    "healthcare": "Health Care",
    "financial services": "Financials",
    "consumer cyclical": "Consumer Discretionary",
    "consumer defensive": "Consumer Staples",
    "basic materials": "Materials",
    "communication services": "Communication Services",
    **{sector.lower(): sector for sector in SECTORS},
}

_ISO_DATE = r"^\d{4}-\d{1,2}-\d{1,2}$"
_US_DATE_LONG_YEAR = r"^\d{1,2}/\d{1,2}/\d{4}$"
_US_DATE_SHORT_YEAR = r"^\d{1,2}/\d{1,2}/\d{2}$"
#: A number as finance sites write it: optional sign, then an optional dollar sign, then digits — grouped by
#: commas in threes or not grouped at all — with optional decimals and exponent. A comma anywhere else (the
#: decimal comma of ``1,5``) makes the cell not a number rather than a number off by a power of ten; ``nan``
#: and ``inf`` are not numbers either.
_NUMBER = r"^[+-]?\$?(?:\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$"
#: Yahoo writes index symbols with a caret (``^GSPC``, ``^NDX``); no stock ticker has one.
_INDEX_PREFIX = "^"


class _Table(NamedTuple):
    """A file's cells as text, with `_row` (1-based data row) and how its rows are named in messages."""

    frame: pl.DataFrame
    row_label: str  # "line" (CSV: data row n is line n + 1) or "row" (Parquet)
    line_offset: int


class BarsFile(NamedTuple):
    """One bar file's outcome: its bars (None when it has problems), its problems, and how many of its
    rows were dropped as forward-filled (non-session rows repeating the previous session's bar)."""

    bars: pl.DataFrame | None
    problems: list[str]
    forward_filled: int


class _Imported(NamedTuple):
    bars: pl.DataFrame  # schema.BARS, sorted by (date, symbol)
    index_bars: pl.DataFrame  # schema.BARS of INDEX_SYMBOL / VOLATILITY_SYMBOL (not `index`: tuple.index)
    spans: pl.DataFrame  # symbol, first, last: the sessions each symbol's bars span
    universe: pl.DataFrame | None  # symbol, name, sector, industry, market_cap, shares_outstanding


@dataclass
class FilesStats(SourceStats):
    """`SourceStats` plus the rows an import dropped as forward-filled (see the module docstring)."""

    forward_filled_rows_dropped: int = 0


@dataclass(frozen=True)
class _Check:
    """A row-level rule: `failing` is true on offending rows, `problem` says what is wrong with them."""

    problem: str
    failing: pl.Expr


def _normalized(header: str) -> str:
    return re.sub(r"[\s_\-]+", " ", header.strip().lstrip("\ufeff").lower()).strip()


def _read_table(path: Path) -> _Table:
    """Every cell of `path` as text (parsing is ours, so messy values become named problems, not crashes)."""
    if path.suffix.lower() == ".csv":
        frame = pl.read_csv(path, infer_schema=False, raise_if_empty=False)
        return _Table(frame.with_row_index("_row", offset=1), "line", 1)
    frame = pl.read_parquet(path)
    return _Table(frame.select(pl.all().cast(pl.String)).with_row_index("_row", offset=1), "row", 0)


def _columns(table: _Table, names: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Map known columns to their header in the file; problems for two headers naming one column."""
    found: dict[str, str] = {}
    problems = []
    for header in table.frame.columns:
        column = names.get(_normalized(header))
        if column is None or header == "_row":
            continue
        if column in found:
            problems.append(f"columns {found[column]!r} and {header!r} are both {column}")
        else:
            found[column] = header
    return found, problems


def parse_dates(text: pl.Expr) -> pl.Expr:
    """ISO or US dates, optionally followed by a time of day (and zone), as `pl.Date`; null if neither."""
    day = text.str.strip_chars().str.extract(r"^([0-9/\-]+)(?:[ T].*)?$", 1)
    return (
        pl.when(day.str.contains(_ISO_DATE))
        .then(day.str.strptime(pl.Date, "%Y-%m-%d", strict=False))
        .when(day.str.contains(_US_DATE_LONG_YEAR))
        .then(day.str.strptime(pl.Date, "%m/%d/%Y", strict=False))
        .when(day.str.contains(_US_DATE_SHORT_YEAR))
        .then(day.str.strptime(pl.Date, "%m/%d/%y", strict=False))
    )


def _number(text: pl.Expr) -> pl.Expr:
    """`_NUMBER` cells as floats, thousands separators and dollar sign removed; null for anything else."""
    cell = text.str.strip_chars()
    return pl.when(cell.str.contains(_NUMBER)).then(cell.str.replace_all(r"[$,]", "").cast(pl.Float64, strict=False))


def _forward_filled(sessions: pl.Series) -> pl.Expr:
    """True on non-session rows that repeat the bar of the last session before them among their symbol's
    rows (by date, whatever the file's order): what resampling a daily series to calendar days writes on
    weekends and holidays. The volume may repeat or be zero, as resamplers that sum it write."""
    on_session = pl.col("date").is_in(sessions.implode())

    def before(column: str) -> pl.Expr:
        return pl.when(on_session).then(pl.col(column)).forward_fill().over("symbol", order_by="date")

    repeats = pl.all_horizontal(pl.col(c) == before(c) for c in _PRICES)
    volume = (pl.col("volume") == before("volume")) | (pl.col("volume") == 0)
    return (pl.col("date").is_not_null() & ~on_session & repeats & volume).fill_null(False)


def _problems(table: _Table, frame: pl.DataFrame, checks: list[_Check], file: str) -> list[str]:
    """One message per failing check, naming the file and the first offending lines (with their date)."""
    messages = []
    for check in checks:
        failing = frame.filter(check.failing)
        if failing.is_empty():
            continue
        lines = [str(row + table.line_offset) for row in failing.get_column("_row").head(_ROWS_NAMED).to_list()]
        more = f" and {failing.height - len(lines)} more" if failing.height > len(lines) else ""
        plural = "s" if len(lines) > 1 else ""
        first_date = failing.get_column("date_text")[0] if "date_text" in failing.columns else None
        context = f" (first: {first_date!r})" if first_date is not None else ""
        messages.append(f"{file} {table.row_label}{plural} {', '.join(lines)}{more}: {check.problem}{context}")
    return messages


def _bar_checks(sessions: pl.Series, has_symbol: bool) -> list[_Check]:
    date, high, low = pl.col("date"), pl.col("high"), pl.col("low")
    checks = [_Check("date is not an ISO or US date", date.is_null())]
    checks.append(
        _Check(
            "date is not an NYSE session and the row does not repeat the previous session's bar "
            "(wrong calendar or time zone?)",
            date.is_not_null() & ~date.is_in(sessions.implode()),
        )
    )
    checks += [_Check(f"{c} is missing or not a number", pl.col(c).is_null()) for c in (*_PRICES, "volume")]
    checks += [
        _Check("a price is zero or negative", pl.any_horizontal(pl.col(c) <= 0 for c in _PRICES)),
        _Check("volume is negative", pl.col("volume") < 0),
        _Check("high is below low", high < low),
        _Check("high is below open or close", high < pl.max_horizontal("open", "close")),
        _Check("low is above open or close", low > pl.min_horizontal("open", "close")),
        _Check("duplicate date", date.is_not_null() & pl.struct("symbol", "date").is_duplicated()),
    ]
    if has_symbol:
        checks.append(_Check("symbol is empty", pl.col("symbol").is_null() | (pl.col("symbol") == "")))
    return checks


def load_bars_file(path: Path) -> BarsFile:
    """The validated bars of one file (`schema.BARS`, index files under `INDEX_FILES`' symbols) and its
    problems; the bars are None when any exist. Forward-filled rows are dropped and counted first.

    A per-symbol file takes its symbol from the file name; a file with a symbol column is long-format.
    """
    file = path.name
    try:
        table = _read_table(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        return BarsFile(None, [f"{file}: unreadable ({type(exc).__name__}: {exc})"], 0)
    found, problems = _columns(table, _BAR_COLUMNS)
    own_symbol = None if "symbol" in found else path.stem.upper()
    required = ["date", *_PRICES]
    if INDEX_FILES.get(own_symbol or "") != VOLATILITY_SYMBOL:
        required.append("volume")
    missing = [c for c in required if c not in found]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)} (has: {', '.join(table.frame.columns[1:]) or 'none'})")
    if problems:
        return BarsFile(None, [f"{file}: {p}" for p in problems], 0)

    def text(column: str) -> pl.Expr:
        return pl.col(found[column]) if column in found else pl.lit(None, dtype=pl.String)

    symbol = text("symbol").str.strip_chars().str.to_uppercase() if own_symbol is None else pl.lit(own_symbol)
    volume = _number(text("volume")) if "volume" in found else pl.lit(0.0)
    frame = table.frame.select(
        "_row",
        text("date").alias("date_text"),
        symbol.replace(INDEX_FILES).alias("symbol"),
        parse_dates(text("date")).alias("date"),
        *(_number(text(c)).alias(c) for c in _PRICES),
        volume.alias("volume"),
        _number(text("vwap")).alias("vwap"),
        _number(text("trades")).round(0).cast(pl.Int64).alias("trades"),
    )
    early = frame.filter(pl.col("date") < calendar.CALENDAR_START)
    if early.height:
        _log.info("files %s: dropped rows=%d dated before %s", file, early.height, calendar.CALENDAR_START)
        frame = frame.filter(pl.col("date").is_null() | (pl.col("date") >= calendar.CALENDAR_START))
    dates = frame.get_column("date").drop_nulls()
    span = calendar.sessions_between(as_date(dates.min()), as_date(dates.max())) if dates.len() else []
    sessions = pl.Series(span, dtype=pl.Date)
    filled = frame.select(_forward_filled(sessions)).to_series()
    frame = frame.filter(~filled)
    problems = _problems(table, frame, _bar_checks(sessions, own_symbol is None), file)
    if problems:
        return BarsFile(None, problems, 0)
    return BarsFile(schema.conform(frame, schema.BARS, file), [], int(filled.sum()))


def load_universe_file(path: Path) -> tuple[pl.DataFrame | None, list[str]]:
    """The validated universe file: symbol, name, sector (Yahoo names mapped to GICS), industry,
    market_cap, shares_outstanding; None and the problems when it has any."""
    file = path.name
    try:
        table = _read_table(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        return None, [f"{file}: unreadable ({type(exc).__name__}: {exc})"]
    found, problems = _columns(table, _UNIVERSE_COLUMNS)
    if "symbol" not in found:
        problems.append("missing column symbol")
    if problems:
        return None, [f"{file}: {p}" for p in problems]

    def text(column: str) -> pl.Expr:
        value = pl.col(found[column]).str.strip_chars() if column in found else pl.lit(None, dtype=pl.String)
        return pl.when(value == "").then(None).otherwise(value)

    frame = table.frame.select(
        "_row",
        text("symbol").str.to_uppercase().alias("symbol"),
        text("name").alias("name"),
        text("sector").alias("sector_text"),
        text("industry").alias("industry"),
        *(text(c).alias(f"{c}_text") for c in ("market_cap", "shares_outstanding")),
    ).with_columns(
        *(_number(pl.col(f"{c}_text")).alias(c) for c in ("market_cap", "shares_outstanding")),
    )
    checks = [
        _Check("symbol is empty", pl.col("symbol").is_null()),
        _Check("duplicate symbol", pl.col("symbol").is_not_null() & pl.col("symbol").is_duplicated()),
    ]
    for column in ("market_cap", "shares_outstanding"):
        given = pl.col(f"{column}_text").is_not_null()
        checks.append(_Check(f"{column} is not a number", given & pl.col(column).is_null()))
        checks.append(_Check(f"{column} is negative", pl.col(column) < 0))
    problems = _problems(table, frame, checks, file)
    if problems:
        return None, problems
    aliases = pl.col("sector_text").str.to_lowercase().replace_strict(SECTOR_ALIASES, default=None)
    universe = frame.with_columns(pl.coalesce(aliases, "sector_text").alias("sector"))
    unknown = universe.filter(pl.col("sector").is_not_null() & ~pl.col("sector").is_in(SECTORS))
    if unknown.height:
        names = sorted(unknown.get_column("sector").unique().to_list())
        _log.warning("files %s: sectors kept as written, not GICS: %s", file, names)
    return universe.select(
        "symbol",
        "name",
        "sector",
        "industry",
        "market_cap",
        pl.col("shares_outstanding").round(0).cast(pl.Int64),
    ), []


def _described_benchmarks(universe: pl.DataFrame | None) -> list[str]:
    """Universe symbols given neither sector, market cap nor shares outstanding, when the file gives other
    symbols some of them: the benchmark rows (QQQ, an index) such exports list beside their stocks. A
    universe that describes nobody (symbols only) has no benchmarks by this rule."""
    if universe is None:
        return []
    undescribed = pl.all_horizontal(pl.col(c).is_null() for c in ("sector", "market_cap", "shares_outstanding"))
    if universe.select(undescribed.all()).item():
        return []
    return universe.filter(undescribed).get_column("symbol").to_list()


class FilesSource:
    """`MarketDataSource` over a directory of CSV / Parquet files; see the module docstring."""

    name = "files"

    def __init__(self, directory: Path | str, strict: bool = True) -> None:
        self.directory = Path(directory)
        self.strict = strict
        self.stats = FilesStats()
        #: File name → its problems, for files skipped because `strict` is off.
        self.skipped: dict[str, list[str]] = {}
        self._lock = threading.RLock()
        self._imported: _Imported | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> FilesSource:
        if settings.files_dir is None:
            raise ConfigError("source 'files' needs TECHNIC_FILES_DIR (a directory of CSV or Parquet files)")
        if not settings.files_dir.is_dir():
            raise ConfigError(f"TECHNIC_FILES_DIR: {settings.files_dir} is not a directory")
        return cls(settings.files_dir, strict=settings.files_strict)

    # ------------------------------------------------------------------ protocol

    def bars(self, start: dt.date, end: dt.date, symbols: Sequence[str] | None = None) -> pl.DataFrame:
        """`schema.BARS` rows for sessions in [start, end], sorted by (date, symbol)."""
        bars = self._data().bars.filter(pl.col("date").is_between(start, end))
        if symbols is not None:
            bars = bars.filter(pl.col("symbol").is_in(list(symbols)))
        return bars

    def index_bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """The SPY and VIX files' bars in [start, end]; empty (with a warning at import) without them."""
        return self._data().index_bars.filter(pl.col("date").is_between(start, end))

    def reference(self, session: dt.date) -> pl.DataFrame:
        """Symbols whose bars span `session` (restricted to, and described by, the universe file if any)."""
        calendar.require_session(session)
        imported = self._data()
        listed = imported.spans.filter((pl.col("first") <= session) & (pl.col("last") >= session)).select("symbol")
        if imported.universe is not None:
            listed = listed.join(imported.universe, on="symbol", how="inner")
        frame = listed.with_columns(
            *(pl.lit(None, dtype=schema.REFERENCE[c]).alias(c) for c in schema.REFERENCE if c not in listed.columns)
        ).sort("symbol")
        return schema.conform(frame, schema.REFERENCE, "reference")

    def earnings(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Always empty: the files hold prices only."""
        return schema.empty(schema.EARNINGS)

    # ------------------------------------------------------------------ import

    def _data(self) -> _Imported:
        with self._lock:
            if self._imported is None:
                self._imported = self._import()
            else:
                self.stats.cache_hits += 1
            return self._imported

    def _import(self) -> _Imported:
        """Read and validate every file; raise listing all problems (strict) or skip bad files (lenient)."""
        if not self.directory.is_dir():
            raise DataSourceError(f"files source: {self.directory} is not a directory")
        paths = sorted(
            p
            for p in self.directory.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in DATA_SUFFIXES
        )
        universe_paths = [p for p in paths if p.stem.lower() == UNIVERSE_STEM]
        bar_paths = [p for p in paths if p.stem.lower() != UNIVERSE_STEM]
        if not bar_paths:
            raise DataSourceError(f"files source: no CSV or Parquet bar files in {self.directory}")
        problems: dict[str, list[str]] = {}
        frames: list[pl.DataFrame] = []
        owner: dict[str, str] = {}
        forward_filled: dict[str, int] = {}
        for path in bar_paths:
            self.stats.api_calls += 1
            frame, found, filled = load_bars_file(path)
            if frame is not None:
                clashes = sorted(s for s in frame.get_column("symbol").unique().to_list() if s in owner)
                if clashes:
                    found = [f"{path.name}: symbol(s) {', '.join(clashes[:5])} also in {owner[clashes[0]]}"]
            if found or frame is None:  # no frame comes with problems (`BarsFile`), so `found` is set then
                problems[path.name] = found
                continue
            owner.update(dict.fromkeys(frame.get_column("symbol").unique().to_list(), path.name))
            frames.append(frame)
            if filled:
                forward_filled[path.name] = filled
        universe = None
        if len(universe_paths) > 1:
            problems["universe"] = [f"both {' and '.join(p.name for p in universe_paths)} exist; keep one"]
        elif universe_paths:
            self.stats.api_calls += 1
            universe, found = load_universe_file(universe_paths[0])
            if found:
                problems[universe_paths[0].name] = found
        self._settle(problems)
        if not frames:
            raise DataSourceError(f"files source: every bar file in {self.directory} was skipped as invalid")
        # Reported only once the import stands: a failed import imports, and so drops, nothing.
        for file, filled in forward_filled.items():
            _log.warning(
                "files %s: dropped forward-filled rows=%d (non-session dates repeating the previous session's bar)",
                file,
                filled,
            )
            self.stats.forward_filled_rows_dropped += filled
        return self._assemble(pl.concat(frames), universe)

    def _settle(self, problems: dict[str, list[str]]) -> None:
        """Strict: raise with every problem. Lenient: remember and warn about each skipped file."""
        if not problems:
            return
        if self.strict:
            lines = [line for found in problems.values() for line in found]
            listed = lines[:MAX_LISTED_PROBLEMS]
            more = f"\n  ... and {len(lines) - len(listed)} more" if len(lines) > len(listed) else ""
            raise DataSourceError(
                f"files source: {len(problems)} invalid file(s) in {self.directory}; nothing was imported "
                "(fix them, or set TECHNIC_FILES_STRICT=false to skip them):\n  " + "\n  ".join(listed) + more
            )
        for file, found in problems.items():
            _log.warning("files skipped file=%s problems=%s", file, found)
        self.skipped.update(problems)

    def _assemble(self, bars: pl.DataFrame, universe: pl.DataFrame | None) -> _Imported:
        """Split the bars into stocks, the index series and set-aside benchmarks; span each stock."""
        is_index = pl.col("symbol").is_in([INDEX_SYMBOL, VOLATILITY_SYMBOL])
        is_benchmark = ~is_index & (
            pl.col("symbol").str.starts_with(_INDEX_PREFIX) | pl.col("symbol").is_in(_described_benchmarks(universe))
        )
        index = bars.filter(is_index).sort("date", "symbol")
        stocks = bars.filter(~is_index & ~is_benchmark).sort("date", "symbol")
        benchmarks = sorted(bars.filter(is_benchmark).get_column("symbol").unique().to_list())
        if benchmarks:
            _log.warning("files set aside benchmark symbols=%s: neither bars nor reference, not scanned", benchmarks)
        if universe is not None:
            universe = universe.filter(~is_index & ~is_benchmark)
        if index.get_column("symbol").n_unique() < 2:
            _log.warning(
                "files in %s lack SPY and/or VIX; market conditions will miss the index or volatility index",
                self.directory,
            )
        spans = stocks.group_by("symbol").agg(pl.col("date").min().alias("first"), pl.col("date").max().alias("last"))
        if universe is not None:
            without_bars = universe.join(spans, on="symbol", how="anti").height
            outside = spans.join(universe, on="symbol", how="anti").height
            if without_bars or outside:
                _log.warning(
                    "files universe lists symbols=%d without bars; symbols=%d with bars are not in the universe",
                    without_bars,
                    outside,
                )
        _log.info("files imported symbols=%d rows=%d from %s", spans.height, stocks.height, self.directory)
        return _Imported(stocks, index, spans, universe)
