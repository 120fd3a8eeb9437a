"""Recursion checkpoints of a simulated market persisted between processes, so a daily run resumes near today
instead of re-simulating every session since the epoch."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

from technic_core.sources.simulated.state import _State
from technic_core.warehouse import write_bytes_atomic

_log = logging.getLogger(__name__)
#: Persisted checkpoints kept per market; older ones are deleted (they only speed up old backfills).
_PERSISTED_CHECKPOINTS = 2


class _PersistedCheckpoints:
    """The newest recursion checkpoints of one market on disk (a cache: deleting it only costs time).

    Files are written atomically and named by the index of the session the state precedes, under a
    directory keyed by the market's identity; an unreadable file is logged, deleted and ignored, never
    trusted.
    """

    def __init__(self, root: Path, market_key: str) -> None:
        self.directory = root / market_key

    def _path(self, number: int) -> Path:
        return self.directory / f"checkpoint-{number:06d}.pkl"

    def _numbers(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        return sorted(int(p.stem.split("-")[1]) for p in self.directory.glob("checkpoint-*.pkl"))

    def load_newest(self, after: int, upto: int) -> tuple[int, _State] | None:
        for number in reversed([n for n in self._numbers() if after < n <= upto]):
            path = self._path(number)
            try:
                state = pickle.loads(path.read_bytes())
                if isinstance(state, _State):
                    return number, state
                raise TypeError(f"unexpected {type(state).__name__}")
            except Exception as exc:  # noqa: BLE001 - a cache must never break a run: drop the file and resimulate
                _log.warning("ignoring unreadable simulator checkpoint %s: %s", path, exc)
                path.unlink(missing_ok=True)
        return None

    def save(self, number: int, state: _State) -> None:
        numbers = self._numbers()
        if numbers and numbers[-1] >= number:
            return
        write_bytes_atomic(self._path(number), pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        for stale in [*numbers, number][:-_PERSISTED_CHECKPOINTS]:
            self._path(stale).unlink(missing_ok=True)
