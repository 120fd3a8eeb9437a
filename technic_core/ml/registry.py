"""The model registry: versioned model directories under `<warehouse>/models/` and a champion per name.

Layout::

    models/<name>/v0001/manifest.json    spec, training window, file checksums (written last)
    models/<name>/v0001/metrics.json     walk-forward metrics and the promotion decision
    models/<name>/v0001/...              the model files (e.g. model.ubj, features.json)
    models/<name>/champion.json          {"version": ..., "previous": [...]} — the version scans use

Why this shape:

* Two trainings never share a version directory. On a local root the next number is claimed with an
  exclusive `mkdir`. An object store has neither directories nor an exclusive create, so there a version
  is the next number plus a random suffix (`v0007-3f9a1c2e`): two concurrent trainings get distinct
  versions ordered by number, without coordinating. Every file is written atomically (one PUT on a store)
  and the manifest last, so a version without a manifest is an interrupted write and is ignored. Versions
  are never deleted: an old champion stays loadable.
* The champion pointer is one small JSON file replaced atomically, so readers see the old champion or the
  new one, never a mix. It remembers the champions before it (`previous`), which is where loading falls
  back to.
* The manifest records each file's SHA-256, so a truncated or overwritten model file is detected before a
  library tries to parse it. `load` tries the champion, then the previous champions newest first, logging
  a warning for each that fails, and reports what it fell back from — a broken model degrades a scan,
  never stops it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, NamedTuple, TypeVar

from technic_core.errors import ConfigError
from technic_core.storage import AnyPath
from technic_core.warehouse import Warehouse, write_bytes_atomic, write_json_atomic

_log = logging.getLogger(__name__)

MODELS_DIR = "models"
MANIFEST = "manifest.json"
METRICS = "metrics.json"
CHAMPION = "champion.json"
_VERSION = re.compile(r"^v(\d{4,})(?:-[0-9a-f]{8})?$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

T = TypeVar("T")


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """The outcome of loading a model name: the version serving (if any), the champion, what went wrong."""

    name: str
    champion: str | None
    version: str | None = None
    model: T | None = None
    manifest: dict[str, object] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def available(self) -> bool:
        return self.model is not None

    @property
    def fell_back(self) -> bool:
        """True when something serves but it is not the champion (the champion failed to load)."""
        return self.model is not None and self.version != self.champion

    @property
    def healthy(self) -> bool:
        """The champion itself serves — or nothing was ever promoted, which is not a fault."""
        return not self.problems and (self.model is not None or self.champion is None)

    def status(self) -> str:
        """One line for logs, checks and the UI."""
        if self.healthy:
            return f"{self.name}: champion {self.version} loaded" if self.available else f"{self.name}: no champion yet"
        if self.fell_back:
            return f"{self.name}: falling back to {self.version} — " + "; ".join(self.problems)
        return f"{self.name}: no loadable version — " + "; ".join(self.problems)


class _Pointer(NamedTuple):
    """A champion pointer as `champion.json` holds it."""

    version: str
    previous: list[str]


class ModelRegistry:
    """Versioned models of a warehouse (or any root holding a `models/` directory)."""

    def __init__(self, store: Warehouse | Path | str) -> None:
        """`store`: a warehouse, or its root as a local path or an object-store URI."""
        self.root = (store if isinstance(store, Warehouse) else Warehouse(store)).root / MODELS_DIR

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # ---------------------------------------------------------------- writing

    def create_version(
        self, name: str, files: Mapping[str, bytes], manifest: Mapping[str, object], metrics: Mapping[str, object]
    ) -> str:
        """Store a new version of `name` with `files`, `metrics.json` and the manifest (last); return it."""
        directory = self._claim_version(_checked_name(name))
        for file_name, data in files.items():
            write_bytes_atomic(directory / file_name, data)
        write_json_atomic(directory / METRICS, dict(metrics))
        checksums = {file_name: hashlib.sha256(data).hexdigest() for file_name, data in files.items()}
        write_json_atomic(
            directory / MANIFEST,
            {
                **manifest,
                "name": name,
                "version": directory.name,
                "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "files": checksums,
            },
        )
        _log.info("registered %s %s", name, directory.name)
        return directory.name

    def promote(self, name: str, version: str, reason: str) -> None:
        """Make `version` the champion of `name`, atomically; the old champion joins `previous`."""
        if version not in self.versions(name):
            raise ConfigError(f"{name}: cannot promote {version!r}, not a complete version")
        pointer = self._read_pointer(name)
        previous = [] if pointer is None else [pointer.version, *pointer.previous]
        write_json_atomic(
            self.root / name / CHAMPION,
            {
                "version": version,
                "previous": [v for v in previous if v != version],
                "reason": reason,
                "promoted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            },
        )
        _log.info("%s champion is now %s: %s", name, version, reason)

    # ---------------------------------------------------------------- reading

    def versions(self, name: str) -> list[str]:
        """Complete versions (with a manifest) of `name`, oldest first."""
        directory = self.root / _checked_name(name)
        if not directory.is_dir():
            return []
        found = [(int(m.group(1)), p.name) for p in directory.iterdir() if (m := _VERSION.match(p.name))]
        return [version for _, version in sorted(found) if (directory / version / MANIFEST).is_file()]

    def champion(self, name: str) -> str | None:
        """The champion version of `name`, or None when none was promoted (or the pointer is unreadable)."""
        pointer = self._read_pointer(name)
        return None if pointer is None else pointer.version

    def pointer_fingerprint(self, name: str) -> tuple[int, int] | None:
        """(mtime_ns, size) of the champion pointer: changes whenever the champion is switched."""
        try:
            stat = (self.root / _checked_name(name) / CHAMPION).stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def manifest(self, name: str, version: str) -> dict[str, object]:
        return json.loads((self.root / name / version / MANIFEST).read_text("utf-8"))

    def metrics(self, name: str, version: str) -> dict[str, object]:
        return json.loads((self.root / name / version / METRICS).read_text("utf-8"))

    def read_file(self, name: str, version: str, file_name: str) -> bytes:
        """A model file's bytes, checked against the manifest's checksum (a mismatch raises `ValueError`)."""
        data = (self.root / name / version / file_name).read_bytes()
        checksums = self.manifest(name, version)["files"]
        if not isinstance(checksums, dict):
            raise ValueError(f"{name} {version}: the manifest's files are not a JSON object")
        expected = checksums.get(file_name)
        if hashlib.sha256(data).hexdigest() != expected:
            raise ValueError(f"{name} {version}: {file_name} does not match its manifest checksum")
        return data

    def load(self, name: str, loader: Callable[[str], T]) -> Loaded[T]:
        """Load the champion of `name` with `loader(version)`, falling back on failure.

        Candidates: the champion, then the previous champions newest first; when the pointer exists but is
        unreadable, every version newest first. Each failure is logged as a warning and kept in
        `Loaded.problems`; when nothing loads, `Loaded.model` is None (never an exception).
        """
        pointer = self._read_pointer(name)
        problems: list[str] = []
        if pointer is not None:
            champion: str | None = pointer.version
            candidates = [pointer.version, *pointer.previous]
        elif (self.root / name / CHAMPION).exists():
            champion = None
            problems.append(f"{name}: champion pointer is unreadable")
            candidates = list(reversed(self.versions(name)))
        else:
            return Loaded(name, champion=None)
        for version in candidates:
            try:
                model = loader(version)
                manifest = self.manifest(name, version)
            except Exception as exc:  # noqa: BLE001 - any damage to a version must degrade to the next one, never crash
                message = f"{version} could not be loaded ({type(exc).__name__}: {exc})"
                _log.warning("%s: %s", name, message)
                problems.append(message)
                continue
            if problems:
                _log.warning("%s: serving %s instead of champion %s", name, version, champion)
            return Loaded(name, champion, version, model, manifest, tuple(problems))
        _log.error("%s: no loadable version (%s)", name, "; ".join(problems))
        return Loaded(name, champion, problems=tuple(problems))

    # ---------------------------------------------------------------- internals

    def _claim_version(self, name: str) -> AnyPath:
        """The next version directory of `name`, which no other writer can get (see the module docstring)."""
        directory = self.root / name
        if not isinstance(directory, Path):
            numbers = [int(m.group(1)) for p in directory.iterdir() if (m := _VERSION.match(p.name))]
            return directory / f"v{max(numbers, default=0) + 1:04d}-{secrets.token_hex(4)}"
        directory.mkdir(parents=True, exist_ok=True)
        numbers = [int(m.group(1)) for p in directory.iterdir() if (m := _VERSION.match(p.name))]
        number = max(numbers, default=0) + 1
        while True:
            candidate = directory / f"v{number:04d}"
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                number += 1

    def _read_pointer(self, name: str) -> _Pointer | None:
        path = self.root / _checked_name(name) / CHAMPION
        try:
            pointer = json.loads(path.read_text("utf-8"))
            if not isinstance(pointer, dict):
                raise ValueError("not a JSON object")
            version, previous = pointer.get("version"), pointer.get("previous", [])
            if not isinstance(version, str):
                raise ValueError("no version")
            if not isinstance(previous, list) or not all(isinstance(each, str) for each in previous):
                # The champion still stands; only the fallbacks behind it are lost.
                _log.warning("%s: champion pointer %s: ignoring 'previous', not a list of versions", name, path)
                previous = []
            return _Pointer(version, previous)
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as exc:
            _log.warning("%s: unreadable champion pointer %s: %s", name, path, exc)
            return None


def _checked_name(name: str) -> str:
    """A model name becomes a directory: lower-case identifier only."""
    if not _NAME.match(name):
        raise ConfigError(f"model name {name!r} must be a lower-case identifier (letters, digits, _)")
    return name
