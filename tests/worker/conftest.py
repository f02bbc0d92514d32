"""Worker test fixtures: a session on this test's database and a factory for run rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session

from shared.db.models import Run, RunStatus, Sweep, utcnow
from shared.db.session import make_engine

MakeRuns = Callable[..., list[int]]


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    with Session(engine, expire_on_commit=False) as session:
        yield session
    engine.dispose()


def insert_runs(
    session: Session,
    configs: list[dict[str, Any]],
    *,
    status: RunStatus = RunStatus.QUEUED,
    name: str = "test sweep",
) -> list[int]:
    """Insert one sweep with a run per config (as the API would) and commit; returns run ids."""
    sweep = Sweep(name=name, yaml_text="# test\n", matrix_keys=["i"])
    session.add(sweep)
    for i, config in enumerate(configs, start=1):
        sweep.runs.append(
            Run(
                matrix_id=str(i),
                slug=f"i:{i}",
                experiment_name=f"test_i:{i}",
                params={"i": i},
                config=config,
                config_hash=f"{i:064x}",
                max_inputs=config.get("max_inputs"),
                status=status,
                enqueued_at=utcnow(),
            )
        )
    session.commit()
    return [run.id for run in sweep.runs]


@pytest.fixture
def make_runs(session: Session) -> MakeRuns:
    """`make_runs(n)` or `make_runs(configs=[...])`: queued runs in one new sweep."""

    def make(n: int = 1, *, configs: list[dict[str, Any]] | None = None, **kw: Any) -> list[int]:
        return insert_runs(session, configs or [{"max_inputs": 100}] * n, **kw)

    return make
