"""A small simulated warehouse with labeled history, built once per test session and copied per test.

200 symbols over the first seven months of 2019, filled by the core functions (`technic_core.ml.sandbox`):
enough labeled sessions for a walk-forward with a few folds, small enough to train in seconds.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from technic_core import calendar
from technic_core.ml.sandbox import fill_warehouse
from technic_core.ml.training import TrainingConfig
from technic_core.sources.simulated import SimulatedMarket, SimulationConfig
from technic_core.warehouse import Warehouse

SIMULATION = SimulationConfig(n_symbols=200, seed=7)
SESSIONS = calendar.sessions_between(dt.date(2019, 1, 2), dt.date(2019, 7, 31))
#: A walk-forward that fits the sandbox: 3 folds of 20 sessions after at least 40 training sessions.
SMALL_TRAINING = TrainingConfig(test_sessions=20, min_train_sessions=40, max_train_sessions=120, max_folds=3, threads=2)


@pytest.fixture(scope="session")
def market() -> SimulatedMarket:
    return SimulatedMarket(SIMULATION)


@pytest.fixture(scope="session")
def sandbox_root(tmp_path_factory, market) -> Path:
    root = tmp_path_factory.mktemp("sandbox")
    fill_warehouse(Warehouse(root), market, SESSIONS)
    return root


@pytest.fixture
def store(sandbox_root, tmp_path) -> Warehouse:
    """A private copy of the sandbox warehouse (tests write models and scan runs into it)."""
    copy = tmp_path / "warehouse"
    shutil.copytree(sandbox_root, copy)
    return Warehouse(copy)
