"""Access to the scan-outcome predictors of `technic_core.ml.scan_predictors`, which may not exist yet.

The module is imported on first use, not at start-up: the API must run (and answer 503 on the prediction
endpoints with the reason) in a deployment where the ML package is absent or no predictor has been
trained. A loaded predictor is re-used for `ttl_s` seconds, so a request does not re-read model files while
a newly trained champion is still picked up promptly.

The contract used: `load_scan_predictors(store) -> ScanPredictors | None`, whose
`.predict(config, conditions)` returns an object with `result_count` and `duration_s`; and
`suggest(store, goal, conditions)` returning an object with `config`, `predicted`, `warnings` and
`hot_sectors`.
"""

from __future__ import annotations

import importlib
import threading
import time
from types import ModuleType
from typing import Any, Protocol

from technic_core.config import ScanConfig
from technic_core.warehouse import Warehouse

MODULE = "technic_core.ml.scan_predictors"


class ScanPredictors(Protocol):
    def predict(self, config: ScanConfig, conditions: dict[str, Any]) -> Any: ...


class PredictionService:
    """Lazily imported predictor module and a TTL-cached predictor; thread-safe."""

    def __init__(self, store: Warehouse, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._loaded_at: float | None = None
        self._predictors: ScanPredictors | None = None
        self.unavailable_reason = "scan predictors have not been loaded yet"

    def module(self) -> ModuleType | None:
        """The ML module, or None (with `unavailable_reason` set) when it is not installed."""
        try:
            return importlib.import_module(MODULE)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (MODULE == exc.name or MODULE.startswith(exc.name + ".")):
                raise  # the module exists but one of its own imports is missing: a real error
            self.unavailable_reason = f"scan predictions are unavailable: {MODULE} is not installed in this deployment"
            return None

    def fresh(self) -> tuple[bool, ScanPredictors | None]:
        """(True, the predictors) while the last load is younger than `ttl_s` — without the lock or any file
        access, so a caller on the event loop can skip a thread-pool hop; (False, None) when a load is due."""
        loaded_at = self._loaded_at  # assigned after `_predictors`, so a fresh stamp means a current value
        if loaded_at is not None and time.monotonic() - loaded_at < self.ttl_s:
            return True, self._predictors
        return False, None

    def predictors(self) -> ScanPredictors | None:
        """The trained predictors, re-loaded after `ttl_s`; None when absent (see `unavailable_reason`)."""
        with self._lock:
            now = time.monotonic()
            if self._loaded_at is not None and now - self._loaded_at < self.ttl_s:
                return self._predictors
            module = self.module()
            predictors = None if module is None else module.load_scan_predictors(self.store)
            if module is not None and predictors is None:
                self.unavailable_reason = (
                    "no scan predictor is trained yet: materialize the scan_predictors asset once enough scan "
                    "history exists"
                )
            self._predictors, self._loaded_at = predictors, now
            return predictors
