"""GET /healthz: is the database reachable, is the broker reachable. No token needed."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from kombu import Connection
from sqlalchemy import text

from api.schemas import Check, Health

router = APIRouter(tags=["health"])
TIMEOUT_SECONDS = 2.0


def check_database(request: Request) -> Check:
    try:
        with request.app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return Check(ok=False, error=f"{type(exc).__name__}: database unreachable")
    return Check(ok=True)


def check_broker(url: str) -> Check:
    try:
        with Connection(url, connect_timeout=TIMEOUT_SECONDS) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001
        return Check(ok=False, error=f"{type(exc).__name__}: broker unreachable")
    return Check(ok=True)


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(request: Request) -> JSONResponse:
    """Database and broker reachability; 503 when either is down."""
    database = check_database(request)
    broker = check_broker(request.app.state.settings.broker_url)
    ok = database.ok and broker.ok
    health = Health(status="ok" if ok else "unavailable", database=database, broker=broker)
    return JSONResponse(health.model_dump(), status_code=200 if ok else 503)
