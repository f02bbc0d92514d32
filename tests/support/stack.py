"""Real processes for tests: Celery workers and the API as subprocesses, waits, signals.

Typical use (see tests/test_e2e.py):

    env = stack_env(database_url=db_url, broker_url=broker_url,
                    artifact_dir=tmp_path / "artifacts", api_token=TOKEN,
                    lease_seconds=5, reconcile_seconds=0.5)
    with start_worker(env, log_path=tmp_path / "worker.log") as worker, \\
         start_api(env, log_path=tmp_path / "api.log") as api:
        httpx.post(f"{api.url}/sweeps", ...)
        wait_until(lambda: run_statuses(db_url, ids) == {...}, timeout=60, what="runs done",
                   diagnostics=worker.log_tail)
        worker.kill_children()      # SIGKILL the pool children (a run dies mid-way)
        worker.stop()               # SIGTERM, then SIGKILL after a grace period; reaped

Every process starts in its own session (process group), so `kill()` takes the Celery parent
and its pool children together, as a dead host would, and nothing outlives the test:
`ManagedProcess` is a context manager that always stops and reaps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from sqlalchemy import select
from sqlalchemy.pool import NullPool
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


# --- environment ------------------------------------------------------------------------------


def stack_env(
    *,
    database_url: str,
    broker_url: str,
    artifact_dir: Path | str,
    torch_threads: int | None = 1,
    **settings: Any,
) -> dict[str, str]:
    """The environment for stack subprocesses: this one plus SWEEPS_* settings.

    Keyword settings become SWEEPS_<NAME> (`lease_seconds=5` -> SWEEPS_LEASE_SECONDS=5);
    `torch_threads` caps each process's CPU threads (the test machine is small and shared);
    None leaves the choice to the processes.
    """
    env = dict(os.environ)
    env.update(
        {
            "SWEEPS_DATABASE_URL": database_url,
            "SWEEPS_BROKER_URL": broker_url,
            "SWEEPS_ARTIFACT_DIR": str(artifact_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
        if torch_threads is not None:
            env[var] = str(torch_threads)
    for name, value in settings.items():
        if value is not None:
            env[f"SWEEPS_{name.upper()}"] = str(value)
    # Children start in the repository root, where pytest is usually run; make imports of
    # our packages independent of that.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- waiting ----------------------------------------------------------------------------------


def wait_until(
    check: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Call `check` until it returns something truthy and return that; TimeoutError otherwise.

    `what` names the awaited condition in the error; `diagnostics()` (e.g. a log tail) is
    appended to it so a failing test says why.
    """
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        retry=retry_if_result(lambda result: not result),
    )
    try:
        # An exception from `check` is not retried: it propagates at once (a process died).
        return retrying(check)
    except RetryError:
        pass
    detail = f"\n--- diagnostics ---\n{diagnostics()}" if diagnostics is not None else ""
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}{detail}")


def run_statuses(database_url: str, run_ids: Iterable[int]) -> dict[int, str]:
    """{run_id: status} read straight from the database (a fresh connection each call)."""
    from shared.db.models import Run
    from shared.db.session import make_engine

    ids = list(run_ids)
    engine = make_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Run.id, Run.status).where(Run.id.in_(ids))).all()
    finally:
        engine.dispose()
    return {run_id: str(getattr(status, "value", status)) for run_id, status in rows}


def wait_for_runs(
    database_url: str,
    run_ids: Iterable[int],
    statuses: str | set[str] = "succeeded",
    *,
    timeout: float,
    diagnostics: Callable[[], str] | None = None,
) -> dict[int, str]:
    """Wait until every run has one of `statuses`; returns the final {run_id: status}."""
    ids = list(run_ids)
    wanted = {statuses} if isinstance(statuses, str) else set(statuses)
    last: dict[int, str] = {}

    def done() -> dict[int, str] | None:
        nonlocal last
        last = run_statuses(database_url, ids)
        return last if len(last) == len(ids) and set(last.values()) <= wanted else None

    def explain() -> str:
        extra = diagnostics() if diagnostics is not None else ""
        return f"statuses: {last}\n{extra}"

    return wait_until(
        done, timeout=timeout, interval=0.25, what=f"runs {ids} to be {sorted(wanted)}",
        diagnostics=explain,
    )  # fmt: skip


# --- processes --------------------------------------------------------------------------------


@dataclass
class ManagedProcess:
    """A subprocess in its own process group, logging to `log_path`; stop() reaps it."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str | None = None  # the API's base URL
    _log_handle: Any = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return f"[{self.name} log {self.log_path}]\n" + "\n".join(self.log().splitlines()[-lines:])

    def descendants(self) -> list[int]:
        """Pids of every process below this one (Celery's pool children), oldest first."""
        found: list[int] = []
        frontier = [self.pid]
        while frontier:
            pid = frontier.pop()
            children = []
            for task in Path(f"/proc/{pid}/task").glob("*"):
                with contextlib.suppress(OSError):
                    children += [int(c) for c in (task / "children").read_text().split()]
            found += children
            frontier += children
        return sorted(found)

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` to the main process only (Celery turns SIGTERM into a warm shutdown)."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(sig)

    def kill(self) -> int:
        """SIGKILL the whole process group at once (like a host dying), then reap."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        return self._reap(10)

    def kill_children(self, sig: int = signal.SIGKILL) -> list[int]:
        """Signal the pool children only (a run's process dies; the worker lives on)."""
        pids = self.descendants()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send `sig`; after `timeout` SIGKILL the group. Returns the exit code; idempotent."""
        if self.alive():
            self.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        # Whatever the main process left behind in its group goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        return self._reap(10)

    def _reap(self, timeout: float) -> int:
        code = self.popen.wait(timeout)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        return code

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(timeout=10)


def spawn(
    name: str, argv: list[str], env: Mapping[str, str], log_path: Path | str
) -> ManagedProcess:
    """Start `argv` in a new session with stdout and stderr appended to `log_path`."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log_path, "ab")  # noqa: SIM115 -- closed by ManagedProcess._reap
    popen = subprocess.Popen(
        argv, env=dict(env), cwd=REPO, stdin=subprocess.DEVNULL, stdout=handle,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    return ManagedProcess(name=name, popen=popen, log_path=log_path, _log_handle=handle)


def start_worker(
    env: Mapping[str, str],
    *,
    log_path: Path | str,
    runs_per_gpu: int = 1,
    gpu: str | None = None,
    name: str = "worker",
    ready_timeout: float = 60.0,
) -> ManagedProcess:
    """A real Celery worker (`run_worker`), returned once it consumes from the queue."""
    code = (
        "from worker.celery_app import run_worker; "
        f"run_worker(gpu={gpu!r}, runs_per_gpu={runs_per_gpu}, loglevel='info')"
    )
    proc = spawn(name, [sys.executable, "-c", code], env, log_path)
    try:
        wait_until(
            lambda: _check_alive(proc) and " ready." in proc.log(),
            timeout=ready_timeout, interval=0.2, what=f"{name} to be ready",
            diagnostics=proc.log_tail,
        )  # fmt: skip
    except BaseException:
        proc.stop(timeout=5)
        raise
    return proc


def start_api(
    env: Mapping[str, str],
    *,
    log_path: Path | str,
    port: int | None = None,
    name: str = "api",
    ready_timeout: float = 30.0,
    workers: int = 1,
) -> ManagedProcess:
    """The API under uvicorn (`api.main:create_app --factory`, `workers` processes), returned
    once /healthz answers."""
    port = port or free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "info",
        "--workers", str(workers),
    ]  # fmt: skip
    proc = spawn(name, argv, env, log_path)
    proc.url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        _check_alive(proc)
        try:
            return httpx.get(f"{proc.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(
            healthy, timeout=ready_timeout, interval=0.2, what=f"{name} /healthz",
            diagnostics=proc.log_tail,
        )  # fmt: skip
    except BaseException:
        proc.stop(timeout=5)
        raise
    return proc


class ProcessDied(RuntimeError):
    pass


def _check_alive(proc: ManagedProcess) -> bool:
    if not proc.alive():
        raise ProcessDied(f"{proc.name} exited with {proc.popen.returncode}\n{proc.log_tail()}")
    return True


def wait_for_exit(proc: ManagedProcess, timeout: float) -> int:
    """Wait for a process to end by itself; TimeoutError with its log otherwise."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(subprocess.TimeoutExpired):
        return proc.popen.wait(max(0.0, deadline - time.monotonic()))
    raise TimeoutError(f"{proc.name} still running after {timeout:g}s\n{proc.log_tail()}")
