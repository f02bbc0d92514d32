"""The FastAPI app factory: `uvicorn api.main:create_app --factory`.

Nothing connects at import or in create_app(): the engine is made in the lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool

from api import errors
from api.deps import bootstrap_at_start
from api.routes import compare, health, runs, sweeps
from api.ui import routes as ui_routes
from shared.db.session import make_engine
from shared.settings import Settings, get_settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = make_engine(settings.database_url)
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
    if settings.cors_origins:  # closed unless origins are listed
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    for router in (
        health.router,
        sweeps.router,
        runs.router,
        compare.router,
        ui_routes.router,
    ):
        app.include_router(router)
    return app
