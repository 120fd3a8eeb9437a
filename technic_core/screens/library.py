"""Saved screens: the built-ins every warehouse has, and the users' own in the warehouse's screens.yaml.

A saved screen is a name (a slug, `NAME_PATTERN`), a title, a description, an expression in the screen
language and an optional default sort. Each change of its expression — by normalized text, so layout alone
changes nothing — is a new version: an integer counting up from 1 plus the `fingerprint` of the normalized
expression. Hits record the version that produced them, so the file keeps every version of every screen,
deleted screens included (a deleted name that is saved again continues its numbering: a version number is
never reused for a different expression).

screens.yaml lives at the warehouse root, local or object store, and is read and written only through the
warehouse's storage layer: a write replaces the whole file atomically (temp file + rename locally, one PUT
on an object store). Every user screen is compiled against the columns when saved; at load an invalid entry
is reported (`ScreenProblem`: screen name, yaml line, reason) and left out while the valid ones load, and a
write keeps the invalid entries as they are rather than dropping someone's work.

Lost updates: `put` and `delete` read, change and write the file under an exclusive lock on a sibling lock
file when the warehouse is local, so concurrent writers on one machine serialize. On an object store the file
is read again just before the PUT and the change is redone on the newer content when it moved; a writer
landing between that last read and the PUT still wins, since the stores' conditional PUT is not reachable
through the storage layer. Callers that show the file to a user and save later pass the `etag` they read as
`if_match` to refuse saving over a change they did not see (`ScreenConflictError`).
"""

from __future__ import annotations

import copy
import datetime as dt
import fcntl
import hashlib
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from technic_core import schema
from technic_core.catalog.registry import dtypes as catalog_dtypes
from technic_core.errors import TechnicError
from technic_core.screens.language import Kind, Screen, ScreenError, column_kinds, compile, fingerprint, normalize
from technic_core.warehouse import Warehouse

#: The users' screens file, at the warehouse root.
SCREENS_FILE = "screens.yaml"
#: The file format this module reads and writes; a file declaring another one is neither loaded nor written.
FORMAT = 1
#: A screen name: it becomes part of URLs and CLI arguments.
NAME_PATTERN = re.compile(r"[a-z0-9_-]{1,64}")
MAX_TITLE_LENGTH = 120
MAX_DESCRIPTION_LENGTH = 2_000
#: How many times a write on an object store redoes its change on content that moved under it.
_ATTEMPTS = 5

_HEADER = (
    "# Saved screens of this warehouse (docs/screens.md). Technic rewrites this file on every save or delete:\n"
    "# hand edits are read, comments are not kept.\n"
)

_log = logging.getLogger(__name__)

T = TypeVar("T")


def screener_columns() -> dict[str, Kind]:
    """The columns screens run on: the scan's result columns plus every catalog column, by kind."""
    return column_kinds({**schema.RESULTS, **catalog_dtypes()})


# -------------------------------------------------------------------- errors


class ScreenLibraryError(TechnicError):
    """A saved-screen operation the library refuses."""


class InvalidScreenError(ScreenLibraryError, ValueError):
    """A screen's name, title, description or sort is not acceptable (its expression raises `ScreenError`)."""


class BuiltinScreenError(ScreenLibraryError):
    """A built-in screen cannot be overwritten or deleted."""


class ScreenNotFoundError(ScreenLibraryError, LookupError):
    """No screen (or no such version of it) by that name."""


class ScreenConflictError(ScreenLibraryError):
    """screens.yaml changed since the caller read it (`if_match`), or kept changing during an update."""


class ScreenFileError(ScreenLibraryError):
    """screens.yaml as a whole cannot be read (bad YAML, unknown format), so it is not written over."""


# -------------------------------------------------------------------- saved screens


@dataclass(frozen=True)
class ScreenVersion:
    """One version of a screen: `saved_at` is None for built-ins and for a hand edit not yet saved."""

    version: int
    fingerprint: str
    expression: str
    saved_at: dt.datetime | None = None


@dataclass(frozen=True)
class SavedScreen:
    """A named screen with its version history, oldest first; the last version is the current one."""

    name: str
    title: str
    description: str
    expression: str
    versions: tuple[ScreenVersion, ...]
    sort_by: str | None = None
    descending: bool = True
    builtin: bool = False
    deleted_at: dt.datetime | None = None

    @property
    def version(self) -> int:
        return self.versions[-1].version

    @property
    def fingerprint(self) -> str:
        return self.versions[-1].fingerprint

    @property
    def ref(self) -> str:
        """What a hit records as its producer: ``name@version``."""
        return f"{self.name}@{self.version}"

    def compile(self, columns: Mapping[str, Kind]) -> Screen:
        return compile(self.expression, columns)


def _builtin(
    name: str, title: str, description: str, expression: str, sort_by: str | None, descending: bool = True
) -> SavedScreen:
    version = ScreenVersion(1, fingerprint(normalize(expression)), expression)
    return SavedScreen(name, title, description, expression, (version,), sort_by, descending, builtin=True)


#: Screens every warehouse has. Changing one's expression here means a new version: append to `versions`.
BUILTINS: tuple[SavedScreen, ...] = (
    _builtin(
        "top-gainers",
        "Top gainers",
        "Up more than 5 % on the session (close over the previous close).",
        "change_1d > 0.05",
        "change_1d",
    ),
    _builtin(
        "top-losers",
        "Top losers",
        "Down more than 5 % on the session.",
        "change_1d < -0.05",
        "change_1d",
        descending=False,
    ),
    _builtin(
        "new-52w-high",
        "New 52-week high",
        "Today's high is the highest high of the last 252 sessions.",
        "new_high_52w",
        "change_1d",
    ),
    _builtin(
        "new-52w-low",
        "New 52-week low",
        "Today's low is the lowest low of the last 252 sessions.",
        "new_low_52w",
        "change_1d",
        descending=False,
    ),
    _builtin(
        "unusual-volume",
        "Unusual volume",
        "Volume more than three times its 20-session average.",
        "rel_volume > 3",
        "rel_volume",
    ),
    _builtin("oversold", "Oversold", "RSI(14) below 30.", "rsi < 30", "rsi", descending=False),
    _builtin("overbought", "Overbought", "RSI(14) above 70.", "rsi > 70", "rsi"),
    _builtin(
        "golden-cross",
        "Golden cross",
        "The 50-session SMA crossed above the 200-session SMA on this session.",
        "golden_cross",
        "avg_dollar_volume_20",
    ),
    _builtin(
        "death-cross",
        "Death cross",
        "The 50-session SMA crossed below the 200-session SMA on this session.",
        "death_cross",
        "avg_dollar_volume_20",
    ),
    _builtin(
        "breakout-20d",
        "20-session breakout on volume",
        # The catalog's 20-session high includes today's high, so the close can never be above it; yesterday's
        # window (the 20 sessions before today) is recovered from yesterday's close and distance to its high.
        "Close above the highest high of the previous 20 sessions, on at least 1.5 times the average volume.",
        "close > prev(close) / (1 + prev(dist_high_20)) and rel_volume >= 1.5",
        "rel_volume",
    ),
    _builtin(
        "pullback-sma-50",
        "Pullback to the 50-session SMA in an uptrend",
        "In an uptrend (close and SMA 50 above SMA 200) and within 2 % of the 50-session SMA.",
        "close > sma_200 and sma_50 > sma_200 and abs(close_vs_sma_50) < 0.02",
        "tech_rating",
    ),
    _builtin(
        "cross-above-sma-200",
        "Crossed above the 200-session SMA",
        "Closed above its 200-session SMA today after closing at or below it on the previous session.",
        "close > sma_200 and prev(close) <= prev(sma_200)",
        "change_1d",
    ),
    _builtin(
        "macd-bullish-cross",
        "MACD bullish cross",
        "The MACD line crossed above its signal line on this session.",
        "macd > macd_signal and prev(macd) <= prev(macd_signal)",
        "macd_hist",
    ),
    _builtin("gap-up", "Gap up", "Opened more than 4 % above the previous close.", "gap > 0.04", "gap"),
    _builtin(
        "strong-buy",
        "Strong Buy (TechRating)",
        "TechRating's signal is Strong Buy.",
        'signal == "Strong Buy"',
        "tech_rating",
    ),
    _builtin(
        "consensus-strong-buy",
        "Strong Buy (consensus rating)",
        "The consensus rating of moving averages and oscillators is Strong Buy (0.5 or more).",
        'consensus_signal == "Strong Buy"',
        "consensus_rating",
    ),
)

_BUILTIN_NAMES = {screen.name: screen for screen in BUILTINS}


# -------------------------------------------------------------------- the file


@dataclass(frozen=True)
class ScreenProblem:
    """An entry of screens.yaml left out at load: the screen's name and yaml line where known, and why."""

    name: str | None
    line: int | None
    message: str

    def __str__(self) -> str:
        where = [f"line {self.line}"] if self.line is not None else []
        where += [f"screen {self.name!r}"] if self.name is not None else []
        return f"{SCREENS_FILE} {', '.join(where)}: {self.message}" if where else f"{SCREENS_FILE}: {self.message}"


@dataclass(frozen=True)
class LoadedLibrary:
    """What one read of screens.yaml gives, with the built-ins.

    `screens`: built-ins first, then the user's valid screens by name. `deleted`: deleted user screens, whose
    versions stay for hits that recorded them. `problems`: entries left out. `etag`: a hash of the file's
    bytes (None when there is no file), for `if_match`.
    """

    screens: Mapping[str, SavedScreen]
    deleted: Mapping[str, SavedScreen]
    problems: tuple[ScreenProblem, ...]
    etag: str | None
    readable: bool = True


class _Invalid(Exception):
    """An entry of the file that cannot be used; `line` is the yaml line to point at."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass
class _Document:
    """A read of screens.yaml: the raw data (changed and written back by updates) and its loaded view."""

    data: dict[str, Any]
    loaded: LoadedLibrary


def _etag(content: bytes | None) -> str | None:
    return None if content is None else hashlib.sha256(content).hexdigest()[:16]


def _read_document(content: bytes | None, columns: Mapping[str, Kind]) -> _Document:
    """Parse screens.yaml (None: no file) into its raw data and the screens it holds."""
    etag = _etag(content)
    empty: dict[str, Any] = {"format": FORMAT, "screens": {}}

    def unreadable(message: str, line: int | None) -> _Document:
        problem = ScreenProblem(None, line, message)
        return _Document(empty, LoadedLibrary(dict(_BUILTIN_NAMES), {}, (problem,), etag, readable=False))

    if content is None:
        return _Document(empty, LoadedLibrary(dict(_BUILTIN_NAMES), {}, (), etag))
    try:
        text = content.decode("utf-8")
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except UnicodeDecodeError as error:
        return unreadable(f"not UTF-8 text ({error.reason} at byte {error.start})", None)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        return unreadable(f"not valid YAML: {error}", mark.line + 1 if mark is not None else None)
    if data is None:
        return _Document(empty, LoadedLibrary(dict(_BUILTIN_NAMES), {}, (), etag))
    if isinstance(data, dict) and data.get("screens") is None:
        data["screens"] = {}  # `screens:` with nothing under it
    if not isinstance(data, dict) or not isinstance(data["screens"], dict):
        return unreadable("expected a mapping with a 'screens' mapping of name → screen", 1)
    if data.get("format", FORMAT) != FORMAT:
        return unreadable(f"format {data.get('format')!r} is not {FORMAT}, the one this version reads", 1)
    data.setdefault("format", FORMAT)
    entries: dict[Any, Any] = data["screens"]
    lines = _entry_lines(root)

    screens: dict[str, SavedScreen] = dict(_BUILTIN_NAMES)
    deleted: dict[str, SavedScreen] = {}
    problems = [
        ScreenProblem(name, first, f"defined again at line {later}; the later definition is used")
        for name, (first, later) in lines.duplicates.items()
    ]
    for name in sorted(entries, key=str):
        # No lines for a key YAML retyped (`0x1F:` is 31); such a name is refused anyway.
        key_line, expression_line = lines.entries.get(str(name), (None, None))
        try:
            screen = _entry(name, entries[name], columns, key_line, expression_line)
        except _Invalid as invalid:
            problems.append(ScreenProblem(str(name), invalid.line, invalid.message))
            continue
        (deleted if screen.deleted_at is not None else screens)[screen.name] = screen
    loaded = LoadedLibrary(screens, deleted, tuple(problems), etag)
    return _Document(data, loaded)


@dataclass
class _Lines:
    #: Screen name → (line of its key, line of its expression), 1-based.
    entries: dict[str, tuple[int, int | None]]
    #: Screen name → (line of its first definition, line of the one used).
    duplicates: dict[str, tuple[int, int]]


def _entry_lines(root: yaml.Node) -> _Lines:
    """Where each screen and its expression start in the file, from the YAML node tree."""
    lines = _Lines({}, {})
    screens = _mapping_value(root, "screens")
    if not isinstance(screens, yaml.MappingNode):
        return lines
    for key, value in screens.value:
        name = str(key.value)
        expression = _mapping_value(value, "expression")
        line = key.start_mark.line + 1
        if name in lines.entries:
            lines.duplicates[name] = (lines.entries[name][0], line)
        lines.entries[name] = (line, expression.start_mark.line + 1 if expression is not None else None)
    return lines


def _mapping_value(node: yaml.Node, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((value for name, value in node.value if name.value == key), None)


def _entry(
    name: object, raw: object, columns: Mapping[str, Kind], key_line: int | None, expression_line: int | None
) -> SavedScreen:
    """The saved screen an entry of the file describes; `_Invalid` says why it cannot be used."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise _Invalid(f"the name must be 1–64 of a-z, 0-9, '_' and '-', not {name!r}", key_line)
    if name in _BUILTIN_NAMES:
        raise _Invalid("the name is a built-in screen's; rename the entry", key_line)
    if not isinstance(raw, dict):
        raise _Invalid("expected a mapping with at least 'expression'", key_line)
    expression = raw.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise _Invalid("'expression' is missing or not text", expression_line or key_line)
    deleted_at = _timestamp(raw.get("deleted_at"), "deleted_at", key_line)
    history = _history(raw.get("versions"), key_line)
    if deleted_at is not None:
        if not history:
            raise _Invalid("a deleted screen keeps its 'versions'; this one has none", key_line)
        return SavedScreen(name, str(raw.get("title") or name), "", expression, history, deleted_at=deleted_at)
    try:
        screen = compile(expression, columns)
    except ScreenError as error:
        raise _Invalid(f"expression: {error}", expression_line or key_line) from None
    try:
        title, description, sort_by, descending = _metadata(
            raw.get("title"), raw.get("description"), raw.get("sort_by"), raw.get("descending", True), name, columns
        )
    except InvalidScreenError as error:
        raise _Invalid(str(error), key_line) from None
    if not history or history[-1].fingerprint != screen.fingerprint:
        # Edited by hand since the last save: the edit is the next version (recorded on the next save).
        history += (ScreenVersion((history[-1].version if history else 0) + 1, screen.fingerprint, expression),)
    return SavedScreen(name, title, description, expression, history, sort_by, descending)


def _history(raw: object, line: int | None) -> tuple[ScreenVersion, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _Invalid("'versions' must be a list", line)
    versions: list[ScreenVersion] = []
    for item in raw:
        if not isinstance(item, dict):
            raise _Invalid("each of 'versions' must be a mapping of version, fingerprint, expression", line)
        number, print_, expression = item.get("version"), item.get("fingerprint"), item.get("expression")
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise _Invalid(f"version {number!r} is not a positive integer", line)
        if versions and number <= versions[-1].version:
            raise _Invalid(f"versions must increase: {number} follows {versions[-1].version}", line)
        if not isinstance(print_, str) or not isinstance(expression, str):
            raise _Invalid(f"version {number} lacks its fingerprint or expression", line)
        versions.append(ScreenVersion(number, print_, expression, _timestamp(item.get("saved_at"), "saved_at", line)))
    return tuple(versions)


def _timestamp(raw: object, field: str, line: int | None) -> dt.datetime | None:
    """A time from the file: written as ISO text; YAML itself turns an unquoted one into a datetime."""
    if raw is None:
        return None
    if isinstance(raw, dt.datetime):
        return raw if raw.tzinfo is not None else raw.replace(tzinfo=dt.UTC)
    if isinstance(raw, str):
        try:
            return _timestamp(dt.datetime.fromisoformat(raw), field, line)
        except ValueError:
            pass
    raise _Invalid(f"{field} {raw!r} is not an ISO date and time", line)


def _metadata(
    title: object, description: object, sort_by: object, descending: object, name: str, columns: Mapping[str, Kind]
) -> tuple[str, str, str | None, bool]:
    """Title, description, sort column and direction, checked; `InvalidScreenError` names the culprit."""
    title = name if title is None else title
    description = "" if description is None else description
    if not isinstance(title, str) or not 0 < len(title) <= MAX_TITLE_LENGTH:
        raise InvalidScreenError(f"title: text of 1–{MAX_TITLE_LENGTH} characters, not {title!r}")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidScreenError(f"description: text of at most {MAX_DESCRIPTION_LENGTH} characters")
    if sort_by is not None and (not isinstance(sort_by, str) or sort_by not in columns):
        raise InvalidScreenError(f"sort_by: {sort_by!r} is not a column")
    if not isinstance(descending, bool):
        raise InvalidScreenError(f"descending: true or false, not {descending!r}")
    return title, description, sort_by, descending


def _encode(data: dict[str, Any]) -> bytes:
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)
    return (_HEADER + body).encode("utf-8")


def _version_data(version: ScreenVersion) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": version.version,
        "fingerprint": version.fingerprint,
        "expression": version.expression,
    }
    if version.saved_at is not None:
        data["saved_at"] = _iso(version.saved_at)
    return data


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# -------------------------------------------------------------------- the library


class ScreenLibrary:
    """The saved screens of one warehouse: built-ins plus `SCREENS_FILE` at its root.

    `columns` (name → kind) is what user screens are compiled against, at save and at load; by default the
    scan's result columns and the catalog (`screener_columns`). `clock` gives the time versions are stamped
    with.
    """

    def __init__(
        self,
        warehouse: Warehouse,
        columns: Mapping[str, Kind] | None = None,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.warehouse = warehouse
        self.columns: Mapping[str, Kind] = screener_columns() if columns is None else columns
        self.path = warehouse.root / SCREENS_FILE
        self._clock = clock

    def __repr__(self) -> str:
        return f"ScreenLibrary({str(self.path)!r})"

    # ---------------------------------------------------------------- reads

    def load(self) -> LoadedLibrary:
        """Every screen, built-in and saved; invalid entries are logged as one warning and listed in
        `problems`, never refused wholesale."""
        loaded = self._read().loaded
        if loaded.problems:
            _log.warning(
                "%s: %d entr%s left out: %s",
                self.path,
                len(loaded.problems),
                "y" if len(loaded.problems) == 1 else "ies",
                "; ".join(str(problem) for problem in loaded.problems),
            )
        return loaded

    def get(self, name: str) -> SavedScreen:
        """The current screen called `name`; `ScreenNotFoundError` when there is none (or it was deleted)."""
        screen = self.load().screens.get(name)
        if screen is None:
            raise ScreenNotFoundError(f"no screen named {name!r}")
        return screen

    def version(self, name: str, version: int) -> ScreenVersion:
        """Version `version` of screen `name`, deleted screens included: what produced a recorded hit."""
        loaded = self.load()
        screen = loaded.screens.get(name) or loaded.deleted.get(name)
        found = next((item for item in screen.versions if item.version == version), None) if screen else None
        if found is None:
            raise ScreenNotFoundError(f"no version {version} of a screen named {name!r}")
        return found

    # ---------------------------------------------------------------- writes

    def put(
        self,
        name: str,
        expression: str,
        *,
        title: str | None = None,
        description: str = "",
        sort_by: str | None = None,
        descending: bool = True,
        if_match: str | None = None,
    ) -> SavedScreen:
        """Save screen `name` (new, changed or previously deleted) and return it as saved.

        The expression must compile against the columns (`ScreenError` otherwise); a changed expression is a
        new version, a change of title, description or sort alone is not. Built-in names are refused
        (`BuiltinScreenError`).
        """
        if name in _BUILTIN_NAMES:
            raise BuiltinScreenError(
                f"{name!r} is a built-in screen and cannot be overwritten; save under another name"
            )
        if not NAME_PATTERN.fullmatch(name):
            raise InvalidScreenError(f"name: 1–64 of a-z, 0-9, '_' and '-', not {name!r}")
        screen = compile(expression, self.columns)
        title, description, sort_by, descending = _metadata(title, description, sort_by, descending, name, self.columns)

        def change(document: _Document) -> SavedScreen:
            existing = document.loaded.screens.get(name) or document.loaded.deleted.get(name)
            history = existing.versions if existing is not None else _salvaged_history(document.data, name)
            if not history or history[-1].fingerprint != screen.fingerprint:
                number = history[-1].version + 1 if history else 1
                history += (ScreenVersion(number, screen.fingerprint, expression, self._now()),)
            entry: dict[str, Any] = {"title": title, "description": description, "expression": expression}
            if sort_by is not None:
                entry.update(sort_by=sort_by, descending=descending)
            entry["versions"] = [_version_data(version) for version in history]
            document.data["screens"][name] = entry
            return SavedScreen(name, title, description, expression, history, sort_by, descending)

        return self._update(change, if_match)

    def delete(self, name: str, *, if_match: str | None = None) -> SavedScreen:
        """Delete screen `name`, keeping its versions for the hits that recorded them; returns it as it was."""
        if name in _BUILTIN_NAMES:
            raise BuiltinScreenError(f"{name!r} is a built-in screen and cannot be deleted")

        def change(document: _Document) -> SavedScreen:
            screen = document.loaded.screens.get(name)
            if screen is None:
                raise ScreenNotFoundError(f"no screen named {name!r}")
            document.data["screens"][name]["deleted_at"] = _iso(self._now())
            return screen

        return self._update(change, if_match)

    # ---------------------------------------------------------------- file access

    def _now(self) -> dt.datetime:
        # Whole seconds: what the file keeps, so a saved screen equals the same screen loaded again.
        return self._clock().astimezone(dt.UTC).replace(microsecond=0)

    def _read(self) -> _Document:
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            content = None
        return _read_document(content, self.columns)

    def _update(self, change: Callable[[_Document], T], if_match: str | None) -> T:
        """Read the file, apply `change` to its data and write it back, atomically and without losing a
        concurrent update (see the module docstring)."""
        with self._lock():
            for _ in range(_ATTEMPTS):
                document = self._read()
                loaded = document.loaded
                if if_match is not None and loaded.etag != if_match:
                    raise ScreenConflictError(f"{SCREENS_FILE} changed since it was read (etag {loaded.etag})")
                if not loaded.readable:
                    raise ScreenFileError(
                        f"{SCREENS_FILE} is not written over while unreadable: {loaded.problems[0]}; fix or remove it"
                    )
                original = copy.deepcopy(document.data)
                result = change(document)
                if document.data == original:
                    return result
                content = _encode(document.data)
                if self._read_etag() != loaded.etag:
                    continue  # someone else's write landed meanwhile: redo the change on theirs
                self.warehouse.storage.write_bytes(self.path, content)
                return result
        raise ScreenConflictError(f"{SCREENS_FILE} kept changing during {_ATTEMPTS} attempts to update it; try again")

    def _read_etag(self) -> str | None:
        try:
            return _etag(self.path.read_bytes())
        except FileNotFoundError:
            return None

    def _lock(self) -> AbstractContextManager[None]:
        if isinstance(self.path, Path):
            return _file_lock(self.path.with_name(f".{SCREENS_FILE}.lock"))
        return nullcontext()


def _salvaged_history(data: dict[str, Any], name: str) -> tuple[ScreenVersion, ...]:
    """The versions of an entry left out at load (e.g. an expression gone invalid), so saving over it
    continues its numbering; an entry whose versions themselves are unreadable is not overwritten."""
    raw = data["screens"].get(name)
    if not isinstance(raw, dict):
        return ()
    try:
        return _history(raw.get("versions"), None)
    except _Invalid as invalid:
        raise ScreenFileError(
            f"{SCREENS_FILE}: the versions of {name!r} are unreadable ({invalid.message}); fix them by hand"
        ) from None


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held on `path` (created if missing): writers on one machine take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
