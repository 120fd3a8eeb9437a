"""What a test does when a tool it drives (a browser, a database server) is not installed."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str, in_ci: str) -> NoReturn:
    """Skip on a developer's machine; in CI (`CI=true`), which installs every tool, fail with `in_ci` instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} — {in_ci}")
    pytest.skip(reason)
