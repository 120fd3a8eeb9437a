"""The rate limiter's state, kept in this process or in a file every process using the same key shares.

Polygon counts requests per API key, not per process: a Dagster run, a second run and the API's ad-hoc
scans on one machine (or on machines sharing a volume) all spend one budget. `TokenBucket`'s cell-rate
algorithm needs only two numbers, the theoretical arrival time of the next free slot and the end of a
`Retry-After` pause, so sharing the limit means sharing those two numbers: `SharedRateState` keeps them in a
16-byte file and changes them under an exclusive `flock`, which the kernel releases when a process dies, so
a crashed run can never wedge the others.

The file is named after a hash of the API root and key, never the key itself, so one file serves every
process using that key and processes using another key or a test server are not slowed by it. It holds wall
clock times (`time.time`), the only clock processes share; each process converts them to and from the
bucket's own clock at each change.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from technic_core.errors import ConfigError

T = TypeVar("T")

_LAYOUT = struct.Struct("<dd")  # theoretical arrival, paused until: wall-clock seconds


def default_limit_dir() -> Path:
    """Where shared limits live unless `TECHNIC_POLYGON_LIMIT_DIR` says otherwise: the system temp
    directory, which every process of one machine (or container) sees."""
    return Path(tempfile.gettempdir()) / "technic-rate-limits"


@dataclass(frozen=True)
class Slots:
    """The limiter's state, in the clock of the bucket reading it."""

    theoretical_arrival: float = -math.inf
    paused_until: float = -math.inf


class RateState(Protocol):
    """Where a `TokenBucket` keeps its `Slots`; every change is atomic with respect to all its users."""

    def change(self, now: float, update: Callable[[Slots], tuple[Slots, T]]) -> T:
        """Apply `update` to the current slots (`now` is the caller's clock) and return its result."""
        ...


class LocalRateState:
    """Slots in this process: one bucket's own limit, shared by its threads and event loops."""

    def __init__(self) -> None:
        self._slots = Slots()
        self._lock = threading.Lock()

    def change(self, now: float, update: Callable[[Slots], tuple[Slots, T]]) -> T:
        with self._lock:
            self._slots, result = update(self._slots)
            return result


class SharedRateState:
    """Slots in a file, changed under `flock` by every process (and thread) that opens the same path.

    `wall` is the clock stored in the file (injectable for tests); the caller's clock may differ (a
    monotonic one), so each change measures the offset between the two and converts.
    """

    def __init__(self, path: Path, wall: Callable[[], float] = time.time) -> None:
        self.path = path
        self._wall = wall
        # flock suffices between processes; on filesystems where it is emulated with POSIX locks (NFS),
        # locks do not exclude threads of one process, so they also take this one.
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise ConfigError(f"rate-limit state {path} cannot be written (TECHNIC_POLYGON_LIMIT_DIR): {exc}") from None

    @classmethod
    def for_key(cls, directory: Path, base_url: str, api_key: str) -> SharedRateState:
        """The state every process using `api_key` against `base_url` shares, under `directory`."""
        digest = hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:24]
        return cls(directory / f"polygon-{digest}.rate")

    def change(self, now: float, update: Callable[[Slots], tuple[Slots, T]]) -> T:
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                offset = self._wall() - now
                stored = os.pread(fd, _LAYOUT.size, 0)
                # an empty file (new) or a torn one (the machine lost power mid-write) is a fresh limit
                arrival, paused = _LAYOUT.unpack(stored) if len(stored) == _LAYOUT.size else (-math.inf, -math.inf)
                before = Slots(arrival - offset, paused - offset)
                after, result = update(before)
                if after != before:
                    os.pwrite(fd, _LAYOUT.pack(after.theoretical_arrival + offset, after.paused_until + offset), 0)
                return result
            finally:
                os.close(fd)  # releases the flock
