"""API keys and per-caller stream quotas.

Keys come from `TECHNIC_API_KEYS`. They travel in the `X-API-Key` header; EventSource and WebSocket
clients cannot set headers, so the stream endpoints also accept an `api_key` query parameter. Mutating
endpoints (POST, DELETE) always need a valid key — with no keys configured they are refused — and reads need
one only when `TECHNIC_API_READS_REQUIRE_KEY` is on. A key that is presented must be valid, even on reads.

Keys are compared with `hmac.compare_digest` against every configured key (no early exit), so response
time does not reveal how much of a guess matched or which key it resembled. Logs and quotas use a short
hash of the key (`Principal.id`), never the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from dataclasses import dataclass
from typing import Annotated

from fastapi import HTTPException, Request, Security, WebSocket, status
from fastapi.security import APIKeyHeader, APIKeyQuery

API_KEY_HEADER = "X-API-Key"
API_KEY_QUERY = "api_key"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key (by hash) or an anonymous client address; quotas are kept per principal."""

    id: str
    authenticated: bool


class AuthError(Exception):
    """Why a request was refused; the HTTP status and the WebSocket close code follow from `status_code`."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class KeyRing:
    """The configured keys and the rule of when one is needed."""

    def __init__(self, keys: tuple[str, ...], reads_require_key: bool) -> None:
        self._keys = tuple(key.encode() for key in keys)
        self.reads_require_key = reads_require_key

    def principal(self, presented: str | None, client: str, mutating: bool) -> Principal:
        """The caller, or `AuthError` (401 missing, 403 invalid) when the request may not proceed."""
        if presented:
            candidate = presented.encode()
            matched = None
            for key in self._keys:
                if hmac.compare_digest(key, candidate):
                    matched = key
            if matched is None:
                raise AuthError(status.HTTP_403_FORBIDDEN, "invalid API key")
            return Principal("key:" + hashlib.sha256(matched).hexdigest()[:12], authenticated=True)
        if mutating and not self._keys:
            raise AuthError(
                status.HTTP_401_UNAUTHORIZED,
                "this endpoint needs an API key and none is configured; set TECHNIC_API_KEYS on the server",
            )
        if mutating or self.reads_require_key:
            raise AuthError(status.HTTP_401_UNAUTHORIZED, f"missing API key: send it in the {API_KEY_HEADER} header")
        return Principal("anonymous:" + client, authenticated=False)


def _client(connection: Request | WebSocket) -> str:
    return connection.client.host if connection.client else "unknown"


def _keyring(connection: Request | WebSocket) -> KeyRing:
    return connection.app.state.keyring


def _http_error(exc: AuthError) -> HTTPException:
    headers = {"WWW-Authenticate": API_KEY_HEADER} if exc.status_code == status.HTTP_401_UNAUTHORIZED else None
    return HTTPException(exc.status_code, exc.message, headers=headers)


#: The key schemes as OpenAPI security schemes, so /docs has an Authorize button and generated clients know
#: about keys; `auto_error=False` because whether a key is required is the keyring's decision, per endpoint.
HEADER_KEY = APIKeyHeader(
    name=API_KEY_HEADER, scheme_name="APIKeyHeader", description="API key (TECHNIC_API_KEYS)", auto_error=False
)
QUERY_KEY = APIKeyQuery(
    name=API_KEY_QUERY,
    scheme_name="APIKeyQuery",
    description="API key, for EventSource clients that cannot set headers (streams only)",
    auto_error=False,
)
HeaderKey = Annotated[str | None, Security(HEADER_KEY)]
QueryKey = Annotated[str | None, Security(QUERY_KEY)]


def _principal(request: Request, presented: str | None, *, mutating: bool) -> Principal:
    try:
        return _keyring(request).principal(presented, _client(request), mutating)
    except AuthError as exc:
        raise _http_error(exc) from None


async def reader(request: Request, key: HeaderKey = None) -> Principal:
    """Dependency of GET endpoints: the key from the header, optional unless reads require one."""
    return _principal(request, key, mutating=False)


async def stream_reader(request: Request, key: HeaderKey = None, api_key: QueryKey = None) -> Principal:
    """Dependency of the SSE endpoint: like `reader`, also accepting `?api_key=` (EventSource sets no headers)."""
    return _principal(request, key or api_key, mutating=False)


async def writer(request: Request, key: HeaderKey = None) -> Principal:
    """Dependency of POST and DELETE endpoints: a valid key in the header, always."""
    return _principal(request, key, mutating=True)


def websocket_principal(websocket: WebSocket) -> Principal:
    """The WebSocket caller, or `AuthError` — the endpoint closes with 1008 (policy violation)."""
    presented = websocket.headers.get(API_KEY_HEADER) or websocket.query_params.get(API_KEY_QUERY)
    return _keyring(websocket).principal(presented, _client(websocket), mutating=False)


class StreamQuota:
    """Concurrent streams per principal. Used only on the event loop thread, so plain counters suffice."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def exceeded(self, principal: Principal) -> bool:
        return self._open[principal.id] >= self.limit

    def refusal(self) -> str:
        return (
            f"too many concurrent streams for this caller (TECHNIC_API_MAX_STREAMS_PER_KEY={self.limit}); "
            "close one and retry"
        )

    def acquire(self, principal: Principal) -> None:
        """Take a slot; callers check `exceeded` first, in the same event-loop step."""
        self._open[principal.id] += 1

    def release(self, principal: Principal) -> None:
        self._open[principal.id] -= 1
        if self._open[principal.id] <= 0:
            del self._open[principal.id]
