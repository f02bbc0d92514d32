"""Worker-side fixtures: sessions, queued runs, fast settings (engine helpers: engine/)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session

from shared.settings import Settings, get_settings
from tests.support.db import insert_runs

# --- worker-side fixtures (claim, queries, tasks) ------------------------------------------

MakeRuns = Callable[..., list[int]]


@pytest.fixture
def make_runs(session: Session) -> MakeRuns:
    """`make_runs(n)` or `make_runs(configs=[...])`: queued runs in one new sweep."""

    def make(n: int = 1, *, configs: list[dict[str, Any]] | None = None, **kw: Any) -> list[int]:
        return insert_runs(session, configs or [{"max_inputs": 100}] * n, **kw)

    return make


@pytest.fixture
def fast_settings(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for calling the task in-process: heartbeats and flushes every 0.2 s."""
    monkeypatch.setenv("SWEEPS_HEARTBEAT_SECONDS", "0.2")
    monkeypatch.setenv("SWEEPS_METRICS_FLUSH_SECONDS", "0.2")
    monkeypatch.setenv("SWEEPS_LEASE_SECONDS", "30")
    get_settings.cache_clear()
    return get_settings()
