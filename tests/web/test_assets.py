"""How the page's files are served (no browser needed): the HTML at `/` with its security headers, assets
by name only, ETag revalidation and gzip; and that every module the page imports exists."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.routers.web import ASSET_NAME, WEB_ROOT
from technic_core.config import Settings


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The app over an empty warehouse: serving the page needs none."""
    with TestClient(create_app(Settings(warehouse=tmp_path / "warehouse"))) as test_client:
        yield test_client


def test_index_is_the_app_with_a_strict_content_security_policy(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/web/app.js">' in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"


def test_assets_are_revalidated_by_etag_and_gzip_encoded_when_accepted(client):
    response = client.get("/web/app.js", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["content-encoding"] == "gzip"
    assert response.text == (WEB_ROOT / "app.js").read_text()  # httpx decodes the gzip body
    etag = response.headers["etag"]
    again = client.get("/web/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    plain = client.get("/web/styles.css", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.headers["content-type"] == "text/css; charset=utf-8"
    raw = client.get("/web/styles.css", headers={"Accept-Encoding": "gzip"})
    assert len(gzip.compress(plain.content)) > 0 and raw.headers["content-encoding"] == "gzip"


@pytest.mark.parametrize("name", ["nope.js", "..%2Fmain.py", "index.html", "app.py", ".hidden.js", "APP.js"])
def test_only_existing_assets_by_plain_name_are_served(client, name):
    assert client.get(f"/web/{name}").status_code in (404, 422)


def test_the_page_is_not_in_the_api_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and "/web/{name}" not in paths


def test_every_module_import_and_linked_file_exists():
    """No build step: what index.html links and each module imports must be a file in api/web/."""
    names = {path.name for path in WEB_ROOT.iterdir()}
    linked = set(re.findall(r'(?:href|src)="/web/([^"]+)"', (WEB_ROOT / "index.html").read_text()))
    imported = set()
    for script in WEB_ROOT.glob("*.js"):
        imported |= set(re.findall(r"""(?:from|import)\s*\(?\s*['"]\./([^'"]+)['"]""", script.read_text()))
    assert linked and imported
    assert (linked | imported) <= names
    assert all(re.fullmatch(ASSET_NAME, name) for name in names - {"index.html"})
