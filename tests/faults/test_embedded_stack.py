"""Fault 9: the embedded stack (`sweeps up`) loses its worker, as to the kernel's OOM killer.

`sweeps up` supervises its children: the killed worker is started again while the API and
Redis stay up, the run it was training comes back through the lease/reconciler path and
resumes from its checkpoint. A worker that cannot start at all stops the stack with a clear
message instead of restarting forever.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import SWEEPS, cli_env, processes_in, wait_for
from tests.conftest import free_port
from tests.faults.conftest import FAST_WORKER_SETTINGS
from tests.faults.helpers import (
    BATCH,
    FINAL_INPUTS,
    VALIDATE_EVERY,
    assert_sweep_complete,
    checkpoint_inputs,
    run_ids_of,
    steps_by_process,
    submit,
    sweep_yaml,
)
from tests.support.stack import wait_for_runs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


class Up:
    """A foreground `sweeps up` in its own directory, with the fault tests' short lease."""

    def __init__(self, cwd: Path, **env: str) -> None:
        self.cwd = cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / "up.log"
        settings = {f"SWEEPS_{k.upper()}": str(v) for k, v in FAST_WORKER_SETTINGS.items()}
        with open(self.log, "w") as log_file:
            self.process = subprocess.Popen(
                [str(SWEEPS), "up", "--port", str(self.port)],
                cwd=cwd,
                env=cli_env(**settings, **env),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.cwd / '.sweeps' / 'sweeps.db'}"

    @property
    def artifacts(self) -> Path:
        return self.cwd / ".sweeps" / "artifacts"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def logs(self) -> str:
        worker_log = self.cwd / ".sweeps" / "logs" / "worker.log"
        tail = "\n".join(worker_log.read_text(errors="replace").splitlines()[-40:])
        return f"--- sweeps up ---\n{self.output()}\n--- worker.log ---\n{tail}"

    def children(self) -> dict[str, int]:
        record = json.loads((self.cwd / ".sweeps" / "stack.json").read_text())
        return {name: int(pid) for name, pid in record["children"].items()}

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"`sweeps up` exited:\n{self.output()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self) -> httpx.Client:
        token = (self.cwd / ".sweeps" / "token").read_text().strip()
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def interrupt(self) -> int:
        """Ctrl-C, as a person would; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(60)
        return self.process.returncode

    def kill_everything(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        for pid in processes_in(self.cwd):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def up_dir(tmp_path: Path) -> Iterator[Path]:
    cwd = tmp_path / "stack"
    cwd.mkdir()
    yield cwd
    # Whatever a failed test left running here.
    for pid in processes_in(cwd):
        os.kill(pid, signal.SIGKILL)


def test_killed_worker_is_restarted_and_its_run_resumes(up_dir: Path) -> None:
    up = Up(up_dir)
    try:
        wait_for(up.healthy, 120, "`sweeps up` to serve /healthz")
        step_log = up_dir / "steps.log"
        with up.client() as client:
            (run_id,) = run_ids_of(submit(client, sweep_yaml(seeds=(1,), step_log=step_log)))
        wait_for(lambda: checkpoint_inputs(up.artifacts, run_id), 120, "a checkpoint", 0.1)
        before = up.children()

        # What the OOM killer does to the worker: every process of it, at once, no warning.
        os.killpg(before["worker"], signal.SIGKILL)
        resumed_at = checkpoint_inputs(up.artifacts, run_id)
        assert resumed_at is not None and VALIDATE_EVERY <= resumed_at < FINAL_INPUTS

        wait_for(lambda: up.children()["worker"] != before["worker"], 30, "a new worker")
        wait_for_runs(up.db_url, [run_id], timeout=120, diagnostics=up.logs)
        # Up all along: the same API and Redis, and the supervisor still running.
        assert up.healthy()
        after = up.children()
        assert after["api"] == before["api"] and after["redis"] == before["redis"]
        assert "the worker process exited with code -9 (SIGKILL); starting it again" in (
            up.output()
        )

        # Every metric point once, the run's attempts counted, and only what the checkpoint
        # lacked trained again.
        rows = assert_sweep_complete(up.db_url, [run_id])
        assert rows[run_id].attempts == 2
        steps = steps_by_process(step_log)
        assert len(steps) == 2, steps
        assert list(steps.values())[-1] == (FINAL_INPUTS - resumed_at) // BATCH

        trained_again = sum(steps.values()) * BATCH - FINAL_INPUTS
        print(f"killed the worker at {resumed_at} inputs; {trained_again} inputs trained again")

        # The API is supervised the same way: killed, it serves again on the same port.
        os.killpg(after["api"], signal.SIGKILL)
        wait_for(lambda: up.children()["api"] != after["api"], 30, "a new API process")
        wait_for(up.healthy, 60, "the restarted API to serve /healthz")
        with up.client() as client:
            response = client.get(f"/runs/{run_id}")
            assert response.status_code == 200 and response.json()["status"] == "succeeded"
        assert up.children()["redis"] == before["redis"]

        # Ctrl-C still stops everything, the restarted children too.
        assert up.interrupt() == 0, up.output()
        assert processes_in(up_dir) == []
        assert not (up_dir / ".sweeps" / "stack.json").exists()
    finally:
        up.kill_everything()


def test_worker_that_keeps_dying_at_start_stops_the_stack(up_dir: Path) -> None:
    # A setting the worker refuses at start (and the API ignores): it dies on every start.
    up = Up(up_dir, SWEEPS_RUNS_PER_GPU="0")
    try:
        code = up.process.wait(120)
        output = up.output()
        assert code != 0, output
        assert "the worker process died 5 times within 60 s" in output, output
        assert "stopping the stack" in output
        # The log tail names the cause.
        assert "runs per GPU must be at least 1, not 0" in output
        assert output.count("starting it again") == 4
        assert "Traceback" not in output.split("the worker process died", 1)[0]
        assert processes_in(up_dir) == []
        assert not (up_dir / ".sweeps" / "stack.json").exists()
        assert not (up_dir / ".sweeps" / "redis.sock").exists()
    finally:
        up.kill_everything()
