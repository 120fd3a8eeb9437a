"""Saved screens: their hits per session and the evidence of whether they pay."""

from dagster import Definitions

from technic_pipelines.defs.screens.assets import screen_hits, screen_performance

defs = Definitions(assets=[screen_hits, screen_performance])
