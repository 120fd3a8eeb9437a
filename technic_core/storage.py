"""Where warehouse files live: a local directory or an object-store prefix, behind one small interface.

The warehouse writes, lists, reads and deletes files only through a `Storage`, so its root may be a local
directory (`warehouse/`, `/mnt/shared/warehouse`, `file:///...`) or an object-store URI (`s3://bucket/prefix`,
`gs://bucket/prefix`, or any fsspec protocol such as `memory://` in tests or `az://` with `adlfs`).

How each kind makes a file appear whole or not at all:

* **Local** (`LocalStorage`): a hidden temp file in the target's directory, fsynced and `os.replace`d over the
  target — the rename is the atomic step. Paths are plain `pathlib.Path`s, exactly as before this module
  existed, so local callers see no change.
* **Object store** (`ObjectStorage`): the whole file is serialized into memory first and then written with
  one call — a single PUT. Object stores publish an object atomically when its upload completes (S3 and
  GCS guarantee it; a multipart upload that pyarrow may use for large objects is invisible until completed),
  so there is no temp object and no rename (which an object store does not have: it would be copy + delete).
  A failure while serializing happens before anything is sent, so it can never leave a partial object.
  Paths are `StoragePath`s: `str()` gives the full URI, `/` joins, and a pathlib-like subset (`name`,
  `parent`, `exists`, `read_bytes`, ...) works against the store.

Which filesystem serves a URI: schemes pyarrow implements natively (`s3`, `gs`/`gcs`, `abfs`/`abfss`, `hdfs`)
use `pyarrow.fs.FileSystem.from_uri` — no extra packages, credentials from the usual environment (AWS/GCP
variables, instance or workload identity; an S3-compatible store's endpoint from `AWS_ENDPOINT_URL_S3` or
`AWS_ENDPOINT_URL`, `http://` included). Any other scheme goes through fsspec (`fsspec.core.url_to_fs`,
wrapped in `pyarrow.fs.PyFileSystem(FSSpecHandler(...))`), so whatever fsspec implementation is installed
works. The filesystem is resolved on first use, never on construction (pyarrow's S3 looks up the bucket's
region over the network).
"""

from __future__ import annotations

import fnmatch
import io
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cached_property
from pathlib import Path
from typing import IO, Any, NamedTuple, Union

import pyarrow.fs as pafs

#: A URI: scheme, then '://'.
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+)://(?P<rest>.*)$")
#: Schemes `pyarrow.fs.FileSystem.from_uri` serves itself; everything else goes to fsspec.
PYARROW_SCHEMES = frozenset({"s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs"})

#: How many partition directories an object-store read lists one by one before one recursive listing of the
#: whole dataset prefix is cheaper (a recursive listing costs one request per 1,000 objects).
_SEPARATE_LISTINGS = 16

#: Matched as a prefix: DuckDB may add a suffix (e.g. '.wal') to a temp catalog file.
_TEMP_FILE = re.compile(r"^\..+\.(?P<pid>\d+)\.[0-9a-f]{16}\.tmp")

AnyPath = Union[Path, "StoragePath"]


def root_uri(root: str | os.PathLike[str]) -> str | None:
    """The object-store URI `root` names, or None when it names a local directory.

    Accepts a URI as text (`s3://bucket/w`) or a `StoragePath`. `file://` URIs are local. A URI must arrive
    as text: `pathlib.Path` collapses its '//' (`Path("s3://b/w")` is `s3:/b/w`, a local relative path).
    """
    if isinstance(root, StoragePath):
        return str(root)
    text = os.fspath(root)
    match = _URI.match(text)
    if match is None or match["scheme"].lower() == "file":
        return None
    return f"{match['scheme'].lower()}://{match['rest']}".rstrip("/")


def s3_endpoint() -> str | None:
    """The S3-compatible endpoint set for this process (`AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, the AWS
    SDK's variables, which pyarrow's S3 filesystem honours), or None: AWS itself."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def open_storage(root: str | os.PathLike[str] | StoragePath) -> LocalStorage | ObjectStorage:
    """The storage rooted at `root`: object storage for a URI (see `root_uri`), else the local directory."""
    if isinstance(root, StoragePath):
        return root.storage.at(root)
    uri = root_uri(root)
    if uri is not None:
        return ObjectStorage(uri)
    text = os.fspath(root)
    if text.lower().startswith("file:/"):
        # file:///abs/path, or its equally valid short form file:/abs/path: the path after the scheme.
        text = "/" + text[len("file:") :].lstrip("/")
    return LocalStorage(Path(text))


# -------------------------------------------------------------------- local


class LocalStorage:
    """A local directory: temp file + fsync + `os.replace` for every write."""

    local = True

    def __init__(self, root: Path) -> None:
        # Absolute now, so a later chdir cannot move the warehouse and DuckDB views get absolute globs.
        self.root: Path = Path(root).absolute()

    @property
    def uri(self) -> str:
        return str(self.root)

    def at(self, path: Path) -> LocalStorage:
        return LocalStorage(path)

    # ---------------------------------------------------------------- writes

    @contextmanager
    def writer(self, target: AnyPath) -> Iterator[Path]:
        """Yield a hidden temp path beside `target`; when the body succeeds it replaces `target` atomically."""
        with atomic_path(local_path(target)) as temp:
            yield temp

    def write_bytes(self, target: AnyPath, data: bytes) -> None:
        with atomic_path(local_path(target)) as temp:
            temp.write_bytes(data)

    def delete(self, target: AnyPath) -> None:
        local_path(target).unlink(missing_ok=True)

    def prepare_directory(self, directory: AnyPath) -> None:
        """Remove dead writers' temp files before a directory is rewritten."""
        remove_stale_temp_files(local_path(directory))

    # ---------------------------------------------------------------- reads

    def is_file(self, target: AnyPath) -> bool:
        return local_path(target).is_file()

    def read_bytes(self, target: AnyPath) -> bytes:
        return local_path(target).read_bytes()

    def subdirectories(self, directory: AnyPath) -> list[str]:
        """Names of the directories directly in `directory` (none when it does not exist)."""
        try:
            entries = list(os.scandir(local_path(directory)))
        except FileNotFoundError:
            return []
        return [entry.name for entry in entries if entry.is_dir()]

    def visible_files(self, directory: AnyPath) -> list[Path]:
        """Files directly in `directory` that readers may see, in name order: never hidden (temp) files."""
        local = local_path(directory)
        try:
            names = os.listdir(local)
        except FileNotFoundError:
            return []
        return [local / name for name in sorted(names) if not name.startswith(".")]

    def files_below(self, directory: AnyPath, subdirectories: list[str]) -> dict[str, list[Path]]:
        """`visible_files` of each named subdirectory of `directory` (one listing per subdirectory)."""
        return {name: self.visible_files(local_path(directory) / name) for name in subdirectories}


def local_path(path: AnyPath) -> Path:
    """`path` as a local `Path`; a `StoragePath` raises `TypeError`, since it names an object in a store.

    Storage methods take either kind of path, because the warehouse holds its storage and the paths it
    derives from its root without telling the type checker they are of one kind; this is where a local
    storage insists on its own.
    """
    if isinstance(path, StoragePath):
        raise TypeError(f"{path} is an object-store path, not a local one")
    return Path(path)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a hidden temp path beside `target`; when the body succeeds, fsync it and rename it over `target`.

    Same directory, so the rename is atomic on one filesystem; the directory is fsynced after the rename so
    the new name survives a power cut. On an exception the temp file is removed; a SIGKILL leaves it for
    `remove_stale_temp_files`. The pid in the name tells a dead writer's leftover from a live one's.
    """
    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(directory)
    temp = directory / f".{target.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
    try:
        yield temp
        _fsync(temp)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync(directory)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_stale_temp_files(directory: Path) -> None:
    """Delete temp files in `directory` whose writer process no longer exists.

    A live writer's temp file (another process, or another thread of this one) is left alone, so concurrent
    writers to one directory, such as two scans appending to scan_runs/, never break each other. Assumes
    writers share one pid namespace, i.e. one machine — which is what a local directory implies.
    """
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        match = _TEMP_FILE.match(entry.name)
        if match and not _process_alive(int(match["pid"])):
            Path(entry.path).unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -------------------------------------------------------------------- object stores


class ObjectStorage:
    """An object-store prefix: one PUT of the whole file per write, listings by prefix."""

    local = False

    def __init__(
        self,
        uri: str,
        *,
        filesystem: pafs.FileSystem | None = None,
        parent: ObjectStorage | None = None,
        key: str = "",
    ) -> None:
        """`filesystem`, when given, serves `uri` instead of the one its scheme names (e.g. an `S3FileSystem`
        with explicit endpoint and credentials); paths in it are the URI without its scheme."""
        self.uri = uri.rstrip("/")
        self.scheme = self.uri.split("://", 1)[0]
        self._filesystem = filesystem
        self._parent = parent  # a sub-storage (see `at`) reuses its parent's filesystem
        self._key = key

    def __repr__(self) -> str:
        return f"ObjectStorage({self.uri!r})"

    @property
    def root(self) -> StoragePath:
        return StoragePath(self, "")

    def at(self, path: StoragePath) -> ObjectStorage:
        """The storage rooted at `path` (a `StoragePath` of this storage), sharing its filesystem."""
        return ObjectStorage(str(path), parent=path.storage, key=path.key)

    # ---------------------------------------------------------------- the filesystem, resolved lazily

    @cached_property
    def _resolved(self) -> tuple[pafs.FileSystem, Any, str]:
        """(pyarrow filesystem, fsspec filesystem or None, path of the root inside the filesystem)."""
        if self._parent is not None:
            return self._parent.filesystem, self._parent.fsspec_filesystem, self._parent._join_base(self._key)
        if self._filesystem is not None:
            return self._filesystem, None, self.uri.split("://", 1)[1]
        if self.scheme in PYARROW_SCHEMES:
            filesystem, base = pafs.FileSystem.from_uri(self.uri)
            return filesystem, None, base.rstrip("/")
        import fsspec  # only object stores outside pyarrow's own need it

        fsspec_filesystem, base = fsspec.core.url_to_fs(self.uri)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec_filesystem)), fsspec_filesystem, base.rstrip("/")

    @property
    def native(self) -> bool:
        """True when pyarrow serves the store itself (s3, gs, ...), False when fsspec does; known without
        resolving the filesystem, so asking costs no network round trip."""
        if self._parent is not None:
            return self._parent.native
        return self._filesystem is not None or self.scheme in PYARROW_SCHEMES

    @property
    def filesystem(self) -> pafs.FileSystem:
        """The pyarrow filesystem every read, listing and delete goes through."""
        return self._resolved[0]

    @property
    def fsspec_filesystem(self) -> Any:
        """The fsspec filesystem behind `filesystem`, or None when pyarrow serves the scheme natively."""
        return self._resolved[1]

    @property
    def base(self) -> str:
        return self._resolved[2]

    def _join_base(self, key: str) -> str:
        return f"{self.base}/{key}" if key else self.base

    def fs_path(self, path: AnyPath) -> str:
        """`path` as the filesystem (pyarrow/fsspec) names it, e.g. 'bucket/prefix/bars/...'."""
        stored = object_path(path)
        return stored.storage._join_base(stored.key)

    # ---------------------------------------------------------------- writes

    @contextmanager
    def writer(self, target: AnyPath) -> Iterator[IO[bytes]]:
        """Yield an in-memory buffer; when the body succeeds its whole content is PUT as `target` at once.

        Nothing is sent before the body finishes, so a failing serializer leaves no object (and the previous
        object, if any, untouched).
        """
        buffer = io.BytesIO()
        yield buffer
        self.write_bytes(target, buffer.getvalue())

    def write_bytes(self, target: AnyPath, data: bytes) -> None:
        """Write `data` as the object `target` with one call: an object appears whole or not at all."""
        path = self.fs_path(target)
        fsspec_filesystem = self.fsspec_filesystem
        if fsspec_filesystem is not None:
            # `pipe_file` is one PUT on s3fs/gcsfs/adlfs and one dict assignment in memory://; going through
            # FSSpecHandler.open_output_stream instead would publish an empty object at open on some of them.
            fsspec_filesystem.pipe_file(path, bytes(data))
            return
        # pyarrow's S3/GCS streams send small objects with a single PUT on close and large ones as a multipart
        # upload that only becomes visible when completed (a failed part fails the close before the upload is
        # completed). The data is complete before the stream opens, so no serializer can fail half-way here.
        try:
            stream = self.filesystem.open_output_stream(path)
        except FileNotFoundError:
            # A hierarchical store (HDFS, ADLS Gen2, pyarrow's mock) wants the parent first; S3 and GCS never
            # get here, so they are spared the directory-marker requests `create_dir` would cost.
            self.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
            stream = self.filesystem.open_output_stream(path)
        with stream:
            stream.write(data)

    def delete(self, target: AnyPath) -> None:
        with suppress(FileNotFoundError):
            self.filesystem.delete_file(self.fs_path(target))

    def prepare_directory(self, directory: AnyPath) -> None:
        """Nothing to clean: object-store writes leave no temp objects."""

    # ---------------------------------------------------------------- reads

    def _info(self, path: AnyPath) -> pafs.FileInfo:
        return self.filesystem.get_file_info(self.fs_path(path))

    def is_file(self, target: AnyPath) -> bool:
        return self._info(target).type == pafs.FileType.File

    def is_dir(self, target: StoragePath) -> bool:
        if self._info(target).type == pafs.FileType.Directory:
            return True
        # Some stores report a prefix only through a listing.
        return bool(self._list(target, recursive=False))

    def exists(self, target: StoragePath) -> bool:
        return self._info(target).type != pafs.FileType.NotFound or self.is_dir(target)

    def read_bytes(self, target: StoragePath) -> bytes:
        with self.filesystem.open_input_stream(self.fs_path(target)) as stream:
            return stream.read()

    def _list(self, directory: AnyPath, *, recursive: bool) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.fs_path(directory), allow_not_found=True, recursive=recursive)
        try:
            return self.filesystem.get_file_info(selector)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _relative(self, directory: StoragePath, info: pafs.FileInfo) -> str:
        prefix = self.fs_path(directory).rstrip("/") + "/"
        path = info.path.lstrip("/") if not prefix.startswith("/") else info.path
        return path[len(prefix) :] if path.startswith(prefix) else info.base_name

    def stat(self, target: StoragePath) -> ObjectStat:
        info = self._info(target)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(str(target))
        mtime_ns = info.mtime_ns
        if mtime_ns is None and self.fsspec_filesystem is not None:
            # FSSpecHandler only maps an 'mtime' key; fsspec's own accessor knows each store's field name.
            mtime_ns = int(self.fsspec_filesystem.modified(self.fs_path(target)).timestamp() * 1e9)
        if mtime_ns is None:
            raise OSError(f"{target}: the store reports no modification time")
        return ObjectStat(info.size or 0, mtime_ns / 1e9, mtime_ns)

    def glob(self, directory: StoragePath, pattern: str) -> list[StoragePath]:
        """Files below `directory` matching the relative `pattern` ('*' within one level; no '**')."""
        parts = [part for part in pattern.split("/") if part]
        if any("**" in part for part in parts):
            raise ValueError(f"glob pattern {pattern!r}: '**' is not supported on object stores")
        while parts and not any(char in parts[0] for char in "*?["):
            directory, parts = directory / parts[0], parts[1:]
        if not parts:
            return [directory] if self.is_file(directory) else []
        found = []
        for info in self._list(directory, recursive=len(parts) > 1):
            relative = self._relative(directory, info).split("/")
            if len(relative) == len(parts) and all(map(fnmatch.fnmatchcase, relative, parts)):
                found.append(directory.joinpath(*relative))
        return sorted(found)

    def children(self, directory: StoragePath) -> list[StoragePath]:
        """Everything directly in `directory` (files and prefixes), in name order."""
        return sorted(directory / info.base_name for info in self._list(directory, recursive=False))

    def subdirectories(self, directory: AnyPath) -> list[str]:
        infos = self._list(directory, recursive=False)
        return [info.base_name for info in infos if info.type == pafs.FileType.Directory]

    def visible_files(self, directory: AnyPath) -> list[StoragePath]:
        stored = object_path(directory)
        infos = self._list(stored, recursive=False)
        names = (info.base_name for info in infos if info.type == pafs.FileType.File)
        return [stored / name for name in sorted(names) if not name.startswith(".")]

    def files_below(self, directory: AnyPath, subdirectories: list[str]) -> dict[str, list[StoragePath]]:
        """`visible_files` of each named subdirectory: one listing each when they are few, else a single
        recursive listing of `directory` (one request per 1,000 objects instead of one per subdirectory)."""
        stored = object_path(directory)
        if len(subdirectories) <= _SEPARATE_LISTINGS:
            return {name: self.visible_files(stored / name) for name in subdirectories}
        wanted = set(subdirectories)
        found: dict[str, list[str]] = {name: [] for name in subdirectories}
        for info in self._list(stored, recursive=True):
            if info.type != pafs.FileType.File:
                continue
            parts = self._relative(stored, info).split("/")
            if len(parts) == 2 and parts[0] in wanted and not parts[1].startswith("."):
                found[parts[0]].append(parts[1])
        return {name: [stored / name / file for file in sorted(files)] for name, files in found.items()}


def object_path(path: AnyPath) -> StoragePath:
    """`path` as a `StoragePath`; a local `Path` raises `TypeError` (the counterpart of `local_path`)."""
    if not isinstance(path, StoragePath):
        raise TypeError(f"{path} is a local path, not an object-store one")
    return path


class ObjectStat(NamedTuple):
    """The part of `os.stat_result` an object store can answer."""

    st_size: int
    st_mtime: float
    st_mtime_ns: int


class StoragePath:
    """A file or prefix in an object store: `str()` is its URI; a pathlib-like subset works against the store.

    Deliberately not `os.PathLike`: code that needs a local file must not get one by accident.
    """

    __slots__ = ("key", "storage")

    def __init__(self, storage: ObjectStorage, key: str) -> None:
        self.storage = storage
        self.key = key.strip("/")

    # ---------------------------------------------------------------- pure path operations

    def __str__(self) -> str:
        return f"{self.storage.uri}/{self.key}" if self.key else self.storage.uri

    def __repr__(self) -> str:
        return f"StoragePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoragePath) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: StoragePath) -> bool:
        return str(self) < str(other)

    def __truediv__(self, part: str | os.PathLike[str]) -> StoragePath:
        part = os.fspath(part).strip("/")
        return StoragePath(self.storage, f"{self.key}/{part}" if self.key else part)

    def joinpath(self, *parts: str) -> StoragePath:
        path = self
        for part in parts:
            path = path / part
        return path

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1] if self.key else self.storage.uri.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        name = self.name
        return name[name.rindex(".") :] if "." in name.lstrip(".") else ""

    @property
    def stem(self) -> str:
        return self.name[: len(self.name) - len(self.suffix)] if self.suffix else self.name

    @property
    def parent(self) -> StoragePath:
        """The containing prefix; the storage root is its own parent (nothing above it is reachable)."""
        return StoragePath(self.storage, self.key.rsplit("/", 1)[0] if "/" in self.key else "")

    def with_name(self, name: str) -> StoragePath:
        return self.parent / name

    # ---------------------------------------------------------------- store operations

    def exists(self) -> bool:
        return self.storage.exists(self)

    def is_file(self) -> bool:
        return self.storage.is_file(self)

    def is_dir(self) -> bool:
        return self.storage.is_dir(self)

    def read_bytes(self) -> bytes:
        return self.storage.read_bytes(self)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        """Write the whole object with one PUT (atomic on an object store)."""
        self.storage.write_bytes(self, data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def unlink(self, missing_ok: bool = False) -> None:
        if not missing_ok and not self.is_file():
            raise FileNotFoundError(str(self))
        self.storage.delete(self)

    def iterdir(self) -> Iterator[StoragePath]:
        return iter(self.storage.children(self))

    def glob(self, pattern: str) -> Iterator[StoragePath]:
        return iter(self.storage.glob(self, pattern))

    def stat(self) -> ObjectStat:
        return self.storage.stat(self)
