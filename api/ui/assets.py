"""Static files: our CSS/JS and the plotly.js bundled in the installed `plotly` package.

Every URL carries a version (content hash, or plotly's version), so responses can be cached
for a year: GPU hosts are often offline, so nothing is fetched from a CDN.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request, Response

from api.etag import REVALIDATE

STATIC_DIR = Path(__file__).resolve().parent / "static"
LONG_CACHE = "public, max-age=31536000, immutable"
_MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    media_type: str
    version: str


def _asset(path: Path) -> Asset:
    body = path.read_bytes()
    return Asset(
        body=body,
        gzipped=gzip.compress(body, compresslevel=6, mtime=0),
        media_type=_MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
        version=hashlib.sha256(body).hexdigest()[:12],
    )


@lru_cache
def own_asset(name: str) -> Asset:
    """One of api/ui/static/*, read once per process."""
    path = STATIC_DIR / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise HTTPException(404, f"no static file {name!r}")
    return _asset(path)


def plotly_js_path() -> Path:
    """plotly.min.js inside the installed plotly package (found without importing it)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the plotly package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "package_data" / "plotly.min.js"


@lru_cache
def plotly_asset() -> Asset:
    return _asset(plotly_js_path())


@lru_cache
def plotly_version() -> str:
    return importlib.metadata.version("plotly")


def plotly_url() -> str:
    return f"/ui/static/plotly-{plotly_version()}.min.js"


def static_url(name: str) -> str:
    return f"/ui/static/{name}?v={own_asset(name).version}"


def serve(asset: Asset, request: Request) -> Response:
    """The asset, gzipped when the client accepts it, cacheable for a year."""
    headers = {"Cache-Control": LONG_CACHE, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def json_response(
    payload: Any, request: Request, *, compress_over: int = 32_768, etag: str | None = None
) -> Response:
    """Compact JSON, gzipped (fast level) when large and the client accepts it: curves of a
    big sweep are megabytes of digits that compress about four to one. With an `etag`, the
    browser keeps the answer and revalidates it (fetch() sends If-None-Match by itself)."""
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    if etag is not None:
        headers.update({"ETag": etag, "Cache-Control": REVALIDATE})
    if len(body) > compress_over and "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(body, compresslevel=1, mtime=0)
    return Response(body, media_type="application/json", headers=headers)
