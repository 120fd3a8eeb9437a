"""Prioritization: the per-session plan the scan follows."""

from dagster import Definitions

from technic_pipelines.defs.priority.assets import symbol_priority_scores

defs = Definitions(assets=[symbol_priority_scores])
