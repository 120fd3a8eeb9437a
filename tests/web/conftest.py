"""Fixtures of the browser tests: one small warehouse and one real `technic serve` over it for the whole
run, a headless Chromium (Debian's `/usr/bin/chromium`, driven by Playwright), and a fresh page per test
whose console errors and uncaught exceptions fail the test.

Without /usr/bin/chromium (or the playwright package) the browser tests skip, saying why — except in CI
(`CI=true`), where they fail instead: there a missing browser is a broken build, not a reason to test less.
A failing test leaves a screenshot of its page in its tmp_path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.environment import unavailable
from tests.web.support import ServeProcess, WebWarehouse, build_web_warehouse

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _unavailable(reason: str) -> None:
    unavailable(reason, "CI must run the browser tests (install Debian's chromium and playwright)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so the page fixture knows at teardown whether it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def web_warehouse(tmp_path_factory: pytest.TempPathFactory) -> WebWarehouse:
    return build_web_warehouse(tmp_path_factory.mktemp("web") / "warehouse", batch_size=12)


@pytest.fixture(scope="session")
def server(web_warehouse: WebWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """`technic serve` over the session's warehouse; its log is in the run's temp directory."""
    process = ServeProcess(web_warehouse.root, tmp_path_factory.mktemp("serve") / "serve.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright; no `playwright install`)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class ConsoleWatch:
    """Console errors and uncaught exceptions of a page; a test may allow specific ones (by regex)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def console(self, message: Any) -> None:
        if message.type == "error":
            url = message.location.get("url", "") if message.location else ""
            self.errors.append(f"console.error: {message.text} [{url}]")

    def page_error(self, error: Any) -> None:
        self.errors.append(f"uncaught: {error}")

    def unexpected(self) -> list[str]:
        return [error for error in self.errors if not any(pattern.search(error) for pattern in self.allowed)]


@pytest.fixture
def console() -> ConsoleWatch:
    return ConsoleWatch()


def open_page(browser: Any, base_url: str, console: ConsoleWatch, viewport: dict[str, int]) -> tuple[Any, Any]:
    context = browser.new_context(viewport=viewport, base_url=base_url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.on("console", console.console)
    page.on("pageerror", console.page_error)
    return context, page


@pytest.fixture
def page(
    browser: Any, server: ServeProcess, console: ConsoleWatch, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Any]:
    """A fresh desktop-sized page (1280×800) on the server; parametrize `viewport` indirectly for others."""
    viewport = getattr(request, "param", DESKTOP)
    context, page = open_page(browser, server.base_url, console, viewport)
    yield page
    failed = any(
        getattr(request.node, f"report_{when}", None) and getattr(request.node, f"report_{when}").failed
        for when in ("setup", "call")
    )
    if failed:
        try:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        except Exception as exc:  # noqa: BLE001 - a screenshot is a courtesy; the failure itself is reported
            print(f"no screenshot: {exc}")
    context.close()
    unexpected = console.unexpected()
    if unexpected and not failed:
        pytest.fail("the page logged errors:\n" + "\n".join(unexpected))
