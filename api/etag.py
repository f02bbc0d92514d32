"""Conditional GETs: an ETag from what a response depends on, and `304 Not Modified`."""

from __future__ import annotations

import hashlib

from fastapi import Request, Response

# Bump when a response's JSON shape changes, so no client keeps a copy in the old shape.
FORMAT = "1"
# The client keeps its copy but asks every time (no-cache); no shared cache keeps it (private:
# the answer needs a token).
REVALIDATE = "private, no-cache"


def make_etag(request: Request, version: str) -> str:
    """A weak ETag for this URL (path and query) at this data version."""
    basis = f"{FORMAT}|{request.url.path}?{request.url.query}|{version}"
    return 'W/"' + hashlib.blake2b(basis.encode(), digest_size=16).hexdigest() + '"'


def is_fresh(request: Request, etag: str) -> bool:
    """True when the client's If-None-Match holds this ETag (weak comparison, RFC 9110)."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    tag = etag.removeprefix("W/")
    return any(item.strip().removeprefix("W/") == tag for item in header.split(","))


def not_modified(etag: str) -> Response:
    return Response(status_code=304, headers={"ETag": etag, "Cache-Control": REVALIDATE})
