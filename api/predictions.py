"""The trained scan predictors the API serves, from `technic_core.ml.scan_predictors`.

A loaded champion is re-used for `ttl_s` seconds, so a request does not re-read model files while a newly
trained champion is still picked up promptly. Until one exists the prediction endpoints answer from
`BaselinePredictor` (docs/predictions.md); ad-hoc scans then carry no prediction.
"""

from __future__ import annotations

import threading
import time

from technic_core.ml.scan_predictors import ScanPredictors, load_scan_predictors
from technic_core.warehouse import Warehouse

__all__ = ["PredictionService", "ScanPredictors"]


class PredictionService:
    """The TTL-cached champion predictors; thread-safe."""

    def __init__(self, store: Warehouse, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._loaded_at: float | None = None
        self._predictors: ScanPredictors | None = None

    def fresh(self) -> tuple[bool, ScanPredictors | None]:
        """(True, the predictors) while the last load is younger than `ttl_s` — without the lock or any file
        access, so a caller on the event loop can skip a thread-pool hop; (False, None) when a load is due."""
        loaded_at = self._loaded_at  # assigned after `_predictors`, so a fresh stamp means a current value
        if loaded_at is not None and time.monotonic() - loaded_at < self.ttl_s:
            return True, self._predictors
        return False, None

    def predictors(self) -> ScanPredictors | None:
        """The champion predictors, re-loaded after `ttl_s`; None while no champion loads."""
        with self._lock:
            now = time.monotonic()
            if self._loaded_at is not None and now - self._loaded_at < self.ttl_s:
                return self._predictors
            self._predictors, self._loaded_at = load_scan_predictors(self.store), now
            return self._predictors
