"""The web page: `GET /` serves the app's HTML, `GET /web/{name}` its scripts and styles (api/web/).

Plain files, no build step: the page is modern JavaScript modules that the browser loads as they are, and
everything it shows comes from the API's own endpoints on the same origin. Each asset is read when its file
changes (a stat per request, so an edited file is served at once), gzip-compressed once when the client
accepts it, and revalidated by ETag (`Cache-Control: no-cache`), so a reload costs a round trip of 304s.

The page needs no key to load; its data requests carry the key the user enters (`X-API-Key`, and
`?api_key=` on event streams), so `TECHNIC_API_READS_REQUIRE_KEY` still protects the data.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response, status
from fastapi import Path as PathParam

from api.routers.streams import accepts_gzip

router = APIRouter(include_in_schema=False)

#: Where the page's files live: this package's `web/` directory, installed with it.
WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
INDEX = "index.html"
#: Asset names: one flat directory of files with these extensions; nothing else is ever served.
ASSET_NAME = r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg)$"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: Smaller files go out as they are: gzip would save less than its framing costs.
GZIP_FROM_BYTES = 1024

#: Everything the page loads comes from this origin; the API's answers are data, never markup or script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Asset:
    """One file's bytes as served: plain, gzip-compressed (or None when not worth it), and its ETag."""

    media_type: str
    plain: bytes
    compressed: bytes | None
    etag: str
    stamp: tuple[int, int]


class Assets:
    """The files under `root`, each re-read when its size or modification time changes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, Asset] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Asset | None:
        path = self.root / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and cached.stamp == stamp:
            return cached
        plain = path.read_bytes()
        compressed = gzip.compress(plain, compresslevel=9, mtime=0) if len(plain) >= GZIP_FROM_BYTES else None
        asset = Asset(MEDIA_TYPES[path.suffix], plain, compressed, f'"{hashlib.sha256(plain).hexdigest()[:20]}"', stamp)
        with self._lock:
            self._cache[name] = asset
        return asset


ASSETS = Assets(WEB_ROOT)


def _serve(
    asset: Asset, if_none_match: str | None, accept_encoding: str | None, extra: dict[str, str] | None = None
) -> Response:
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding", **(extra or {})}
    if if_none_match is not None and asset.etag in (tag.strip().removeprefix("W/") for tag in if_none_match.split(",")):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    if asset.compressed is not None and accepts_gzip(accept_encoding):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.compressed, media_type=asset.media_type, headers=headers)
    return Response(asset.plain, media_type=asset.media_type, headers=headers)


IfNoneMatch = Annotated[str | None, Header()]
AcceptEncoding = Annotated[str | None, Header()]


@router.get("/", name="web_index")
def index(if_none_match: IfNoneMatch = None, accept_encoding: AcceptEncoding = None) -> Response:
    """The app: results, live scans, screens and symbol charts, routed in the page by the URL's hash."""
    asset = ASSETS.get(INDEX)
    if asset is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the web page is not installed ({WEB_ROOT / INDEX} is missing)")
    return _serve(asset, if_none_match, accept_encoding, SECURITY_HEADERS)


@router.get("/web/{name}", name="web_asset")
def asset(
    name: Annotated[str, PathParam(pattern=ASSET_NAME)],
    if_none_match: IfNoneMatch = None,
    accept_encoding: AcceptEncoding = None,
) -> Response:
    """A script, style sheet or icon of the page."""
    found = ASSETS.get(name) if re.fullmatch(ASSET_NAME, name) else None
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no web asset {name!r}")
    return _serve(found, if_none_match, accept_encoding, {"X-Content-Type-Options": "nosniff"})
