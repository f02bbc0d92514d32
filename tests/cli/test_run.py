"""`sweeps run FILE`: the one command behind `make run`. Starts the embedded stack, trains,
prints the table and leaves nothing running; `--keep` leaves it for `sweeps down`; Ctrl-C
cancels the sweep and still stops everything."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from cli.embedded import pid_alive
from tests.cli.conftest import (
    LONG_SWEEP,
    SWEEPS,
    TINY_SWEEP,
    cli_env,
    processes_in,
    sweeps,
    wait_for,
)
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def one_run_file(folder: Path) -> Path:
    path = folder / "one.yaml"
    path.write_text(TINY_SWEEP.read_text().replace("hidden: [4, 8]", "hidden: [4]"))
    return path


def recorded_pids(cwd: Path) -> dict[str, int]:
    record = cwd / ".sweeps" / "stack.json"
    try:
        return dict(json.loads(record.read_text())["children"])
    except (OSError, ValueError, KeyError):
        return {}


def start_run(cwd: Path, *args: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """`sweeps run ...` in the background; returns it and the child pids it recorded."""
    process = subprocess.Popen(
        [str(SWEEPS), "run", *args, "--port", str(free_port()), "--interval", "0.5"],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids = wait_for(
        lambda: process.poll() is None and len(recorded_pids(cwd)) == 3 and recorded_pids(cwd),
        120,
        "the stack to record redis, api and worker",
    )
    return process, pids


def test_run_trains_prints_the_table_and_leaves_nothing(tmp_path: Path) -> None:
    process, pids = start_run(tmp_path, str(one_run_file(tmp_path)))
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr
    table = [line for line in stdout.splitlines() if line.startswith("|")]
    assert "| accuracy (argmax) | accuracy (svc) |" in table[0]
    assert table[2].startswith("| 1 | succeeded | 4 | ")
    assert "Traceback" not in stderr

    assert not any(pid_alive(pid) for pid in pids.values()), pids
    assert processes_in(tmp_path) == []
    assert not (tmp_path / ".sweeps" / "stack.json").exists()
    assert not (tmp_path / ".sweeps" / "redis.sock").exists()

    # --keep in the same folder: the result is reused, and the stack stays up for the client.
    try:
        keep_and_stop_with_down(tmp_path)
    finally:
        for pid in processes_in(tmp_path):
            os.kill(pid, signal.SIGKILL)


def keep_and_stop_with_down(tmp_path: Path) -> None:
    kept = sweeps(
        "run", "one.yaml", "--keep", "--port", str(free_port()), cwd=tmp_path, timeout=180
    )
    assert kept.returncode == 0, kept.stderr
    assert "| 2 | reused | 4 | " in kept.stdout
    url = json.loads((tmp_path / ".sweeps" / "stack.json").read_text())["url"]
    token = (tmp_path / ".sweeps" / "token").read_text().strip()
    assert f"API   {url}" in kept.stderr and f"token {token}" in kept.stderr
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    status = sweeps("status", cwd=tmp_path)  # finds the kept stack through .sweeps/
    assert status.returncode == 0 and "1 reused of 1" in status.stdout, status.stderr

    down = sweeps("down", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert "api" in down.stdout and "worker" in down.stdout and "redis" in down.stdout
    wait_for(lambda: processes_in(tmp_path) == [], 30, "the kept stack to stop")


def test_ctrl_c_cancels_the_sweep_and_stops_everything(tmp_path: Path) -> None:
    process, pids = start_run(tmp_path, str(LONG_SWEEP))
    database = tmp_path / ".sweeps" / "sweeps.db"

    def run_status() -> str | None:
        with sqlite3.connect(database) as connection:
            row = connection.execute("SELECT status FROM runs").fetchone()
        return row[0] if row else None

    wait_for(lambda: run_status() == "running", 120, "the long run to start")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "cancelling sweep 1" in stderr and "Traceback" not in stderr
    assert run_status() == "cancelled"
    assert not any(pid_alive(pid) for pid in pids.values()), pids
    assert processes_in(tmp_path) == []
    assert not (tmp_path / ".sweeps" / "redis.sock").exists()
