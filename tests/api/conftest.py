"""Fixtures of the API tests: one simulated market (built once per run), a fresh warehouse copy per test,
apps over it, a TestClient and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from technic_core.config import Settings
from technic_core.scan import NO_HOOKS, ScanHooks
from technic_core.warehouse import Warehouse
from tests.api.support import MarketFixture, build_warehouse, running_server, simulate

KEY = "test-key-alpha"
OTHER_KEY = "test-key-bravo"
AUTH = {"X-API-Key": KEY}
OTHER_AUTH = {"X-API-Key": OTHER_KEY}

AppFactory = Callable[..., FastAPI]


@pytest.fixture(scope="session")
def market() -> MarketFixture:
    return simulate()


@pytest.fixture(scope="session")
def template_root(tmp_path_factory: pytest.TempPathFactory, market: MarketFixture) -> Path:
    """A complete warehouse for the market's session, built once and copied for each test that needs one."""
    root = tmp_path_factory.mktemp("template") / "warehouse"
    build_warehouse(Warehouse(root), market)
    return root


@pytest.fixture
def warehouse(template_root: Path, tmp_path: Path) -> Warehouse:
    root = tmp_path / "warehouse"
    shutil.copytree(template_root, root)
    return Warehouse(root)


@pytest.fixture
def make_app(warehouse: Warehouse) -> AppFactory:
    """`make_app(keys=..., hooks=..., root=..., **api_settings)`: an app over the test's warehouse by default."""

    def make(
        *,
        keys: tuple[str, ...] = (KEY, OTHER_KEY),
        hooks: ScanHooks = NO_HOOKS,
        root: Path | None = None,
        **api: object,
    ) -> FastAPI:
        settings = Settings(warehouse=root or warehouse.root, api_keys=keys)
        return create_app(settings, ApiSettings(**api), scan_hooks=hooks)

    return make


@pytest.fixture
def client(make_app: AppFactory) -> Iterator[TestClient]:
    with TestClient(make_app()) as test_client:
        yield test_client


@pytest.fixture
def server(make_app: AppFactory) -> Iterator[str]:
    """Base URL of a real uvicorn server over the test's warehouse (default settings)."""
    with running_server(make_app()) as base_url:
        yield base_url
