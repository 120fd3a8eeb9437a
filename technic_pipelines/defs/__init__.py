"""Dagster definitions by domain: each subpackage holds its assets, checks, jobs, schedules and sensors and
exposes them as one `defs` object, which `technic_pipelines.definitions` merges."""

import warnings

from dagster import BetaWarning

# Single-run backfills and tolerant window mappings are beta in dagster 1.13; we opt in knowingly, so the
# warning would only be noise in every CLI run and UI load.
warnings.filterwarnings("ignore", category=BetaWarning)
