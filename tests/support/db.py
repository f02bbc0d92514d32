"""Rows and configs for worker tests: sweeps inserted as the API would, tiny sweep files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import Metric, Run, RunStatus, Sweep, utcnow
from shared.sweepfile import parse_sweep

DATA = Path(__file__).resolve().parent / "data"


def sweep_text(name: str) -> str:
    """The text of tests/support/data/<name> (tiny.yaml: two quick runs; slow.yaml: one long)."""
    return (DATA / name).read_text()


def sweep_configs(name: str, **overrides: Any) -> list[dict[str, Any]]:
    """Run configs of tests/support/data/<name>, with top-level keys overridden."""
    return [{**run.config, **overrides} for run in parse_sweep(sweep_text(name)).runs]


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


def stored_steps(session: Session, run_id: int, key: str) -> list[int]:
    """The steps of a run's stored points of one metric, in order."""
    query = select(Metric.step).where(Metric.run_id == run_id, Metric.key == key)
    return list(session.scalars(query.order_by(Metric.step)))
