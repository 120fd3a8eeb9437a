"""Prediction models: alpha (forward-return ranks) for scan results, and outcome predictors for scans.

Modules, in the order data flows through them:

* `features` — indicator features, per-session ranks, trailing rank means and the regime, for a panel.
* `labels` — 5/10-session forward returns without look-ahead; the `outcomes` rows.
* `evaluation` — purged, embargoed walk-forward folds; rank IC, ICIR, decile spread.
* `alpha` — the xgboost models, their spec, and walk-forward evaluation with baselines.
* `registry` — versioned models under `<warehouse>/models/` with an atomic champion pointer.
* `training` — a training run from the warehouse: evaluate, register, promote only if not worse.
* `scorer` — the champions loaded once per process; fills a scan's alpha columns.
* `scan_history`, `scan_predictors`, `optimizer` — scan runs, replays, result-count and duration
  predictors, presets and suggestions.
* `sandbox` — a warehouse filled by the core functions alone, for tests and benchmarks.

Nothing here imports Dagster or FastAPI.
"""
