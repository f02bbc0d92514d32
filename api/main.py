"""The FastAPI app factory: `uvicorn api.main:create_app --factory`.

Nothing connects at import or in create_app(): the engine is made in the lifespan.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api import errors
from api.deps import bootstrap_at_start
from api.routes import compare, health, reports, runs, sweeps
from api.schemas import SweepSubmission
from api.ui import results as ui_results
from api.ui import routes as ui_routes
from shared.db.session import make_engine
from shared.settings import Settings, get_settings

# Sync routes and dependencies run on worker threads, and a request keeps its database
# connection from the token check to its end, across several thread hops. With fewer
# connections than requests in progress, threads blocked waiting for a connection starve the
# requests holding one until the pool times out (BENCHMARKS.md, "Load";
# tests/faults/test_api_concurrency.py). So: this many threads, this many
# pooled connections, and at most this many requests in progress; the rest wait their turn
# without holding a thread or a connection.
REQUEST_SLOTS = 40


class RequestSlots:
    """ASGI middleware: at most REQUEST_SLOTS HTTP requests in progress at once.

    The semaphore is made in the lifespan, on the event loop that serves the requests.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slots = getattr(scope["app"].state, "request_slots", None) if "app" in scope else None
        if scope["type"] != "http" or slots is None:
            await self.app(scope, receive, send)
            return
        async with slots:
            await self.app(scope, receive, send)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    to_thread.current_default_thread_limiter().total_tokens = REQUEST_SLOTS
    app.state.request_slots = asyncio.Semaphore(REQUEST_SLOTS)
    engine = make_engine(settings.database_url, pool_size=REQUEST_SLOTS, max_overflow=0)
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker(engine, expire_on_commit=False)
    app.state.bootstrap_pending = bool(settings.api_token)
    await run_in_threadpool(bootstrap_at_start, app.state, settings)
    try:
        yield
    finally:
        engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app (routes, error handlers, CORS) without touching the database."""
    settings = settings or get_settings()
    app = FastAPI(
        title="sweeps",
        summary="Run nn-experiments YAML sweeps on GPU workers and compare the results.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)
    app.add_middleware(RequestSlots)
    if settings.cors_origins:  # closed unless origins are listed
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    _document_submission(app)
    for router in (
        health.router,
        sweeps.router,
        runs.router,
        compare.router,
        reports.router,
        ui_routes.router,
        ui_results.router,
    ):
        app.include_router(router)
    return app


def _document_submission(app: FastAPI) -> None:
    """Add SweepSubmission to the OpenAPI components.

    POST /sweeps reads its body itself (YAML or JSON, size-limited before parsing), so no
    route parameter makes FastAPI list the JSON form; its request body refers to it by name.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        if "SweepSubmission" not in schemas:
            schemas["SweepSubmission"] = SweepSubmission.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
        return document

    app.openapi = openapi  # type: ignore[method-assign]
