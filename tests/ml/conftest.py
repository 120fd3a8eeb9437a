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
from technic_core.ml.training import TrainingConfig, TrainingReport, train_alpha_models
from technic_core.sources.simulated import SimulatedMarket, SimulationConfig
from technic_core.warehouse import Warehouse

SIMULATION = SimulationConfig(n_symbols=200, seed=7)
SESSIONS = calendar.sessions_between(dt.date(2019, 1, 2), dt.date(2019, 7, 31))
#: A walk-forward that fits the sandbox: 3 folds of 20 sessions after at least 40 training sessions.
SMALL_TRAINING = TrainingConfig(test_sessions=20, min_train_sessions=40, max_train_sessions=120, max_folds=3)


@pytest.fixture(scope="session")
def market() -> SimulatedMarket:
    return SimulatedMarket(SIMULATION)


@pytest.fixture(scope="session")
def sandbox_root(tmp_path_factory, market) -> Path:
    root = tmp_path_factory.mktemp("sandbox")
    fill_warehouse(Warehouse(root), market, SESSIONS)
    return root


def copy_warehouse(root: Path, directory: Path) -> Warehouse:
    """A private copy of the warehouse at `root` under `directory`."""
    copy = directory / "warehouse"
    shutil.copytree(root, copy)
    return Warehouse(copy)


@pytest.fixture
def store(sandbox_root, tmp_path) -> Warehouse:
    """A private copy of the sandbox warehouse (tests write models and scan runs into it)."""
    return copy_warehouse(sandbox_root, tmp_path)


@pytest.fixture(scope="session")
def trained(sandbox_root, tmp_path_factory) -> tuple[Warehouse, dict[str, TrainingReport]]:
    """The sandbox after one training run of both horizons (champions v0001), and the run's reports."""
    store = copy_warehouse(sandbox_root, tmp_path_factory.mktemp("trained"))
    return store, {report.name: report for report in train_alpha_models(store, SMALL_TRAINING)}


@pytest.fixture
def trained_store(trained, tmp_path) -> Warehouse:
    """A private copy of the trained warehouse, champions included."""
    return copy_warehouse(trained[0].root, tmp_path)
