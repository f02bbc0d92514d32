"""Request dependencies: settings, the database session (the edge owns the transaction),
bearer-token auth and a size-limited body reader."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from api.errors import BadRequest, PayloadTooLarge
from shared.db import tokens
from shared.db.models import ApiToken
from shared.db.session import unit_of_work
from shared.domain import access
from shared.settings import Settings

log = logging.getLogger("sweeps.api")


def app_settings(request: Request) -> Settings:
    """The settings the app was made with (tests make apps with their own)."""
    return request.app.state.settings  # type: ignore[no-any-return]


def get_session(request: Request) -> Iterator[Session]:
    """One session per request: committed when the handler returns, rolled back if it raises."""
    with unit_of_work(request.app.state.sessionmaker) as session:
        yield session


# scope="function": commit before the response is sent, so a client that reads right after
# a 201 sees the rows, and a failed commit becomes an error response instead of a lost write.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(app_settings)]

_bearer = HTTPBearer(auto_error=False, description="an API token: `sweeps token create NAME`")


def ensure_bootstrap(request: Request) -> None:
    """Store SWEEPS_API_TOKEN's hash if the lifespan could not (the database was down)."""
    settings: Settings = request.app.state.settings
    if settings.api_token and request.app.state.bootstrap_pending:
        # Its own transaction: the token is stored even if this request then fails.
        with unit_of_work(request.app.state.sessionmaker) as own:
            tokens.ensure_bootstrap_token(own, settings.api_token)
        request.app.state.bootstrap_pending = False


def bootstrap_at_start(state: object, settings: Settings) -> None:
    """Called from the lifespan; a database that is down now is retried on the first request."""
    if not settings.api_token:
        return
    try:
        with unit_of_work(state.sessionmaker) as session:  # type: ignore[attr-defined]
            tokens.ensure_bootstrap_token(session, settings.api_token)
        state.bootstrap_pending = False  # type: ignore[attr-defined]
    except OperationalError:
        log.warning("database unavailable at start; the bootstrap token is stored later")


def require_token(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    """401 unless the request carries `Authorization: Bearer <live token>`; 403 for a change
    asked with a read token."""
    if credentials is None:
        raise HTTPException(
            401,
            "missing token: send the header `Authorization: Bearer <token>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    ensure_bootstrap(request)
    token = tokens.verify_token(session, credentials.credentials)
    if token is None:
        raise HTTPException(
            401,
            "invalid or revoked token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    access.check_method(token, request.method, request.url.path)
    return token


# The caller's token (FastAPI runs require_token once per request, however often it is named).
CurrentToken = Annotated[ApiToken, Depends(require_token)]


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 past settings.max_body_bytes without buffering it all.

    Content-Length is checked first; a chunked body is counted as it streams in.
    """
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(f"invalid Content-Length header {declared[:40]!r}")
        if int(declared) > limit:
            raise PayloadTooLarge(_too_large(int(declared), limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(size, limit, more=True))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int, more: bool = False) -> str:
    return (
        f"the body is {'over ' if more else ''}{size:,} bytes; the limit is {limit:,} bytes "
        "(SWEEPS_MAX_BODY_BYTES)"
    )
