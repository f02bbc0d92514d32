"""The CLI against a real API: `sweeps metrics` prints NaN and infinities and revalidates with
its ETag; a sweep's runs are read across pages."""

from __future__ import annotations

import math
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from cli.client import RUNS_PAGE, ApiClient
from shared.db.metric_writes import upsert_metrics
from shared.db.models import Run, RunStatus
from shared.domain.runs import claim_run, finish_run
from tests.cli.conftest import cli_env, sweeps
from tests.support.db import insert_runs
from tests.support.stack import stack_env, start_api

TOKEN = "swp_cli-cache-token-0123456789"


def test_metrics_prints_nan_and_revalidates_with_its_etag(
    db_url: str, broker_url: str, session: Session, tmp_path: Path
) -> None:
    (run_id,) = insert_runs(session, [{"max_inputs": 64}])
    assert claim_run(session, run_id, "worker-1", 60) is not None
    points = [("train_loss", 16, 0.5), ("train_loss", 32, math.nan), ("train_loss", 48, math.inf)]
    upsert_metrics(session, run_id, points)
    assert finish_run(session, run_id, "worker-1", RunStatus.SUCCEEDED)
    session.commit()
    env = stack_env(database_url=db_url, broker_url=broker_url, artifact_dir=tmp_path / "a",
                    api_token=TOKEN)  # fmt: skip
    workdir = tmp_path / "work"
    workdir.mkdir()
    with start_api(env, log_path=tmp_path / "api.log") as api:
        cli = cli_env(SWEEPS_URL=api.url, SWEEPS_API_TOKEN=TOKEN)
        first = sweeps("metrics", str(run_id), cwd=workdir, env=cli)
        assert first.returncode == 0, first.stderr
        assert first.stdout.splitlines() == ["# train_loss", "16\t0.5", "32\tnan", "48\tinf"]
        again = sweeps("metrics", str(run_id), cwd=workdir, env=cli)
        assert again.returncode == 0, again.stderr
        assert again.stdout == first.stdout
        log = api.log()
    answers = [line for line in log.splitlines() if f"/runs/{run_id}/metrics" in line]
    assert len(answers) == 2, log
    assert " 200" in answers[0] and " 304" in answers[1], answers


def test_a_sweeps_runs_are_read_across_pages(
    db_url: str, broker_url: str, session: Session, tmp_path: Path
) -> None:
    """`sweeps status --all` and `sweeps export` need every run, not the API's first page."""
    ids = insert_runs(session, [{"max_inputs": 64}] * (RUNS_PAGE + 5), status=RunStatus.SUCCEEDED)
    sweep_id = session.scalar(select(Run.sweep_id).where(Run.id == ids[0]))
    env = stack_env(database_url=db_url, broker_url=broker_url, artifact_dir=tmp_path / "a",
                    api_token=TOKEN)  # fmt: skip
    with start_api(env, log_path=tmp_path / "api.log") as api, ApiClient(api.url, TOKEN) as client:
        assert len(client.sweep(sweep_id)["runs"]) == RUNS_PAGE
        every = client.sweep(sweep_id, every=True)["runs"]
    assert [r["id"] for r in every] == ids
