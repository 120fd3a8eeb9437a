"""Dagster definitions for Technic: a thin adapter over `technic_core`."""
