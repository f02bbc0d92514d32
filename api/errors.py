"""Errors a person can act on: each becomes a status code and a sentence saying what to fix."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError

from api.schemas import Problem
from shared.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from shared.results_table import UnknownColumn
from shared.sweepfile import SpecError
from shared.sweepfile.errors import reportable
from shared.table_average import TableOptionError

log = logging.getLogger("sweeps.api")

# Documented on every authenticated route (schema-driven clients and fuzzers rely on it).
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing, invalid or revoked token"},
    403: {"model": Problem, "description": "the token's role or the sweep's owner forbids it"},
    503: {"model": Problem, "description": "the database is unavailable"},
}

DATABASE_DOWN = "the database is unavailable; the service retries by itself, try again shortly"


class BadRequest(Exception):
    """400: the request cannot be read (e.g. not UTF-8, malformed JSON)."""


class UnsupportedMediaType(Exception):
    """415: a body in a format the endpoint does not take."""


class PayloadTooLarge(Exception):
    """413: a body over settings.max_body_bytes."""


def _problem(status: int, detail: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": jsonable(detail)}, status_code=status, headers=headers)


def jsonable(value: Any) -> Any:
    """`value` with every number JSON can't carry (NaN, infinities, huge ints) made text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str):
        return value
    return reportable(value)


async def spec_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SpecError)
    return _problem(422, exc.to_dict())


async def database_down(request: Request, exc: Exception) -> JSONResponse:
    # The driver's message goes to the log only (it may name hosts); never the URL.
    first_line = str(getattr(exc, "orig", exc)).strip().splitlines()[:1]
    log.warning("database error on %s %s: %s", request.method, request.url.path, first_line)
    return _problem(503, DATABASE_DOWN, {"Retry-After": "5"})


def install(app: FastAPI) -> None:
    """Register the handlers that map our exceptions to statuses."""
    app.add_exception_handler(SpecError, spec_error)
    app.add_exception_handler(OperationalError, database_down)
    app.add_exception_handler(InterfaceError, database_down)
    simple: list[tuple[type[Exception], int]] = [
        (NotFound, 404),
        (Conflict, 409),
        (Forbidden, 403),
        (BadRequest, 400),
        (UnsupportedMediaType, 415),
        (PayloadTooLarge, 413),
        (InvalidInput, 422),  # a query parameter or body field outside what is accepted
        (UnknownColumn, 422),
        (TableOptionError, 422),
    ]
    for exc_class, status in simple:
        app.add_exception_handler(exc_class, _handler(status))


def _handler(status: int):  # noqa: ANN202 - a Starlette exception handler
    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return _problem(status, str(exc))

    return handle
