"""A sweep whose model is wrong, on a real worker: three runs fail alike, the rest are held
(never started), `sweeps watch` says so and exits 1, and `sweeps retry --file` with the fixed
file trains them all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from shared.db.models import Run
from tests.support.db import sweep_text
from tests.support.stack import REPO, stack_env, start_api, start_worker, wait_for_runs, wait_until

from .conftest import API_TOKEN

pytestmark = pytest.mark.slow

FIXED = (
    sweep_text("tiny.yaml")
    .replace("trainer: experiments.reptrainer.RepresentationClassTrainer\n", "")
    .replace("hidden: [4, 8]", "hidden: [4, 5, 6, 7, 8, 9]")
    .replace("tiny/mlp_", "tiny/hold_")
)
# The encoder's input size is wrong: every run fails at its first step, each with its own
# numbers in the message ("... (32x16 and 4x4)"), which the hold rule ignores.
BROKEN = FIXED.replace("nn.Linear(16, ${hidden})", "nn.Linear(${hidden}, ${hidden})")


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, cwd=REPO, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def test_a_broken_sweep_is_held_after_three_runs_and_retried_with_the_fixed_file(
    client: TestClient, db_url: str, broker_url: str, tmp_path: Path, session: Session
) -> None:
    env = stack_env(
        database_url=db_url, broker_url=broker_url, artifact_dir=tmp_path / "artifacts",
        api_token=API_TOKEN, heartbeat_seconds=0.5, metrics_flush_seconds=0.5,
    )  # fmt: skip
    with (
        start_worker(env, log_path=tmp_path / "worker.log") as worker,
        start_api(env, log_path=tmp_path / "api.log") as api,
    ):
        created = client.post("/sweeps", json={"yaml": BROKEN, "name": "broken"}).json()
        sweep_id, ids = created["id"], [r["id"] for r in created["runs"]]
        path = f"/sweeps/{sweep_id}"
        wait_until(
            lambda: client.get(path).json()["status"] == "held",
            timeout=120, what="the sweep to be held", diagnostics=worker.log_tail,
        )  # fmt: skip
        sweep = client.get(path).json()
        assert sweep["counts"] == {"failed": 3, "held": 3}
        assert "mat1 and mat2 shapes cannot be multiplied" in sweep["hold_reason"]
        session.expire_all()
        assert [session.get_one(Run, i).attempts for i in ids] == [1, 1, 1, 0, 0, 0]

        cli_env = {**env, "SWEEPS_URL": api.url, "SWEEPS_API_TOKEN": API_TOKEN}
        watched = _cli(cli_env, "watch", str(sweep_id), "--interval", "0.2")
        assert watched.returncode == 1, watched.stderr
        assert f"sweep {sweep_id} is held: the first 3 runs failed" in watched.stderr
        assert f"sweeps retry {sweep_id} --file FILE" in watched.stderr
        status = _cli(cli_env, "status", str(sweep_id))
        assert "is held" in status.stdout and "held" in status.stdout

        assert _cli(cli_env, "retry", str(sweep_id)).returncode != 0  # needs --file or --force
        fixed = tmp_path / "fixed.yaml"
        fixed.write_text(FIXED)
        retried = _cli(cli_env, "retry", str(sweep_id), "--file", str(fixed))
        assert retried.returncode == 0, retried.stderr
        assert "6 run(s) queued again, 6 with the new file's configuration" in retried.stdout
        wait_for_runs(db_url, ids, timeout=180, diagnostics=worker.log_tail)
    sweep = client.get(path).json()
    assert sweep["status"] == "finished" and sweep["hold_reason"] is None
    assert sweep["yaml_text"] == FIXED
