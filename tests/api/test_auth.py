"""API keys: mutating endpoints always need one, reads only when configured; keys never leak."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from api.auth import AuthError, KeyRing
from api.redaction import redact_api_keys
from technic_core.config import Settings
from tests.api.conftest import AUTH, KEY, OTHER_AUTH

MUTATING = [
    ("POST", "/scan", {}),
    ("POST", "/scan/stream", {}),
    ("POST", "/scan/prioritized", {}),
    ("POST", "/scan/predict", {}),
    ("POST", "/scan/stop/adhoc-0123456789abcdef", None),
    ("DELETE", "/scan/adhoc-0123456789abcdef", None),
]


@pytest.mark.parametrize(("method", "path", "body"), MUTATING)
def test_mutating_endpoints_need_a_valid_key(client, method, path, body):
    missing = client.request(method, path, json=body)
    wrong = client.request(method, path, json=body, headers={"X-API-Key": KEY + "x"})
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "X-API-Key"
    assert wrong.status_code == 403 and wrong.json() == {"detail": "invalid API key"}


def test_query_parameter_keys_are_only_for_streams(client):
    response = client.post(f"/scan?api_key={KEY}", json={})
    assert response.status_code == 401


def test_without_configured_keys_mutations_are_refused_with_the_fix(make_app):
    with TestClient(make_app(keys=())) as client:
        response = client.post("/scan", json={}, headers=AUTH)
        assert response.status_code == 403, "a presented key that matches nothing is invalid"
        response = client.post("/scan", json={})
        assert response.status_code == 401 and "TECHNIC_API_KEYS" in response.json()["detail"]
        assert client.get("/results/latest").status_code == 200


def test_reads_are_open_by_default_but_a_presented_key_must_be_valid(client):
    assert client.get("/results/latest").status_code == 200
    assert client.get("/results/latest", headers=OTHER_AUTH).status_code == 200
    assert client.get("/results/latest", headers={"X-API-Key": "nope"}).status_code == 403


def test_reads_can_require_a_key(make_app):
    with TestClient(make_app(reads_require_key=True)) as client:
        for path in ("/health", "/results/latest", "/partitions", "/models", "/scans/active", "/scan/suggest"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=AUTH).status_code != 401, path


def test_every_configured_key_is_accepted_and_identified_by_hash():
    ring = KeyRing(("first-key", "second-key"), reads_require_key=False)
    first = ring.principal("first-key", "127.0.0.1", mutating=True)
    second = ring.principal("second-key", "127.0.0.1", mutating=True)
    assert first.authenticated and second.authenticated and first.id != second.id
    assert "first-key" not in first.id
    anonymous = ring.principal(None, "10.0.0.7", mutating=False)
    assert anonymous.id == "anonymous:10.0.0.7" and not anonymous.authenticated
    with pytest.raises(AuthError) as refused:
        ring.principal("first-ke", "127.0.0.1", mutating=False)
    assert refused.value.status_code == 403


def test_keys_come_from_the_environment_and_stay_out_of_reprs():
    settings = Settings.from_env({"TECHNIC_API_KEYS": " alpha , beta,,"})
    assert tuple(key.get_secret_value() for key in settings.api_keys) == ("alpha", "beta")
    assert "alpha" not in repr(settings)


def test_keys_in_query_strings_are_redacted_from_access_logs(client):
    assert redact_api_keys in logging.getLogger("uvicorn.access").filters, "installed when the app starts"
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/events/results/latest?after=3&api_key={KEY}&x=1", "1.1", 200),
        None,
    )
    assert redact_api_keys(record)
    assert KEY not in record.getMessage()
    assert "/events/results/latest?after=3&api_key=***&x=1" in record.getMessage()


def test_openapi_declares_the_key_schemes_so_docs_have_an_authorize_button(make_app):
    from fastapi.testclient import TestClient

    with TestClient(make_app()) as client:
        spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["APIKeyHeader"]["description"],
    }
    assert schemes["APIKeyQuery"]["in"] == "query" and schemes["APIKeyQuery"]["name"] == "api_key"
    assert {"APIKeyHeader": []} in spec["paths"]["/scan"]["post"]["security"]
